#include "connection.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>

namespace framex::net {

namespace asio = boost::asio;

connection::connection(socket_type socket, std::size_t max_message)
    : socket_(std::move(socket)), executor_(socket_.get_executor()), max_message_(max_message), reader_(max_message) {
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

void connection::start() {
  asio::post(executor_, [self = shared_from_this()] { self->read(); });
}

bool connection::is_open() const {
  std::lock_guard lock(mutex_);
  return !closed_;
}

bool connection::send(message_buffer message) {
  std::unique_lock lock(mutex_);
  if (closed_) return false;
  if (writing_) {
    queue_.push_back(std::move(message));
    return true;
  }
  writing_ = true;
  direct_ = true;
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

  lock.lock();
  direct_ = false;
  if (sent < message.size() && !failed) {
    sent_of_front_ = sent;
    queue_.push_front(std::move(message));
  }
  const bool must_close = failed || close_pending_;
  if (must_close || queue_.empty()) writing_ = false;
  const bool must_flush = !must_close && !queue_.empty();
  lock.unlock();
  if (must_close) {
    asio::post(executor_, [self = shared_from_this(), why = close_reason_] {
      self->do_close(why ? why : std::make_error_code(std::errc::broken_pipe));
    });
  } else if (must_flush) {
    asio::post(executor_, [self = shared_from_this()] { self->flush(); });
  }
  return true;
}

// On the strand, owning the write side: writes everything queued in one go.
void connection::flush() {
  std::vector<asio::const_buffer> buffers;
  {
    std::lock_guard lock(mutex_);
    if (closed_) {
      writing_ = false;
      return;
    }
    in_flight_.clear();
    for (auto& m : queue_) in_flight_.push_back(std::move(m));
    queue_.clear();
    buffers.reserve(in_flight_.size());
    for (auto& m : in_flight_) buffers.emplace_back(m.data(), m.size());
    buffers.front() += sent_of_front_;
    sent_of_front_ = 0;
  }
  asio::async_write(socket_, buffers, [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
    if (ec) {
      {
        std::lock_guard lock(self->mutex_);
        self->writing_ = false;
      }
      return self->do_close(ec);
    }
    {
      std::lock_guard lock(self->mutex_);
      self->in_flight_.clear();
      if (self->queue_.empty()) {
        self->writing_ = false;
        return;
      }
    }
    self->flush();
  });
}

void connection::read() {
  constexpr std::size_t chunk = 64 * 1024;
  char* room = reader_.prepare(chunk);
  socket_.async_read_some(asio::buffer(room, reader_.capacity()),
                          [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                            if (ec) return self->do_close(ec);
                            self->reader_.commit(n);
                            try {
                              msgpack::object_handle message;
                              while (self->reader_.next(message)) {
                                if (!self->is_open()) return;
                                self->on_message(std::move(message));
                              }
                            } catch (const std::system_error& e) {
                              return self->do_close(e.code());
                            } catch (const std::exception&) {
                              return self->do_close(std::make_error_code(std::errc::protocol_error));
                            }
                            self->read();
                          });
}

void connection::close(std::error_code why) {
  asio::post(executor_, [self = shared_from_this(), why] { self->do_close(why); });
}

void connection::do_close(std::error_code why) {
  {
    std::lock_guard lock(mutex_);
    if (!closed_) close_reason_ = why;
    closed_ = true;
    if (direct_) {  // the direct sender posts do_close again when it is done
      close_pending_ = true;
      return;
    }
    queue_.clear();
  }
  boost::system::error_code ignored;
  socket_.shutdown(socket_type::shutdown_both, ignored);
  socket_.close(ignored);
  if (close_reported_) return;
  close_reported_ = true;
  on_close(close_reason_);
}

}  // namespace framex::net
