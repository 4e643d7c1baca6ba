// One msgpack-RPC connection over TCP or a unix socket: a read loop that hands each message to
// the owner, and a thread-safe, coalescing writer, each bounded.
//
// Writing. `send` may be called from any thread. When nothing is being written
// it tries the socket at once from the calling thread (a non-blocking send, so
// a call costs no hop to the I/O thread); whatever does not fit, and every
// message sent meanwhile, is queued and written by the I/O strand in one
// gathered write. The write side is in exactly one `write_state` at a time,
// changed under `mutex_`:
//
//   idle ──send──▶ direct ──all sent──▶ idle
//                    │ └──rest queued──▶ writing ──queue empty──▶ idle
//                    └──close asked meanwhile──▶ closing ──sender done──▶ closed
//   idle / writing ──close──▶ closing ──▶ closed (at once, on the strand)
//
// The socket is closed only outside `direct`, so a descriptor is never reused
// under a sender's feet; `on_close` is reported once, when `closed` is entered.
// A sender sees `closing` and `closed` alike: the message is refused.
//
// Bounds. Output queued above `write_high_water` pauses reading (a peer that
// does not read its answers gets no new work read from it) until the queue
// drains below half of it; above `write_cap` the connection closes. The output
// queued by all connections sharing `queued_total` has one budget too: above
// half of it a connection with output waiting reads no new work, and above it
// a connection closes that already had output waiting or now has more than
// 64 KiB waiting. A message
// must arrive whole within `message_timeout` of its first byte; a connection
// that the owner says is idle closes after `idle_timeout` without traffic, and
// one the owner has not marked greeted closes `greeting_timeout` after it began.
// The partly received messages of all connections sharing `partial_bytes` are
// bounded together.
// Reading, timers and closing happen on the strand.
//
// TLS. Given a `tls_setup`, the connection first completes the TLS handshake
// (within `handshake_timeout`); messages sent meanwhile are held. Then a
// sender encrypts its message under the write lock (so records leave in the
// order they are made) and writes the ciphertext as above, from its own
// thread; the strand reads and decrypts.
#pragma once

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "message.hpp"

namespace framex::net {

class tls_context;

/// What one connection may make the process hold, and for how long.
struct connection_limits {
  read_limits read;
  /// Queued output bytes above which reading pauses (if `pause_reading`).
  std::size_t write_high_water = std::size_t{4} << 20;
  bool pause_reading = true;
  /// Queued output bytes above which the connection closes (at least one
  /// largest message above the high-water mark).
  std::size_t write_cap = std::size_t{64} << 20;
  /// Shared by the connections of one server: the output bytes they have
  /// queued together, bounded by `max_queued_total` (see the top of this
  /// file). Null: no shared limit.
  std::shared_ptr<std::atomic<std::size_t>> queued_total;
  std::size_t max_queued_total = 0;
  /// A message's bytes must all arrive within this time; zero: no limit.
  std::chrono::milliseconds message_timeout{0};
  /// An idle connection (see `connection::idle`) closes after this long without
  /// traffic; zero: never.
  std::chrono::milliseconds idle_timeout{0};
  /// A connection the owner has not marked `greeted()` this long after it
  /// started closes (a peer that never authenticates); zero: no limit.
  std::chrono::milliseconds greeting_timeout{0};
  /// Until the owner marks it `greeted()`, a message (as `reader::last_cost`
  /// counts it, or the part of it that has arrived) larger than this closes
  /// the connection: a peer that has not proved who it is cannot make the
  /// process hold large messages. Zero: no such limit.
  std::size_t max_bytes_before_greeting = 0;
  /// A TLS handshake must complete this long after the connection started;
  /// zero: no limit of its own.
  std::chrono::milliseconds handshake_timeout{0};
  /// Shared by the connections of one server: the bytes of their partly
  /// received messages. A connection whose message would take the total above
  /// `max_partial_bytes` closes (`too_large`). Null: no shared limit.
  std::shared_ptr<std::atomic<std::size_t>> partial_bytes;
  std::size_t max_partial_bytes = 0;
};

/// How a connection speaks TLS (net/tls.hpp). No context: plaintext.
struct tls_setup {
  std::shared_ptr<tls_context> context;
  /// Client: the host name or IP address dialled, which the server's
  /// certificate must name, and where the sessions it is given are kept.
  std::string host;
  std::string session_key;
};

class connection : public std::enable_shared_from_this<connection> {
 public:
  /// TCP or a unix domain socket.
  using socket_type = boost::asio::generic::stream_protocol::socket;
  using clock = std::chrono::steady_clock;

