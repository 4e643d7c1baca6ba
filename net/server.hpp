// The serving side of msgpack-RPC: a listener that accepts connections, and a
// session per connection that checks each message's shape and hands requests
// and notifications to a dispatcher. It knows nothing of functions.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <memory>
#include <string_view>

#include "connection.hpp"

namespace framex::net {

class session;

/// A request as received; `params` points into `message`.
struct incoming_request {
  std::uint32_t msgid = 0;
  std::string_view method;
  const msgpack::object* params = nullptr;
  msgpack::object_handle message;
};

/// What the server does with messages; implemented by the worker runtime.
/// Every member is called on the session's strand.
class dispatcher {
 public:
  virtual void on_request(const std::shared_ptr<session>& from, incoming_request request) = 0;
  virtual void on_notification(const std::shared_ptr<session>& from, std::string_view method,
                               const msgpack::object& params) = 0;
  virtual void on_session_closed(session& s) = 0;

 protected:
  ~dispatcher() = default;
};

class session final : public connection {
 public:
  session(socket_type socket, std::size_t max_message, dispatcher& d);

  /// Sends `[1, msgid, nil, result]`; `body` holds the packed result after
  /// 16 bytes of room. A result over the size limit is answered with
  /// `too_large` instead. Thread safety: any thread.
  void reply(std::uint32_t msgid, message_buffer body);
  /// Sends `[1, msgid, {code, type, message}, nil]`. Thread safety: any thread.
  void reply_error(std::uint32_t msgid, int code, std::string_view type, std::string_view message);

 private:
  void on_message(msgpack::object_handle message) override;
  void on_close(std::error_code why) override;
  std::shared_ptr<session> self() { return std::static_pointer_cast<session>(shared_from_this()); }

  dispatcher& dispatcher_;
};

/// Accepts connections on an endpoint, each served by a `session` on its own
/// strand of `io`.
class listener {
 public:
  /// Binds and listens at once; throws `boost::system::system_error` on failure.
  listener(boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& at, std::size_t max_message,
           dispatcher& d);
  ~listener();
  /// The bound port (useful when listening on port 0).
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  /// Stops accepting. Thread safety: any thread.
  void close();

 private:
  void accept();

  boost::asio::io_context& io_;
  std::shared_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
  std::size_t max_message_;
  dispatcher& dispatcher_;
  std::uint16_t port_;
};

}  // namespace framex::net
