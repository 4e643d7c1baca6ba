// Distributed mode, caller's side.
//
// Each configured worker gets `connections_per_worker` slots; a slot is one
// multiplexed connection (net::client) and its state: down, connecting (TCP
// connect, then the `framex.hello` exchange, preceded with a token by
// `framex.challenge`: see src/auth.hpp) or ready. The first call connects
// every slot; a slot whose connection is lost is reconnected when a call needs
// it, after a jittered backoff while its worker stays unreachable.
//
// Discovery. Workers come from `workers`, from a name (`dns://NAME:PORT`)
// looked up every `refresh_ms` and after a connection is lost, or from etcd
// (`etcd://HOST:PORT/PREFIX`: the registrations under the prefix, watched; see
// etcd.hpp): addresses that appear get slots; slots whose address vanished (or
// whose worker registered as draining) are retired (routed nothing, closed
// once idle) and kept, so a call or a connect that holds one stays valid.
//
// Health. Every half `heartbeat`, a ready connection that has heard nothing
// for a heartbeat gets a `framex.ping` (answered on the worker's I/O thread,
// whatever its pool is doing); if that too goes unanswered for a heartbeat,
// the worker is taken for hung or unreachable and the connection closes: its
// calls fail with `worker_lost` (a retry picks another worker) and the slot is
// reconnected like any lost one.
//
// Resources. A call that needs resources (its function's, `framex::require`,
// and its own) goes only to a slot whose worker has them free: what calls in
// flight hold is counted per worker address and given back when each call
// completes. Workers' amounts come from their hello, or from etcd before any
// connection; when every worker's are known and none has the amounts, the
// call fails at once with `no_worker`.
//
// Routing. A call goes to the ready slot with the fewest calls in flight
// (ties go round the slots), skipping connections whose worker said it is
// draining (`framex.draining`) and connections whose unsent output is above
// the high-water mark (a stalled worker); else it waits on a slot being
// connected; else it waits, unrouted, until a slot may be tried again or a
// stalled connection drains. A call that never reached a worker (its connect
// or hello failed) is routed again, to another worker if one is up. An unrouted
// call gives up with `worker_lost` when no worker can be tried again before its
// deadline (or, without one, within `connect_timeout`), unless a live but
// stalled connection may still take it; when every worker has refused this
// caller's credentials, it gives up at once with `unauthorized`.
//
// A `remote_call` is reference counted (`call_ref`); every place that holds
// one holds a `call_ref`: the function working on it, a slot's or the
// unrouted list, its pending timer wait, its cancellation handler, and its
// completion on its way to the caller. The one counted by hand is the
// connection's table, which holds a raw pointer: the reference is taken when
// the call is filed and dropped by whoever takes it out (the response, the
// connection's loss, or `forget_on_worker`). It completes exactly once, by
// whichever comes first: the response, the connection's loss, the timeout,
// the caller's cancellation or giving up (`done_` decides); its handler then
// runs on the caller's executor.
#include "distributed.hpp"

#include "framex/detail/actor.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/smart_ptr/intrusive_ptr.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <functional>
#include <map>
#include <cstring>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <vector>

#include "../net/address.hpp"
#include "../net/client.hpp"
#include "../net/tls.hpp"
#include "auth.hpp"
#include "etcd.hpp"
#include "framex/detail/bound_completion.hpp"
#include "framex/detail/pool.hpp"
#include "registry.hpp"
#include "stats.hpp"

