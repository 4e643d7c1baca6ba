// Distributed mode, caller's side: making a slot's connection (the dial, TLS
// and the hello within one deadline: `greet`, declared in greeting.hpp), what
// its outcome does to the calls that waited for it, and the heartbeat that
// finds a worker gone silent.
#include "caller/distributed_impl.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <iterator>
#include <optional>

#include "core/registry.hpp"
#include "framex/detail/actor.hpp"
#include "net/tls.hpp"
#include "protocol/hello.hpp"
#include "protocol/protocol.hpp"
#include "security/auth.hpp"

namespace framex::detail {

namespace asio = boost::asio;

namespace {

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

// Why the connection ended before the hello was answered, with the side
// that refused when TLS says so.
greeting_failure lost_before_hello(const std::error_code& why, bool over_tls) {
  if (net::is_certificate_refusal(why)) {
    return {"the caller refused the worker's certificate: " + why.message(), errc::unauthorized};
  }
  if (net::is_tls_error(why)) {
    if (why.message().find("alert") != std::string::npos) {
      return {"the worker refused the TLS handshake: " + why.message(), errc::unauthorized};
    }
    greeting_failure plaintext{"TLS failed: " + why.message() + " (does the worker speak TLS?)"};
    // A reply that is no TLS record ("wrong version number"): a plaintext
    // server, which no retry turns into a TLS one.
    plaintext.other_protocol = why.message().find("wrong version number") != std::string::npos;
    return plaintext;
  }
  std::string what = "the connection closed: " + why.message();
  if (!over_tls) what += " (does the worker require TLS?)";
  return {what};
}

// Sends `method` and waits for its answer until `deadline`: the answer's
// result, or a greeting_failure (the worker's error object decoded).
asio::awaitable<std::pair<net::received_message, greeting_failure>> ask(const std::shared_ptr<net::client>& conn,
                                                                        const char* method, message_buffer params,
                                                                        const std::shared_ptr<asio::steady_timer>& deadline,
                                                                        bool over_tls) {
  auto call = greeting_call::make(deadline);
  if (conn->call(method, std::move(params), *call) == 0)
    co_return std::pair{net::received_message{}, greeting_failure{"the connection closed"}};
  boost::system::error_code ec;
  co_await deadline->async_wait(asio::redirect_error(asio::use_awaitable, ec));
  if (!call->answered) {
    conn->close(code_of(errc::timeout));  // the connection completes the call as lost
    co_return std::pair{net::received_message{},
                        greeting_failure{std::string("no answer to ") + method + " within the connect timeout"}};
  }
  if (call->lost) co_return std::pair{net::received_message{}, lost_before_hello(call->lost, over_tls)};
  const msgpack::object& m = call->result.get();
  if (m.via.array.ptr[2].type != msgpack::type::NIL) {
    reply r;
    const errc code = decode_error_object(m.via.array.ptr[2], r);
    // A peer that is no framex worker answers with an error object of its own.
    co_return std::pair{net::received_message{}, greeting_failure{std::string(method) + " refused: " + r.error_message, code,
                                                                  r.foreign_error || code == errc::unknown_function}};
  }
  co_return std::pair{std::move(call->result), greeting_failure{}};
}

}  // namespace

// The hello (with a token, the challenge first: see src/security/auth.hpp),
// and what it tells about the worker.
asio::awaitable<std::pair<greeting_failure, greeted>> greet(const std::shared_ptr<net::client>& conn,
                                                            const std::shared_ptr<asio::steady_timer>& deadline,
                                                            const greeting_settings& self) {
  protocol::hello_request hello;
  hello.version = protocol::version;
  for (const auto* f : registered_functions()) hello.functions.emplace_back(f->name, f->signature);
  hello.max_message_size = self.max_message_size;
  hello.caller = caller_id();
  std::optional<proof> expected;  // what the worker must prove
  proof ours_proof;
  if (!self.token.empty()) {
    const nonce ours = random_nonce();
    message_buffer challenge(64);
    protocol::pack_challenge(challenge, ours);
    auto [answer, failed] = co_await ask(conn, protocol::challenge, std::move(challenge), deadline, self.over_tls);
    if (!failed.what.empty()) {
      if (failed.code == errc::unknown_function)
        co_return std::pair{
            greeting_failure{"the worker takes no token, so it cannot prove it holds this caller's", errc::unauthorized},
            greeted{}};
      co_return std::pair{std::move(failed), greeted{}};
    }
    const auto worker_nonce = protocol::read_challenge_answer(answer.get().via.array.ptr[3]);
    if (!worker_nonce)
      co_return std::pair{greeting_failure{std::string("malformed answer to ") + protocol::challenge}, greeted{}};
    ours_proof = caller_proof(self.token, *worker_nonce, ours);
    hello.proof = std::string_view(reinterpret_cast<const char*>(ours_proof.data()), ours_proof.size());
    expected = worker_proof(self.token, ours, *worker_nonce);
  }
  message_buffer params(64);
  protocol::pack(params, hello);
  auto [answer, failed] = co_await ask(conn, protocol::hello, std::move(params), deadline, self.over_tls);
  if (failed.unknown_method && self.mode == hello_mode::automatic && !expected) {
    // Any msgpack-RPC server: called by method name, with this side's limit, checking no signature.
    co_return std::pair{greeting_failure{}, greeted{{}, {}, {self.max_message_size}}};
  }
  if (failed.unknown_method)
    failed.what += " (a server that is no framex worker: set distributed.hello = \"auto\" or \"off\" to call it)";
  if (!failed.what.empty()) co_return std::pair{std::move(failed), greeted{}};
  auto told = protocol::read_hello_answer(answer.get().via.array.ptr[3]);
  if (!told) co_return std::pair{greeting_failure{"malformed hello answer"}, greeted{}};
  if (expected && (!told->proof || !proof_matches(*told->proof, *expected))) {
    co_return std::pair{
        greeting_failure{"the worker did not prove it holds the token (refused by the caller)", errc::unauthorized}, greeted{}};
  }
  if (!told->version_ok) co_return std::pair{greeting_failure{"the worker speaks another framex protocol version"}, greeted{}};
  std::unordered_map<std::string, std::string> mismatched;
  for (const auto* f : registered_functions()) {
    const auto it = told->functions.find(f->name);
    if (it != told->functions.end() && it->second != f->signature) mismatched.emplace(f->name, it->second);
  }
  const request_limits limits{
      std::min<std::size_t>(self.max_message_size, told->max_message_size.value_or(self.max_message_size)),
      told->max_message_elements.value_or(0), told->max_held_bytes.value_or(0)};
  greeted out{std::move(told->resources), std::move(mismatched), limits, true};
  co_return std::pair{greeting_failure{}, std::move(out)};
}

void distributed_runtime::impl::connect(slot& s) {
  s.status = slot::state::connecting;
  s.connecting_since = clock::now();
  s.framex = false;  // until this connection's hello is answered
  auto strand = asio::make_strand(io);
  asio::post(strand, [self = shared_from_this(), &s, strand] {
    asio::co_spawn(strand, connect_and_greet(self, &s, strand), asio::detached);
  });
}

asio::awaitable<void> distributed_runtime::impl::connect_and_greet(std::shared_ptr<impl> self, slot* s,
                                                                   asio::strand<asio::io_context::executor_type> strand) {
  greeting_failure failed;
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
    conn->drain_on(protocol::draining);
    if (self->incoming) conn->on_incoming(self->incoming);
    conn->on_drained([weak = std::weak_ptr<impl>(self)] {
      auto alive = weak.lock();
      if (alive && alive->has_unrouted.load(std::memory_order_relaxed)) alive->reroute();
    });
    conn->start();
    if (self->settings.hello != hello_mode::off) {
      const greeting_settings ours{self->token, self->tls != nullptr, self->settings.hello, self->settings.max_message_size};
      auto [why, told] = co_await greet(conn, deadline, ours);
      failed = std::move(why);
      if (failed.what.empty()) {
        std::lock_guard lock(self->mutex);
        s->resources = std::move(told.resources);
        s->mismatched = std::move(told.mismatched);
        s->limits = told.limits;
        s->framex = told.framex;
        if (told.framex) conn->cancel_with(protocol::cancel);
      }
    }
  } catch (const std::exception& e) {
    failed = greeting_failure{e.what()};
  }
  if (!failed.what.empty() && conn != nullptr) {
    conn->close(code_of(failed.code));  // a refused hello leaves nothing open
    conn.reset();
  }
  self->connected(*s, conn, failed);
}

