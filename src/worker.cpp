// Distributed mode, worker's side: serves registered functions over
// msgpack-RPC. A request names a function; the registry finds it; a blocking
// function is decoded, run and answered on the bounded pool, an async one on
// its connection's strand. A notification runs its function the same way and
// is never answered. `framex.cancel` notifications (a caller's timeout or
// cancellation) and closed connections cancel the calls they concern: a queued
// blocking call is skipped, an async one gets an Asio cancellation.
//
// Who may call. With a token (`worker.token_file`), a connection must pass
// `framex.challenge` and `framex.hello` (src/auth.hpp) before anything else:
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
// A `served_call` has one owner at a time, whoever runs it: `on_request`
// until it hands the call to the pool (which runs `run`) or to the async
// coroutine. Its destructor, wherever it runs, takes it out of the table of
// calls in flight and gives back what it held.
#include "framex/worker.hpp"

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
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
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "../net/server.hpp"
#include "../net/tls.hpp"
#include "actor_table.hpp"
#include "framex/detail/object_store.hpp"
#include "auth.hpp"
#include "etcd.hpp"
#include "framex/detail/pool.hpp"
#include "plugin_host.hpp"
#include "registry.hpp"
#include "thread_pool.hpp"

namespace framex {

namespace asio = boost::asio;
using detail::function_entry;
using detail::message_buffer;

namespace {
std::size_t threads_or_hardware(std::size_t n) { return n != 0 ? n : std::max(1u, std::thread::hardware_concurrency()); }

// A worker reachable from other hosts must say who may call it (a token, or
// client certificates), or say that the network is trusted.
void check_exposure(const config& cfg) {
  const auto at = net::parse_address(cfg.worker.listen);
  const bool checks_callers = !cfg.worker.token_file.empty() || (cfg.worker.tls.enabled && cfg.worker.tls.require_client_cert);
  // A unix socket is reached through the file system, whose permissions say who may.
  if (at.is_unix() || detail::is_loopback(at.host) || checks_callers || cfg.worker.insecure) return;
  throw config_error("worker.listen = " + cfg.worker.listen +
                     " is reachable from other hosts, and the worker authenticates no caller: set worker.token_file "
                     "or worker.require_client_cert (with worker.tls), or worker.insecure = true if every host that "
                     "can reach it may call every function it serves");
}

// A failed TLS handshake, with the reason only this side knows (the peer
// learns no more than an alert); at most one line a second, so a flood of bad
// handshakes cannot flood the log.
void log_tls_failure(const net::session& s, const std::error_code& why) {
  using clock = std::chrono::steady_clock;
  static std::atomic<clock::rep> last{0};
  static std::atomic<std::uint64_t> unlogged{0};
  const auto now = clock::now().time_since_epoch().count();
  auto seen = last.load(std::memory_order_relaxed);
  if (now - seen < std::chrono::duration_cast<clock::duration>(std::chrono::seconds(1)).count() ||
      !last.compare_exchange_strong(seen, now, std::memory_order_relaxed)) {
    unlogged.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  const auto more = unlogged.exchange(0, std::memory_order_relaxed);
  spdlog::warn("worker: TLS with {} failed: {}{}", s.peer(), why.message(),
               more == 0 ? std::string() : " (and " + std::to_string(more) + " more since the last such line)");
}

net::connection_limits limits_of(const config& cfg) {
  net::connection_limits l;
  l.read.max_bytes = cfg.distributed.max_message_size;
  l.read.max_elements = cfg.distributed.max_message_elements;
  l.write_high_water = std::max<std::size_t>(cfg.worker.max_output_bytes / 4, 1024);
  l.write_cap = cfg.worker.max_output_bytes;
  l.message_timeout = cfg.distributed.message_timeout;
  l.idle_timeout = cfg.worker.idle_timeout;
  l.partial_bytes = std::make_shared<std::atomic<std::size_t>>(0);
  l.max_partial_bytes = cfg.worker.max_held_bytes;
  if (!cfg.worker.token_file.empty()) l.greeting_timeout = std::max(cfg.worker.auth_timeout, std::chrono::milliseconds(1));
  if (cfg.worker.tls.enabled) l.handshake_timeout = std::max(cfg.worker.auth_timeout, std::chrono::milliseconds(1));
  return l;
}

std::atomic<std::uint64_t> next_error_id{0};

// What a worker serves, as 16 hex digits of SHA-256 over each served
// function's name and signature: workers that serve the same have the same.
std::string functions_digest(const std::vector<std::string>& serve) {
  std::string all;
  for (const auto* f : detail::registered_functions()) {
    if (detail::serves(serve, f->name)) all += f->name + '\0' + f->signature + '\n';
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(all.data(), all.size(), md, &n, EVP_sha256(), nullptr) != 1) return {};
  std::string hex;
  for (unsigned i = 0; i < 8 && i < n; ++i) {
    hex += "0123456789abcdef"[md[i] >> 4];
    hex += "0123456789abcdef"[md[i] & 15];
  }
  return hex;
}

// The address callers should dial: `worker.advertise`, else the listening
// host (which must then be one callers can dial) and port.
std::string advertised(const config::worker_section& w, std::uint16_t port) {
  if (!w.advertise.empty()) return w.advertise;
  if (w.listen.starts_with("unix:")) return w.listen;
  const auto host = parse_endpoint(w.listen).first;
  const auto ip = asio::ip::make_address(host);
  if (ip.is_unspecified()) {
    throw config_error("worker.listen = " + w.listen + " is no address a caller can dial: set worker.advertise for etcd");
  }
  return (ip.is_v6() ? "[" + host + "]" : host) + ":" + std::to_string(port);
}
}  // namespace

class worker::impl final : public net::dispatcher {
 public:
  explicit impl(const config& cfg)
      : cfg_(cfg.worker),
        max_message_(cfg.distributed.max_message_size),
        token_(cfg.worker.token_file.empty() ? std::string() : detail::read_token_file(cfg.worker.token_file, "worker.token_file")),
        pool_(threads_or_hardware(cfg.worker.threads), cfg.worker.spin),
        work_(asio::make_work_guard(io_)) {
    check_exposure(cfg);
    detail::check_unambiguous();
    detail::configure_storage(cfg.storage);
    listener_.emplace(io_, net::parse_address(cfg.worker.listen), limits_of(cfg),
                      cfg.worker.max_connections, *this,
                      detail::tls_context_for(cfg.worker.tls, net::tls_context::role::server, "worker"));
    if (cfg.distributed.discovery.starts_with("etcd://")) register_in_etcd(cfg);
    for (std::size_t i = 0; i < std::max<std::size_t>(1, cfg.worker.io_threads); ++i) {
      threads_.emplace_back([this] { io_.run(); });
    }
    if (registration_) registration_->start();
  }