namespace framex::detail {

namespace asio = boost::asio;
using clock = std::chrono::steady_clock;

namespace {

constexpr std::uint64_t protocol_version = 1;
constexpr auto first_backoff = std::chrono::milliseconds(50);
constexpr auto last_backoff = std::chrono::milliseconds(1000);
// Unsent output above which a connection takes no new calls.
constexpr std::size_t stalled_bytes = std::size_t{4} << 20;

std::error_code code_of(errc e) { return make_error_code(e); }

// Between half and all of `d`, so callers that lost a worker together do not
// retry it together.
clock::duration jittered(clock::duration d) {
  static std::atomic<std::uint64_t> seed{0x9e3779b97f4a7c15ULL};
  std::uint64_t x = seed.fetch_add(0x9e3779b97f4a7c15ULL, std::memory_order_relaxed);
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 29;
  return d / 2 + clock::duration(static_cast<clock::rep>(x % static_cast<std::uint64_t>(d.count() / 2 + 1)));
}

// `o` as text (msgpack-c's rendering), cut at `limit` bytes as it is written:
// a large object costs no more memory than that.
std::string shown(const msgpack::object& o, std::size_t limit) {
  struct bounded : std::streambuf {
    std::string text;
    std::size_t limit;
    int_type overflow(int_type c) override {
      if (c == traits_type::eof() || text.size() >= limit) return traits_type::eof();
      text.push_back(static_cast<char>(c));
      return c;
    }
  } out;
  out.limit = limit;
  std::ostream os(&out);
  os << o;
  return std::move(out.text);
}

// A msgpack-RPC error object: framex's {code, type, message} map, or any
// other peer's: a string, an array such as Neovim's [kind, message], or
// anything else, described (at most 1 KiB of it) when it holds no string.
errc decode_error_object(const msgpack::object& error, reply& r) {
  errc code = errc::exception;
  const auto text = [](const msgpack::object& o) { return std::string(o.via.str.ptr, o.via.str.size); };
  bool framex_map = false;
  if (error.type == msgpack::type::MAP) {
    for (std::uint32_t i = 0; i < error.via.map.size; ++i) {
      const auto& kv = error.via.map.ptr[i];
      if (kv.key.type != msgpack::type::STR) continue;
      const std::string_view key(kv.key.via.str.ptr, kv.key.via.str.size);
      if (key == "code" && kv.val.type == msgpack::type::POSITIVE_INTEGER && kv.val.via.u64 >= 1 &&
          kv.val.via.u64 <= static_cast<std::uint64_t>(errc::object_unavailable)) {  // the last errc
        code = static_cast<errc>(kv.val.via.u64);
        framex_map = true;
      } else if (key == "type" && kv.val.type == msgpack::type::STR) {
        r.error_type = text(kv.val);
      } else if (key == "message" && kv.val.type == msgpack::type::STR) {
        r.error_message = text(kv.val);
      }
    }
  } else if (error.type == msgpack::type::STR) {
    r.error_message = text(error);
  } else if (error.type == msgpack::type::ARRAY) {
    for (std::uint32_t i = 0; i < error.via.array.size && r.error_message.empty(); ++i) {
      if (error.via.array.ptr[i].type == msgpack::type::STR) r.error_message = text(error.via.array.ptr[i]);
    }
  }
  if (r.error_message.empty()) r.error_message = shown(error, 1024);
  if (r.error_type.empty()) r.error_type = framex_map ? "unknown" : "msgpack_rpc.error";
  r.foreign_error = !framex_map;
  return code;
}

}  // namespace

// The two forms a caller's io_context executor takes inside an any_io_executor.
using tracked_io_executor = asio::io_context::basic_executor_type<std::allocator<void>, 4>;
using untracked_io_executor = asio::io_context::basic_executor_type<std::allocator<void>, 0>;

// Posts `f` to `ex`. A completion is posted from an I/O thread and run (and
// freed) on the caller's, so Asio's per-thread recycling of the operation's
// memory never gets it back: when `ex` is an io_context's, the operation's
// memory comes from the pool, which passes blocks between threads.
template <class F>
void post_pooled(const asio::any_io_executor& ex, F f) {
  const auto post_on = [&](const auto& io_ex) {
    asio::require(io_ex, asio::execution::blocking.never, asio::execution::allocator(pool_allocator<void>())).execute(std::move(f));
  };
  if (const auto* t = ex.target<tracked_io_executor>()) return post_on(*t);
  if (const auto* u = ex.target<untracked_io_executor>()) return post_on(*u);
  asio::post(ex, std::move(f));
}

// True when `ex` is an io_context's executor and this thread runs that io_context.
bool running_in_this_thread(const asio::any_io_executor& ex) {
  if (const auto* t = ex.target<tracked_io_executor>()) return t->running_in_this_thread();
  if (const auto* u = ex.target<untracked_io_executor>()) return u->running_in_this_thread();
  return false;
}

class remote_call;
void intrusive_ptr_add_ref(remote_call* c) noexcept;
void intrusive_ptr_release(remote_call* c) noexcept;
using call_ref = boost::intrusive_ptr<remote_call>;

// The heartbeat of a slot's connection: a `framex.ping` in flight, or none.
struct heartbeat final : net::pending_call {
  std::atomic<clock::rep> sent_at{0};  // 0: none in flight
  void on_response(net::received_message) noexcept override { sent_at.store(0, std::memory_order_relaxed); }
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
  clock::duration backoff = first_backoff;
  std::size_t limit = 0;  // the smaller of both sides' message limits
  std::unordered_map<std::string, std::string> mismatched;  // name -> the worker's signature
  std::string last_error;
  errc last_code = errc::worker_lost;  // what last_error means to a call
  bool hello_refused = false;  // its server answered the required hello as no framex worker does
  std::weak_ptr<asio::steady_timer> deadline;  // while connecting: shutdown cuts it short
  heartbeat beat;
  bool unhealthy = false;  // its last connection's heartbeat went unanswered
  // Discovery no longer finds it: no new call; its connection closes with its
  // last call's answer, or at the next lookup when it has none.
  std::atomic<bool> retired{false};
  std::string verify_host;  // the name its TLS certificate must carry
  std::optional<resource_map> resources;  // what its worker has, once discovery or its hello said
  // Calls completed on this slot, for the dashboard.
  std::atomic<std::uint64_t> completed{0};
  std::atomic<std::uint64_t> errors{0};
  latency_histogram latency;
};

class remote_call final : public net::pending_call, public bound_completion, public pooled {
 public:
  remote_call(const function_entry& fn, message_buffer params, const asio::any_io_executor& caller,
              reply_handler handler, bool notification)
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
  void arm(asio::io_context& io, clock::duration timeout, clock::duration patience) {
    give_up_at_ = clock::now() + (timeout > clock::duration::zero() ? timeout : patience);
    intrusive_ptr_add_ref(this);
    bind_completion(asio::query(*work_, asio::execution::context), *this);
    if (cancel_slot_.is_connected()) {
      cancel_slot_.assign([self = call_ref(this)](asio::cancellation_type type) {
        if (type != asio::cancellation_type::none) self->finish(code_of(errc::cancelled), self->fn_.name);
      });
    }
    if (timeout > clock::duration::zero()) {
      timer_.emplace(asio::make_strand(io), timeout);
      timer_->async_wait([self = call_ref(this)](const boost::system::error_code& ec) {
        if (ec) return;
        std::string why = self->fn_.name + ": no answer within the call's timeout";
        {
          std::lock_guard lock(self->conn_mutex_);
          if (self->conn_ == nullptr && !self->unsent_because_.empty()) why += " (it was never sent: " + self->unsent_because_ + ")";
        }
        self->finish(code_of(errc::timeout), why);
      });
    }
  }

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
  void send(slot& s, const std::shared_ptr<net::client>& conn, std::size_t limit) {
    if (done()) return;
    if (params_.size() > limit) {
      return finish(code_of(errc::too_large), fn_.name + ": the request is " + std::to_string(params_.size()) +
                                                  " bytes; the limit is " + std::to_string(limit));
    }
    if (notification_) {  // no answer to wait for: done once it is handed to the connection
      slot_.store(&s, std::memory_order_release);
      net::prepend_notification_header(params_, fn_.name);
      if (conn->send(std::move(params_))) return finish({}, reply{});
      return finish(code_of(errc::worker_lost), fn_.name + ": the connection to the worker closed");
    }
    std::unique_lock lock(conn_mutex_);
    intrusive_ptr_add_ref(this);  // the connection's table's
    slot_.store(&s, std::memory_order_release);
    const std::uint32_t id = conn->call(fn_.name, std::move(params_), *this);
    if (id == 0) {
      intrusive_ptr_release(this);
      lock.unlock();
      return finish(code_of(errc::worker_lost), fn_.name + ": the connection to the worker closed");
    }
    conn_ = conn;
    msgid_ = id;
    if (done()) forget_on_worker();  // timed out or cancelled while being sent
  }

  void on_response(net::received_message message) noexcept override {
    const call_ref self(this, false);  // the table's reference, adopted
    const msgpack::object& error = message.get().via.array.ptr[2];
    reply r;
    if (const slot* s = slot_.load(std::memory_order_acquire)) r.worker = &s->address;
    if (error.type == msgpack::type::NIL) {
      r.result = &message.get().via.array.ptr[3];
      r.message = std::move(message);
      finish({}, std::move(r), true);
    } else {
      const errc code = decode_error_object(error, r);
      r.error = &error;
      r.message = std::move(message);
      finish(code_of(code), std::move(r), true);
    }
    close_if_retired();
  }

  void on_lost(std::error_code why) noexcept override {
    const call_ref self(this, false);  // the table's reference, adopted
    finish(code_of(errc::worker_lost), fn_.name + ": the connection to the worker was lost (" + why.message() + ")");
  }

  void finish(std::error_code ec, std::string message) {
    reply r;
    r.error_message = std::move(message);
    finish(ec, std::move(r));
  }

  // Any thread; the first caller wins. `read_here`: called where the answer
  // was read, from an I/O completion, so a caller whose coroutine runs on
  // this thread's io_context resumes at once, as Asio completes its own
  // operations, rather than through a post.
  void finish(std::error_code ec, reply r, bool read_here = false) {
    if (done_.exchange(true, std::memory_order_acq_rel)) return;
    count(ec, r);
    if (!needs_.empty()) {
      std::function<void()> release;
      {
        std::lock_guard lock(conn_mutex_);
        release = std::move(release_);
      }
      if (release) release();
    }
    if (ec == errc::timeout || ec == errc::cancelled) {
      std::lock_guard lock(conn_mutex_);
      forget_on_worker();
    }
    if (timer_) {
      // Cancels the wait; a finished call holds nothing of the runtime's io_context.
      asio::post(timer_->get_executor(), [self = call_ref(this)] { self->timer_.reset(); });
    }
    std::optional<asio::any_io_executor> here;  // the caller's executor, when it runs on this thread
    const bool unbound = unbind_completion(*this, [&] {
      // The completion takes the caller's work with it: whoever still holds
      // the call (a connection's table, the unrouted list) may outlive the
      // caller's context, and must hold nothing of it.
      asio::any_io_executor ex = std::move(*work_);
      work_.reset();
      if (read_here && running_in_this_thread(ex)) {
        here.emplace(std::move(ex));  // held until the handler has run
        return;
      }
      post_pooled(ex, [self = call_ref(this), ec, r = std::move(r), work = ex]() mutable {
        (void)work;  // held until the handler has run
        self->complete(ec, std::move(r));
      });
    });
    if (here) complete(ec, std::move(r));
    if (unbound) intrusive_ptr_release(this);  // the binding's
  }

