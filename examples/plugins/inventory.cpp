// An in-binary plugin: linked into the app, loaded by `load_plugins = ["inventory"]`.
#include "inventory.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <memory>

namespace inventory {

namespace asio = boost::asio;

plugin::plugin(settings s) : stock_(std::move(s.stock)) {}

int plugin::count(std::string name) {
  std::lock_guard lock(mutex_);
  const auto it = stock_.find(name);
  return it == stock_.end() ? 0 : it->second;
}

item plugin::add(item i) {
  std::lock_guard lock(mutex_);
  return {i.name, stock_[i.name] += i.count};
}

// The first event at once, the others 200 ms apart.
framex::stream plugin::watch(int times) {
  auto left = std::make_shared<int>(times);
  return framex::stream::events([this, left, times]() -> asio::awaitable<std::optional<std::string>> {
    if (*left <= 0) co_return std::nullopt;
    if ((*left)-- != times) {
      const auto executor = co_await asio::this_coro::executor;
      asio::steady_timer timer(executor, std::chrono::milliseconds(200));
      co_await timer.async_wait(asio::use_awaitable);
    }
    std::string line;
    std::lock_guard lock(mutex_);
    for (const auto& [name, n] : stock_) line += name + "=" + std::to_string(n) + " ";
    co_return line;
  });
}

}  // namespace inventory

FRAMEX_PLUGIN(inventory::plugin,
              framex::plugin_metadata{.name = "inventory", .version = "1.0.0", .description = "What is in stock"},
              framex::on_request<&inventory::plugin::count>("/inventory/count", {.params = {"name"}, .func_api = true}),
              framex::on_request<&inventory::plugin::add>("/inventory/add", {.methods = {framex::http_method::post}}),
              framex::on_request<&inventory::plugin::watch>("/inventory/watch",
                                                            {.params = {"times"}, .methods = {framex::http_method::get}}));
