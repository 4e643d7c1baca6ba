// Distributed mode, caller's side: making a slot's connection (the dial, TLS
// and the hello within one deadline), what its outcome does to the calls that
// waited for it, and the heartbeat that finds a worker gone silent.
#include "caller/distributed_impl.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include "protocol/protocol.hpp"

namespace framex::detail {

namespace asio = boost::asio;

void distributed_runtime::impl::connect(slot& s) {
  s.status = slot::state::connecting;
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
        s->limit = told.limit;
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

net::connection_limits distributed_runtime::impl::limits() const {
  net::connection_limits l;
  l.read.max_bytes = settings.max_message_size;
  l.read.max_elements = settings.max_message_elements;
  l.message_timeout = settings.message_timeout;
  l.pause_reading = false;  // answers are always read: calls wait instead (see pick)
  l.write_high_water = stalled_bytes;
  return l;
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
    if (c->call(protocol::ping, std::move(params), *b) == 0) b->sent_at.store(0, std::memory_order_relaxed);
  }
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
    s.hello_refused = failed.unknown_method;
    s.retry_at = clock::now() + s.reconnect.next();
    if (conn) conn->close(code_of(errc::cancelled));
  } else {
    s.status = slot::state::ready;
    s.conn = conn;
    s.reconnect.reset();
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

}  // namespace framex::detail
