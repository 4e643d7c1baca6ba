// A worker built from other code: it defines "test.add" with another
// signature than the test binary does, and lacks the test binary's other
// functions. Callers must see signature_mismatch and unknown_function.
#include <framex/framex.hpp>

#include <string>

std::string add(std::string a) { return a + a; }
template <>
inline constexpr std::string_view framex::wire_name<&add> = "test.add";

int main(int argc, char** argv) {
  framex::expose<&add>();
  if (auto exit_code = framex::worker_main(argc, argv)) return *exit_code;
  return 2;  // only ever run as a worker
}
