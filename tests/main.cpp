// The test executable doubles as a framex worker: started with
// `--framex-worker`, it serves the functions the tests call, exactly as a
// user's program would.
#include <gtest/gtest.h>

#include "framex/worker.hpp"

int main(int argc, char** argv) {
  if (auto exit_code = framex::worker_main(argc, argv)) return *exit_code;
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