void distributed_runtime::impl::unstick(std::string ready_address) {
  std::unique_lock lock(mutex);
  const auto ready = std::any_of(slots.begin(), slots.end(), [&](const auto& s) {
    return s->address == ready_address && s->status == slot::state::ready && s->conn->is_open() && !s->conn->draining();
  });
  if (!ready || stopping) return;
  std::vector<call_ref> moved;
  const auto now = clock::now();
  for (const auto& s : slots) {
    if (s->status != slot::state::connecting || s->address == ready_address || now - s->connecting_since < std::chrono::milliseconds(100))
      continue;
    moved.insert(moved.end(), std::make_move_iterator(s->waiting.begin()), std::make_move_iterator(s->waiting.end()));
    s->waiting.clear();
  }
  for (auto& call : moved) {  // to a ready connection (the router prefers one), or back to the waiting
    route(call, lock);
    if (!lock.owns_lock()) lock.lock();
  }
}

net::connection_limits distributed_runtime::impl::limits() const {
  net::connection_limits l;
  l.read.max_bytes = settings.max_message_size;
  l.read.max_elements = settings.max_message_elements;
  l.message_timeout = settings.message_timeout;
  l.pause_reading = false;  // answers are always read: calls wait instead (see pick)
  l.write_high_water = stalled_bytes;
  return l;
}