  void complete(std::error_code ec, reply r) {
    if (cancel_slot_.is_connected()) cancel_slot_.clear();
    reply_handler handler = std::move(handler_);
    std::move(handler)(ec, std::move(r));
  }

  // The caller's context shuts down with this call in flight (bound_completion).
  void detach() noexcept override {
    if (cancel_slot_.is_connected()) cancel_slot_.clear();
    { [[maybe_unused]] const reply_handler dropped = std::move(handler_); }
    work_.reset();
    intrusive_ptr_release(this);  // the binding's
  }

 private:
  friend void intrusive_ptr_add_ref(remote_call* c) noexcept { c->refs_.fetch_add(1, std::memory_order_relaxed); }
  friend void intrusive_ptr_release(remote_call* c) noexcept {
    if (c->refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete c;
  }

  // Under conn_mutex_: takes the call out of its connection and tells the
  // worker to drop it.
  void forget_on_worker() {
    if (conn_ && msgid_ != 0 && conn_->forget(msgid_)) {
      conn_->notify("framex.cancel", msgid_);
      intrusive_ptr_release(this);  // the table's reference
    }
  }

  // After an answer: a retired slot's connection closes once no call is left on it.
  void close_if_retired() {
    const slot* s = slot_.load(std::memory_order_acquire);
    if (s == nullptr || !s->retired.load(std::memory_order_relaxed)) return;
    std::shared_ptr<net::client> conn;
    {
      std::lock_guard lock(conn_mutex_);
      conn = conn_;
    }
    if (conn != nullptr && conn->outstanding() == 0) conn->close(code_of(errc::cancelled));
  }

  void count(std::error_code ec, const reply& r) noexcept {
    const std::int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - started_).count();
    std::string message;
    if (ec) {
      try {
        message = ec.message() + (r.error_message.empty() ? "" : ": " + r.error_message);
      } catch (...) {
      }
    }
    if (fn_.remote_stats != nullptr) record(*fn_.remote_stats, ns, ec ? &message : nullptr);
    if (slot* s = slot_.load(std::memory_order_acquire)) {
      s->completed.fetch_add(1, std::memory_order_relaxed);
      if (ec) s->errors.fetch_add(1, std::memory_order_relaxed);
      s->latency.add(ns);
    }
  }

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

struct distributed_runtime::impl : std::enable_shared_from_this<impl> {
  impl(const config& cfg, asio::io_context* caller_io, incoming_fn in)
      : settings(cfg.distributed),
        incoming(std::move(in)),
        token(cfg.distributed.token_file.empty() ? std::string() : read_token_file(cfg.distributed.token_file, "distributed.token_file")),
        tls(tls_context_for(cfg.distributed.tls, net::tls_context::role::client, "distributed")),
        own_io(caller_io == nullptr ? std::make_unique<asio::io_context>() : nullptr),
        io(caller_io == nullptr ? *own_io : *caller_io),
        retry_timer(asio::make_strand(io)),
        heartbeat_timer(asio::make_strand(io)) {
    check_unambiguous();
    const auto& s = settings;
    if (!token.empty() && s.hello == hello_mode::off) {
      throw config_error("distributed.token_file needs the hello, which carries the proof: distributed.hello = \"off\" cannot be used with it");
    }
    if (s.discovery.starts_with("etcd://")) {
      if (!s.workers.empty()) throw config_error("set distributed.workers or an etcd:// distributed.discovery, not both");
      follow_etcd(cfg);
      return;
    }
    if (s.discovery.starts_with("dns://")) {
      if (!s.workers.empty()) throw config_error("set distributed.workers or a dns:// distributed.discovery, not both");
      std::string_view rest = std::string_view(s.discovery).substr(6);
      const std::size_t query = rest.find('?');
      if (query != std::string_view::npos) {
        const std::string_view option = rest.substr(query + 1);
        unsigned ms = 0;
        const auto [end, ec] = std::from_chars(option.data() + std::min(option.size(), std::size_t{11}), option.data() + option.size(), ms);
        if (!option.starts_with("refresh_ms=") || ec != std::errc{} || end != option.data() + option.size() || ms == 0) {
          throw config_error("distributed.discovery = " + s.discovery + ": the only option is refresh_ms=N (N > 0)");
        }
        dns_refresh = std::chrono::milliseconds(ms);
        rest = rest.substr(0, query);
      }
      const auto [host, port] = parse_endpoint(rest);
      dns_host = host;
      dns_port = std::to_string(port);
      discovering = true;
      return;
    }
    if (s.workers.empty()) {
      throw config_error("distributed mode needs at least one worker: set distributed.workers");
    }
    for (const auto& w : s.workers) {
      const net::address at = net::parse_address(w);
      add_worker(w, at, at.host);
    }
  }

  // Follows the workers registered in etcd; those that drain are dropped.
  void follow_etcd(const config& cfg) {
    auto where = [&] {
      try {
        return etcd::parse_url(settings.discovery);
      } catch (const std::invalid_argument& e) {
        throw config_error("distributed.discovery: " + std::string(e.what()));
      }
    }();
    discovering = true;
    etcd = std::make_shared<etcd::watcher>(
        std::make_unique<etcd::client>(std::move(where), cfg.etcd), discovery_strand,
        [this](const etcd::watcher::members& members) {
          std::map<std::string, endpoint> found;
          for (const auto& [key, w] : members) {
            if (w.draining) continue;
            try {
              const net::address at = net::parse_address(w.address);
              found.emplace(w.address, endpoint{at, at.host, w.resources});
            } catch (const std::invalid_argument& e) {
              spdlog::warn("framex: etcd: a worker registered as {}: {}", w.address, e.what());
            }
          }
          follow(found);
        },
        [this](const std::string& why) { discovery_failed(why); });
  }

  // Under the mutex (or before any thread runs): `connections_per_worker` slots for one worker.
  void add_worker(const std::string& address, const net::address& where, const std::string& verify_host) {
    for (std::size_t i = 0; i < settings.connections_per_worker; ++i) {
      auto sl = std::make_unique<slot>();
      sl->address = address;
      sl->where = where;
      sl->verify_host = verify_host;
      sl->limit = settings.max_message_size;
      slots.push_back(std::move(sl));
    }
  }

  // DNS discovery, on the resolver's strand: looks the name up, then again
  // every `dns_refresh`.
  void look_up() {
    resolver.async_resolve(dns_host, dns_port,
                           [self = shared_from_this()](const boost::system::error_code& ec,
                                                       const asio::ip::tcp::resolver::results_type& found) {
                             self->discovered(ec, found);
                           });
  }

