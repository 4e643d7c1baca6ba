// Must not compile: a string where the wrapped function takes an int.
#include <framex/framex.hpp>

int legacy_sum(int a, int b) { return a + b; }
constexpr auto sum = framex::remote<&legacy_sum>;

boost::asio::awaitable<int> call() { co_return co_await sum.remote(1, "two"); }

int main() {}
