// Exposing a function to workers needs every type in its signature to cross
// the wire: this must not compile, and the error must name the type.
#include <framex/framex.hpp>

struct gpu_context {
  int id;
};
int read_from(gpu_context h) { return h.id; }

int main() { framex::expose<&read_from>(); }
