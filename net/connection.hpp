// One msgpack-RPC connection over TCP: a read loop that hands each message to
// the owner, and a thread-safe, coalescing writer.
//
// Writing. `send` may be called from any thread. When nothing is being written
// it tries the socket at once from the calling thread (a non-blocking send, so
// a call costs no hop to the I/O thread); whatever does not fit, and every
// message sent meanwhile, is queued and written by the I/O strand in one
// gathered write. Reading, closing and every other socket operation happen on
// the strand. The socket is closed only when no direct send is in progress, so
// a descriptor is never reused under a sender's feet.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/strand.hpp>

#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <system_error>
#include <vector>

#include "message.hpp"

namespace framex::net {

class connection : public std::enable_shared_from_this<connection> {
 public:
  using socket_type = boost::asio::ip::tcp::socket;

  /// `socket` must be bound to a strand of an io_context.
  connection(socket_type socket, std::size_t max_message);
  virtual ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Starts the read loop. Call once, after construction by make_shared.
  void start();

  /// Queues `message` for writing; false when the connection is closed (the
  /// message is dropped). Thread safety: any thread.
  bool send(message_buffer message);

  /// Closes the connection (asynchronously); `on_close` follows once.
  /// Thread safety: any thread.
  void close(std::error_code why);

  [[nodiscard]] bool is_open() const;
  [[nodiscard]] const socket_type::executor_type& executor() const noexcept { return executor_; }
  [[nodiscard]] std::size_t max_message() const noexcept { return max_message_; }

 protected:
  /// A complete message arrived. On the strand.
  virtual void on_message(msgpack::object_handle message) = 0;
  /// The connection ended; called once, on the strand.
  virtual void on_close(std::error_code why) = 0;

 private:
  void read();
  void flush();
  void do_close(std::error_code why);

  socket_type socket_;
  socket_type::executor_type executor_;
  std::size_t max_message_;
  reader reader_;

  mutable std::mutex mutex_;
  std::deque<message_buffer> queue_;
  std::vector<message_buffer> in_flight_;
  std::size_t sent_of_front_ = 0;  // bytes of queue_.front() a direct send already wrote
  bool writing_ = false;           // a direct send or a strand write owns the socket's write side
  bool direct_ = false;            // a direct send is in progress off the strand
  bool close_pending_ = false;     // close asked for while a direct send ran
  bool closed_ = false;            // no more sends accepted
  bool close_reported_ = false;
  std::error_code close_reason_;
};

}  // namespace framex::net
