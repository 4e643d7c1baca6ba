// framex::rpc_client: a distributed runtime with one server, called by
// method name, whose connections hand the server's own requests and
// notifications to the handlers registered here.
#include "framex/rpc_client.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <mutex>
#include <unordered_map>

#include "core/shown.hpp"
#include "net/address.hpp"
#include "net/client.hpp"
#include "caller/distributed.hpp"

namespace framex {

namespace asio = boost::asio;

namespace detail {

namespace {

struct name_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// A request (or notification) from the server, answered on its connection.
class incoming_call final : public invocation {
 public:
  incoming_call(std::shared_ptr<net::client> conn, net::incoming_request r, std::shared_ptr<std::atomic<std::size_t>> serving)
      : conn_(std::move(conn)), request_(std::move(r)), serving_(std::move(serving)) {}
  ~incoming_call() override { serving_->fetch_sub(1, std::memory_order_relaxed); }
  const msgpack::object& params() const noexcept override { return *request_.params; }
  void succeed(message_buffer body) noexcept override {
    if (!request_.notification) conn_->reply(request_.msgid, std::move(body));
  }
  void fail(errc code, std::string type, std::string message) noexcept override {
    if (request_.notification) {
      spdlog::warn("framex: rpc_client: the handler of notification {} failed: {}: {}", detail::shown(request_.method), type, message);
    } else {
      conn_->reply_error(request_.msgid, static_cast<int>(code), type, message);
    }
  }

 private:
  std::shared_ptr<net::client> conn_;
  net::incoming_request request_;
  std::shared_ptr<std::atomic<std::size_t>> serving_;  // counts this call until it is answered
};

// The io_context behind `ex` (its own executor, or a strand of it), or null.
asio::io_context* io_context_of(const asio::any_io_executor& ex) {
  using plain = asio::io_context::basic_executor_type<std::allocator<void>, 0>;
  using tracked = asio::io_context::basic_executor_type<std::allocator<void>, 4>;
  if (const auto* e = ex.target<plain>()) return &e->context();
  if (const auto* e = ex.target<tracked>()) return &e->context();
  if (const auto* s = ex.target<asio::strand<plain>>()) return &s->get_inner_executor().context();
  if (const auto* s = ex.target<asio::strand<tracked>>()) return &s->get_inner_executor().context();
  return nullptr;
}

}  // namespace

struct rpc_state : std::enable_shared_from_this<rpc_state> {
  rpc_state(asio::any_io_executor ex, std::size_t limit) : executor(std::move(ex)), max_serving(limit) {}

  // On the connection's strand: runs the handler of `r` on the client's executor.
  void dispatch(const std::shared_ptr<net::client>& conn, net::incoming_request r) {
    rpc_handler handler;
    {
      std::lock_guard lock(mutex);
      auto& table = r.notification ? notifications : requests;
      const auto it = table.find(r.method);
      if (it != table.end()) handler = it->second;
    }
    if (!handler.run && !handler.run_async) {
      if (!r.notification) {
        conn->reply_error(r.msgid, errc::unknown_function,
                          "this client serves no method " + detail::shown(r.method));
      }
      return;
    }
    // A server that sends more than the handlers keep up with is refused, not queued without bound.
    if (serving->fetch_add(1, std::memory_order_relaxed) >= max_serving) {
      serving->fetch_sub(1, std::memory_order_relaxed);
      if (r.notification) {
        spdlog::warn("framex: rpc_client: {} requests and notifications are being served; notification {} dropped", max_serving, detail::shown(r.method));
      } else {
        conn->reply_error(r.msgid, errc::overloaded,
                          "this client is serving " + std::to_string(max_serving) + " requests already");
      }
      return;
    }
    auto call = std::make_unique<incoming_call>(conn, std::move(r), serving);
    asio::post(executor, [handler = std::move(handler), call = std::move(call), ex = executor]() mutable {
      if (handler.run) {
        handler.run(*call);
      } else {
        asio::co_spawn(ex, handler.run_async(std::move(call)), asio::detached);
      }
    });
  }

  asio::any_io_executor executor;
  const std::size_t max_serving;
  std::shared_ptr<std::atomic<std::size_t>> serving = std::make_shared<std::atomic<std::size_t>>(0);
  std::mutex mutex;
  std::unordered_map<std::string, rpc_handler, name_hash, std::equal_to<>> requests, notifications;
  std::unique_ptr<distributed_runtime> runtime;
};

const function_entry& method_entry(std::string_view name) {
  // A thread calling one method again (the common case) takes no lock.
  thread_local const function_entry* last = nullptr;
  if (last != nullptr && last->name == name) return *last;
  static std::mutex mutex;
  static std::unordered_map<std::string, std::unique_ptr<function_entry>, name_hash, std::equal_to<>> entries;
  std::lock_guard lock(mutex);
  auto it = entries.find(name);
  if (it == entries.end()) {
    auto e = std::make_unique<function_entry>();
    e->name = std::string(name);
    it = entries.emplace(e->name, std::move(e)).first;
  }
  last = it->second.get();
  return *last;
}

void start_rpc(rpc_state& state, const function_entry& fn, message_buffer params, std::chrono::steady_clock::duration timeout,
               const asio::any_io_executor& caller, reply_handler handler, bool notification) {
  state.runtime->start(fn, std::move(params), timeout, resource_needs{}, caller, std::move(handler), notification);
}

void add_rpc_handler(rpc_state& state, std::string name, bool notification, rpc_handler handler) {
  std::lock_guard lock(state.mutex);
  (notification ? state.notifications : state.requests)[std::move(name)] = std::move(handler);
}

}  // namespace detail

using detail::io_context_of;

rpc_client::rpc_client(const asio::any_io_executor& executor, std::string_view address, rpc_options options)
    : state_(std::make_shared<detail::rpc_state>(executor, std::max<std::size_t>(1, options.max_serving))) {
  config cfg;
  cfg.runtime.mode = mode::distributed;
  try {
    cfg.distributed.workers = {net::parse_address(address, true).text()};
  } catch (const std::invalid_argument& e) {
    throw config_error("rpc_client: " + std::string(e.what()));
  }
  auto& d = cfg.distributed;
  d.hello = options.hello;
  d.call_timeout = options.timeout;
  d.connect_timeout = options.connect_timeout;
  d.connections_per_worker = std::max<std::size_t>(1, options.connections);
  d.max_message_size = options.max_message_size;
  d.heartbeat = options.heartbeat;
  d.token_file = options.token_file;
  d.tls = options.tls;
  // The executor's io_context serves the connections, if it is one.
  asio::io_context* io = io_context_of(executor);
  state_->runtime = std::make_unique<detail::distributed_runtime>(
      cfg, io, [weak = std::weak_ptr<detail::rpc_state>(state_)](const std::shared_ptr<net::client>& conn, net::incoming_request r) {
        if (auto state = weak.lock()) {
          state->dispatch(conn, std::move(r));
        } else if (!r.notification) {
          conn->reply_error(r.msgid, errc::cancelled, "the client is closing");
        }
      });
}

rpc_client::~rpc_client() { close(); }
using detail::io_context_of;

rpc_client::rpc_client(rpc_client&&) noexcept = default;
rpc_client& rpc_client::operator=(rpc_client&& other) noexcept {
  if (this != &other) {
    close();
    state_ = std::move(other.state_);
  }
  return *this;
}

const asio::any_io_executor& rpc_client::executor() const noexcept { return state_->executor; }

void rpc_client::close() noexcept {
  if (state_ && state_->runtime) state_->runtime->shutdown();
}

}  // namespace framex
