#include "worker/admission.hpp"

#include <gtest/gtest.h>

namespace admission_test {

using framex::detail::admission;
using verdict = admission::verdict;

TEST(Admission, AdmitsWithinEveryBudget) {
  admission a({.max_calls = 3, .max_calls_per_connection = 2, .max_held_bytes = 100});
  EXPECT_EQ(a.check(0, 10), verdict::admit);
  a.admitted(10);
  EXPECT_EQ(a.held(), 1u);
  EXPECT_EQ(a.held_bytes(), 10u);
}

TEST(Admission, RefusesPastTheWorkersCallsAndGivesBackWhatAFinishedCallHeld) {
  admission a({.max_calls = 2});
  a.admitted(1);
  a.admitted(1);
  EXPECT_EQ(a.check(0, 1), verdict::worker_full);
  EXPECT_NE(a.why(verdict::worker_full).find("holds 2 calls"), std::string::npos);
  a.finished(1);
  EXPECT_EQ(a.check(0, 1), verdict::admit);
}

TEST(Admission, RefusesPastAConnectionsCalls) {
  admission a({.max_calls_per_connection = 4});
  EXPECT_EQ(a.check(3, 1), verdict::admit);
  EXPECT_EQ(a.check(4, 1), verdict::connection_full);
  EXPECT_NE(a.why(verdict::connection_full).find("this connection has 4 calls"), std::string::npos);
}

TEST(Admission, RefusesARequestThatWouldTakeHeldBytesPastTheBudget) {
  admission a({.max_held_bytes = 100});
  a.admitted(60);
  EXPECT_EQ(a.check(0, 40), verdict::admit);
  EXPECT_EQ(a.check(0, 41), verdict::bytes_full);
  a.finished(60);
  EXPECT_EQ(a.check(0, 100), verdict::admit);
}

TEST(Admission, ZeroMeansNoLimit) {
  admission a({});
  for (int i = 0; i < 100000; ++i) a.admitted(1 << 20);
  EXPECT_EQ(a.check(100000, std::size_t{1} << 40), verdict::admit);
}

TEST(Admission, DrainingRefusesAsOverloadedAndStoppingAsCancelledFirst) {
  admission a({.max_calls = 1});
  a.admitted(1);
  a.drain();
  EXPECT_EQ(a.check(0, 1), verdict::draining);
  a.stop();
  EXPECT_EQ(a.check(0, 1), verdict::stopping);
  EXPECT_EQ(a.why(verdict::stopping), "the worker is shutting down");
}

}  // namespace admission_test
