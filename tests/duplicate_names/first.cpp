// Two files, each with its own `static int helper(int)`: both derive the wire
// name "helper" with the same signature. A worker must refuse to start rather
// than run one for the other.
#include <framex/framex.hpp>

static int helper(int x) { return x + 1; }
void use_first() { (void)framex::remote<&helper>; framex::expose<&helper>(); }

int main(int argc, char** argv) {
  if (auto exit_code = framex::worker_main(argc, argv)) return *exit_code;
  return 0;
}
