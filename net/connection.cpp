#include "connection.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "tls.hpp"

namespace framex::net {

namespace asio = boost::asio;

struct connection::tls_stream {
  tls_stream(socket_type& socket, tls_setup s) : setup(std::move(s)), stream(socket, setup.context->native()) {}
  tls_setup setup;
  asio::ssl::stream<socket_type&> stream;
  std::vector<char> staging;  // small messages gathered into one write
};

connection::connection(socket_type socket, const connection_limits& limits, tls_setup tls)
    : socket_(std::move(socket)),
      executor_(socket_.get_executor()),
      limits_(limits),
      reader_(limits.read),
      timer_(executor_),
      last_activity_(clock::now().time_since_epoch().count()),
      greeted_(limits.greeting_timeout.count() == 0),
      started_(clock::now()) {
  limits_.write_cap = std::max(limits_.write_cap, limits_.write_high_water + limits_.read.max_bytes);
  boost::system::error_code ignored;
  if (const auto at = socket_.remote_endpoint(ignored); !ignored) peer_ = at.address().to_string() + ":" + std::to_string(at.port());
  socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
  // A peer whose host vanishes without closing (no FIN, no RST) is found dead
  // after about 20 s of silence instead of never: its calls get worker_lost.
  socket_.set_option(asio::socket_base::keep_alive(true), ignored);
  const int fd = socket_.native_handle();
  const int idle_s = 10, interval_s = 5, probes = 2;
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof interval_s);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
  if (tls.context) {
    tls_ = std::make_unique<tls_stream>(socket_, std::move(tls));
    handshaking_ = true;
    state_ = write_state::writing;  // what is sent waits for the handshake
  }
}

connection::~connection() = default;

void connection::start() {
  asio::post(executor_, [self = shared_from_this()] {
    if (self->tls_) {
      self->handshake();
    } else {
      self->read();
    }
    self->watch();
  });
}

// On the strand, in `writing` with nothing in flight. A server first looks at
// the peer's first byte: anything but a TLS handshake record is a plaintext
// peer, turned away at once rather than when the handshake times out (OpenSSL
// would read some as the length of an old-style hello and wait for it).
void connection::handshake() {
  auto& t = *tls_;
  const bool client = t.setup.context->side() == tls_context::role::client;
  if (client) {
    t.setup.context->prepare_client(t.stream.native_handle(), t.setup.host, t.setup.session_key);
  } else if (!peeked_) {
    return socket_.async_wait(socket_type::wait_read, [self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec) return self->do_close(ec);
      unsigned char first = 0;
      const ssize_t n = ::recv(self->socket_.native_handle(), &first, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n == 0) return self->do_close(std::make_error_code(std::errc::connection_aborted));
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        return self->do_close(std::error_code(errno, std::system_category()));
      }
      if (n == 1 && first != 0x16) return self->do_close(not_tls());  // 0x16: a handshake record
      self->peeked_ = n == 1;
      self->handshake();  // or, woken for nothing, waits again
    });
  }
  t.stream.async_handshake(client ? asio::ssl::stream_base::client : asio::ssl::stream_base::server,
                           [self = shared_from_this()](const boost::system::error_code& ec) {
                             self->handshaking_ = false;
                             if (ec) {
                               // A certificate this side refused says why; else the TLS error does.
                               const std::error_code refused = verify_failure(self->tls_->stream.native_handle());
                               return self->do_close(refused ? refused : std::error_code(ec));
                             }
                             self->tls_resumed_.store(SSL_session_reused(self->tls_->stream.native_handle()) == 1,
                                                      std::memory_order_relaxed);
                             bool pending = false, close_now = false;
                             {
                               std::lock_guard lock(self->mutex_);
                               if (self->state_ != write_state::writing) return;  // closed meanwhile
                               pending = !self->queue_.empty();
                               if (!pending) {
                                 self->state_ = write_state::idle;
                                 close_now = self->close_when_drained_;
                               }
                             }
                             if (close_now) return self->do_close(std::make_error_code(std::errc::connection_aborted));
                             self->read();
                             if (pending) self->flush();
                           });
}

bool connection::is_open() const {
  std::lock_guard lock(mutex_);
  return state_ != write_state::closing && state_ != write_state::closed;
}

std::size_t connection::queued_bytes() const {
  std::lock_guard lock(mutex_);
  return queued_bytes_;
}

connection::clock::time_point connection::last_activity() const noexcept {
  return clock::time_point(clock::duration(last_activity_.load(std::memory_order_relaxed)));
}

void connection::touch() noexcept {
  last_activity_.store(clock::now().time_since_epoch().count(), std::memory_order_relaxed);
}