  // What a lookup found; a failed lookup changes nothing.
  void discovered(const boost::system::error_code& ec, const asio::ip::tcp::resolver::results_type& found) {
    {
      std::lock_guard lock(mutex);
      if (stopping) return;  // no next lookup
    }
    if (ec) {
      discovery_failed("looking up " + dns_host + ": " + ec.message());
    } else {
      std::map<std::string, endpoint> addresses;
      for (const auto& r : found) {
        const auto ip = r.endpoint().address();
        const std::string text = ip.to_string();
        addresses.emplace((ip.is_v6() ? "[" + text + "]" : text) + ":" + dns_port, endpoint{net::address{text, dns_port, {}}, dns_host, {}});
      }
      follow(addresses);
    }
    discovery_timer.expires_after(dns_refresh);
    discovery_timer.async_wait([self = shared_from_this()](const boost::system::error_code& e) {
      if (!e) self->look_up();
    });
  }

  // Where to dial a discovered worker, and the name its certificate must carry.
  struct endpoint {
    net::address where;
    std::string verify_host;
    std::optional<resource_map> resources;  // when discovery says (etcd)
  };

  // The workers discovery found now, by address: new ones get slots; those
  // gone are retired (no new call; closed once idle) and come back if found again.
  void follow(const std::map<std::string, endpoint>& found) {
    std::vector<std::shared_ptr<net::client>> idle;
    {
      std::lock_guard lock(mutex);
      if (stopping) return;
      discovering = false;
      discovery_error.clear();
      for (auto& s : slots) {
        const auto it = found.find(s->address);
        s->retired = it == found.end();
        if (!s->retired && it->second.resources && s->status != slot::state::ready) s->resources = it->second.resources;
      }
      for (const auto& one : found) {
        if (std::none_of(slots.begin(), slots.end(), [&](const auto& s) { return s->address == one.first; })) {
          add_worker(one.first, one.second.where, one.second.verify_host);
          for (auto& s : slots) {
            if (s->address == one.first) s->resources = one.second.resources;
          }
        }
      }
      for (auto& s : slots) {
        if (s->retired && s->conn && s->conn->is_open() && s->conn->outstanding() == 0) idle.push_back(s->conn);
      }
    }
    for (auto& c : idle) c->close(code_of(errc::cancelled));
    reroute();  // waiting calls may have a worker now, or learn there is none
  }

  // Discovery cannot say which workers there are: those known stay.
  void discovery_failed(std::string why) {
    {
      std::lock_guard lock(mutex);
      if (stopping) return;
      discovering = false;
      if (why != discovery_error) spdlog::warn("framex: discovery failed: {}", why);
      discovery_error = std::move(why);
    }
    reroute();  // calls waiting for the first answer learn why there is none
  }

  void start(const function_entry& fn, message_buffer params, clock::duration timeout, const resource_needs& extra_needs,
             const asio::any_io_executor& caller, reply_handler handler, bool notification) {
    const call_ref call(new remote_call(fn, std::move(params), caller, std::move(handler), notification));
    if (!fn.needs.empty() || !extra_needs.empty()) {
      resource_map needs = fn.needs;
      for (const auto& extra : extra_needs) {
        auto& amount = needs[std::string(extra.name)];
        amount = std::max(amount, extra.amount);
      }
      call->set_needs(std::move(needs));
    }
    send_off(call, timeout);
  }

  void start(const function_entry& fn, message_buffer params, clock::duration timeout, placement where,
             const asio::any_io_executor& caller, reply_handler handler, bool notification) {
    const call_ref call(new remote_call(fn, std::move(params), caller, std::move(handler), notification));
    resource_map needs = fn.needs;
    for (auto& [name, amount] : where.needs) needs[name] = std::max(needs[name], amount);
    call->set_needs(std::move(needs));
    call->pin(std::move(where.pin));
    send_off(call, timeout);
  }

  std::vector<std::string> worker_addresses() {
    std::lock_guard lock(mutex);
    std::vector<std::string> out;
    for (const auto& s : slots) {
      if (!s->retired && std::find(out.begin(), out.end(), s->address) == out.end()) out.push_back(s->address);
    }
    return out;
  }

  void send_off(const call_ref& call, clock::duration timeout) {
    const function_entry& fn = call->fn();
    if (timeout <= clock::duration::zero()) timeout = settings.call_timeout;
    call->arm(io, timeout, settings.connect_timeout);
    if (call->size() > settings.max_message_size) {
      return call->finish(code_of(errc::too_large), fn.name + ": the request is " + std::to_string(call->size()) +
                                                        " bytes; the limit is " + std::to_string(settings.max_message_size));
    }
    std::unique_lock lock(mutex);
    route(call, lock);
  }

  // Under the mutex (released here): sends `call` on the best slot, files it
  // with a slot being connected, or keeps it unrouted.
  void route(const call_ref& call, std::unique_lock<std::mutex>& lock) {
    if (call->done()) return;
    if (stopping) {
      lock.unlock();
      return call->finish(code_of(errc::cancelled), call->fn().name + ": the runtime is shutting down");
    }
    slot* chosen = call->pinned().empty() ? pick(call->needs()) : pick_pinned(call->pinned());
    if (chosen == nullptr && !call->pinned().empty()) {
      std::string why = call->fn().name + ": the worker at " + call->pinned() + " is unreachable";
      for (const auto& s : slots) {
        if (s->address == call->pinned() && !s->last_error.empty()) {
          why += " (" + s->last_error + ")";
          break;
        }
      }
      lock.unlock();
      return call->finish(code_of(errc::worker_lost), std::move(why));
    }
    if (chosen == nullptr) return keep_unrouted(call, lock);
    if (chosen->status == slot::state::connecting) {
      chosen->waiting.push_back(call);
      return;
    }
    const auto mismatch = chosen->mismatched.find(call->fn().name);
    if (mismatch != chosen->mismatched.end()) {
      std::string why = call->fn().name + ": this program has signature " + call->fn().signature + ", the worker at " +
                        chosen->address + " has " + mismatch->second;
      lock.unlock();
      return call->finish(code_of(errc::signature_mismatch), std::move(why));
    }
    if (!call->needs().empty() && !reserve(*chosen, *call)) return;  // it completed meanwhile
    auto conn = chosen->conn;
    const std::size_t limit = chosen->limit;
    lock.unlock();
    call->send(*chosen, conn, limit);
  }

  // Under the mutex: the ready slot with the fewest calls in flight, else a
  // connecting one with the fewest waiting. Starts connecting every slot
  // that is down and due, so load can spread.
  slot* pick(const resource_map& needs) {
    const auto now = clock::now();
    const std::size_t n = slots.size();
    if (n == 0) return nullptr;
    const std::size_t first = rotation++ % n;  // ties go round the workers
    slot* best = nullptr;
    std::size_t best_load = SIZE_MAX;
    for (std::size_t i = 0; i < n; ++i) {
      slot& s = *slots[(first + i) % n];
      if (s.retired) continue;
      if (s.status == slot::state::ready && !s.conn->is_open()) {  // lost: reconnect on demand
        s.status = slot::state::down;
        s.conn.reset();
        s.last_error = "the connection was lost";
        s.last_code = errc::worker_lost;
        s.retry_at = {};
        if (!dns_host.empty()) asio::post(discovery_strand, [self = shared_from_this()] { self->look_up(); });  // moved?
      }
      if (s.status == slot::state::down && s.retry_at <= now) connect(s);
      if (s.status == slot::state::ready && !s.conn->draining() && s.conn->queued_bytes() <= stalled_bytes &&
          s.conn->outstanding() < best_load && (needs.empty() || free_for(s, needs))) {
        best = &s;
        best_load = s.conn->outstanding();
      }
    }
    if (best != nullptr) return best;
    for (std::size_t i = 0; i < n; ++i) {
      slot& s = *slots[(first + i) % n];
      if (!s.retired && s.status == slot::state::connecting && s.waiting.size() < best_load &&
          (needs.empty() || !s.resources || missing(*s.resources, needs).empty())) {
        best = &s;
        best_load = s.waiting.size();
      }
    }
    return best;
  }

