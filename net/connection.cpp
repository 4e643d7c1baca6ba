#include "connection.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <netinet/in.h>
#include <linux/sockios.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>

#include "connection_tls.hpp"

namespace framex::net {

namespace asio = boost::asio;

namespace {

// One non-blocking gathered write to `fd` of the pieces `each_piece` lists
// (it calls its argument with a pointer and a size for each, in order), from
// byte `skip` on, at most 64 pieces, retried when a signal interrupts it.
// Returns the bytes written, 0 when the socket takes none now, or -1 with
// errno set. Both senders use it: the direct one and `flush`.
template <class EachPiece>
ssize_t send_some(int fd, EachPiece&& each_piece, std::size_t skip) {
  std::array<iovec, 64> iov{};
  msghdr msg{};
  msg.msg_iov = iov.data();
  each_piece([&](const void* p, std::size_t n) {
    if (skip >= n) {
      skip -= n;
    } else if (msg.msg_iovlen < iov.size()) {
      iov[msg.msg_iovlen++] = iovec{static_cast<char*>(const_cast<void*>(p)) + skip, n - skip};
      skip = 0;
    }
  });
  ssize_t n = 0;
  do {
    n = ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
  return n;
}


// Drops the first `n` bytes of `buffers`, which hold more than that.
void drop_front(std::vector<asio::const_buffer>& buffers, std::size_t n) {
  auto first = buffers.begin();
  while (n >= first->size()) n -= (first++)->size();
  buffers.erase(buffers.begin(), first);
  buffers.front() += n;
}

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

void connection::watch_send_queue() {
  std::lock_guard lock(mutex_);
  int queued = 0;  // the socket closes only after state_ is closed, under this lock
  if (state_ == write_state::closed || ::ioctl(socket_.native_handle(), SIOCOUTQ, &queued) != 0 || queued < 0) return;
  // Written and no longer queued: taken by the peer. bytes_sent_ grows just
  // after a write, so this may fall short for a moment, never exceed.
  const std::uint64_t written = bytes_sent_.load(std::memory_order_relaxed);
  const std::uint64_t taken = written - std::min<std::uint64_t>(written, static_cast<std::uint64_t>(queued));
  if (taken > taken_seen_) {
    taken_seen_ = taken;
    last_moved_.store(clock::now().time_since_epoch().count(), std::memory_order_relaxed);
  }
}

bool connection::send(message_buffer message, bool batch) {
  std::unique_lock lock(mutex_);
  if (tls_ && state_ != write_state::closing && state_ != write_state::closed) {
    if (!tls_->ready || state_ != write_state::idle) {
      // Until the handshake is done, held; while another write is under way,
      // gathered with whatever else comes meanwhile, to be sealed as few
      // records when the strand writes it.
      const std::size_t size = message.size();
      if (tls_->ready) {
        message.for_each_segment([&](const char* p, std::size_t n) { tls_->batch.write(p, n); });
      } else {
        tls_->held.push_back(std::move(message));
      }
      count_queued(size, lock);
      return true;
    }
    message = seal(message);  // under the lock: records leave in the order they are made
  }
  return transmit(std::move(message), lock, batch);
}

// Under `lock` (of mutex_, which it may release): `n` more bytes wait to be
// written; above the cap the connection closes, as its peer does not read
// what it asked for.
void connection::count_queued(std::size_t n, std::unique_lock<std::mutex>& lock) {
  const bool had_output = queued_bytes_ != 0;
  requeue(n, 0);
  auto why = over_budget(had_output);
  if (why.empty()) return;
  // Over a budget: what waits is freed here and now, and the connection
  // refuses what its calls still send, rather than hold it until the strand
  // gets to the close.
  std::deque<message_buffer> dropped;
  dropped.swap(queue_);
  std::vector<message_buffer> dropped_held;
  message_buffer dropped_batch;
  if (tls_) {
    dropped_held.swap(tls_->held);
    std::swap(dropped_batch, tls_->batch);
  }
  std::size_t freed = 0;
  for (const auto& m : dropped) freed += m.size();
  for (const auto& m : dropped_held) freed += m.size();
  freed += dropped_batch.size();
  if (sent_of_front_ != 0 && !dropped.empty()) freed -= sent_of_front_;
  sent_of_front_ = 0;
  requeue(0, std::min(freed, queued_bytes_));
  if (!close_reason_) {
    close_reason_ = make_error_code(errc::too_large);
    close_detail_ = std::move(why);
  }
  const bool sending = state_ == write_state::direct;
  state_ = write_state::closing;
  lock.unlock();
  if (!sending) asio::post(executor_, [self = shared_from_this()] { self->finish_close(); });
}

std::string connection::over_budget(bool had_output) const {
  if (queued_bytes_ > limits_.write_cap) {
    return "answers unread: " + std::to_string(queued_bytes_) + " bytes queued, over the connection's limit of " +
           std::to_string(limits_.write_cap);
  }
  if (!limits_.queued_total || limits_.max_queued_total == 0 || queued_bytes_ == 0) return {};
  // One budget for the answers of every connection: past it, the connection
  // that was already behind goes, and so does one that cannot take a large
  // answer at once; a few small answers gathered for one write are not behind.
  constexpr std::size_t small_output = std::size_t{64} << 10;
  const std::size_t total = limits_.queued_total->load(std::memory_order_relaxed);
  if (total > limits_.max_queued_total && (had_output || queued_bytes_ > small_output)) {
    return "answers unread: the connections' queued answers hold " + std::to_string(total) +
           " bytes, over their shared limit of " + std::to_string(limits_.max_queued_total);
  }
  return {};
}

void connection::requeue(std::size_t added, std::size_t removed) noexcept {
  queued_bytes_ = queued_bytes_ + added - removed;
  if (limits_.queued_total && added != removed) {
    if (added > removed) {
      limits_.queued_total->fetch_add(added - removed, std::memory_order_relaxed);
    } else {
      limits_.queued_total->fetch_sub(removed - added, std::memory_order_relaxed);
    }
  }
}

bool connection::shared_output_high() const noexcept {
  return limits_.queued_total && limits_.max_queued_total != 0 && queued_bytes_ != 0 &&
         limits_.queued_total->load(std::memory_order_relaxed) > limits_.max_queued_total / 2;
}

// Under `lock` (of mutex_): writes `message` (ciphertext, over TLS) at once
// from this thread when nothing is being written, else queues it. A `batch`
// message is queued for the strand even then: what other threads send before
// the strand gets to it goes out in the same write.
bool connection::transmit(message_buffer message, std::unique_lock<std::mutex>& lock, bool batch) {
  switch (state_) {
    case write_state::closing:
    case write_state::closed: return false;
    case write_state::direct:
    case write_state::writing: {
      const std::size_t size = message.size();
      queue_.push_back(std::move(message));
      count_queued(size, lock);
      return true;
    }
    case write_state::idle: break;
  }
  if (batch) {
    state_ = write_state::writing;
    const std::size_t size = message.size();
    queue_.push_back(std::move(message));
    count_queued(size, lock);
    if (lock.owns_lock()) lock.unlock();
    asio::post(executor_, [self = shared_from_this()] { self->flush(); });
    return true;
  }
  state_ = write_state::direct;
  const int fd = socket_.native_handle();
  lock.unlock();

  // Nothing is being written: try the socket now, without a hop, in one
  // gathered write when the message refers to large parts of a value.
  std::size_t sent = 0;
  bool failed = false;
  const std::size_t total = message.size();
  while (sent < total) {
    const ssize_t n = send_some(fd, [&](const auto& piece) { message.for_each_segment(piece); }, sent);
    if (n <= 0) {
      failed = n < 0;
      break;
    }
    sent += static_cast<std::size_t>(n);
  }
  finish_direct(std::move(message), sent, failed);
  return true;
}

// The direct sender, done: hands what is left to the strand, or the close that
// was asked for meanwhile.
void connection::finish_direct(message_buffer rest, std::size_t sent, bool failed) {
  bytes_sent_.fetch_add(sent, std::memory_order_relaxed);
  if (sent == rest.size()) touch();
  std::unique_lock lock(mutex_);
  if (!failed && sent < rest.size() && state_ != write_state::closing) {
    const bool had_output = queued_bytes_ != 0;
    requeue(rest.size() - sent, 0);
    if (auto why = over_budget(had_output); !why.empty()) {
      requeue(0, rest.size() - sent);  // dropped, with what waits behind it
      std::deque<message_buffer> dropped;
      dropped.swap(queue_);
      std::size_t freed = 0;
      for (const auto& m : dropped) freed += m.size();
      requeue(0, std::min(freed, queued_bytes_));
      failed = true;
      if (!close_reason_) {
        close_reason_ = make_error_code(errc::too_large);
        close_detail_ = std::move(why);
      }
    } else {
      sent_of_front_ = sent;
      queue_.push_front(std::move(rest));
    }
  }
  enum { nothing, close_now, flush_queue } next = nothing;
  if (failed) {
    if (!close_reason_) close_reason_ = std::make_error_code(std::errc::broken_pipe);
    state_ = write_state::closing;
    next = close_now;
  } else if (state_ == write_state::closing) {
    next = close_now;
  } else if (!nothing_queued()) {
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
    if (tls_ && tls_->batch.size() != 0) {
      auto sealed = seal(tls_->batch);
      requeue(sealed.size(), tls_->batch.size());
      tls_->batch = message_buffer();
      queue_.push_back(std::move(sealed));
    }
    in_flight_.clear();
    for (auto& m : queue_) in_flight_.push_back(std::move(m));
    queue_.clear();
    buffers.reserve(in_flight_.size());
    for (auto& m : in_flight_) m.for_each_segment([&](const char* p, std::size_t n) { buffers.emplace_back(p, n); });
    drop_front(buffers, sent_of_front_);
    sent_of_front_ = 0;
  }
  // The socket most often takes it all at once: write it now. Waiting for the
  // reactor instead would arm a writable event for the socket that then wakes
  // every later wait of its io_context.
  std::size_t total = 0;
  for (const auto& b : buffers) total += b.size();
  const ssize_t n = send_some(
      socket_.native_handle(), [&](const auto& piece) { for (const auto& b : buffers) piece(b.data(), b.size()); }, 0);
  if (n < 0) return do_close(std::error_code(errno, std::system_category()));
  const auto sent = static_cast<std::size_t>(n);
  bytes_sent_.fetch_add(sent, std::memory_order_relaxed);
  if (sent == total) return wrote({}, sent);
  drop_front(buffers, sent);
  // bytes_sent_ follows each piece (watch_send_queue compares it with the
  // kernel's queue): the condition runs after every piece but the last.
  writing_counted_ = 0;
  const auto count_piece = [this](const boost::system::error_code& ec, std::size_t done) -> std::size_t {
    bytes_sent_.fetch_add(done - writing_counted_, std::memory_order_relaxed);
    writing_counted_ = done;
    return ec ? 0 : 65536;  // the piece asio::transfer_all asks for
  };
  asio::async_write(socket_, buffers, count_piece,
                    [self = shared_from_this(), sent](const boost::system::error_code& ec, std::size_t rest) {
                      self->bytes_sent_.fetch_add(rest - self->writing_counted_, std::memory_order_relaxed);
                      self->wrote(ec, sent + rest);
                    });
}

// On the strand: `n` bytes of what `flush` took are written, or writing failed.
void connection::wrote(const boost::system::error_code& ec, std::size_t n) {
  if (ec) {
    {
      std::lock_guard lock(mutex_);
      in_flight_.clear();  // what it held is freed now, not when the connection goes
    }
    return do_close(ec);
  }
  touch();
  bool drained = false, resume = false, more = false, close_now = false;
  {
    std::lock_guard lock(mutex_);
    in_flight_.clear();
    if (state_ != write_state::writing) return;  // closed meanwhile: nothing is queued any more
    requeue(0, n);
    if (nothing_queued()) {
      state_ = write_state::idle;
      drained = true;
      close_now = close_when_drained_;
    } else {
      more = true;
    }
    resume = queued_bytes_ <= limits_.write_high_water / 2;
  }
  if (close_now) return do_close(std::make_error_code(std::errc::connection_aborted));
  if (resume && read_paused_) {
    read_paused_ = false;
    read();
  }
  if (drained) on_writable();
  if (more) flush();
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

// On the strand: holds back writing (as if a write were under way) while the
// messages of one read are handed on; false when a write is under way anyway.
bool connection::cork() {
  std::lock_guard lock(mutex_);
  if (state_ != write_state::idle) return false;
  state_ = write_state::writing;
  return true;
}

// On the strand, after `cork`: writes what was sent meanwhile, in one go.
void connection::uncork() {
  bool close_now = false;
  {
    std::lock_guard lock(mutex_);
    if (state_ != write_state::writing) return;  // closed meanwhile
    if (nothing_queued()) {
      state_ = write_state::idle;
      close_now = close_when_drained_;
    }
  }
  if (close_now) return do_close(std::make_error_code(std::errc::connection_aborted));
  if (is_open()) flush();
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
