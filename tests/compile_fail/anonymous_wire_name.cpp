// A function in an anonymous namespace would travel under `anon::helper`, a
// name every translation unit's helper shares: it must get a wire_name.
#include <framex/framex.hpp>

namespace {
int helper(int x) { return x; }
}  // namespace

int main() { (void)framex::remote<&helper>.remote(1); }