  // Under the mutex: the first ready slot of the worker at `address` (always
  // the same one while it lives, so calls pinned there arrive in the order
  // they were made), else one being connected (connecting one that is due);
  // null when its slots are all down, or it is gone.
  slot* pick_pinned(const std::string& address) {
    const auto now = clock::now();
    slot* best = nullptr;
    slot* connecting = nullptr;
    for (const auto& sp : slots) {
      slot& s = *sp;
      if (s.retired || s.address != address) continue;
      if (s.status == slot::state::ready && !s.conn->is_open()) {
        s.status = slot::state::down;
        s.conn.reset();
        s.last_error = "the connection was lost";
        s.last_code = errc::worker_lost;
        s.retry_at = {};
      }
      if (s.status == slot::state::down && s.retry_at <= now) connect(s);
      if (s.status == slot::state::ready && best == nullptr) best = &s;
      if (s.status == slot::state::connecting && connecting == nullptr) connecting = &s;
    }
    return best != nullptr ? best : connecting;
  }

  // The amounts of `needs` that `has` lacks, as "gpu = 1" and so on; empty when none.
  static std::string missing(const resource_map& has, const resource_map& needs) {
    std::string out;
    for (const auto& [name, amount] : needs) {
      const auto it = has.find(name);
      if (it == has.end() || it->second + 1e-9 < amount) {
        if (!out.empty()) out += ", ";
        out += name + " = " + amount_text(amount);
      }
    }
    return out;
  }
  static std::string amount_text(double v) {
    std::ostringstream o;
    o << v;
    return o.str();
  }

  // Under the mutex: `s` has `needs` free now.
  bool free_for(const slot& s, const resource_map& needs) const {
    if (!s.resources) return false;
    const auto held = in_use.find(s.address);
    for (const auto& [name, amount] : needs) {
      const auto it = s.resources->find(name);
      const double used = held == in_use.end() ? 0 : (held->second.contains(name) ? held->second.at(name) : 0);
      if (it == s.resources->end() || it->second - used + 1e-9 < amount) return false;
    }
    return true;
  }

  // Under the mutex: why no worker will ever take a call that needs `needs`
  // (every worker's resources are known and none has them); empty when one
  // has them or may have them.
  std::string lacking(const resource_map& needs) const {
    std::string most;  // what the first worker lacks, for the message
    for (const auto& s : slots) {
      if (s->retired) continue;
      if (!s->resources) return {};
      std::string lack = missing(*s->resources, needs);
      if (lack.empty()) return {};
      if (most.empty()) most = s->address + " lacks " + lack;
    }
    if (most.empty()) return {};  // no worker at all: waits like any call
    return "no worker has the resources the call needs (" + most + ")";
  }

  // Under the mutex: takes `call`'s needs from `s`'s worker until it completes.
  bool reserve(slot& s, remote_call& call) {
    auto& held = in_use[s.address];
    for (const auto& [name, amount] : call.needs()) held[name] += amount;
    const bool holding = call.hold([self = weak_from_this(), address = s.address, needs = call.needs()] {
      if (const auto me = self.lock()) asio::post(me->io, [me, address, needs] { me->release(address, needs); });
    });
    if (!holding) {
      for (const auto& [name, amount] : call.needs()) held[name] -= amount;
    }
    return holding;
  }

  // Gives back what a call held on `address`; calls waiting for it may go.
  void release(const std::string& address, const resource_map& needs) {
    {
      std::lock_guard lock(mutex);
      auto& held = in_use[address];
      for (const auto& [name, amount] : needs) held[name] = std::max(0.0, held[name] - amount);
    }
    reroute();
  }

  // Under the mutex (released here): no slot can take `call` now. It waits
  // for the next slot due for a retry, or for a stalled connection to drain,
  // unless it would give up before either.
  void keep_unrouted(const call_ref& call, std::unique_lock<std::mutex>& lock) {
    if (discovering) {  // the first lookup reroutes it
      unrouted.push_back(call);
      has_unrouted.store(true, std::memory_order_relaxed);
      return;
    }
    if (!call->needs().empty()) {
      if (std::string lack = lacking(call->needs()); !lack.empty()) {
        lock.unlock();
        return call->finish(code_of(errc::no_worker), call->fn().name + ": " + lack);
      }
    }
    bool live = false, all_refused = true, by_credentials = true, any = false;
    clock::time_point next = clock::time_point::max();
    const slot* example = nullptr;  // for the message
    for (const auto& s : slots) {
      if (s->retired) continue;
      any = true;
      if (example == nullptr || (example->last_error.empty() && !s->last_error.empty())) example = s.get();
      live = live || (s->status == slot::state::ready && s->conn->is_open() && !s->conn->draining());
      all_refused = all_refused && s->status == slot::state::down && (s->last_code == errc::unauthorized || s->hello_refused);
      by_credentials = by_credentials && s->last_code == errc::unauthorized;
      if (s->status == slot::state::down) next = std::min(next, s->retry_at);
    }
    all_refused = all_refused && any;
    if (!dns_host.empty()) next = std::min(next, clock::now() + dns_refresh);  // the next lookup may find one
    if (etcd) next = std::min(next, clock::now() + etcd_patience);  // a worker may register any moment
    // Credentials (or the hello) refused everywhere will be refused again: no use waiting.
    if (!live && (all_refused || next > call->give_up_at())) {
      std::string where = example != nullptr ? example->address + ": " + example->last_error
                                             : settings.discovery + (etcd ? " has no ready worker registered" : " names no worker");
      if (example == nullptr && !discovery_error.empty()) where = discovery_error;
      const std::string why = call->fn().name + ": no worker " + (all_refused ? "accepts this caller" : "is reachable") + " (" +
                              where + ")";
      const errc code = all_refused && by_credentials ? errc::unauthorized : errc::worker_lost;
      lock.unlock();
      return call->finish(code_of(code), why);
    }
    for (const auto& s : slots) {
      if (s->status == slot::state::down && !s->last_error.empty()) {
        call->note_unsent(s->address + ": " + s->last_error);
        break;
      }
    }
    std::erase_if(unrouted, [](const call_ref& c) { return c->done(); });
    unrouted.push_back(call);
    has_unrouted.store(true, std::memory_order_relaxed);
    if (next != clock::time_point::max() && next < retry_at) {
      retry_at = next;
      asio::post(retry_timer.get_executor(), [self = shared_from_this(), next] {
        self->retry_timer.expires_at(next);
        self->retry_timer.async_wait([self](const boost::system::error_code& ec) {
          if (!ec) self->reroute();
        });
      });
    }
  }

