// Distributed mode, worker's side: serves registered functions over
// msgpack-RPC. A request names a function; the registry finds it; a blocking
// function is decoded, run and answered on the bounded pool, an async one on
// its connection's strand. A notification runs its function the same way and
// is never answered. `framex.cancel` notifications (a caller's timeout or
// cancellation) and closed connections cancel the calls they concern: a queued
// blocking call is skipped, an async one gets an Asio cancellation.
//
// Who may call. With a token (`worker.token_file`), a connection must pass
// `framex.challenge` and `framex.hello` (src/security/auth.hpp) before anything else:
// other requests are answered `unauthorized`, and a connection that has not
// proved it within `auth_timeout` closes. A refused proof closes the
// connection. Only functions `worker.serve` names can be called or are listed
// in the hello; the others are `unknown_function`, as if absent. With TLS
// (`worker.tls`), a connection's handshake must complete within `auth_timeout`
// too, and with `require_client_cert` the caller's certificate must chain to
// `worker.ca_file`; a failed handshake is logged with its reason.
//
// Draining (SIGTERM, `worker::drain`): the listener closes, every connection
// gets a `framex.draining` notification, new calls are refused with
// `overloaded`, and the calls held have `drain_timeout` to finish before the
// worker stops as `stop` does.
//
// Admission. A call is refused with `overloaded` when the worker holds
// `max_queued` calls, when its connection holds `max_calls_per_connection`, or
// when the requests held would take more than `max_held_bytes`; a request
// whose msgid is already in flight on its connection is refused and changes
// nothing. Each connection's blocking calls wait in their own lane of the
// pool, and the lanes take turns.
//
// Where each part lives: life, drain and stop in worker.cpp (with
// `worker_main`); admission's budgets in admission.hpp; reading a request,
// admitting it and running it in dispatch.cpp; framex's own methods (the
// hello, the challenge, the actor table's requests) in dispatch.cpp too.
//
// A `served_call` has one owner at a time, whoever runs it: `on_request`
// until it hands the call to the pool (which runs `run`) or to the async
// coroutine. Its destructor, wherever it runs, takes it out of the table of
// calls in flight and gives back what it held.
#pragma once

#include "framex/worker.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>

#include <boost/asio/strand.hpp>

#include <openssl/evp.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <csignal>
#include <cstring>
#include <condition_variable>
#include <deque>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "net/server.hpp"
#include "net/tls.hpp"
#include "worker/actor_table.hpp"
#include "framex/detail/object_store.hpp"
#include "security/auth.hpp"
#include "membership/etcd.hpp"
#include "framex/detail/pool.hpp"
#include "plugins/plugin_host.hpp"
#include "core/registry.hpp"
#include "core/thread_pool.hpp"
#include "worker/admission.hpp"
#include "config/command_line.hpp"
#include "protocol/actor_layout.hpp"
#include "protocol/hello.hpp"
#include "protocol/protocol.hpp"

namespace framex {

namespace asio = boost::asio;

class worker::impl final : public net::dispatcher {
 public:
  using function_entry = detail::function_entry;
  using message_buffer = detail::message_buffer;

  explicit impl(const config& cfg);

  ~impl() { stop(); }

  // Stops accepting, says so on every connection, refuses new calls, and
  // waits (at most `timeout`) for the calls held to finish; then stops.
  void drain(std::optional<std::chrono::milliseconds> within) noexcept;

  std::uint16_t port() const noexcept { return listener_->port(); }

  // Stops accepting; queued calls answer `cancelled`, running ones finish and
  // answer, async ones are cancelled; every answer is written before its
  // connection closes; then the threads are joined. The waits for async calls
  // and for peers to read their answers are bounded (5 s each); a blocking
  // body that is running holds `stop` until it returns, since a thread cannot
  // be stopped from outside (give it a deadline of its own).
  void stop() noexcept;

 private:
  using lane = detail::thread_pool::lane;

  // After a call that held the actor's turn: its state goes to storage every
  // `every` calls. A snapshot that cannot be written is logged; calls go on.
  static void snapshot_if_due(detail::hosted_actor& a) noexcept;

