#include "server.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include <algorithm>

namespace framex::net {

namespace asio = boost::asio;

session::session(socket_type socket, const connection_limits& limits, tls_setup tls, dispatcher& d,
                 std::shared_ptr<session_table> table)
    : connection(std::move(socket), limits, std::move(tls)), dispatcher_(d), table_(std::move(table)) {}

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

void session::call_finished() {
  if (calls_.fetch_sub(1, std::memory_order_acq_rel) == 1 && input_ended_.load(std::memory_order_acquire)) {
    asio::post(executor(), [s = self()] { s->close_when_drained(); });
  }
}

void session::on_end_of_input() {
  // The peer sent all it will (a half-close): answer what it asked, then close.
  input_ended_.store(true, std::memory_order_release);
  if (calls() == 0) close_when_drained();
}

void session::on_message(received_message message, std::size_t cost) {
  spoke_.store(true, std::memory_order_relaxed);
  const msgpack::object& m = message.get();
  const auto malformed = [&] { do_close(std::make_error_code(std::errc::protocol_error)); };
  if (m.type != msgpack::type::ARRAY || m.via.array.size < 3 || m.via.array.ptr[0].type != msgpack::type::POSITIVE_INTEGER) {
    return malformed();
  }
  const msgpack::object* f = m.via.array.ptr;
  incoming_request r;
  r.cost = cost;
  if (f[0].via.u64 == request && m.via.array.size == 4) {
    if (f[1].type != msgpack::type::POSITIVE_INTEGER || f[1].via.u64 > UINT32_MAX) return malformed();
    r.msgid = static_cast<std::uint32_t>(f[1].via.u64);
    if (f[2].type != msgpack::type::STR) {
      return reply_error(r.msgid, static_cast<int>(errc::unknown_function), "framex.unknown_function",
                         "the method name is not a string");
    }
    r.method = std::string_view(f[2].via.str.ptr, f[2].via.str.size);
    r.params = &f[3];
  } else if (f[0].via.u64 == notification && m.via.array.size == 3 && f[1].type == msgpack::type::STR) {
    r.notification = true;
    r.method = std::string_view(f[1].via.str.ptr, f[1].via.str.size);
    r.params = &f[2];
  } else {
    return malformed();
  }
  r.message = std::move(message);
  dispatcher_.on_request(self(), std::move(r));
}

void session::on_close(std::error_code why) {
  {
    std::lock_guard lock(table_->mutex);
    table_->open.erase(this);  // before its address can be reused by a new session
  }
  dispatcher_.on_session_closed(*this, why);
}

struct listener::state : std::enable_shared_from_this<state> {
  state(asio::io_context& io, const asio::ip::tcp::endpoint& at, const connection_limits& l, std::size_t max, dispatcher& d,
        std::shared_ptr<tls_context> t)
      : io(io), acceptor(io, at), backoff(io), limits(l), max_connections(max), dispatch(d), tls(std::move(t)) {}

  void accept() {
    acceptor.async_accept(asio::make_strand(io), [self = shared_from_this()](const boost::system::error_code& ec,
                                                                              asio::ip::tcp::socket socket) {
      if (!self->acceptor.is_open()) return;
      if (ec) return self->wait_then_accept();  // EMFILE and the like: let descriptors free up
      self->delay = {};
      self->admit(std::move(socket));
      self->accept();
    });
  }

  void wait_then_accept() {
    delay = std::clamp<std::chrono::milliseconds>(2 * delay, std::chrono::milliseconds(10), std::chrono::seconds(1));
    backoff.expires_after(delay);
    backoff.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec && self->acceptor.is_open()) self->accept();
    });
  }

  // At the limit, the connection that has been silent longest and owes
  // nothing makes room, preferring one that never sent a whole message; if
  // every connection is busy, the new one is turned away.
  void admit(asio::ip::tcp::socket socket) {
    std::shared_ptr<session> evict;
    tls_setup speaks;
    speaks.context = tls;
    auto s = std::make_shared<session>(std::move(socket), limits, std::move(speaks), dispatch, table);
    {
      std::lock_guard lock(table->mutex);
      if (max_connections != 0 && table->open.size() >= max_connections) {
        auto rank = [](const session& x) { return std::pair{x.spoke(), x.last_activity()}; };
        for (auto& [key, weak] : table->open) {
          auto candidate = weak.lock();
          if (!candidate || candidate->calls() != 0 || !candidate->is_open()) continue;
          if (!evict || rank(*candidate) < rank(*evict)) evict = std::move(candidate);
        }
        if (!evict) return;  // `s` closes its socket as it goes
        table->open.erase(evict.get());
      }
      table->open.emplace(s.get(), s);
    }
    if (evict) evict->close(make_error_code(errc::overloaded));
    s->start();
  }

  asio::io_context& io;
  asio::ip::tcp::acceptor acceptor;
  asio::steady_timer backoff;
  std::chrono::milliseconds delay{};
  connection_limits limits;
  std::size_t max_connections;
  dispatcher& dispatch;
  std::shared_ptr<tls_context> tls;
  std::shared_ptr<session_table> table = std::make_shared<session_table>();
};

listener::listener(asio::io_context& io, const asio::ip::tcp::endpoint& at, const connection_limits& limits,
                   std::size_t max_connections, dispatcher& d, std::shared_ptr<tls_context> tls)
    : state_(std::make_shared<state>(io, at, limits, max_connections, d, std::move(tls))), port_(state_->acceptor.local_endpoint().port()) {
  state_->accept();
}

listener::~listener() { close(); }

void listener::close() {
  asio::post(state_->acceptor.get_executor(), [s = state_] {
    boost::system::error_code ignored;
    s->acceptor.close(ignored);
    s->backoff.cancel();
  });
}

std::vector<std::shared_ptr<session>> listener::sessions() const {
  std::vector<std::shared_ptr<session>> out;
  std::lock_guard lock(state_->table->mutex);
  for (auto& [key, weak] : state_->table->open) {
    if (auto s = weak.lock()) out.push_back(std::move(s));
  }
  return out;
}

}  // namespace framex::net