  // A slot may be tried again, or a connection drained: the unrouted calls
  // look for a slot anew.
  void reroute() {
    std::unique_lock lock(mutex);
    retry_at = clock::time_point::max();
    auto calls = std::move(unrouted);
    unrouted.clear();
    has_unrouted.store(false, std::memory_order_relaxed);
    for (auto& call : calls) {
      route(call, lock);
      if (!lock.owns_lock()) lock.lock();
    }
  }

  // Under the mutex: starts connecting `s`. Posted: co_spawn may run the
  // coroutine at once on an I/O thread, which would take the mutex we hold.
  void connect(slot& s) {
    s.status = slot::state::connecting;
    auto strand = asio::make_strand(io);
    asio::post(strand, [self = shared_from_this(), &s, strand] {
      asio::co_spawn(strand, connect_and_greet(self, &s, strand), asio::detached);
    });
  }
  // On `strand`; the same deadline covers the connect and the hello.
  static asio::awaitable<void> connect_and_greet(std::shared_ptr<impl> self, slot* s,
                                                 asio::strand<asio::io_context::executor_type> strand) {
    failure failed;
    std::shared_ptr<net::client> conn;
    try {
      auto deadline = std::make_shared<asio::steady_timer>(strand, self->settings.connect_timeout);
      {
        std::lock_guard lock(self->mutex);
        s->deadline = deadline;
        if (self->stopping) throw std::system_error(code_of(errc::cancelled), "the runtime is shutting down");
      }
      auto socket = co_await net::dial(s->where, asio::make_strand(self->io), *deadline);
      net::tls_setup speaks;
      if (self->tls) {
        speaks.context = self->tls;
        speaks.host = s->verify_host;
        speaks.session_key = s->address;
      }
      conn = std::make_shared<net::client>(std::move(socket), self->limits(), std::move(speaks));
      if (self->incoming) conn->on_incoming(self->incoming);
      conn->on_drained([weak = std::weak_ptr<impl>(self)] {
        auto alive = weak.lock();
        if (alive && alive->has_unrouted.load(std::memory_order_relaxed)) alive->reroute();
      });
      conn->start();
      if (self->settings.hello != hello_mode::off) failed = co_await greet(*self, *s, conn, deadline);
    } catch (const std::exception& e) {
      failed = failure{e.what()};
    }
    if (!failed.what.empty() && conn != nullptr) {
      conn->close(code_of(failed.code));  // a refused hello leaves nothing open
      conn.reset();
    }
    self->connected(*s, conn, failed);
  }

  // A request of the connect sequence in flight. It owns itself until the
  // connection completes it; completion cancels the waiting coroutine's timer,
  // on that timer's strand.
  class greeting_call final : public net::pending_call {
   public:
    explicit greeting_call(std::shared_ptr<asio::steady_timer> wake) : wake_(std::move(wake)) {}
    static std::shared_ptr<greeting_call> make(std::shared_ptr<asio::steady_timer> wake) {
      auto h = std::make_shared<greeting_call>(std::move(wake));
      h->self_ = h;
      return h;
    }
    void on_response(net::received_message message) noexcept override {
      result = std::move(message);
      wake();
    }
    void on_lost(std::error_code why) noexcept override {
      lost = why;
      wake();
    }
    net::received_message result;
    std::error_code lost;
    bool answered = false;  // read on the timer's strand only

   private:
    void wake() {
      asio::post(wake_->get_executor(), [self = std::move(self_)] {
        self->answered = true;
        self->wake_->cancel();
      });
    }
    std::shared_ptr<asio::steady_timer> wake_;
    std::shared_ptr<greeting_call> self_;
  };

  // Why a connection could not be made ready; empty `what`: it could.
  struct failure {
    std::string what;
    errc code = errc::worker_lost;
    bool unknown_method = false;  // the peer answered that it knows no such method
  };

  // Sends `method` and waits for its answer until `deadline`: the answer's
  // result, or a failure (the worker's error object decoded).
  static asio::awaitable<std::pair<net::received_message, failure>> ask(const std::shared_ptr<net::client>& conn, const char* method,
                                                                         message_buffer params,
                                                                         const std::shared_ptr<asio::steady_timer>& deadline,
                                                                         bool over_tls) {
    auto call = greeting_call::make(deadline);
    if (conn->call(method, std::move(params), *call) == 0) co_return std::pair{net::received_message{}, failure{"the connection closed"}};
    boost::system::error_code ec;
    co_await deadline->async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (!call->answered) {
      conn->close(code_of(errc::timeout));  // the connection completes the call as lost
      co_return std::pair{net::received_message{}, failure{std::string("no answer to ") + method + " within the connect timeout"}};
    }
    if (call->lost) co_return std::pair{net::received_message{}, lost_before_hello(call->lost, over_tls)};
    const msgpack::object& m = call->result.get();
    if (m.via.array.ptr[2].type != msgpack::type::NIL) {
      reply r;
      const errc code = decode_error_object(m.via.array.ptr[2], r);
      // A peer that is no framex worker answers with an error object of its own.
      co_return std::pair{net::received_message{},
                          failure{std::string(method) + " refused: " + r.error_message, code, r.foreign_error || code == errc::unknown_function}};
    }
    co_return std::pair{std::move(call->result), failure{}};
  }

  // Why the connection ended before the hello was answered, with the side
  // that refused when TLS says so.
  static failure lost_before_hello(const std::error_code& why, bool over_tls) {
    if (net::is_certificate_refusal(why)) {
      return {"the caller refused the worker's certificate: " + why.message(), errc::unauthorized};
    }
    if (net::is_tls_error(why)) {
      if (why.message().find("alert") != std::string::npos) {
        return {"the worker refused the TLS handshake: " + why.message(), errc::unauthorized};
      }
      return {"TLS failed: " + why.message() + " (does the worker speak TLS?)"};
    }
    std::string what = "the connection closed: " + why.message();
    if (!over_tls) what += " (does the worker require TLS?)";
    return {what};
  }