namespace {

// Sends the ping that `b` marked as sent.
void send_ping(net::client& c, heartbeat& b) {
  message_buffer params(32);
  msgpack::packer<message_buffer>(params).pack_array(0);
  if (c.call(protocol::ping, std::move(params), b) == 0) b.sent_at.store(0, std::memory_order_relaxed);
}

// How long a worker with calls outstanding may stay quiet, and then leave a
// probe unanswered, before it is suspect: several of its ping round trips, and
// never under a quarter second, which a busy machine's scheduling can take.
constexpr clock::duration suspect_floor = std::chrono::milliseconds(250);
constexpr int suspect_round_trips = 4;

}  // namespace

bool distributed_runtime::impl::suspect(slot& s, clock::time_point now) {
  if (!s.framex) return false;  // a stranger is never pinged
  const auto window = std::max(suspect_floor, suspect_round_trips * clock::duration(s.beat.round_trip.load(std::memory_order_relaxed)));
  if (now - s.conn->last_heard() < window) return false;
  auto sent = s.beat.sent_at.load(std::memory_order_relaxed);
  if (sent != 0) return now - clock::time_point(clock::duration(sent)) >= window;  // still unanswered: suspect
  // Quiet that long with calls waiting for it: ask. (Calls that timed out
  // meanwhile do not clear a suspicion: the ping stays unanswered.)
  if (s.conn->outstanding() != 0 && s.beat.sent_at.compare_exchange_strong(sent, now.time_since_epoch().count(), std::memory_order_relaxed)) {
    send_ping(*s.conn, s.beat);
  }
  return false;
}

void distributed_runtime::impl::beat() {
  const auto period = settings.heartbeat;
  std::vector<std::pair<std::shared_ptr<net::client>, heartbeat*>> ping;
  std::vector<std::shared_ptr<net::client>> dead;
  {
    std::lock_guard lock(mutex);
    if (stopping) return;
    const auto now = clock::now();
    for (auto& s : slots) {
      if (s->status != slot::state::ready || !s->framex || !s->conn->is_open()) continue;  // a stranger is never pinged
      s->conn->watch_send_queue();
      const auto sent = s->beat.sent_at.load(std::memory_order_relaxed);
      // Bytes moving either way are life: a large request being sent holds
      // the ping behind it, and the worker answers nothing until it has it all.
      if (sent != 0 && now - clock::time_point(clock::duration(sent)) >= period && now - s->conn->last_moved() >= period) {
        s->unhealthy = true;
        dead.push_back(s->conn);  // its calls fail as lost, "Connection timed out"; the slot reconnects with backoff
      } else if (sent == 0 && now - s->conn->last_moved() >= period) {
        s->beat.sent_at.store(now.time_since_epoch().count(), std::memory_order_relaxed);
        ping.emplace_back(s->conn, &s->beat);
      }
    }
  }
  for (auto& c : dead) c->close(std::make_error_code(std::errc::timed_out));
  for (auto& [c, b] : ping) send_ping(*c, *b);
  heartbeat_timer.expires_after(period / 2);
  heartbeat_timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (!ec) self->beat();
  });
}

void distributed_runtime::impl::connected(slot& s, std::shared_ptr<net::client> conn, const greeting_failure& failed) {
  std::unique_lock lock(mutex);
  auto waiting = std::move(s.waiting);
  s.waiting.clear();
  if (conn == nullptr || stopping) {
    s.status = slot::state::down;
    s.last_error = stopping ? "the runtime is shutting down" : failed.what;
    s.last_code = failed.code;
    s.hello_refused = failed.unknown_method || failed.other_protocol;
    s.retry_at = clock::now() + s.reconnect.next();
    if (conn) conn->close(code_of(errc::cancelled));
  } else {
    s.status = slot::state::ready;
    s.conn = conn;
    s.reconnect.reset();
    s.unhealthy = false;
    // A worker that accepts but never answers the hello must not hold the
    // calls waiting for it until the connect timeout.
    const bool others_wait = std::any_of(slots.begin(), slots.end(), [&](const auto& other) {
      return other->address != s.address && other->status == slot::state::connecting && !other->waiting.empty();
    });
    if (others_wait) {
      const auto patience = std::max<clock::duration>(std::chrono::milliseconds(100), 4 * (clock::now() - s.connecting_since));
      auto timer = std::make_shared<asio::steady_timer>(io, patience);
      timer->async_wait([weak = weak_from_this(), timer, address = s.address](const boost::system::error_code& ec) {
        if (const auto self = weak.lock(); self && !ec) self->unstick(address);
      });
    }
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

}  // namespace framex::detail
