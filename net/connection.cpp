// A connection's reading and its life: starting, reading and handing on
// whole messages, the one timer for every deadline, and closing. Writing is in
// connection_write.cpp, TLS in connection_tls.cpp.
#include "connection.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>

#include "connection_tls.hpp"

namespace framex::net {

namespace asio = boost::asio;

namespace {

std::string shown(std::chrono::milliseconds t) { return std::to_string(t.count()) + " ms"; }

bool is_tcp(const connection::socket_type& s) {
  boost::system::error_code ec;
  const int family = s.local_endpoint(ec).protocol().family();
  return family == AF_INET || family == AF_INET6;
}

// "address:port" of a TCP peer, "unix:PATH" of a unix socket (the path it
// was bound to, on either side).
std::string peer_name(const connection::socket_type& s) {
  boost::system::error_code ec;
  const auto remote = s.remote_endpoint(ec);
  if (ec) return {};
  const auto* sa = remote.data();
  if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
    asio::ip::tcp::endpoint at;
    std::memcpy(at.data(), sa, remote.size());
    return at.address().to_string() + ":" + std::to_string(at.port());
  }
  const auto path_of = [](const asio::generic::stream_protocol::endpoint& e) {
    const auto* un = reinterpret_cast<const sockaddr_un*>(e.data());
    const std::size_t n = e.size() > offsetof(sockaddr_un, sun_path) ? e.size() - offsetof(sockaddr_un, sun_path) : 0;
    return std::string(un->sun_path, strnlen(un->sun_path, n));
  };
  std::string path = path_of(remote);
  if (path.empty()) path = path_of(s.local_endpoint(ec));
  return "unix:" + path;
}
}  // namespace


connection::connection(socket_type socket, const connection_limits& limits, tls_setup tls)
    : socket_(std::move(socket)),
      executor_(socket_.get_executor()),
      limits_(limits),
      reader_(limits.read),
      timer_(executor_),
      last_activity_(clock::now().time_since_epoch().count()),
      last_heard_(last_activity_.load(std::memory_order_relaxed)),
      last_moved_(last_activity_.load(std::memory_order_relaxed)),
      greeted_(limits.greeting_timeout.count() == 0),
      started_(clock::now()) {
  limits_.write_cap = std::max(limits_.write_cap, limits_.write_high_water + limits_.read.max_bytes);
  if (tls.context) {
    tls_ = std::make_unique<tls_stream>(std::move(tls));
    handshaking_ = true;
    state_ = write_state::writing;  // the handshake writes; what is sent is held until it is done
  }
  peer_ = peer_name(socket_);
  if (!is_tcp(socket_)) return;
  boost::system::error_code ignored;
  socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
  // A peer whose host vanishes without closing (no FIN, no RST) is found dead
  // after about 20 s of silence instead of never: its calls get worker_lost.
  socket_.set_option(asio::socket_base::keep_alive(true), ignored);
  const int fd = socket_.native_handle();
  const int idle_s = 10, interval_s = 5, probes = 2;
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof interval_s);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
}

connection::~connection() = default;

void connection::reply(std::uint32_t msgid, message_buffer body, bool batch) {
  if (body.size() + 16 > max_message()) {
    return reply_error(msgid, errc::too_large,
                       "the result is " + std::to_string(body.size()) + " bytes; the limit is " +
                           std::to_string(max_message()));
  }
  prepend_response_header(body, msgid);
  send(std::move(body), batch);
}

void connection::reply_error(std::uint32_t msgid, int code, std::string_view type, std::string_view message) {
  send(error_response(msgid, code, type, message));
}

void connection::start() {
  asio::post(executor_, [self = shared_from_this()] {
    if (self->tls_) {
      self->handshake(nullptr, 0);
    } else {
      self->read();
    }
    self->watch();
  });
}

// Under mutex_: nothing waits to be written.
bool connection::nothing_queued() const { return queue_.empty() && (!tls_ || tls_->batch.size() == 0); }

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

