// A connection's writing: the direct sender (a write from the caller's own
// thread when nothing is under way), the queue and its budgets (one
// connection's, and the one all of a worker's connections share), `flush` on
// the strand, the cork that gathers one read's answers into one write, and
// how much of what was written the peer has taken (for the heartbeat).
#include "connection.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>

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

}  // namespace

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

}  // namespace framex::net
