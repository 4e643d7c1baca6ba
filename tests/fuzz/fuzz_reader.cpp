// libFuzzer harness: the msgpack-RPC message reader (net/message.hpp) cut into
// pieces as a socket would deliver them. Whatever the bytes, the reader must
// either yield whole messages or throw `std::system_error`, and never hold more
// than its limits allow. Each message is then taken apart as a server's or a
// client's connection does (`parse_incoming`), and copied as an rpc_client's
// `msgpack_value` result is.
#include "net/message.hpp"
#include "framex/msgpack_value.hpp"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <system_error>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  framex::net::read_limits limits;
  limits.max_bytes = 1 << 20;
  limits.max_elements = 1 << 14;
  framex::net::reader reader(limits);
  // The first byte picks the piece size, so the corpus explores reassembly too.
  const std::size_t piece = 1 + data[0] % 64;
  ++data;
  --size;
  try {
    for (std::size_t at = 0; at < size;) {
      const std::size_t n = std::min(piece, size - at);
      char* room = reader.prepare(n);
      std::memcpy(room, data + at, n);
      reader.commit(n);
      at += n;
      framex::net::received_message message;
      while (reader.next(message)) {
        if (reader.last_cost() > 64 * limits.max_bytes) __builtin_trap();  // a message costs about its size
        framex::net::incoming_request r;
        const auto shape = framex::net::parse_incoming(message.get(), r);
        if (shape == framex::net::incoming_shape::ok && r.params == nullptr) __builtin_trap();  // (an empty method name may have no data)
        const framex::msgpack_value copy(message.get());
        const std::string before = copy.to_string();
        message = framex::net::received_message();  // the copy must not need the message's storage
        if (copy.to_string() != before) __builtin_trap();
      }
    }
  } catch (const std::system_error&) {
    // refused: the connection would close
  }
  return 0;
}