bool connection::send(message_buffer message) {
  std::unique_lock lock(mutex_);
  switch (state_) {
    case write_state::closing:
    case write_state::closed: return false;
    case write_state::direct:
    case write_state::writing: {
      queued_bytes_ += message.size();
      queue_.push_back(std::move(message));
      if (queued_bytes_ > limits_.write_cap) {
        lock.unlock();
        close(make_error_code(errc::too_large));  // the peer does not read what it asked for
      }
      return true;
    }
    case write_state::idle: break;
  }
  if (tls_) {  // the strand writes: at once when this is it (a worker's async function answering)
    state_ = write_state::writing;
    queued_bytes_ += message.size();
    queue_.push_back(std::move(message));
    lock.unlock();
    const auto* strand = executor_.target<asio::strand<asio::io_context::executor_type>>();
    if (strand != nullptr && strand->running_in_this_thread()) {
      flush();
    } else {
      asio::post(executor_, [self = shared_from_this()] { self->flush(); });
    }
    return true;
  }
  state_ = write_state::direct;
  const int fd = socket_.native_handle();
  lock.unlock();

  // Nothing is being written: try the socket now, without a hop.
  std::size_t sent = 0;
  bool failed = false;
  while (sent < message.size()) {
    const ssize_t n = ::send(fd, message.data() + sent, message.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      failed = n < 0 && errno != EAGAIN && errno != EWOULDBLOCK;
      break;
    }
  }
  finish_direct(std::move(message), sent, failed);
  return true;
}

// The direct sender, done: hands what is left to the strand, or the close that
// was asked for meanwhile.
void connection::finish_direct(message_buffer rest, std::size_t sent, bool failed) {
  if (sent == rest.size()) touch();
  std::unique_lock lock(mutex_);
  if (!failed && sent < rest.size()) {
    sent_of_front_ = sent;
    queued_bytes_ += rest.size() - sent;
    queue_.push_front(std::move(rest));
  }
  enum { nothing, close_now, flush_queue } next = nothing;
  if (failed) {
    if (!close_reason_) close_reason_ = std::make_error_code(std::errc::broken_pipe);
    state_ = write_state::closing;
    next = close_now;
  } else if (state_ == write_state::closing) {
    next = close_now;
  } else if (!queue_.empty()) {
    state_ = write_state::writing;
    next = flush_queue;
  } else {
    state_ = write_state::idle;
    if (close_when_drained_) {
      state_ = write_state::closing;
      next = close_now;
    }
  }
  lock.unlock();
  if (next == close_now) {
    asio::post(executor_, [self = shared_from_this()] { self->finish_close(); });
  } else if (next == flush_queue) {
    asio::post(executor_, [self = shared_from_this()] { self->flush(); });
  }
}

// On the strand, in `writing`: writes everything queued in one go.
void connection::flush() {
  std::vector<asio::const_buffer> buffers;
  {
    std::lock_guard lock(mutex_);
    if (state_ != write_state::writing) return;
    in_flight_.clear();
    for (auto& m : queue_) in_flight_.push_back(std::move(m));
    queue_.clear();
    buffers.reserve(in_flight_.size());
    for (auto& m : in_flight_) buffers.emplace_back(m.data(), m.size());
    buffers.front() += sent_of_front_;
    sent_of_front_ = 0;
  }
  auto written = [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
    if (ec) return self->do_close(ec);
    self->touch();
    bool drained = false, resume = false, more = false, close_now = false;
    {
      std::lock_guard lock(self->mutex_);
      self->in_flight_.clear();
      if (self->state_ != write_state::writing) return;  // closed meanwhile: nothing is queued any more
      self->queued_bytes_ -= n;
      if (self->queue_.empty()) {
        self->state_ = write_state::idle;
        drained = true;
        close_now = self->close_when_drained_;
      } else {
        more = true;
      }
      resume = self->queued_bytes_ <= self->limits_.write_high_water / 2;
    }
    if (close_now) return self->do_close(std::make_error_code(std::errc::connection_aborted));
    if (resume && self->read_paused_) {
      self->read_paused_ = false;
      self->read();
    }
    if (drained) self->on_writable();
    if (more) self->flush();
  };
  if (!tls_) return asio::async_write(socket_, buffers, std::move(written));
  // One SSL write per buffer would make a record (and a send) of each small message.
  constexpr std::size_t gather_limit = 256 * 1024;
  std::size_t total = 0;
  for (const auto& b : buffers) total += b.size();
  if (buffers.size() > 1 && total <= gather_limit) {
    auto& staging = tls_->staging;
    staging.clear();
    for (const auto& b : buffers) staging.insert(staging.end(), static_cast<const char*>(b.data()), static_cast<const char*>(b.data()) + b.size());
    buffers.assign(1, asio::buffer(staging));
  }
  asio::async_write(tls_->stream, buffers, std::move(written));
}

