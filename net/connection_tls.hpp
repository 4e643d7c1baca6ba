// What a connection's two files share (connection.cpp, connection_tls.cpp):
// the size of a read, and the TLS state a connection keeps when it speaks TLS.
#pragma once

#include <memory>
#include <vector>

#include "connection.hpp"
#include "tls.hpp"

namespace framex::net {

// The least room a read is given; it gets all the reader's buffer has (64 KiB
// when nothing is pending), so small messages never make it allocate.
inline constexpr std::size_t read_chunk = 16 * 1024;

struct connection::tls_stream {
  explicit tls_stream(tls_setup s)
      : setup(std::move(s)), engine(*setup.context, setup.host, setup.session_key), incoming(new char[incoming_size]) {}
  tls_setup setup;
  tls_engine engine;
  bool ready = false;                // under mutex_: the handshake is done
  std::vector<message_buffer> held;  // under mutex_: sent before it was
  message_buffer batch;              // under mutex_: sent while another write was under way, to seal as one
  std::unique_ptr<char[]> incoming;  // strand only: ciphertext read
  static constexpr std::size_t incoming_size = 32 * 1024;
};

}  // namespace framex::net
