#include "server.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

namespace framex::net {

namespace asio = boost::asio;

session::session(socket_type socket, std::size_t max_message, dispatcher& d)
    : connection(std::move(socket), max_message), dispatcher_(d) {}

void session::reply(std::uint32_t msgid, message_buffer body) {
  if (body.size() + 16 > max_message()) {
    return reply_error(msgid, static_cast<int>(errc::too_large), "framex.too_large",
                       "the result is " + std::to_string(body.size()) + " bytes; the limit is " +
                           std::to_string(max_message()));
  }
  prepend_response_header(body, msgid);
  send(std::move(body));
}

void session::reply_error(std::uint32_t msgid, int code, std::string_view type, std::string_view message) {
  send(error_response(msgid, code, type, message));
}

void session::on_message(msgpack::object_handle message) {
  const msgpack::object& m = message.get();
  const auto malformed = [&] { close(std::make_error_code(std::errc::protocol_error)); };
  if (m.type != msgpack::type::ARRAY || m.via.array.size < 3 || m.via.array.ptr[0].type != msgpack::type::POSITIVE_INTEGER) {
    return malformed();
  }
  const msgpack::object* f = m.via.array.ptr;
  if (f[0].via.u64 == request && m.via.array.size == 4) {
    if (f[1].type != msgpack::type::POSITIVE_INTEGER || f[1].via.u64 > UINT32_MAX) return malformed();
    const auto msgid = static_cast<std::uint32_t>(f[1].via.u64);
    if (f[2].type != msgpack::type::STR) {
      return reply_error(msgid, static_cast<int>(errc::unknown_function), "framex.unknown_function",
                         "the method name is not a string");
    }
    incoming_request r{msgid, std::string_view(f[2].via.str.ptr, f[2].via.str.size), &f[3], {}};
    r.message = std::move(message);
    return dispatcher_.on_request(self(), std::move(r));
  }
  if (f[0].via.u64 == notification && m.via.array.size == 3 && f[1].type == msgpack::type::STR) {
    return dispatcher_.on_notification(self(), std::string_view(f[1].via.str.ptr, f[1].via.str.size), f[2]);
  }
  malformed();
}

void session::on_close(std::error_code) { dispatcher_.on_session_closed(*this); }

listener::listener(asio::io_context& io, const asio::ip::tcp::endpoint& at, std::size_t max_message, dispatcher& d)
    : io_(io), acceptor_(std::make_shared<asio::ip::tcp::acceptor>(io, at)), max_message_(max_message), dispatcher_(d),
      port_(acceptor_->local_endpoint().port()) {
  accept();
}

listener::~listener() { close(); }

void listener::close() {
  asio::post(acceptor_->get_executor(), [a = acceptor_] {
    boost::system::error_code ignored;
    a->close(ignored);
  });
}

void listener::accept() {
  acceptor_->async_accept(asio::make_strand(io_), [this, a = acceptor_](const boost::system::error_code& ec,
                                                                         asio::ip::tcp::socket socket) {
    if (!a->is_open()) return;
    if (!ec) std::make_shared<session>(std::move(socket), max_message_, dispatcher_)->start();
    accept();
  });
}

}  // namespace framex::net