void connection::read() {
  if (reading_ || read_paused_) return;
  {
    std::lock_guard lock(mutex_);
    if (state_ == write_state::closing || state_ == write_state::closed) return;
    if (limits_.pause_reading && queued_bytes_ > limits_.write_high_water) {
      read_paused_ = true;  // flush resumes reading once the peer has read its answers
      return;
    }
  }
  constexpr std::size_t chunk = 64 * 1024;
  char* room = reader_.prepare(chunk);
  reading_ = true;
  auto arrived = [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
    self->reading_ = false;
    // Over TLS, a peer that closes without close_notify truncates the stream.
    const bool ended = ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
    if (ended && !self->receiving()) return self->on_end_of_input();
    if (ec) return self->do_close(ec);
    self->reader_.commit(n);
    self->touch();
    bool completed = false;
    try {
      msgpack::object_handle message;
      while (self->reader_.next(message)) {
        completed = true;
        if (!self->is_open()) return;
        self->on_message(std::move(message), self->reader_.last_cost());
      }
    } catch (const std::system_error& e) {
      return self->do_close(e.code());
    } catch (const std::exception&) {
      return self->do_close(std::make_error_code(std::errc::protocol_error));
    }
    if (!self->count_partial()) return self->do_close(make_error_code(errc::too_large));
    if (completed || !self->receiving()) self->message_started_ = {};
    if (self->receiving() && self->message_started_ == clock::time_point{}) self->message_started_ = clock::now();
    self->read();
  };
  const auto room_buffer = asio::buffer(room, reader_.capacity());
  if (tls_) return tls_->stream.async_read_some(room_buffer, std::move(arrived));
  socket_.async_read_some(room_buffer, std::move(arrived));
}

// On the strand: counts this connection's partial message in the shared
// total; false if that would go over the limit.
bool connection::count_partial() {
  if (!limits_.partial_bytes || !is_open()) return true;  // a closed one has given its share back
  const std::size_t now = reader_.partial();
  if (now < counted_partial_) {
    limits_.partial_bytes->fetch_sub(counted_partial_ - now, std::memory_order_relaxed);
    counted_partial_ = now;
    return true;
  }
  const std::size_t grow = now - counted_partial_;
  const std::size_t total = limits_.partial_bytes->fetch_add(grow, std::memory_order_relaxed) + grow;
  counted_partial_ = now;
  return limits_.max_partial_bytes == 0 || total <= limits_.max_partial_bytes;
}

// On the strand: one timer for every deadline, re-armed from timestamps so the
// read path never touches it.
void connection::watch() {
  const auto message_timeout = limits_.message_timeout;
  const auto idle_timeout = limits_.idle_timeout;
  const bool awaiting_greeting = !greeted_.load(std::memory_order_relaxed);
  const auto handshake_timeout = handshaking_ ? limits_.handshake_timeout : std::chrono::milliseconds(0);
  if (message_timeout.count() == 0 && idle_timeout.count() == 0 && !awaiting_greeting && handshake_timeout.count() == 0) return;
  const auto now = clock::now();
  if (handshake_timeout.count() != 0 && now - started_ >= handshake_timeout) {
    return do_close(make_error_code(errc::timeout));  // a TLS handshake that never completes
  }
  if (awaiting_greeting && now - started_ >= limits_.greeting_timeout) {
    return do_close(make_error_code(errc::unauthorized));  // never proved who it is
  }
  if (message_timeout.count() != 0 && message_started_ != clock::time_point{} &&
      now - message_started_ >= message_timeout) {
    return do_close(make_error_code(errc::timeout));  // a message that never finishes arriving
  }
  if (idle_timeout.count() != 0 && !receiving() && now - last_activity() >= idle_timeout && idle() &&
      queued_bytes() == 0) {
    return do_close(make_error_code(errc::timeout));
  }
  auto period = std::chrono::milliseconds::max();
  for (const auto t : {message_timeout, idle_timeout, handshake_timeout,
                       awaiting_greeting ? limits_.greeting_timeout : std::chrono::milliseconds(0)}) {
    if (t.count() != 0) period = std::min(period, t);
  }
  timer_.expires_after(std::max<clock::duration>(period / 4, std::chrono::milliseconds(10)));
  timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    if (!ec && self->is_open()) self->watch();
  });
}

void connection::close(std::error_code why) {
  asio::post(executor_, [self = shared_from_this(), why] { self->do_close(why); });
}

void connection::close_when_drained() {
  {
    std::lock_guard lock(mutex_);
    if (state_ != write_state::idle || !queue_.empty()) {
      close_when_drained_ = true;  // the writer closes when it drains
      return;
    }
  }
  do_close(std::make_error_code(std::errc::connection_aborted));
}

void connection::do_close(std::error_code why) {
  {
    std::lock_guard lock(mutex_);
    if (!close_reason_) close_reason_ = why;
    if (state_ == write_state::closed || state_ == write_state::closing) return;  // finish_close is coming
    const bool sending = state_ == write_state::direct;
    state_ = write_state::closing;
    if (sending) return;  // the direct sender posts finish_close when it is done
  }
  finish_close();
}

// On the strand, in `closing`, with no direct sender.
void connection::finish_close() {
  {
    std::lock_guard lock(mutex_);
    state_ = write_state::closed;
    queue_.clear();
    queued_bytes_ = 0;
  }
  if (limits_.partial_bytes) limits_.partial_bytes->fetch_sub(counted_partial_, std::memory_order_relaxed);
  counted_partial_ = 0;
  boost::system::error_code ignored;
  timer_.cancel();
  socket_.shutdown(socket_type::shutdown_both, ignored);
  socket_.close(ignored);
  on_close(close_reason_);
}

}  // namespace framex::net
