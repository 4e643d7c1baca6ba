// A plugin built as a shared library (framex_add_plugin in CMakeLists.txt) and
// loaded by path: `load_plugins = ["/path/to/example_billing.so"]`. It calls
// the inventory plugin's API by name, and echo's by path.
#include <framex/plugin.hpp>

#include <boost/describe.hpp>

#include <string>

namespace billing {

struct settings {
  int cents_each = 50;
};
BOOST_DESCRIBE_STRUCT(settings, (), (cents_each))

struct quote {
  std::string name;
  int in_stock = 0;
  int cents = 0;
  std::string note;
};
BOOST_DESCRIBE_STRUCT(quote, (), (name, in_stock, cents, note))

class plugin {
 public:
  using config_type = settings;
  explicit plugin(settings s) : settings_(s) {}

  // GET /api/v1/billing/quote?name=apple&count=2
  boost::asio::awaitable<quote> price(std::string name, int count) {
    boost::json::object args{{"name", name}};  // (made first: GCC 12 and braces inside co_await)
    const int in_stock = co_await framex::call_plugin_api<int>("inventory.count", args);
    boost::json::object say{{"message", "quoted " + name}};
    const auto note = co_await framex::call_plugin_api<std::string>("/api/v1/echo", say);
    co_return quote{name, in_stock, count * settings_.cents_each, note};
  }

 private:
  settings settings_;
};

}  // namespace billing

FRAMEX_PLUGIN(billing::plugin,
              framex::plugin_metadata{.name = "billing",
                                      .version = "0.3.0",
                                      .description = "Prices what is in stock",
                                      .required_apis = {"inventory.count", "/api/v1/echo"}},
              framex::on_request<&billing::plugin::price>("/billing/quote", {.params = {"name", "count"}, .func_api = true}));
