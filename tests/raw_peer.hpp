// A msgpack-RPC peer that speaks raw bytes over a blocking socket on
// 127.0.0.1: what the hostile and security tests send where a framex caller
// never would.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>

#include <msgpack.hpp>

#include <poll.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace framex::test {

namespace asio = boost::asio;

/// A msgpack-RPC request, as bytes.
template <class... T>
inline std::string request_bytes(std::uint32_t msgid, const std::string& method, const T&... args) {
  msgpack::sbuffer b;
  msgpack::packer<msgpack::sbuffer> p(b);
  p.pack_array(4);
  p.pack(0);
  p.pack(msgid);
  p.pack(method);
  p.pack_array(sizeof...(T));
  (p.pack(args), ...);
  return {b.data(), b.size()};
}

/// A peer that speaks raw bytes.
class raw_peer {
 public:
  explicit raw_peer(std::uint16_t port) : socket_(io_) { socket_.connect({asio::ip::make_address("127.0.0.1"), port}); }

  void send(const std::string& bytes) { asio::write(socket_, asio::buffer(bytes)); }
  template <class... T>
  void request(std::uint32_t msgid, const std::string& method, const T&... args) {
    send(request_bytes(msgid, method, args...));
  }
  template <class... T>
  void notify(const std::string& method, const T&... args) {
    msgpack::sbuffer b;
    msgpack::packer<msgpack::sbuffer> p(b);
    p.pack_array(3);
    p.pack(2);
    p.pack(method);
    p.pack_array(sizeof...(T));
    (p.pack(args), ...);
    send(std::string(b.data(), b.size()));
  }

  /// The next message, or nothing when the worker closed the connection.
  std::optional<msgpack::object_handle> receive() {
    for (;;) {
      msgpack::object_handle h;
      if (unpacker_.next(h)) return h;
      unpacker_.reserve_buffer(65536);
      boost::system::error_code ec;
      const std::size_t n = socket_.read_some(asio::buffer(unpacker_.buffer(), unpacker_.buffer_capacity()), ec);
      if (ec) return std::nullopt;
      unpacker_.buffer_consumed(n);
    }
  }

  /// True once the worker has closed the connection (reads, dropping what
  /// comes, until EOF or a reset); false when it has not within `limit`.
  bool closed_by_worker(std::chrono::seconds limit = std::chrono::seconds(30)) {
    const auto give_up = std::chrono::steady_clock::now() + limit;
    socket_.non_blocking(true);
    char buffer[65536];
    while (std::chrono::steady_clock::now() < give_up) {
      pollfd readable{socket_.native_handle(), POLLIN, 0};
      if (::poll(&readable, 1, 1000) <= 0) continue;  // each wait at most a second
      boost::system::error_code ec;
      socket_.read_some(asio::buffer(buffer), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) continue;
      if (ec) return true;  // end of stream, a reset: closed
    }
    return false;
  }

  asio::ip::tcp::socket& socket() { return socket_; }

 private:
  asio::io_context io_;
  asio::ip::tcp::socket socket_;
  msgpack::unpacker unpacker_;
};

/// The `code` of an error response, or 0 for a result.
inline std::uint64_t error_code_of(const msgpack::object_handle& response) {
  const auto& e = response.get().via.array.ptr[2];
  if (e.type != msgpack::type::MAP) return 0;
  for (std::uint32_t i = 0; i < e.via.map.size; ++i) {
    const auto& kv = e.via.map.ptr[i];
    if (kv.key.type == msgpack::type::STR && std::string_view(kv.key.via.str.ptr, kv.key.via.str.size) == "code" &&
        kv.val.type == msgpack::type::POSITIVE_INTEGER) {
      return kv.val.via.u64;
    }
  }
  return 0;
}

}  // namespace framex::test
