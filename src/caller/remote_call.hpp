// One call in flight from this process to a worker (`remote_call`), and the
// connection it travels on as the caller's runtime keeps it (`slot`).
//
// A `remote_call` is reference counted (`call_ref`); every place that holds
// one holds a `call_ref`: the function working on it, a slot's or the
// unrouted list, its pending timer wait, its cancellation handler, and its
// completion on its way to the caller. The one counted by hand is the
// connection's table, which holds a raw pointer: the reference is taken when
// the call is filed and dropped by whoever takes it out (the response, the
// connection's loss, or `forget_on_worker`).
//
// Its phases:
//
//   made ──arm──▶ armed ──send──▶ on a connection ──on_response / on_lost──▶ done
//                   │                   │
//                   └──timeout, cancellation, giving up (any phase)──────────▶ done
//
// It completes exactly once, by whichever comes first (`done_` decides, by
// an exchange); its handler then runs on the caller's executor, at once when
// the answer was read on the caller's own thread, else posted there. A call
// that completes while on a connection is taken out of the connection's table
// and, after a timeout or a cancellation, the worker is told (`framex.cancel`).
//
// A `slot` is reached by a raw pointer (a call's `slot_`, the connect
// coroutine): slots are owned by the runtime in a vector of unique_ptr and
// never erased while the runtime lives (a retired slot stays, routed nothing),
// so the pointer stays valid as long as the runtime that made the call.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/smart_ptr/intrusive_ptr.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/backoff.hpp"
#include "core/stats.hpp"
#include "framex/detail/bound_completion.hpp"
#include "framex/detail/pool.hpp"
#include "framex/detail/wire.hpp"
#include "net/address.hpp"
#include "net/client.hpp"

namespace framex::detail {

namespace asio = boost::asio;
using clock = std::chrono::steady_clock;

/// What a worker takes in one request, from its hello (0: not said, not checked).
struct request_limits {
  std::size_t bytes = 0;       // a message's bytes: the smaller of both sides' limits
  std::size_t elements = 0;    // a message's objects (its distributed.max_message_elements)
  std::size_t held_bytes = 0;  // what its requests held may take, decoded (its worker.max_held_bytes)
};

inline constexpr auto first_backoff = std::chrono::milliseconds(50);
inline constexpr auto last_backoff = std::chrono::milliseconds(1000);
// Unsent output above which a connection takes no new calls.
inline constexpr std::size_t stalled_bytes = std::size_t{4} << 20;

inline std::error_code code_of(errc e) { return make_error_code(e); }

// A msgpack-RPC error object: framex's {code, type, message} map, or any
// other peer's: a string, an array such as Neovim's [kind, message], or
// anything else, described (at most 1 KiB of it) when it holds no string.
errc decode_error_object(const msgpack::object& error, reply& r);

class remote_call;
void intrusive_ptr_add_ref(remote_call* c) noexcept;
void intrusive_ptr_release(remote_call* c) noexcept;
/// Every holder of a call but the connection's table holds one of these.
using call_ref = boost::intrusive_ptr<remote_call>;

// The heartbeat of a slot's connection: a `framex.ping` in flight, or none,
// and how long the last one took to be answered.
struct heartbeat final : net::pending_call {
  std::atomic<clock::rep> sent_at{0};     // 0: none in flight
  std::atomic<clock::rep> round_trip{0};  // the last answered ping's
  void on_response(net::received_message) noexcept override {
    const auto sent = sent_at.exchange(0, std::memory_order_relaxed);
    if (sent != 0) round_trip.store(clock::now().time_since_epoch().count() - sent, std::memory_order_relaxed);
  }
  void on_lost(std::error_code) noexcept override { sent_at.store(0, std::memory_order_relaxed); }
};

// One connection to one worker.
struct slot {
  enum class state { down, connecting, ready };

