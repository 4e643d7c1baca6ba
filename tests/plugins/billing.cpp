// billing.so: the plugin that billing.hpp registers, as a shared library
// (the test program includes billing.hpp itself, so it is linked in there).
#include "billing.hpp"
