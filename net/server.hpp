// The serving side of msgpack-RPC: a listener that accepts connections (at
// most `max_connections`; at the limit the longest-silent idle one makes room,
// and accept errors such as EMFILE back off instead of spinning), and a session
// per connection that checks each message's shape and hands requests and
// notifications to a dispatcher. It knows nothing of functions.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string_view>
#include <vector>

#include "address.hpp"
#include "connection.hpp"

namespace framex::net {

class session;

/// What the server does with messages; implemented by the worker runtime.
/// Every member is called on the session's strand.
class dispatcher {
 public:
  virtual void on_request(const std::shared_ptr<session>& from, incoming_request request) = 0;
  /// `why` the session ended (a TLS failure names the certificate problem).
  virtual void on_session_closed(session& s, std::error_code why) = 0;

 protected:
  ~dispatcher() = default;
};

struct session_table;

class session final : public connection {
 public:
  session(socket_type socket, const connection_limits& limits, tls_setup tls, dispatcher& d,
          std::shared_ptr<session_table> table);

  /// The dispatcher counts the calls it serves for this session: one begins, or
  /// one has been answered. A session whose peer half-closed closes once its
  /// last call is answered and written. Thread safety: any thread.
  void call_started() noexcept { calls_.fetch_add(1, std::memory_order_relaxed); }
  void call_finished();
  [[nodiscard]] std::size_t calls() const noexcept { return calls_.load(std::memory_order_relaxed); }
  /// True once a whole message has arrived.
  [[nodiscard]] bool spoke() const noexcept { return spoke_.load(std::memory_order_relaxed); }

  /// How far the peer got in proving who it is; kept by the dispatcher, on
  /// the strand only.
  struct credentials {
    bool trusted = false;     // proved (or nothing to prove)
    bool challenged = false;  // nonces exchanged
    std::array<unsigned char, 32> peer_nonce{};
    std::array<unsigned char, 32> own_nonce{};
    std::uint64_t caller = 0;  // the caller's process id, from its hello (once proved)
  } credentials;

 private:
  void on_message(received_message message, std::size_t cost) override;
  void on_close(std::error_code why) override;
  void on_end_of_input() override;
  [[nodiscard]] bool idle() const override { return calls() == 0; }
  [[nodiscard]] bool serves() const override { return true; }
  std::shared_ptr<session> self() { return std::static_pointer_cast<session>(shared_from_this()); }

  dispatcher& dispatcher_;
  std::shared_ptr<session_table> table_;
  std::atomic<std::size_t> calls_{0};
  std::atomic<bool> input_ended_{false};
  std::atomic<bool> spoke_{false};
};

/// The open sessions of a listener; shared with them, so either may go first.
struct session_table {
  std::mutex mutex;
  std::map<session*, std::weak_ptr<session>> open;
};

/// Accepts connections on an endpoint, each served by a `session` on its own
/// strand of `io`.
class listener {
 public:
  /// Binds and listens at once; throws `boost::system::system_error` on failure.
  /// `max_connections` 0: no limit. With `tls`, sessions speak TLS.
  /// A unix socket's file is made (replacing one no process accepts on) and
  /// removed when the listener is destroyed.
  listener(boost::asio::io_context& io, const address& at, const connection_limits& limits,
           std::size_t max_connections, dispatcher& d, std::shared_ptr<tls_context> tls = nullptr);
  ~listener();
  /// The bound TCP port (useful when listening on port 0); 0 for a unix socket.
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  /// Stops accepting. Thread safety: any thread.
  void close();
  /// The sessions open now. Thread safety: any thread.
  [[nodiscard]] std::vector<std::shared_ptr<session>> sessions() const;

 private:
  struct state;
  std::shared_ptr<state> state_;
  std::uint16_t port_ = 0;
};

}  // namespace framex::net