  std::string address;
  net::address where;  // what `address` dials
  state status = state::down;
  std::shared_ptr<net::client> conn;
  std::vector<call_ref> waiting;  // for the connection being made
  clock::time_point retry_at{};
  clock::time_point connecting_since{};
  backoff reconnect{first_backoff, last_backoff};
  request_limits limits;  // what the worker takes (its hello)
  std::unordered_map<std::string, std::string> mismatched;  // name -> the worker's signature
  std::string last_error;
  errc last_code = errc::worker_lost;          // what last_error means to a call
  bool hello_refused = false;                  // its server answered the required hello as no framex worker does, or spoke plaintext to TLS
  bool framex = false;                         // it answered the hello: framex's own messages (ping, cancel) go to it
  std::weak_ptr<asio::steady_timer> deadline;  // while connecting: shutdown cuts it short
  heartbeat beat;
  bool unhealthy = false;  // its last connection's heartbeat went unanswered
  // Discovery no longer finds it: no new call; its connection closes with its
  // last call's answer, or at the next lookup when it has none.
  std::atomic<bool> retired{false};
  std::string verify_host;                // the name its TLS certificate must carry
  std::optional<resource_map> resources;  // what its worker has, once discovery or its hello said
  // Calls completed on this slot, for the dashboard.
  std::atomic<std::uint64_t> completed{0};
  std::atomic<std::uint64_t> errors{0};
  latency_histogram latency;
};

class remote_call final : public net::pending_call, public bound_completion, public pooled {
 public:
  remote_call(const function_entry& fn, message_buffer params, const asio::any_io_executor& caller, reply_handler handler,
              bool notification)
      : notification_(notification),
        fn_(fn),
        params_(std::move(params)),
        handler_(std::move(handler)),
        cancel_slot_(asio::get_associated_cancellation_slot(handler_)),
        work_(std::in_place, asio::prefer(caller, asio::execution::outstanding_work.tracked)) {}

  const function_entry& fn() const noexcept { return fn_; }
  std::size_t size() const noexcept { return params_.size(); }
  bool done() const noexcept { return done_.load(std::memory_order_acquire); }
  clock::time_point give_up_at() const noexcept { return give_up_at_; }

  // Caller's executor: arms cancellation and the deadline, and binds the call
  // to the caller's context (a reference of its own, dropped by whoever unbinds).
  void arm(asio::io_context& io, clock::duration timeout, clock::duration patience);

  // The worker it must go to (empty: any); set before it is routed.
  [[nodiscard]] const std::string& pinned() const noexcept { return pin_; }
  void pin(std::string address) { pin_ = std::move(address); }

  // What it needs of a worker (empty: nothing); set before it is routed.
  [[nodiscard]] const resource_map& needs() const noexcept { return needs_; }
  void set_needs(resource_map needs) { needs_ = std::move(needs); }
  // Files `release`, run once when the call completes, for the resources it
  // holds on a worker; false when it has completed already (run nothing).
  bool hold(std::function<void()> release) {
    std::lock_guard lock(conn_mutex_);
    if (done()) return false;
    release_ = std::move(release);
    return true;
  }

  // Why no connection could take the call yet, for its timeout's message.
  void note_unsent(std::string why) {
    std::lock_guard lock(conn_mutex_);
    unsent_because_ = std::move(why);
  }

  // Sends the call on `conn` of `s`; completes it if that is impossible.
  void send(slot& s, const std::shared_ptr<net::client>& conn, const request_limits& limits);

  void on_response(net::received_message message) noexcept override;

  void on_lost(std::error_code why) noexcept override;

  void finish(std::error_code ec, std::string message);

  // Any thread; the first caller wins. `read_here`: called where the answer
  // was read, from an I/O completion, so a caller whose coroutine runs on
  // this thread's io_context resumes at once, as Asio completes its own
  // operations, rather than through a post.
  void finish(std::error_code ec, reply r, bool read_here = false);

  void complete(std::error_code ec, reply r);

  // The caller's context shuts down with this call in flight (bound_completion).
  void detach() noexcept override;

 private:
  friend void intrusive_ptr_add_ref(remote_call* c) noexcept { c->refs_.fetch_add(1, std::memory_order_relaxed); }
  friend void intrusive_ptr_release(remote_call* c) noexcept {
    if (c->refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete c;
  }

  // Under conn_mutex_: takes the call out of its connection and tells the
  // worker to drop it.
  void forget_on_worker();

  // After an answer: a retired slot's connection closes once no call is left on it.
  void close_if_retired();

  void count(std::error_code ec, const reply& r) noexcept;

  ~remote_call() = default;

  const bool notification_;
  const function_entry& fn_;
  message_buffer params_;
  reply_handler handler_;
  asio::cancellation_slot cancel_slot_;
  using work_executor = asio::any_io_executor;
  std::optional<work_executor> work_;
  std::optional<asio::steady_timer> timer_;
  clock::time_point give_up_at_{};
  std::mutex conn_mutex_;
  std::shared_ptr<net::client> conn_;
  std::string unsent_because_;  // under conn_mutex_
  resource_map needs_;
  std::string pin_;
  std::function<void()> release_;  // under conn_mutex_
  std::uint32_t msgid_ = 0;
  std::atomic<bool> done_{false};
  std::atomic<int> refs_{0};
  std::atomic<slot*> slot_{nullptr};
  clock::time_point started_ = clock::now();
};

}  // namespace framex::detail