  // One call being served. See the top of this file for who owns it.
  class served_call final : public detail::pool_task, public detail::invocation, public detail::pooled {
   public:
    served_call(impl& owner, std::shared_ptr<net::session> from, net::incoming_request request, const function_entry& fn,
                std::shared_ptr<lane> l, detail::admission::peer_id peer)
        : owner_(owner), session_(std::move(from)), request_(std::move(request)), fn_(fn), lane_(std::move(l)), peer_(peer) {
      if (fn_.is_async)
        signal = std::allocate_shared<asio::cancellation_signal>(detail::pool_allocator<asio::cancellation_signal>());
    }

    ~served_call() override {
      if (holds_turn) {
        snapshot_if_due(*actor);
        actor->turn.leave();
      }
      owner_.finished(*this);
    }

    std::pair<net::session*, std::uint32_t> key() const noexcept { return {session_.get(), request_.msgid}; }
    bool notification() const noexcept { return request_.notification; }
    std::size_t cost() const noexcept { return request_.cost; }
    detail::admission::peer_id peer() const noexcept { return peer_; }
    net::session& session() const noexcept { return *session_; }
    const std::shared_ptr<net::session>& session_ptr() const noexcept { return session_; }
    const function_entry& fn() const noexcept { return fn_; }
    lane& queue() const noexcept { return *lane_; }
    // An async call's: what cancels its coroutine (a blocking one is cancelled by its flag).
    std::shared_ptr<asio::cancellation_signal> signal;
    // An actor's call: the actor, and whether this call holds its turn.
    std::shared_ptr<detail::hosted_actor> actor;
    bool holds_turn = false;
    // A spawn's: who asks, the name it gives, and how often to save the state.
    std::uint64_t caller = 0;
    std::string actor_name;
    std::uint32_t snapshot_every = 0;
    std::uint64_t snapshot_key = 0;
    // A call whose result is wanted as a reference: the process to hold it.
    std::uint64_t ref_owner = 0;

    // An actor's call or spawn: the arguments, past what names the actor.
    void set_arguments(const msgpack::object& args) noexcept {
      args_ = args;
      has_args_ = true;
    }
    const msgpack::object& params() const noexcept override { return has_args_ ? args_ : *request_.params; }

    void succeed(message_buffer body) noexcept override;

    // A blocking call's reply while more calls wait for the pool: written by
    // the I/O thread together with the replies that follow it, rather than by
    // a system call of its own (a call alone is answered at once).
    bool batch_reply() const noexcept { return !fn_.is_async && !fn_.run_inline && owner_.pool_.queued() != 0; }

    void fail(errc code, std::string type, std::string message) noexcept override;

    // Pool thread: the pool hands the call back here, to run and end it.
    void run(bool stopping) noexcept override;

    // An actor call whose actor was killed or dropped while it waited: says so.
    bool actor_lost() noexcept;

    // A spawn: makes the object and hosts it, unless the caller gave up meanwhile.
    void construct() noexcept;

    // Under the owner's mutex, from any thread: an async call is cancelled on
    // its session's strand, where it runs.
    void cancel() noexcept;

   private:
    impl& owner_;
    std::shared_ptr<net::session> session_;
    net::incoming_request request_;
    const function_entry& fn_;
    std::shared_ptr<lane> lane_;
    detail::admission::peer_id peer_;  // whose share of the worker this call takes
    std::atomic<bool> cancelled_{false};
    msgpack::object args_{};
    bool has_args_ = false;
  };

  // A message after a notification on the same connection waits until that
  // notification's function has finished; requests among themselves run at
  // once (framex's own methods, such as a cancel or a ping, never wait).
  void on_request(const std::shared_ptr<net::session>& from, net::incoming_request request) override;
  // Serves a message whose turn has come.
  void serve(const std::shared_ptr<net::session>& from, net::incoming_request request);
  // On `from`'s strand: serves the messages held behind its notifications, in order, while none runs.
  void serve_held(const std::shared_ptr<net::session>& from);
  // A connection's notifications running, and the messages that came after them (under mutex_).
  struct after_notification {
    std::size_t running = 0;
    std::deque<net::incoming_request> held;
  };