  // The hello (with a token, the challenge first: see src/auth.hpp), and what
  // it tells about the worker.
  static asio::awaitable<failure> greet(impl& self, slot& s, const std::shared_ptr<net::client>& conn,
                                        const std::shared_ptr<asio::steady_timer>& deadline) {
    const auto pack_bin = [](msgpack::packer<message_buffer>& p, const auto& bytes) {
      p.pack_bin(static_cast<std::uint32_t>(bytes.size()));
      p.pack_bin_body(reinterpret_cast<const char*>(bytes.data()), static_cast<std::uint32_t>(bytes.size()));
    };
    std::optional<proof> expected;  // what the worker must prove
    message_buffer params(64);
    msgpack::packer<message_buffer> p(params);
    const auto functions = registered_functions();
    p.pack_array(4);
    p.pack(protocol_version);
    p.pack_map(static_cast<std::uint32_t>(functions.size()));
    for (const auto* f : functions) {
      p.pack(f->name);
      p.pack(f->signature);
    }
    p.pack(static_cast<std::uint64_t>(self.settings.max_message_size));
    if (!self.token.empty()) {
      const nonce ours = random_nonce();
      message_buffer challenge(64);
      msgpack::packer<message_buffer> c(challenge);
      c.pack_array(1);
      pack_bin(c, ours);
      auto [answer, failed] = co_await ask(conn, "framex.challenge", std::move(challenge), deadline, self.tls != nullptr);
      if (!failed.what.empty()) {
        if (failed.code == errc::unknown_function) co_return failure{"the worker takes no token, so it cannot prove it holds this caller's", errc::unauthorized};
        co_return failed;
      }
      const msgpack::object* theirs = field(answer.get().via.array.ptr[3], "nonce");
      if (theirs == nullptr || theirs->type != msgpack::type::BIN || theirs->via.bin.size != ours.size()) {
        co_return failure{"malformed framex.challenge answer"};
      }
      nonce worker_nonce;
      std::memcpy(worker_nonce.data(), theirs->via.bin.ptr, worker_nonce.size());
      p.pack_map(2);
      p.pack(std::string_view("proof"));
      pack_bin(p, caller_proof(self.token, worker_nonce, ours));
      expected = worker_proof(self.token, ours, worker_nonce);
    } else {
      p.pack_map(1);
    }
    p.pack(std::string_view("caller"));  // who holds actors (src/actor_table.hpp)
    p.pack(caller_id());
    auto [answer, failed] = co_await ask(conn, "framex.hello", std::move(params), deadline, self.tls != nullptr);
    if (failed.unknown_method && self.settings.hello == hello_mode::automatic && !expected) {
      // Any msgpack-RPC server: called by method name, with this side's limit, checking no signature.
      std::lock_guard lock(self.mutex);
      s.resources = resource_map{};
      s.mismatched.clear();
      s.limit = self.settings.max_message_size;
      co_return failure{};
    }
    if (failed.unknown_method) failed.what += " (a server that is no framex worker: set distributed.hello = \"auto\" or \"off\" to call it)";
    if (!failed.what.empty()) co_return failed;
    const msgpack::object& r = answer.get().via.array.ptr[3];
    if (r.type != msgpack::type::MAP) co_return failure{"malformed hello answer"};
    if (expected) {
      const msgpack::object* proved = field(r, "proof");
      if (proved == nullptr || proved->type != msgpack::type::BIN ||
          !proof_matches(std::string_view(proved->via.bin.ptr, proved->via.bin.size), *expected)) {
        co_return failure{"the worker did not prove it holds the token (refused by the caller)", errc::unauthorized};
      }
    }
    if (const auto* v = field(r, "protocol"); v != nullptr && (v->type != msgpack::type::POSITIVE_INTEGER || v->via.u64 != protocol_version)) {
      co_return failure{"the worker speaks another framex protocol version"};
    }
    std::size_t their_limit = self.settings.max_message_size;
    if (const auto* v = field(r, "max_message_size"); v != nullptr && v->type == msgpack::type::POSITIVE_INTEGER) {
      their_limit = static_cast<std::size_t>(v->via.u64);
    }
    std::unordered_map<std::string, std::string> theirs;
    if (const auto* v = field(r, "functions"); v != nullptr && v->type == msgpack::type::MAP) {
      for (std::uint32_t j = 0; j < v->via.map.size; ++j) {
        const auto& f = v->via.map.ptr[j];
        if (f.key.type == msgpack::type::STR && f.val.type == msgpack::type::STR) {
          theirs.emplace(std::string(f.key.via.str.ptr, f.key.via.str.size), std::string(f.val.via.str.ptr, f.val.via.str.size));
        }
      }
    }
    std::unordered_map<std::string, std::string> mismatched;
    for (const auto* f : registered_functions()) {
      const auto it = theirs.find(f->name);
      if (it != theirs.end() && it->second != f->signature) mismatched.emplace(f->name, it->second);
    }
    resource_map resources;
    if (const auto* v = field(r, "resources"); v != nullptr && v->type == msgpack::type::MAP) {
      for (std::uint32_t j = 0; j < v->via.map.size; ++j) {
        const auto& kv = v->via.map.ptr[j];
        if (kv.key.type != msgpack::type::STR) continue;
        double amount = 0;
        if (kv.val.type == msgpack::type::FLOAT64 || kv.val.type == msgpack::type::FLOAT32) amount = kv.val.via.f64;
        if (kv.val.type == msgpack::type::POSITIVE_INTEGER) amount = static_cast<double>(kv.val.via.u64);
        resources.emplace(std::string(kv.key.via.str.ptr, kv.key.via.str.size), amount);
      }
    }
    std::lock_guard lock(self.mutex);
    s.resources = std::move(resources);
    s.mismatched = std::move(mismatched);
    s.limit = std::min(self.settings.max_message_size, their_limit);
    co_return failure{};
  }

  // The value under `key` in a msgpack map, or null.
  static const msgpack::object* field(const msgpack::object& map, std::string_view key) {
    if (map.type != msgpack::type::MAP) return nullptr;
    for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
      const auto& kv = map.via.map.ptr[i];
      if (kv.key.type == msgpack::type::STR && std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == key) return &kv.val;
    }
    return nullptr;
  }

  net::connection_limits limits() const {
    net::connection_limits l;
    l.read.max_bytes = settings.max_message_size;
    l.read.max_elements = settings.max_message_elements;
    l.message_timeout = settings.message_timeout;
    l.pause_reading = false;  // answers are always read: calls wait instead (see pick)
    l.write_high_water = stalled_bytes;
    return l;
  }

