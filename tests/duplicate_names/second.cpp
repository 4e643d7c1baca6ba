#include <framex/framex.hpp>

static int helper(int x) { return x - 1; }
void use_second() { framex::expose<&helper>(); }
