// Distributed mode, worker's side: serves registered functions over
// msgpack-RPC. A request names a function; the registry finds it; a blocking
// function is decoded, run and answered on the bounded pool, an async one on
// its connection's strand. `framex.cancel` notifications (a caller's timeout or
// cancellation) and closed connections cancel the calls they concern: a queued
// blocking call is skipped, an async one gets an Asio cancellation.
#include "framex/worker.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "../net/server.hpp"
#include "registry.hpp"
#include "thread_pool.hpp"

namespace framex {

namespace asio = boost::asio;
using detail::function_entry;
using detail::message_buffer;

namespace {
std::size_t threads_or_hardware(std::size_t n) { return n != 0 ? n : std::max(1u, std::thread::hardware_concurrency()); }
}  // namespace

class worker::impl final : public net::dispatcher {
 public:
  explicit impl(const config& cfg)
      : max_message_(cfg.distributed.max_message_size),
        max_queued_(cfg.worker.max_queued),
        pool_(threads_or_hardware(cfg.worker.threads)),
        work_(asio::make_work_guard(io_)) {
    const auto [host, port] = parse_endpoint(cfg.worker.listen);
    listener_.emplace(io_, asio::ip::tcp::endpoint(asio::ip::make_address(host), port), max_message_, *this);
    for (std::size_t i = 0; i < std::max<std::size_t>(1, cfg.worker.io_threads); ++i) {
      threads_.emplace_back([this] { io_.run(); });
    }
  }

  ~impl() { stop(); }

  std::uint16_t port() const noexcept { return listener_->port(); }

  void stop() noexcept {
    std::lock_guard stop_lock(stop_mutex_);
    if (stopped_) return;
    stopped_ = true;
    listener_->close();
    pool_.shutdown();  // queued calls answer `cancelled`; running bodies finish and answer
    std::vector<std::shared_ptr<net::session>> open;
    {
      std::lock_guard lock(mutex_);
      for (auto& [key, call] : calls_) call->cancel();
      for (auto& [address, w] : sessions_) {
        if (auto s = w.lock()) open.push_back(std::move(s));
      }
    }
    for (auto& s : open) s->close(make_error_code(errc::cancelled));
    work_.reset();
    // Closed sessions end their reads; cancelled async calls unwind. Whatever
    // still waits on a timer is abandoned when the io_context stops.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    io_.stop();
    for (auto& t : threads_) t.join();
  }

 private:
  // One call being served.
  class served_call final : public detail::pool_task, public detail::invocation {
   public:
    served_call(impl& owner, std::shared_ptr<net::session> from, net::incoming_request request, const function_entry& fn)
        : owner_(owner), session_(std::move(from)), request_(std::move(request)), fn_(fn) {}

    ~served_call() override { owner_.forget(*this); }

    std::pair<net::session*, std::uint32_t> key() const noexcept { return {session_.get(), request_.msgid}; }
    const function_entry& fn() const noexcept { return fn_; }
    std::shared_ptr<asio::cancellation_signal> signal = std::make_shared<asio::cancellation_signal>();

    const msgpack::object& params() const noexcept override { return *request_.params; }

    void succeed(message_buffer body) noexcept override {
      if (!cancelled_.load(std::memory_order_acquire)) session_->reply(request_.msgid, std::move(body));
    }

    void fail(errc code, std::string type, std::string message) noexcept override {
      if (!cancelled_.load(std::memory_order_acquire)) {
        session_->reply_error(request_.msgid, static_cast<int>(code), type, message);
      }
    }

    // Pool thread.
    void run(bool stopping) noexcept override {
      if (stopping) {
        fail(errc::cancelled, "framex.cancelled", "the worker is shutting down");
      } else if (!cancelled_.load(std::memory_order_acquire)) {
        fn_.run_blocking(*this);
      }
      delete this;
    }

    // Under the owner's mutex, from any thread: an async call is cancelled on
    // its session's strand, where it runs.
    void cancel() noexcept {
      cancelled_.store(true, std::memory_order_release);
      if (fn_.is_async) {
        asio::post(session_->executor(), [s = signal] { s->emit(asio::cancellation_type::terminal); });
      }
    }

   private:
    impl& owner_;
    std::shared_ptr<net::session> session_;
    net::incoming_request request_;
    const function_entry& fn_;
    std::atomic<bool> cancelled_{false};
  };

  void on_request(const std::shared_ptr<net::session>& from, net::incoming_request request) override {
    remember(from);
    if (request.method == "framex.hello") return hello(*from, request.msgid);
    const function_entry* fn = detail::find_function(request.method);
    if (fn == nullptr || (fn->run_blocking == nullptr && fn->run_async == nullptr)) {
      const std::string name(request.method);
      return from->reply_error(request.msgid, static_cast<int>(errc::unknown_function), "framex.unknown_function",
                               fn == nullptr ? "no function named \"" + name + "\" is registered"
                                             : "\"" + name + "\" names several functions; give each a framex::wire_name");
    }
    const std::uint32_t msgid = request.msgid;
    auto call = std::make_unique<served_call>(*this, from, std::move(request), *fn);
    bool refused = false;
    {
      std::lock_guard lock(mutex_);
      refused = max_queued_ != 0 && calls_.size() >= max_queued_;
      if (!refused) calls_[call->key()] = call.get();
    }
    if (refused) {
      return from->reply_error(msgid, static_cast<int>(errc::overloaded), "framex.overloaded",
                               "the worker holds " + std::to_string(max_queued_) + " calls already");
    }
    if (fn->is_async) {
      auto signal = call->signal;
      asio::co_spawn(from->executor(), fn->run_async(std::move(call)),
                     asio::bind_cancellation_slot(signal->slot(), [signal](std::exception_ptr) {}));
    } else {
      pool_.submit(*call.release());
    }
  }