void connection::read() {
  if (reading_ || read_paused_) return;
  {
    std::lock_guard lock(mutex_);
    if (state_ == write_state::closing || state_ == write_state::closed) return;
    if (limits_.pause_reading && (queued_bytes_ > limits_.write_high_water || shared_output_high())) {
      read_paused_ = true;  // flush resumes reading once the peer has read its answers
      return;
    }
  }
  reading_ = true;
  if (tls_) {
    socket_.async_read_some(asio::buffer(tls_->incoming.get(), tls_stream::incoming_size),
                            [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                              self->reading_ = false;
                              if (ec == asio::error::eof && !self->receiving()) return self->on_end_of_input();
                              if (ec) return self->do_close(ec);
                              self->tls_->engine.feed(self->tls_->incoming.get(), n);
                              self->decrypted(n);
                            });
    return;
  }
  char* room = reader_.prepare(read_chunk);
  socket_.async_read_some(asio::buffer(room, reader_.capacity()),
                          [self = shared_from_this(), room](const boost::system::error_code& ec, std::size_t n) {
                            self->reading_ = false;
                            if (ec == asio::error::eof && !self->receiving()) return self->on_end_of_input();
                            if (ec) return self->do_close(ec);
                            if (!self->peeked_ && n != 0 && self->serves()) {
                              self->peeked_ = true;
                              if (n >= 2 && room[0] == '\x16' && room[1] == '\x03') return self->answer_tls_hello();
                            }
                            self->reader_.commit(n);
                            self->arrived(n);
                          });
}

// On the strand: `n` bytes were added to the reader; hands on every message
// they complete, and reads on.
void connection::arrived(std::size_t n) {
  if (n != 0) {
    touch();
    last_heard_.store(last_activity_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    last_moved_.store(last_activity_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
  bool completed = false;
  struct uncork_at_exit {
    connection* c;
    bool corked = false;
    ~uncork_at_exit() {
      if (corked) c->uncork();
    }
  } cork_guard{this};
  try {
    received_message message;
    while (reader_.next(message)) {
      // More than one message in this read: what they answer goes out
      // together, the first one's answer included.
      if (!cork_guard.corked && (completed || reader_.partial() != 0)) cork_guard.corked = cork();
      completed = true;
      if (!is_open()) return;
      if (too_large_before_greeting(reader_.last_cost())) return;
      on_message(std::move(message), reader_.last_cost());
    }
  } catch (const std::system_error& e) {
    return do_close(e.code(), e.what());
  } catch (const std::exception& e) {
    return do_close(std::make_error_code(std::errc::protocol_error), e.what());
  }
  if (too_large_before_greeting(reader_.partial())) return;
  if (!count_partial()) {
    return do_close(make_error_code(errc::too_large), "messages still arriving on all connections would hold over " +
                                                          std::to_string(limits_.max_partial_bytes) + " bytes");
  }
  if (completed || !receiving()) message_started_ = {};
  if (receiving() && message_started_ == clock::time_point{}) message_started_ = clock::now();
  read();
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
bool connection::too_large_before_greeting(std::size_t bytes) {
  const std::size_t cap = limits_.max_bytes_before_greeting;
  if (cap == 0 || bytes <= cap || greeted_.load(std::memory_order_relaxed)) return false;
  do_close(make_error_code(errc::too_large), "a message of over " + std::to_string(cap) +
                                                 " bytes before the peer proved who it is");
  return true;
}

void connection::watch() {
  const auto message_timeout = limits_.message_timeout;
  const auto idle_timeout = limits_.idle_timeout;
  const bool awaiting_greeting = !greeted_.load(std::memory_order_relaxed);
  const auto handshake_timeout = handshaking_ ? limits_.handshake_timeout : std::chrono::milliseconds(0);
  if (message_timeout.count() == 0 && idle_timeout.count() == 0 && !awaiting_greeting && handshake_timeout.count() == 0) return;
  const auto now = clock::now();
  if (handshake_timeout.count() != 0 && now - started_ >= handshake_timeout) {
    return do_close(make_error_code(errc::timeout), "the TLS handshake did not complete in " + shown(handshake_timeout));
  }
  if (awaiting_greeting && now - started_ >= limits_.greeting_timeout) {
    return do_close(make_error_code(errc::unauthorized), "the peer did not prove who it is in " + shown(limits_.greeting_timeout));
  }
  if (message_timeout.count() != 0 && message_started_ != clock::time_point{} &&
      now - message_started_ >= message_timeout) {
    return do_close(make_error_code(errc::timeout), "a message did not arrive whole in " + shown(message_timeout));
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

void connection::close(std::error_code why, std::string detail) {
  asio::post(executor_, [self = shared_from_this(), why, d = std::move(detail)]() mutable { self->do_close(why, std::move(d)); });
}

std::string connection::close_detail() const {
  std::lock_guard lock(mutex_);
  return close_detail_;
}

void connection::do_close(std::error_code why, std::string detail) {
  {
    std::lock_guard lock(mutex_);
    if (!close_reason_ && close_detail_.empty()) close_detail_ = std::move(detail);
  }
  do_close(why);
}

void connection::close_when_drained() {
  {
    std::lock_guard lock(mutex_);
    if (state_ != write_state::idle || !nothing_queued()) {
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
    if (tls_) tls_->batch = message_buffer();
    requeue(0, queued_bytes_);
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