  ~impl() { stop(); }

  // Stops accepting, says so on every connection, refuses new calls, and
  // waits (at most `timeout`) for the calls held to finish; then stops.
  void drain(std::optional<std::chrono::milliseconds> within) noexcept {
    const auto timeout = within.value_or(cfg_.drain_timeout);
    {
      std::lock_guard stop_lock(stop_mutex_);
      if (stopped_) return;
    }
    listener_->close();
    if (registration_) registration_->drain(etcd_timeout_);  // callers that watch etcd stop routing here
    // Every caller hears it before any refusal (a refusal that overtook the
    // notification would send the caller's retry back here), and every call
    // sent after the notification is refused: both are sent under the lock
    // admission takes, so a call admitted before saw no draining, and one
    // checked after is refused behind the notification on its connection.
    {
      std::lock_guard lock(mutex_);
      for (auto& s : listener_->sessions()) {
        s->send(net::notification_message("framex.draining", static_cast<std::uint64_t>(timeout.count())));
      }
      draining_ = true;
    }
    {
      std::unique_lock lock(mutex_);
      held_changed_.wait_for(lock, timeout, [&] { return held_ == 0; });
    }
    stop();
  }

  std::uint16_t port() const noexcept { return listener_->port(); }

  // Stops accepting; queued calls answer `cancelled`, running ones finish and
  // answer, async ones are cancelled; every answer is written before its
  // connection closes; then the threads are joined. Waits are bounded, so a
  // body that never returns or a peer that never reads cannot hold it forever.
  void stop() noexcept {
    std::lock_guard stop_lock(stop_mutex_);
    if (stopped_) return;
    stopped_ = true;
    listener_->close();
    if (registration_) registration_->stop(etcd_timeout_);  // callers stop routing here
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    pool_.shutdown();
    std::unique_lock lock(mutex_);
    for (auto& [key, call] : calls_) call->cancel();
    held_changed_.wait_for(lock, std::chrono::seconds(5), [&] { return held_ == 0; });
    lock.unlock();
    for (auto& s : listener_->sessions()) asio::post(s->executor(), [s] { s->close_when_drained(); });
    for (int i = 0; i < 500 && !listener_->sessions().empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    for (auto& s : listener_->sessions()) s->close(make_error_code(errc::cancelled));
    work_.reset();
    io_.stop();
    for (auto& t : threads_) t.join();
    actors_.clear();
  }

 private:
  using lane = detail::thread_pool::lane;

  // A spawn's `[snapshot_every, key]`: both positive, `every` a 32-bit count.
  static bool snapshot_plan_ok(const msgpack::object& o) noexcept {
    if (o.type != msgpack::type::ARRAY || o.via.array.size != 2) return false;
    const auto& every = o.via.array.ptr[0];
    const auto& key = o.via.array.ptr[1];
    return every.type == msgpack::type::POSITIVE_INTEGER && every.via.u64 != 0 && every.via.u64 <= 0xffffffffu &&
           key.type == msgpack::type::POSITIVE_INTEGER && key.via.u64 != 0;
  }

  // After a call that held the actor's turn: its state goes to storage every
  // `every` calls. A snapshot that cannot be written is logged; calls go on.
  static void snapshot_if_due(detail::hosted_actor& a) noexcept {
    const auto& plan = a.snapshot;
    if (plan.every == 0 || a.gone.load(std::memory_order_acquire) || ++a.calls % plan.every != 0) return;
    try {
      detail::write_snapshot(plan.owner, plan.key, plan.save(a.object.get()));
    } catch (const std::exception& e) {
      spdlog::warn("framex worker: {} actor {}: no snapshot: {}", a.class_name, a.id, e.what());
    }
  }

  // One call being served. See the top of the file for who owns it.
  class served_call final : public detail::pool_task, public detail::invocation, public detail::pooled {
   public:
    served_call(impl& owner, std::shared_ptr<net::session> from, net::incoming_request request, const function_entry& fn,
                std::shared_ptr<lane> l)
        : owner_(owner), session_(std::move(from)), request_(std::move(request)), fn_(fn), lane_(std::move(l)) {
      if (fn_.is_async) signal = std::allocate_shared<asio::cancellation_signal>(detail::pool_allocator<asio::cancellation_signal>());
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
    net::session& session() const noexcept { return *session_; }
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

    void succeed(message_buffer body) noexcept override {
      if (notification() || cancelled_.load(std::memory_order_acquire)) return;
      if (ref_owner != 0 && body.size() >= detail::inline_threshold()) {
        // Asked for a reference (`remote_ref`): a large result goes to storage
        // and the caller gets its name.
        try {
          body.flatten();
          const auto object = detail::spill(std::string_view(body.data(), body.size()), ref_owner);
          message_buffer named(response_headroom);
          msgpack::packer<message_buffer> p(named);
          detail::pack_object_id(p, object->id());
          body = std::move(named);
        } catch (const std::exception& e) {
          return fail(errc::object_unavailable, "framex.object_unavailable", fn_.name + ": the result: " + e.what());
        }
      }
      session_->reply(request_.msgid, std::move(body), batch_reply());
    }

    // A blocking call's reply while more calls wait for the pool: written by
    // the I/O thread together with the replies that follow it, rather than by
    // a system call of its own (a call alone is answered at once).
    bool batch_reply() const noexcept { return !fn_.is_async && !fn_.run_inline && owner_.pool_.queued() != 0; }

    void fail(errc code, std::string type, std::string message) noexcept override {
      if (code == errc::exception && !owner_.cfg_.expose_errors) {
        const auto id = ++next_error_id;
        spdlog::warn("framex worker: error {}: {} threw {}: {}", id, fn_.name, type, message);
        type = "framex.exception";
        message = "the function failed; the worker logged it as error " + std::to_string(id);
      }
      if (notification()) {
        spdlog::warn("framex worker: notification {} failed: {}: {}", request_.method, type, message);
      } else if (!cancelled_.load(std::memory_order_acquire)) {
        session_->reply_error(request_.msgid, static_cast<int>(code), type, message);
      }
    }

    // Pool thread: the pool hands the call back here, to run and end it.
    void run(bool stopping) noexcept override {
      const std::unique_ptr<served_call> self(this);
      if (stopping) {
        fail(errc::cancelled, "framex.cancelled", "the worker is shutting down");
      } else if (cancelled_.load(std::memory_order_acquire)) {
        return;
      } else if (fn_.construct != nullptr) {
        construct();
      } else if (actor != nullptr) {
        if (!actor_lost()) fn_.run_on(*this, actor->object.get());
      } else {
        fn_.run_blocking(*this);
      }
    }

    // An actor call whose actor was killed or dropped while it waited: says so.
    bool actor_lost() noexcept {
      if (!actor->gone.load(std::memory_order_acquire)) return false;
      fail(errc::actor_lost, "framex.actor_lost", actor->class_name + " actor " + std::to_string(actor->id) + " was killed or released");
      return true;
    }

    // A spawn: makes the object and hosts it, unless the caller gave up meanwhile.
    void construct() noexcept {
      std::shared_ptr<void> object = fn_.construct(*this);
      if (object == nullptr || cancelled_.load(std::memory_order_acquire)) return;
      detail::snapshot_plan plan;
      if (snapshot_key != 0 && fn_.save != nullptr) {
        plan = {snapshot_every, snapshot_key, caller, fn_.save};
        try {  // re-created after a loss: begins from the last snapshot
          if (const auto saved = detail::read_snapshot(caller, snapshot_key)) {
            const auto state = msgpack::unpack(saved->data(), saved->size());
            fn_.load(object.get(), state.get());
          }
        } catch (const std::exception& e) {
          return fail(errc::object_unavailable, "framex.object_unavailable", fn_.actor_class + ": its snapshot does not load: " + e.what());
        }
      }
      if (owner_.actors_.size() >= owner_.cfg_.max_actors) {
        return fail(errc::overloaded, "framex.overloaded", "the worker hosts " + std::to_string(owner_.cfg_.max_actors) + " actors already");
      }
      try {
        const std::uint64_t id = owner_.actors_.add(std::move(object), fn_.actor_class, actor_name, caller, plan);
        if (id == 0) return fail(errc::bad_arguments, "framex.bad_arguments", "an actor named \"" + actor_name + "\" exists already");
        message_buffer body(detail::invocation::response_headroom);
        msgpack::packer<message_buffer>(body).pack(id);
        succeed(std::move(body));
      } catch (...) {
        fail(errc::exception, detail::current_exception_type(), "the worker could not host the actor");
      }
    }

    // Under the owner's mutex, from any thread: an async call is cancelled on
    // its session's strand, where it runs.
    void cancel() noexcept {
      cancelled_.store(true, std::memory_order_release);
      if (fn_.is_async) {
        asio::post(actor != nullptr ? asio::any_io_executor(actor->strand) : session_->executor(),
                   [s = signal] { s->emit(asio::cancellation_type::terminal); });
      }
    }

   private:
    impl& owner_;
    std::shared_ptr<net::session> session_;
    net::incoming_request request_;
    const function_entry& fn_;
    std::shared_ptr<lane> lane_;
    std::atomic<bool> cancelled_{false};
    msgpack::object args_{};
    bool has_args_ = false;
  };

  void on_request(const std::shared_ptr<net::session>& from, net::incoming_request request) override {
    const bool notification = request.notification;
    const std::uint32_t msgid = request.msgid;
    const auto refuse = [&](errc code, const char* type, const std::string& message) {
      if (notification) return spdlog::debug("framex worker: notification {}: {}", request.method, message);
      from->reply_error(msgid, static_cast<int>(code), type, message);
    };
    if (!notification && request.method == "framex.challenge") return challenge(*from, msgid, *request.params);
    if (!notification && request.method == "framex.hello") return hello(*from, msgid, *request.params);
    if (!token_.empty() && !from->credentials.trusted) {
      return refuse(errc::unauthorized, "framex.unauthorized",
                    "the worker requires a token: prove it with framex.challenge and framex.hello first");
    }
    if (notification && request.method == "framex.cancel") return cancel(*from, *request.params);
    if (!notification && request.method == "framex.ping") {  // a caller's heartbeat: answered here, on the I/O thread
      message_buffer body(detail::invocation::response_headroom);
      msgpack::packer<message_buffer>(body).pack_nil();
      return from->reply(msgid, std::move(body));
    }
    if (request.method.starts_with("framex.actor.")) return manage_actor(from, request);
    // What is not served is answered as if it did not exist.
    const function_entry* fn = detail::serves(cfg_.serve, request.method) ? detail::find_function(request.method) : nullptr;
    if (fn == nullptr || (fn->run_blocking == nullptr && fn->run_async == nullptr && fn->construct == nullptr &&
                          fn->run_on == nullptr && fn->run_async_on == nullptr)) {
      const std::string name(request.method);
      return refuse(errc::unknown_function, "framex.unknown_function",
                    fn == nullptr ? "no function named \"" + name + "\" is served here"
                                  : "\"" + name + "\" names several functions; give each a framex::wire_name");
    }
    // An actor's spawn is [caller, name, [args...]]; its calls, [id, caller, args...].
    const msgpack::object& params = *request.params;
    std::shared_ptr<detail::hosted_actor> actor;
    std::uint64_t caller = 0;
    if (!fn->actor_class.empty()) {
      const auto u64 = [&](std::uint32_t i) {
        return params.via.array.ptr[i].type == msgpack::type::POSITIVE_INTEGER ? params.via.array.ptr[i].via.u64 : 0;
      };
      const bool spawn = fn->construct != nullptr;
      if (params.type != msgpack::type::ARRAY || params.via.array.size < 2 || u64(0) == 0 || (!spawn && u64(1) == 0) ||
          (spawn && ((params.via.array.size != 3 && !(params.via.array.size == 4 && snapshot_plan_ok(params.via.array.ptr[3]))) ||
                     params.via.array.ptr[1].type != msgpack::type::STR || params.via.array.ptr[2].type != msgpack::type::ARRAY))) {
        return refuse(errc::bad_arguments, "framex.bad_arguments",
                      std::string(request.method) + (spawn ? ": expected [caller, name, [arguments...], ([snapshot_every, key])]"
                                                           : ": expected [actor, caller, arguments...]"));
      }
      caller = u64(spawn ? 0 : 1);
      actors_.seen(from.get(), caller);
      if (!spawn) {
        actor = actors_.find(u64(0));
        if (actor == nullptr || actor->class_name != fn->actor_class) {
          return refuse(errc::actor_lost, "framex.actor_lost",
                        "no " + fn->actor_class + " actor " + std::to_string(u64(0)) + " here: killed, released, or the worker restarted");
        }
      }
    }
    // A call whose result is wanted as a reference begins with a marker naming its owner.
    std::uint64_t as_ref_owner = 0;
    if (fn->actor_class.empty() && params.type == msgpack::type::ARRAY && params.via.array.size > 0 &&
        params.via.array.ptr[0].type == msgpack::type::EXT && params.via.array.ptr[0].via.ext.type() == detail::as_ref_ext_type) {
      const auto& marker = params.via.array.ptr[0].via.ext;
      for (std::uint32_t i = 0; marker.size == 8 && i < 8; ++i) as_ref_owner = as_ref_owner << 8 | static_cast<unsigned char>(marker.data()[i]);
      if (as_ref_owner == 0) return refuse(errc::bad_arguments, "framex.bad_arguments", std::string(request.method) + ": a malformed result-as-reference marker");
    }
    std::unique_ptr<served_call> call;
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return refuse(errc::cancelled, "framex.cancelled", "the worker is shutting down");
      if (draining_) return refuse(errc::overloaded, "framex.overloaded", "the worker is draining: call another");
      if (!notification && calls_.contains({from.get(), msgid})) {
        return refuse(errc::bad_arguments, "framex.duplicate_msgid",
                      "msgid " + std::to_string(msgid) + " is already in flight on this connection");
      }
      if (cfg_.max_queued != 0 && held_ >= cfg_.max_queued) {
        return refuse(errc::overloaded, "framex.overloaded",
                      "the worker holds " + std::to_string(cfg_.max_queued) + " calls already");
      }
      if (cfg_.max_calls_per_connection != 0 && from->calls() >= cfg_.max_calls_per_connection) {
        return refuse(errc::overloaded, "framex.overloaded",
                      "this connection has " + std::to_string(cfg_.max_calls_per_connection) + " calls in the worker already");
      }
      if (cfg_.max_held_bytes != 0 && held_bytes_ + request.cost > cfg_.max_held_bytes) {
        return refuse(errc::overloaded, "framex.overloaded", "the worker holds too many bytes of requests already");
      }
      auto& l = lanes_[from.get()];
      if (!l) l = std::make_shared<lane>();
      call = std::make_unique<served_call>(*this, from, std::move(request), *fn, l);
      if (!notification) calls_[call->key()] = call.get();
      ++held_;
      held_bytes_ += call->cost();
      from->call_started();
    }
    if (fn->actor_class.empty() && as_ref_owner != 0) {
      msgpack::object args;
      args.type = msgpack::type::ARRAY;
      args.via.array.size = params.via.array.size - 1;
      args.via.array.ptr = params.via.array.ptr + 1;
      call->set_arguments(args);
      call->ref_owner = as_ref_owner;
    } else if (fn->construct != nullptr) {
      call->caller = caller;
      if (params.via.array.size == 4) {
        call->snapshot_every = static_cast<std::uint32_t>(params.via.array.ptr[3].via.array.ptr[0].via.u64);
        call->snapshot_key = params.via.array.ptr[3].via.array.ptr[1].via.u64;
      }
      call->actor_name.assign(params.via.array.ptr[1].via.str.ptr, params.via.array.ptr[1].via.str.size);
      call->set_arguments(params.via.array.ptr[2]);
    } else if (actor != nullptr) {
      msgpack::object args;
      args.type = msgpack::type::ARRAY;
      args.via.array.size = params.via.array.size - 2;
      args.via.array.ptr = params.via.array.ptr + 2;
      call->set_arguments(args);
      call->actor = std::move(actor);
      if (!(fn->is_async && fn->interleaves)) {  // takes its turn first
        // The turn passes on the thread of the call before (a pool thread,
        // for a blocking one): the next is handed to the pool from there,
        // without a hop through the I/O thread.
        auto& turn = call->actor->turn;
        if (!turn.try_enter()) {
          return turn.wait({}, [this, c = std::move(call)](std::error_code) mutable {
            c->holds_turn = true;
            dispatch(std::move(c));
          });
        }
        call->holds_turn = true;
      }
    }
    dispatch(std::move(call));
  }

  // Runs an admitted call where its kind runs.
  void dispatch(std::unique_ptr<served_call> call) {
    const function_entry& fn = call->fn();
    if (call->actor != nullptr && fn.is_async) {
      if (call->actor_lost()) return;
      auto signal = call->signal;
      void* object = call->actor->object.get();
      const auto strand = call->actor->strand;
      asio::co_spawn(strand, fn.run_async_on(std::move(call), object),
                     asio::bind_cancellation_slot(signal->slot(), [signal](std::exception_ptr) {}));
    } else if (fn.is_async) {
      auto signal = call->signal;
      const auto ex = call->session().executor();
      asio::co_spawn(ex, fn.run_async(std::move(call)), asio::bind_cancellation_slot(signal->slot(), [signal](std::exception_ptr) {}));
    } else if (fn.run_inline) {
      call.release()->run(false);  // marked cheap (`framex::inline_ok`): here, on the I/O thread
    } else {
      auto& l = call->queue();
      pool_.submit(*call.release(), l);
    }
  }

  // `framex.actor.lookup [class, caller, name]` → the actor's id;
  // `framex.actor.kill [id]` → nil; `framex.actor.release [id, caller]`, a
  // notification: one handle of that caller's is gone. On the I/O thread.
  void manage_actor(const std::shared_ptr<net::session>& from, const net::incoming_request& request) {
    const msgpack::object& params = *request.params;
    const auto arg = [&](std::uint32_t i, msgpack::type::object_type type) -> const msgpack::object* {
      return params.type == msgpack::type::ARRAY && params.via.array.size > i && params.via.array.ptr[i].type == type ? &params.via.array.ptr[i]
                                                                                                                      : nullptr;
    };
    const auto text = [](const msgpack::object* o) { return std::string_view(o->via.str.ptr, o->via.str.size); };
    const auto answer = [&](std::optional<std::uint64_t> id) {
      if (request.notification) return;
      message_buffer body(detail::invocation::response_headroom);
      msgpack::packer<message_buffer> p(body);
      if (id) {
        p.pack(*id);
      } else {
        p.pack_nil();
      }
      from->reply(request.msgid, std::move(body));
    };
    const auto fail = [&](errc code, const char* type, const std::string& message) {
      if (!request.notification) from->reply_error(request.msgid, static_cast<int>(code), type, message);
    };
    const auto* first = arg(0, msgpack::type::POSITIVE_INTEGER);
    if (request.method == "framex.actor.lookup") {
      const auto *cls = arg(0, msgpack::type::STR), *caller = arg(1, msgpack::type::POSITIVE_INTEGER), *name = arg(2, msgpack::type::STR);
      if (cls == nullptr || caller == nullptr || name == nullptr) return fail(errc::bad_arguments, "framex.bad_arguments", "framex.actor.lookup: expected [class, caller, name]");
      actors_.seen(from.get(), caller->via.u64);
      const std::uint64_t id = actors_.lookup(text(cls), text(name), caller->via.u64);
      if (id == 0) return fail(errc::actor_lost, "framex.actor_lost", "no " + std::string(text(cls)) + " actor named \"" + std::string(text(name)) + "\" here");
      return answer(id);
    }
    if (request.method == "framex.actor.kill" && first != nullptr) {
      if (!actors_.kill(first->via.u64)) return fail(errc::actor_lost, "framex.actor_lost", "no actor " + std::to_string(first->via.u64) + " here");
      return answer(std::nullopt);
    }
    if (request.method == "framex.actor.release" && first != nullptr && arg(1, msgpack::type::POSITIVE_INTEGER) != nullptr) {
      actors_.release(first->via.u64, params.via.array.ptr[1].via.u64);
      return answer(std::nullopt);
    }
    fail(errc::unknown_function, "framex.unknown_function", "no request " + std::string(request.method) + " with these arguments");
  }

  void cancel(net::session& from, const msgpack::object& params) {
    if (params.type != msgpack::type::ARRAY || params.via.array.size != 1 ||
        params.via.array.ptr[0].type != msgpack::type::POSITIVE_INTEGER || params.via.array.ptr[0].via.u64 > UINT32_MAX) {
      return;
    }
    std::lock_guard lock(mutex_);
    const auto it = calls_.find({&from, static_cast<std::uint32_t>(params.via.array.ptr[0].via.u64)});
    if (it != calls_.end()) it->second->cancel();
  }

  void on_session_closed(net::session& s, std::error_code why) override {
    if (net::is_tls_error(why)) log_tls_failure(s, why);
    std::lock_guard lock(mutex_);
    actors_.session_closed(&s);
    lanes_.erase(&s);  // calls still queued keep the lane alive
    for (auto it = calls_.lower_bound({&s, 0}); it != calls_.end() && it->first.first == &s; ++it) it->second->cancel();
  }

  // `framex.challenge [caller_nonce]` → `{"nonce": worker_nonce}` (see src/auth.hpp).
  void challenge(net::session& from, std::uint32_t msgid, const msgpack::object& params) {
    if (token_.empty()) {
      return from.reply_error(msgid, static_cast<int>(errc::unknown_function), "framex.unknown_function",
                              "this worker has no token: it takes no framex.challenge");
    }
    auto& c = from.credentials;
    if (c.challenged || params.type != msgpack::type::ARRAY || params.via.array.size != 1 ||
        params.via.array.ptr[0].type != msgpack::type::BIN || params.via.array.ptr[0].via.bin.size != c.peer_nonce.size()) {
      return deny(from, msgid, "a framex.challenge must come once, with 32 bytes of the caller's nonce");
    }
    std::memcpy(c.peer_nonce.data(), params.via.array.ptr[0].via.bin.ptr, c.peer_nonce.size());
    c.own_nonce = detail::random_nonce();
    c.challenged = true;
    message_buffer body(detail::invocation::response_headroom);
    msgpack::packer<message_buffer> p(body);
    p.pack_map(1);
    p.pack(std::string_view("nonce"));
    p.pack_bin(static_cast<std::uint32_t>(c.own_nonce.size()));
    p.pack_bin_body(reinterpret_cast<const char*>(c.own_nonce.data()), static_cast<std::uint32_t>(c.own_nonce.size()));
    from.reply(msgid, std::move(body));
  }

  // Refuses a peer's credentials: it learns that much, and the connection closes.
  void deny(net::session& from, std::uint32_t msgid, const std::string& why) {
    spdlog::warn("framex worker: refused a caller: {}", why);
    from.reply_error(msgid, static_cast<int>(errc::unauthorized), "framex.unauthorized", why + " (refused by the worker)");
    from.close_when_drained();
  }

  // `framex.hello [protocol, functions, max_message_size, {"proof": ...}]`:
  // with a token, the proof must match; the answer lists what this caller may
  // call and, with a token, proves the worker holds it too.
  void hello(net::session& to, std::uint32_t msgid, const msgpack::object& params) {
    auto& c = to.credentials;
    // The caller's id as an actor holder: it is back (see src/actor_table.hpp).
    if (params.type == msgpack::type::ARRAY && params.via.array.size >= 4 && params.via.array.ptr[3].type == msgpack::type::MAP) {
      const auto& m = params.via.array.ptr[3].via.map;
      for (std::uint32_t i = 0; i < m.size; ++i) {
        const auto& kv = m.ptr[i];
        if (kv.key.type == msgpack::type::STR && std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == "caller" &&
            kv.val.type == msgpack::type::POSITIVE_INTEGER && kv.val.via.u64 != 0) {
          actors_.seen(&to, kv.val.via.u64);
        }
      }
    }
    std::optional<detail::proof> ours;
    if (!token_.empty()) {
      std::string_view theirs;
      if (params.type == msgpack::type::ARRAY && params.via.array.size >= 4 && params.via.array.ptr[3].type == msgpack::type::MAP) {
        const auto& m = params.via.array.ptr[3].via.map;
        for (std::uint32_t i = 0; i < m.size; ++i) {
          const auto& kv = m.ptr[i];
          if (kv.key.type == msgpack::type::STR && std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == "proof" &&
              kv.val.type == msgpack::type::BIN) {
            theirs = std::string_view(kv.val.via.bin.ptr, kv.val.via.bin.size);
          }
        }
      }
      if (!c.challenged) return deny(to, msgid, "the worker requires a token: send framex.challenge before framex.hello");
      if (theirs.empty()) return deny(to, msgid, "the worker requires a token, and the hello carries no proof");
      if (!detail::proof_matches(theirs, detail::caller_proof(token_, c.own_nonce, c.peer_nonce))) {
        return deny(to, msgid, "the caller's token does not match the worker's");
      }
      ours = detail::worker_proof(token_, c.peer_nonce, c.own_nonce);
      c.challenged = false;  // a nonce proves one hello
    }
    c.trusted = true;
    to.greeted();
    message_buffer body(detail::invocation::response_headroom);
    msgpack::packer<message_buffer> p(body);
    std::vector<const function_entry*> functions;
    for (const auto* f : detail::registered_functions()) {
      if (detail::serves(cfg_.serve, f->name)) functions.push_back(f);
    }
    p.pack_map(ours ? 5 : 4);
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
    p.pack(std::string_view("resources"));
    p.pack_map(static_cast<std::uint32_t>(cfg_.resources.size()));
    for (const auto& [name, amount] : cfg_.resources) {
      p.pack(name);
      p.pack(amount);
    }
    if (ours) {
      p.pack(std::string_view("proof"));
      p.pack_bin(static_cast<std::uint32_t>(ours->size()));
      p.pack_bin_body(reinterpret_cast<const char*>(ours->data()), static_cast<std::uint32_t>(ours->size()));
    }
    to.reply(msgid, std::move(body));
  }

  // A call ends (any thread): it gives back what it held.
  void finished(served_call& call) {
    {
      std::lock_guard lock(mutex_);
      if (!call.notification()) {
        const auto it = calls_.find(call.key());
        if (it != calls_.end() && it->second == &call) calls_.erase(it);
      }
      --held_;
      held_bytes_ -= call.cost();
    }
    held_changed_.notify_all();
    call.session().call_finished();
  }

  config::worker_section cfg_;
  std::size_t max_message_;
  std::string token_;  // empty: callers need not prove anything
  std::mutex mutex_;
  std::condition_variable held_changed_;
  using call_key = std::pair<net::session*, std::uint32_t>;
  std::map<call_key, served_call*, std::less<>, detail::pool_allocator<std::pair<const call_key, served_call*>>> calls_;  // requests in flight
  std::unordered_map<net::session*, std::shared_ptr<lane>> lanes_;
  std::size_t held_ = 0;        // calls and notifications being served
  std::size_t held_bytes_ = 0;  // what they hold in memory
  bool stopping_ = false;       // calls are refused
  bool draining_ = false;       // new calls are refused with `overloaded`
  detail::thread_pool pool_;
  asio::io_context io_;
  detail::actor_table actors_{io_, cfg_.actor_grace};
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::optional<net::listener> listener_;
  std::shared_ptr<detail::etcd::registration> registration_;  // with an etcd:// discovery
  std::chrono::milliseconds etcd_timeout_{0};
  std::vector<std::thread> threads_;
  std::mutex stop_mutex_;
  bool stopped_ = false;

  // Registers this worker under the etcd discovery's prefix, keyed by the
  // address callers should dial.
  void register_in_etcd(const config& cfg) {
    auto where = [&] {
      try {
        return detail::etcd::parse_url(cfg.distributed.discovery);
      } catch (const std::invalid_argument& e) {
        throw config_error("distributed.discovery: " + std::string(e.what()));
      }
    }();
    detail::etcd::registered_worker me;
    me.address = advertised(cfg.worker, listener_->port());
    me.functions = functions_digest(cfg.worker.serve);
    me.resources = cfg.worker.resources;
    const std::string key = where.prefix + "/" + me.address;
    etcd_timeout_ = cfg.etcd.timeout;
    registration_ = std::make_shared<detail::etcd::registration>(
        std::make_unique<detail::etcd::client>(std::move(where), cfg.etcd), key, std::move(me),
        std::chrono::duration_cast<std::chrono::seconds>(cfg.etcd.lease_ttl), asio::make_strand(io_));
  }
};

worker::worker(const config& cfg) : impl_(std::make_unique<impl>(cfg)) {}
worker::~worker() = default;
std::uint16_t worker::port() const noexcept { return impl_->port(); }
void worker::stop() noexcept { impl_->stop(); }
void worker::drain(std::optional<std::chrono::milliseconds> timeout) noexcept { impl_->drain(timeout); }

int serve_worker(const config& cfg) {
  // Output whose reader went away (a supervisor that read the first line and
  // closed the pipe) must fail a log write, not end the worker.
  std::signal(SIGPIPE, SIG_IGN);
  // Standard output carries the address line below and nothing else; the log
  // goes to standard error.
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("framex", std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
  spdlog::set_level(spdlog::level::from_str(cfg.log.level));
  // The plugins deployed to the workers (`[plugins.NAME] deploy = "workers"`),
  // started before the first call can come.
  detail::plugin_host plugins(cfg, true);
  {
    asio::io_context start_io;
    auto started = asio::co_spawn(start_io, plugins.start(), asio::use_future);
    start_io.run();
    started.get();
  }
  plugins.log_summary();
  worker w(cfg);
  asio::io_context signals_io;
  asio::signal_set signals(signals_io, SIGINT, SIGTERM);
  signals.async_wait([](const boost::system::error_code&, int) {});
  const auto at = net::parse_address(cfg.worker.listen);
  if (at.is_unix()) {
    std::printf("framex worker listening on %s\n", at.text().c_str());
  } else {
    std::printf("framex worker listening on %s:%u\n", at.host.c_str(), static_cast<unsigned>(w.port()));
  }
  std::fflush(stdout);
  signals_io.run();
  spdlog::info("framex worker: draining (at most {} ms)", cfg.worker.drain_timeout.count());
  w.drain();
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
      } else if (a.starts_with("--") && a.find('.') != std::string_view::npos) {  // --section.key[=]value
        const auto eq = a.find('=');
        flags.emplace_back(std::string(a.substr(2, eq == std::string_view::npos ? std::string_view::npos : eq - 2)),
                           eq == std::string_view::npos ? value() : std::string(a.substr(eq + 1)));
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