  // What a call carries besides its function's arguments (protocol/actor_layout.hpp).
  struct call_layout {
    std::optional<protocol::result_as_ref> ref;  // a plain call whose result is wanted as a reference
    std::optional<protocol::actor_spawn> spawn;  // an actor's construction
    std::optional<protocol::actor_call> method;  // an actor's method call, to `actor`
    std::shared_ptr<detail::hosted_actor> actor;
  };

  // A refusal: answered to a request, logged for a notification.
  static void refuse(net::session& from, const net::incoming_request& request, errc code, const char* type,
                     const std::string& message);
  // framex's own methods, and the token's gate before any other; true when it answered `request`.
  bool serve_builtin(const std::shared_ptr<net::session>& from, const net::incoming_request& request);
  // The function `request` names, if this worker serves it; else refused, and null.
  const function_entry* served_function(net::session& from, const net::incoming_request& request);
  // Reads `request`'s layout for `fn` into `out`; false when refused.
  bool read_layout(net::session& from, const net::incoming_request& request, const function_entry& fn, call_layout& out);
  // Who `from`'s calls come from, for fair admission (worker/admission.hpp).
  static detail::admission::peer_id peer_of(const net::session& from) noexcept;
  // Under the lock: the call, filed and counted, or null when refused.
  std::unique_ptr<served_call> admit(const std::shared_ptr<net::session>& from, net::incoming_request request,
                                     const function_entry& fn);
  // An actor's call that holds the actor's turn: runs once the calls before it are done.
  void take_turn_then_dispatch(std::unique_ptr<served_call> call);

  // Runs an admitted call where its kind runs.
  void dispatch(std::unique_ptr<served_call> call);

  // `framex.actor.lookup [class, caller, name]` → the actor's id;
  // `framex.actor.kill [id]` → nil; `framex.actor.release [id, caller]`, a
  // notification: one handle of that caller's is gone. On the I/O thread.
  void manage_actor(const std::shared_ptr<net::session>& from, const net::incoming_request& request);

  void cancel(net::session& from, const msgpack::object& params);

  void on_session_closed(net::session& s, std::error_code why) override;

  // A connection closed for a limit (a flood of large answers, say): a
  // second later, the memory the allocator kept from it goes back to the
  // system. At most one is pending.
  void give_memory_back_soon();

  // The challenge (see src/protocol/hello.hpp and src/security/auth.hpp).
  void challenge(net::session& from, std::uint32_t msgid, const msgpack::object& params);

  // Refuses a peer's credentials: it learns that much, and the connection closes.
  void deny(net::session& from, std::uint32_t msgid, const std::string& why);

  // The hello: with a token, the proof must match; the answer lists what
  // this caller may call and, with a token, proves the worker holds it too.
  void hello(net::session& to, std::uint32_t msgid, const msgpack::object& params);

  // A call ends (any thread): it gives back what it held.
  void finished(served_call& call);

  config::worker_section cfg_;
  std::size_t max_message_;
  std::size_t max_elements_;
  std::string token_;  // empty: callers need not prove anything
  std::mutex mutex_;
  std::condition_variable held_changed_;
  std::condition_variable sessions_closed_;  // a session closed (see stop)
  using call_key = std::pair<net::session*, std::uint32_t>;
  std::map<call_key, served_call*, std::less<>, detail::pool_allocator<std::pair<const call_key, served_call*>>>
      calls_;  // requests in flight
  std::unordered_map<net::session*, std::shared_ptr<lane>> lanes_;
  std::unordered_map<net::session*, after_notification> ordered_;  // connections with a notification running
  detail::admission admission_;  // under mutex_
  detail::thread_pool pool_;
  asio::io_context io_;
  detail::actor_table actors_{io_, cfg_.actor_grace};
  asio::steady_timer trim_timer_{io_};  // see give_memory_back_soon
  std::atomic<bool> trim_pending_{false};
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::optional<net::listener> listener_;
  std::shared_ptr<detail::etcd::registration> registration_;  // with an etcd:// discovery
  std::chrono::milliseconds etcd_timeout_{0};
  std::vector<std::thread> threads_;
  std::mutex stop_mutex_;
  bool stopped_ = false;

  // Registers this worker under the etcd discovery's prefix, keyed by the
  // address callers should dial.
  void register_in_etcd(const config& cfg);
};

}  // namespace framex
