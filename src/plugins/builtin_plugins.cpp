// framex's own plugins: `echo` (says back what it is sent; the quickstart's and
// the tests' plugin) and `proxy` (see proxy_plugin.cpp).
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/describe/class.hpp>

#include "plugins/plugin_host.hpp"

namespace framex::detail {
namespace {

namespace asio = boost::asio;

struct echo_config {
  /// Put before every message said back.
  std::string prefix;
};
BOOST_DESCRIBE_STRUCT(echo_config, (), (prefix))

class echo_plugin {
 public:
  using config_type = echo_config;
  explicit echo_plugin(echo_config cfg) : cfg_(std::move(cfg)) {}

  [[nodiscard]] std::string echo(std::string message) const { return cfg_.prefix + message; }

  asio::awaitable<std::string> confess(std::string message) const { co_return "I said: " + cfg_.prefix + message; }

  // `times` events, `interval_ms` apart.
  [[nodiscard]] stream events(std::string message, int times, int interval_ms) const {
    struct state {
      std::string text;
      int left;
      std::chrono::milliseconds interval;
      bool first = true;
    };
    auto s = std::make_shared<state>(state{cfg_.prefix + message, std::clamp(times, 0, 10000),
                                           std::chrono::milliseconds(std::clamp(interval_ms, 0, 60000))});
    return stream::events([s]() -> asio::awaitable<std::optional<std::string>> {
      if (s->left == 0) co_return std::nullopt;
      if (!s->first && s->interval.count() > 0) {
        const auto executor = co_await asio::this_coro::executor;
        asio::steady_timer timer(executor, s->interval);
        co_await timer.async_wait(asio::use_awaitable);
      }
      s->first = false;
      --s->left;
      co_return s->text;
    });
  }

 private:
  echo_config cfg_;
};

}  // namespace

const plugin_descriptor& proxy_descriptor();  // proxy_plugin.cpp

const plugin_descriptor* builtin_plugin(std::string_view name) {
  if (name == "proxy") return &proxy_descriptor();
  if (name == "echo") {
    static const plugin_descriptor echo = describe_plugin<echo_plugin>(
        plugin_metadata{.name = "echo",
                        .version = "1.0.0",
                        .description = "Says back what it is sent",
                        .author = "framex",
                        .url = "https://github.com/framex"},
        framex::on_request<&echo_plugin::echo>(
            "/echo", {.params = {"message"}, .func_api = true, .summary = "The message, after the configured prefix"}),
        framex::on_request<&echo_plugin::confess>(framex::func_api,
                                                  {.params = {"message"}, .summary = "The message, confessed"}),
        framex::on_request<&echo_plugin::events>(
            "/echo/stream", {.params = {"message", "times", "interval_ms"},
                             .methods = {http_method::get},
                             .summary = "The message as `times` Server-Sent Events, `interval_ms` apart"}));
    return &echo;
  }
  return nullptr;
}

}  // namespace framex::detail
