// plugins — a service built from plugins: `inventory` (linked in), `billing`
// (a shared library, loaded by path) and the built-in `echo`, as framex.toml
// says, plus one route of the app's own. /docs lists them all.
//
//   ./plugins_app --config framex.toml --load_plugins inventory,./example_billing.so
//   curl 'http://127.0.0.1:8080/api/v1/billing/quote?name=apple&count=2'
//   curl -N 'http://127.0.0.1:8080/api/v1/inventory/watch?times=3'
//   open http://127.0.0.1:8080/docs
#include <framex/framex.hpp>
#include <framex/plugin.hpp>

#include <cstdio>

namespace asio = boost::asio;

// An app route that calls a plugin's function API.
asio::awaitable<int> total_stock(std::string a, std::string b) {
  boost::json::object first{{"name", a}}, second{{"name", b}};
  const int x = co_await framex::call_plugin_api<int>("inventory.count", first);
  const int y = co_await framex::call_plugin_api<int>("inventory.count", second);
  co_return x + y;
}

int main(int argc, char** argv) {
  if (auto exit_code = framex::worker_main(argc, argv)) return *exit_code;
  try {
    framex::app app{framex::config::load(argc, argv)};
    app.on_request("/api/v1/total", &total_stock, {.params = {"a", "b"}, .summary = "Two items' stock together"});
    app.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "plugins_app: %s\n", e.what());
    return 1;
  }
}