  /// `socket` must be bound to a strand of an io_context.
  connection(socket_type socket, const connection_limits& limits, tls_setup tls = {});
  virtual ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  /// Starts the read loop. Call once, after construction by make_shared.
  void start();

  /// Queues `message` for writing; false when the connection is closed (the
  /// message is dropped). `batch`: more messages are likely to follow from
  /// other threads soon, so rather than write it from this thread at once,
  /// the strand writes it together with them. Thread safety: any thread.
  bool send(message_buffer message, bool batch = false);

  /// Sends `[1, msgid, nil, result]`; `body` holds the packed result after
  /// 16 bytes of room. A result over the size limit is answered with
  /// `too_large` instead. `batch` as for `send`. Thread safety: any thread.
  void reply(std::uint32_t msgid, message_buffer body, bool batch = false);
  /// Sends `[1, msgid, {code, type, message}, nil]`. Thread safety: any thread.
  void reply_error(std::uint32_t msgid, int code, std::string_view type, std::string_view message);
  /// The same for an error framex raises itself: its type is `detail::wire_type(code)`.
  void reply_error(std::uint32_t msgid, errc code, std::string_view message) {
    reply_error(msgid, static_cast<int>(code), detail::wire_type(code), message);
  }

  /// Closes the connection (asynchronously); `on_close` follows once.
  /// Thread safety: any thread.
  void close(std::error_code why);
  /// The same, saying in words why this side closes (see `close_detail`).
  void close(std::error_code why, std::string detail);
  /// Why this side closed the connection, in words, when it did so for a
  /// limit or a timeout; empty otherwise. Thread safety: any thread.
  [[nodiscard]] std::string close_detail() const;

  /// Closes once every queued byte is written (at once if none is). On the strand.
  void close_when_drained();

  /// The peer has done what `greeting_timeout` waits for. Thread safety: any thread.
  void greeted() noexcept { greeted_.store(true, std::memory_order_relaxed); }

  [[nodiscard]] bool is_open() const;
  /// Output bytes queued and not yet written.
  [[nodiscard]] std::size_t queued_bytes() const;
  /// When a message was last read or written.
  [[nodiscard]] clock::time_point last_activity() const noexcept;
  /// Bytes written to the socket since the connection opened.
  [[nodiscard]] std::uint64_t bytes_sent() const noexcept { return bytes_sent_.load(std::memory_order_relaxed); }
  /// When bytes last arrived from the peer (or the connection began): how long
  /// it has been silent, whatever was written to it.
  [[nodiscard]] clock::time_point last_heard() const noexcept {
    return clock::time_point(clock::duration(last_heard_.load(std::memory_order_relaxed)));
  }
  /// When bytes last moved either way: arrived from the peer, or were taken
  /// by it, as `watch_send_queue` last saw. A connection sending a large
  /// message is alive though its peer says nothing until it has all of it;
  /// bytes merely written (into the kernel's queue) are not life: they are
  /// written to a vanished peer too.
  [[nodiscard]] clock::time_point last_moved() const noexcept {
    return clock::time_point(clock::duration(last_moved_.load(std::memory_order_relaxed)));
  }
  /// Looks at the socket's send queue (SIOCOUTQ: written, not yet taken by
  /// the peer): when the peer took more than at the last look, bytes moved.
  /// Any thread.
  void watch_send_queue();
  [[nodiscard]] const socket_type::executor_type& executor() const noexcept { return executor_; }
  [[nodiscard]] std::size_t max_message() const noexcept { return limits_.read.max_bytes; }
  /// The peer's "address:port" (or "unix:PATH" of the socket), as it was when
  /// the connection began.
  [[nodiscard]] const std::string& peer() const noexcept { return peer_; }
  /// True once a TLS handshake resumed an earlier session (no certificates
  /// were exchanged).
  [[nodiscard]] bool tls_resumed() const noexcept { return tls_resumed_.load(std::memory_order_relaxed); }