  void on_notification(const std::shared_ptr<net::session>& from, std::string_view method,
                       const msgpack::object& params) override {
    if (method != "framex.cancel" || params.type != msgpack::type::ARRAY || params.via.array.size != 1 ||
        params.via.array.ptr[0].type != msgpack::type::POSITIVE_INTEGER) {
      return;  // notifications get no answer; unknown ones are ignored
    }
    std::lock_guard lock(mutex_);
    const auto it = calls_.find({from.get(), static_cast<std::uint32_t>(params.via.array.ptr[0].via.u64)});
    if (it != calls_.end()) it->second->cancel();
  }

  void on_session_closed(net::session& s) override {
    std::lock_guard lock(mutex_);
    sessions_.erase(&s);  // before its address can be reused by a new session
    for (auto it = calls_.lower_bound({&s, 0}); it != calls_.end() && it->first.first == &s; ++it) it->second->cancel();
  }

  void hello(net::session& to, std::uint32_t msgid) {
    message_buffer body(detail::invocation::response_headroom);
    msgpack::packer<message_buffer> p(body);
    const auto functions = detail::registered_functions();
    p.pack_map(3);
    p.pack(std::string_view("protocol"));
    p.pack(1);
    p.pack(std::string_view("functions"));
    p.pack_map(static_cast<std::uint32_t>(functions.size()));
    for (const auto* f : functions) {
      p.pack(f->name);
      p.pack(f->signature);
    }
    p.pack(std::string_view("max_message_size"));
    p.pack(static_cast<std::uint64_t>(max_message_));
    to.reply(msgid, std::move(body));
  }

  void remember(const std::shared_ptr<net::session>& s) {
    std::lock_guard lock(mutex_);
    sessions_.try_emplace(s.get(), s);
  }

  void forget(served_call& call) {
    std::lock_guard lock(mutex_);
    const auto it = calls_.find(call.key());
    if (it != calls_.end() && it->second == &call) calls_.erase(it);
  }

  std::size_t max_message_;
  std::size_t max_queued_;
  std::mutex mutex_;
  std::map<std::pair<net::session*, std::uint32_t>, served_call*> calls_;
  std::map<net::session*, std::weak_ptr<net::session>> sessions_;  // open sessions, to close at stop
  detail::thread_pool pool_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::optional<net::listener> listener_;
  std::vector<std::thread> threads_;
  std::mutex stop_mutex_;
  bool stopped_ = false;
};

worker::worker(const config& cfg) : impl_(std::make_unique<impl>(cfg)) {}
worker::~worker() = default;
std::uint16_t worker::port() const noexcept { return impl_->port(); }
void worker::stop() noexcept { impl_->stop(); }

int serve_worker(const config& cfg) {
  worker w(cfg);
  asio::io_context signals_io;
  asio::signal_set signals(signals_io, SIGINT, SIGTERM);
  signals.async_wait([](const boost::system::error_code&, int) {});
  const auto host = parse_endpoint(cfg.worker.listen).first;
  std::printf("framex worker listening on %s:%u\n", host.c_str(), static_cast<unsigned>(w.port()));
  std::fflush(stdout);
  signals_io.run();
  w.stop();
  return 0;
}

std::optional<int> worker_main(int argc, char** argv) {
  const auto begin = argv + 1;
  const auto end = argv + argc;
  if (std::find_if(begin, end, [](const char* a) { return std::string_view(a) == "--framex-worker"; }) == end) {
    return std::nullopt;
  }
  try {
    std::optional<std::filesystem::path> file;
    std::vector<std::pair<std::string, std::string>> flags;
    for (auto it = begin; it != end; ++it) {
      const std::string_view a = *it;
      const auto value = [&]() -> std::string {
        if (++it == end) throw config_error("command line: " + std::string(a) + " needs a value");
        return *it;
      };
      if (a == "--framex-worker") continue;
      if (a == "--config") {
        file = value();
      } else if (a == "--listen") {
        flags.emplace_back("worker.listen", value());
      } else if (a == "--threads") {
        flags.emplace_back("worker.threads", value());
      } else {
        throw config_error("command line: unknown worker flag " + std::string(a));
      }
    }
    config cfg = config::load(file);
    for (const auto& [key, v] : flags) cfg.apply(key, v, "command line");
    return serve_worker(cfg);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "framex worker: %s\n", e.what());
    return 2;
  }
}

}  // namespace framex