  // On the heartbeat timer's strand, every half heartbeat: a ready connection
  // silent for a heartbeat gets a `framex.ping`; one whose ping has gone
  // unanswered for a heartbeat is taken for dead and closed.
  void beat() {
    const auto period = settings.heartbeat;
    std::vector<std::pair<std::shared_ptr<net::client>, heartbeat*>> ping;
    std::vector<std::shared_ptr<net::client>> dead;
    {
      std::lock_guard lock(mutex);
      if (stopping) return;
      const auto now = clock::now();
      for (auto& s : slots) {
        if (s->status != slot::state::ready || !s->conn->is_open()) continue;
        const auto sent = s->beat.sent_at.load(std::memory_order_relaxed);
        if (sent != 0 && now - clock::time_point(clock::duration(sent)) >= period && now - s->conn->last_heard() >= period) {
          s->unhealthy = true;
          dead.push_back(s->conn);  // its calls fail as lost, "Connection timed out"; the slot reconnects with backoff
        } else if (sent == 0 && now - s->conn->last_heard() >= period) {
          s->beat.sent_at.store(now.time_since_epoch().count(), std::memory_order_relaxed);
          ping.emplace_back(s->conn, &s->beat);
        }
      }
    }
    for (auto& c : dead) c->close(std::make_error_code(std::errc::timed_out));
    for (auto& [c, b] : ping) {
      message_buffer params(32);
      msgpack::packer<message_buffer>(params).pack_array(0);
      if (c->call("framex.ping", std::move(params), *b) == 0) b->sent_at.store(0, std::memory_order_relaxed);
    }
    heartbeat_timer.expires_after(period / 2);
    heartbeat_timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->beat();
    });
  }

  // The outcome of connecting `s`: ready with `conn`, or failed with `error`.
  // The calls that waited for it are sent on it, or routed again.
  void connected(slot& s, std::shared_ptr<net::client> conn, const failure& failed) {
    std::unique_lock lock(mutex);
    auto waiting = std::move(s.waiting);
    s.waiting.clear();
    if (conn == nullptr || stopping) {
      s.status = slot::state::down;
      s.last_error = stopping ? "the runtime is shutting down" : failed.what;
      s.last_code = failed.code;
      s.hello_refused = failed.unknown_method;
      s.retry_at = clock::now() + jittered(s.backoff);
      s.backoff = std::min<clock::duration>(s.backoff * 2, last_backoff);
      if (conn) conn->close(code_of(errc::cancelled));
    } else {
      s.status = slot::state::ready;
      s.conn = conn;
      s.backoff = first_backoff;
      s.unhealthy = false;
    }
    for (auto& call : waiting) {
      route(call, lock);
      if (!lock.owns_lock()) lock.lock();
    }
    if (conn != nullptr && !unrouted.empty()) {
      lock.unlock();
      reroute();
    }
  }

  void fill(stats_snapshot& out) {
    std::lock_guard lock(mutex);
    for (const auto& s : slots) {
      if (s->retired && !(s->conn && s->conn->is_open())) continue;  // gone
      worker_stats w;
      w.address = s->address;
      w.source = settings.discovery.starts_with("dns://") ? "dns" : etcd ? "etcd" : "static";
      const bool live = s->status == slot::state::ready && s->conn->is_open();
      w.state = live ? (s->conn->draining() ? "draining" : "ready")
                : s->status == slot::state::connecting ? "connecting"
                : s->unhealthy                         ? "unhealthy"
                                                       : "down";
      if (live) w.last_heard_ms = std::chrono::duration<double, std::milli>(clock::now() - s->conn->last_heard()).count();
      w.in_flight = s->conn ? s->conn->outstanding() : 0;
      w.bytes_sent = s->conn ? s->conn->bytes_sent() : 0;
      w.completed = s->completed.load();
      w.errors = s->errors.load();
      w.p50_ms = s->latency.quantile_ms(0.5);
      w.p99_ms = s->latency.quantile_ms(0.99);
      out.workers.push_back(std::move(w));
    }
  }

  void shutdown() noexcept {
    std::vector<call_ref> waiting;
    std::vector<std::shared_ptr<net::client>> conns;
    {
      std::lock_guard lock(mutex);
      if (stopping) return;
      stopping = true;
      waiting = std::move(unrouted);
      unrouted.clear();
      for (auto& s : slots) {
        waiting.insert(waiting.end(), s->waiting.begin(), s->waiting.end());
        s->waiting.clear();
        if (auto d = s->deadline.lock()) asio::post(d->get_executor(), [d] { d->expires_at(clock::time_point::min()); });
        if (s->conn) conns.push_back(s->conn);
      }
    }
    for (auto& call : waiting) call->finish(code_of(errc::cancelled), call->fn().name + ": the runtime is shutting down");
    for (auto& c : conns) c->close(code_of(errc::cancelled));
    asio::post(retry_timer.get_executor(), [self = shared_from_this()] { self->retry_timer.cancel(); });
    asio::post(heartbeat_timer.get_executor(), [self = shared_from_this()] { self->heartbeat_timer.cancel(); });
    asio::post(discovery_timer.get_executor(), [self = shared_from_this()] {
      self->discovery_timer.cancel();
      self->resolver.cancel();
    });
    if (etcd) etcd->stop();
    work.reset();
    // A caller's io_context is not waited for: this may run on its thread.
    for (auto& t : threads) t.join();
    threads.clear();
  }

  config::distributed_section settings;
  incoming_fn incoming;  // null: requests from workers are refused
  std::string token;  // empty: none
  std::shared_ptr<net::tls_context> tls;  // null: plaintext
  std::unique_ptr<asio::io_context> own_io;  // null: the caller's serves the connections
  asio::io_context& io;
  // Keeps the own io_context's threads running until shutdown; a caller's
  // io_context is kept running by the connections and calls alone.
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  std::mutex mutex;
  std::vector<std::unique_ptr<slot>> slots;
  std::vector<call_ref> unrouted;  // calls no slot could take yet
  std::map<std::string, resource_map> in_use;  // resources held by calls, by worker address
  std::atomic<bool> has_unrouted{false};
  asio::steady_timer retry_timer;  // wakes the unrouted calls; on its strand
  asio::steady_timer heartbeat_timer;  // see beat(); on its strand
  // DNS discovery (`dns_host` empty: static); the resolver and its timer share a strand.
  std::string dns_host, dns_port;
  std::chrono::milliseconds dns_refresh{5000};
  bool discovering = false;    // under the mutex: the first lookup (or etcd read) has not answered
  std::string discovery_error;  // under the mutex: why the last lookup (or etcd read) failed
  // etcd discovery: registrations followed on the discovery strand.
  std::shared_ptr<etcd::watcher> etcd;
  static constexpr auto etcd_patience = std::chrono::milliseconds(50);  // an unrouted call looks again this often
  asio::strand<asio::io_context::executor_type> discovery_strand = asio::make_strand(io);
  asio::ip::tcp::resolver resolver{discovery_strand};
  asio::steady_timer discovery_timer{discovery_strand};
  clock::time_point retry_at = clock::time_point::max();  // when it is set to fire
  std::size_t rotation = 0;
  bool stopping = false;
};

distributed_runtime::distributed_runtime(const config& cfg, asio::io_context* io, incoming_fn incoming)
    : impl_(std::make_shared<impl>(cfg, io, std::move(incoming))) {
  const auto& settings = cfg.distributed;
  if (impl_->own_io) {
    impl_->work.emplace(impl_->io.get_executor());
    for (std::size_t i = 0; i < std::max<std::size_t>(1, settings.io_threads); ++i) {
      impl_->threads.emplace_back([io = &impl_->io] { io->run(); });
    }
  }
  if (settings.heartbeat.count() > 0) asio::post(impl_->heartbeat_timer.get_executor(), [self = impl_] { self->beat(); });
  if (!impl_->dns_host.empty()) asio::post(impl_->discovery_strand, [self = impl_] { self->look_up(); });
  if (impl_->etcd) impl_->etcd->start();
}

distributed_runtime::~distributed_runtime() { shutdown(); }

void distributed_runtime::start(const function_entry& fn, message_buffer params, clock::duration timeout,
                                const resource_needs& needs, const asio::any_io_executor& caller, reply_handler handler,
                                bool notification) {
  impl_->start(fn, std::move(params), timeout, needs, caller, std::move(handler), notification);
}

void distributed_runtime::start(const function_entry& fn, message_buffer params, clock::duration timeout, placement where,
                                const asio::any_io_executor& caller, reply_handler handler, bool notification) {
  impl_->start(fn, std::move(params), timeout, std::move(where), caller, std::move(handler), notification);
}

void distributed_runtime::notify(const function_entry& fn, message_buffer params, std::string pin) {
  reply_handler ignore = asio::bind_executor(impl_->io.get_executor(), [](std::error_code, reply) {});
  impl_->start(fn, std::move(params), {}, placement{{}, std::move(pin)}, impl_->io.get_executor(), std::move(ignore), true);
}

std::vector<std::string> distributed_runtime::worker_addresses() const { return impl_->worker_addresses(); }

void distributed_runtime::shutdown() noexcept { impl_->shutdown(); }

void distributed_runtime::fill(stats_snapshot& out) const { impl_->fill(out); }

}  // namespace framex::detail