 protected:
  /// A complete message arrived; `cost` estimates the memory it holds. On the strand.
  virtual void on_message(received_message message, std::size_t cost) = 0;
  /// The connection ended; called once, on the strand.
  virtual void on_close(std::error_code why) = 0;
  /// The peer stopped sending (half-close); by default the connection closes.
  /// On the strand.
  virtual void on_end_of_input() { do_close(std::make_error_code(std::errc::connection_aborted)); }
  /// True when nothing is owed to the peer, so `idle_timeout` may close it.
  [[nodiscard]] virtual bool idle() const { return true; }
  /// True for a server's side: a plaintext one answers a TLS hello (see
  /// answer_tls_hello).
  [[nodiscard]] virtual bool serves() const { return false; }
  /// The output queue drained below the high-water mark. Any thread, no lock held.
  virtual void on_writable() {}
  /// True while a message is partly received.
  [[nodiscard]] bool receiving() const noexcept { return reader_.partial() != 0; }

  /// Closes now; on the strand.
  void do_close(std::error_code why);

 private:
  enum class write_state : std::uint8_t { idle, direct, writing, closing, closed };

  struct tls_stream;

  void handshake(const char* in, std::size_t n);
  void answer_tls_hello();
  void read_handshake();
  void handshake_done();
  message_buffer seal(const message_buffer& plain);
  [[nodiscard]] bool nothing_queued() const;
  bool transmit(message_buffer message, std::unique_lock<std::mutex>& lock, bool batch = false);
  void count_queued(std::size_t n, std::unique_lock<std::mutex>& lock);
  // Under mutex_: why the output queued now is past a budget; empty when it is not.
  [[nodiscard]] std::string over_budget(bool had_output) const;
  // Under mutex_: this connection's queued output, and the server's, change by `added - removed`.
  void requeue(std::size_t added, std::size_t removed) noexcept;
  // Under mutex_: the server's queued output is so high that this connection, with output waiting, reads no new work.
  [[nodiscard]] bool shared_output_high() const noexcept;
  void read();
  void decrypted(std::size_t n);
  void arrived(std::size_t n);
  bool cork();
  void uncork();
  void flush();
  void wrote(const boost::system::error_code& ec, std::size_t n);
  void finish_direct(message_buffer rest, std::size_t sent, bool failed);
  void finish_close();
  void do_close(std::error_code why, std::string detail);
  void watch();
  // On the strand: closes the connection, and says so, when `bytes` of a
  // message are more than a peer that has not proved itself may send.
  bool too_large_before_greeting(std::size_t bytes);
  void touch() noexcept;
  bool count_partial();

  socket_type socket_;
  std::unique_ptr<tls_stream> tls_;  // null: plaintext
  std::string peer_;
  socket_type::executor_type executor_;
  connection_limits limits_;
  reader reader_;
  boost::asio::steady_timer timer_;  // message deadline and idle timeout
  bool read_paused_ = false;         // strand only
  bool reading_ = false;             // strand only: a read is outstanding
  clock::time_point message_started_{};  // strand only: first byte of a partial message
  std::size_t counted_partial_ = 0;       // strand only: what this adds to limits_.partial_bytes
  std::atomic<clock::rep> last_activity_;
  std::atomic<clock::rep> last_heard_;
  std::atomic<clock::rep> last_moved_;
  std::uint64_t taken_seen_ = 0;  // under mutex_: the most the peer was seen to have taken (watch_send_queue)
  std::atomic<std::uint64_t> bytes_sent_{0};
  std::size_t writing_counted_ = 0;  // strand only: what bytes_sent_ has of the async write under way
  std::atomic<bool> greeted_{false};
  bool handshaking_ = false;  // strand only
  bool peeked_ = false;       // strand only: a server saw the peer's first bytes (see handshake, answer_tls_hello)
  std::atomic<bool> tls_resumed_{false};
  clock::time_point started_;  // for greeting_timeout

  mutable std::mutex mutex_;
  write_state state_ = write_state::idle;
  std::deque<message_buffer> queue_;
  std::vector<message_buffer> in_flight_;
  std::size_t sent_of_front_ = 0;  // bytes of queue_.front() a direct send already wrote
  std::size_t queued_bytes_ = 0;   // in queue_ and in_flight_, not yet written
  bool close_when_drained_ = false;
  std::string close_detail_;
  std::error_code close_reason_;
};

}  // namespace framex::net
