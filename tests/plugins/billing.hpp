// The tests' plugin: configuration, HTTP and function APIs, a described-struct
// body, cross-plugin calls by name and by path, a stream, and a call that
// waits for the test to let it go. Registered here, so one translation unit
// includes it: plugin_test.cpp links it into the test program, billing.cpp
// builds billing.so of it (framex_add_plugin).
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/describe/class.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "framex/plugin.hpp"

namespace billing {

namespace asio = boost::asio;

struct settings {
  int tax_percent = 20;
  std::string currency = "EUR";
};
BOOST_DESCRIBE_STRUCT(settings, (), (tax_percent, currency))

struct invoice_request {
  std::string customer;
  std::vector<int> cents;
};
BOOST_DESCRIBE_STRUCT(invoice_request, (), (customer, cents))

struct invoice {
  std::string customer;
  int total_cents = 0;
  std::string currency;
};
BOOST_DESCRIBE_STRUCT(invoice, (), (customer, total_cents, currency))

/// Closed: `hold` waits (the linked-in plugin only: a shared library has its own).
inline std::atomic<bool> gate_open{true};
inline std::atomic<int> holding{0};
inline std::atomic<int> starts{0};
inline std::atomic<int> stops{0};

inline asio::awaitable<void> wait_for_gate() {
  const auto executor = co_await asio::this_coro::executor;
  asio::steady_timer timer(executor);
  while (!gate_open) {
    timer.expires_after(std::chrono::milliseconds(2));
    co_await timer.async_wait(asio::use_awaitable);
  }
}

class plugin {
 public:
  using config_type = settings;
  explicit plugin(settings s) : settings_(std::move(s)) {}

  asio::awaitable<void> on_start() {
    ++starts;
    co_return;
  }
  void on_stop() { ++stops; }

  [[nodiscard]] int tax(int cents) const { return cents * settings_.tax_percent / 100; }

  [[nodiscard]] invoice make_invoice(invoice_request r) const {
    const int net = std::accumulate(r.cents.begin(), r.cents.end(), 0);
    return {r.customer, net + tax(net), settings_.currency};
  }

  // Two other plugins' APIs: echo's function API by name, and its route by path.
  asio::awaitable<std::string> greet(std::string name) {
    // (GCC 12 miscompiles a braced list inside a co_await expression: the
    // arguments are made first.)
    boost::json::object args{{"message", name}};
    const auto confessed = co_await framex::call_plugin_api<std::string>("echo.confess", args);
    const auto echoed = co_await framex::call_plugin_api<boost::json::value>("/api/v1/echo", std::move(args));
    co_return confessed + " / " + std::string(echoed.as_string());
  }

  // "from", "from - 1", ..., "1": the first piece at once, the others once the gate is open.
  [[nodiscard]] framex::stream countdown(int from) const {
    auto left = std::make_shared<int>(from);
    auto first = std::make_shared<bool>(true);
    return framex::stream::chunked([left, first]() -> asio::awaitable<std::optional<std::string>> {
      if (*left <= 0) co_return std::nullopt;
      if (!*first) co_await wait_for_gate();
      *first = false;
      co_return std::to_string((*left)--) + "\n";
    });
  }

  asio::awaitable<int> hold(int value) {
    ++holding;
    co_await wait_for_gate();
    --holding;
    co_return value;
  }

  [[nodiscard]] static int where() { return static_cast<int>(::getpid()); }

 private:
  settings settings_;
};

}  // namespace billing

FRAMEX_PLUGIN(billing::plugin,
              framex::plugin_metadata{.name = "billing",
                                      .version = "2.1.0",
                                      .description = "Taxes and invoices",
                                      .author = "framex tests",
                                      .url = "https://example.invalid/billing",
                                      .required_apis = {"echo.confess", "/api/v1/echo"}},
              framex::on_request<&billing::plugin::tax>("/billing/tax", {.params = {"cents"}, .func_api = true}),
              framex::on_request<&billing::plugin::make_invoice>(
                  "/billing/invoice", {.methods = {framex::http_method::post}, .func_api = true, .name = "invoice"}),
              framex::on_request<&billing::plugin::greet>("/billing/greet", {.params = {"name"}}),
              framex::on_request<&billing::plugin::countdown>("/billing/countdown", {.params = {"from"}}),
              framex::on_request<&billing::plugin::hold>("/billing/hold", {.params = {"value"}, .func_api = true}),
              framex::on_request<&billing::plugin::where>(framex::func_api));
