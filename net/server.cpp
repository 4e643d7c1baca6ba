#include "server.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/error.hpp>
#include <boost/system/system_error.hpp>

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <system_error>

namespace framex::net {

namespace asio = boost::asio;

session::session(socket_type socket, const connection_limits& limits, tls_setup tls, dispatcher& d,
                 std::shared_ptr<session_table> table)
    : connection(std::move(socket), limits, std::move(tls)), dispatcher_(d), table_(std::move(table)) {}

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
  incoming_request r;
  r.cost = cost;
  switch (parse_incoming(message.get(), r)) {
    case incoming_shape::ok: break;
    case incoming_shape::not_request: return do_close(std::make_error_code(std::errc::protocol_error));
    case incoming_shape::method_not_string:
      return reply_error(r.msgid, errc::unknown_function, "the method name is not a string");
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
  state(asio::io_context& io, const address& at, const connection_limits& l, std::size_t max, dispatcher& d,
        std::shared_ptr<tls_context> t)
      : io(io), acceptor(io, bindable(at)), backoff(io), limits(l), max_connections(max), dispatch(d), tls(std::move(t)) {
    if (at.is_unix()) unix_path = at.path;
  }

  ~state() {
    if (!unix_path.empty()) ::unlink(unix_path.c_str());
  }

  // Where to bind `at`; a unix socket left by a process that is gone is removed first.
  static asio::generic::stream_protocol::endpoint bindable(const address& at) {
    if (at.is_unix()) {
      (void)clear_stale_socket(at.path);  // a live one: bind fails with "address in use"
      return asio::local::stream_protocol::endpoint(at.path);
    }
    return asio::ip::tcp::endpoint(asio::ip::make_address(at.host), static_cast<std::uint16_t>(std::stoul(at.port)));
  }

  void accept() {
    acceptor.async_accept(asio::make_strand(io), [self = shared_from_this()](const boost::system::error_code& ec,
                                                                              connection::socket_type socket) {
      if (!self->acceptor.is_open()) return;
      if (ec == asio::error::no_descriptors || ec == boost::system::errc::too_many_files_open_in_system) {
        self->make_room();  // out of descriptors before max_connections: the same rule makes room
      }
      if (ec) return self->wait_then_accept();  // and the like: let descriptors free up
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

  // Under the table's mutex: the connection that has been silent longest and
  // owes nothing, preferring one that never sent a whole message, taken out
  // of the table; null when every connection is busy.
  std::shared_ptr<session> take_longest_silent() {
    std::shared_ptr<session> evict;
    auto rank = [](const session& x) { return std::pair{x.spoke(), x.last_activity()}; };
    for (auto& [key, weak] : table->open) {
      auto candidate = weak.lock();
      if (!candidate || candidate->calls() != 0 || !candidate->is_open()) continue;
      if (!evict || rank(*candidate) < rank(*evict)) evict = std::move(candidate);
    }
    if (evict) table->open.erase(evict.get());
    return evict;
  }

  void make_room() {
    std::shared_ptr<session> evict;
    {
      std::lock_guard lock(table->mutex);
      evict = take_longest_silent();
    }
    if (evict) evict->close(make_error_code(errc::overloaded));
  }

  // At the limit, the longest-silent connection makes room; if every
  // connection is busy, the new one is turned away.
  void admit(connection::socket_type socket) {
    std::shared_ptr<session> evict;
    tls_setup speaks;
    speaks.context = tls;
    auto s = std::make_shared<session>(std::move(socket), limits, std::move(speaks), dispatch, table);
    {
      std::lock_guard lock(table->mutex);
      if (max_connections != 0 && table->open.size() >= max_connections) {
        evict = take_longest_silent();
        if (!evict) return;  // `s` closes its socket as it goes
      }
      table->open.emplace(s.get(), s);
    }
    if (evict) evict->close(make_error_code(errc::overloaded));
    s->start();
  }

  asio::io_context& io;
  asio::basic_socket_acceptor<asio::generic::stream_protocol> acceptor;
  std::string unix_path;  // removed when the listener goes
  asio::steady_timer backoff;
  std::chrono::milliseconds delay{};
  connection_limits limits;
  std::size_t max_connections;
  dispatcher& dispatch;
  std::shared_ptr<tls_context> tls;
  std::shared_ptr<session_table> table = std::make_shared<session_table>();
};

listener::listener(asio::io_context& io, const address& at, const connection_limits& limits, std::size_t max_connections,
                   dispatcher& d, std::shared_ptr<tls_context> tls)
    : state_([&] {
        try {
          return std::make_shared<state>(io, at, limits, max_connections, d, std::move(tls));
        } catch (const boost::system::system_error& e) {  // its text names Boost's own source file and function
          throw std::system_error(e.code(), "cannot listen on " + at.text());
        }
      }()) {
  if (!at.is_unix()) {
    asio::ip::tcp::endpoint bound;
    std::memcpy(bound.data(), state_->acceptor.local_endpoint().data(), state_->acceptor.local_endpoint().size());
    port_ = bound.port();
  }
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
