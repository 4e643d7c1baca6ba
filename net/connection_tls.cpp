// A connection's TLS: the handshake (ahead of any message, with what is sent
// meanwhile held), sealing what is written, and decrypting what is read.
#include "connection_tls.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>

namespace framex::net {

namespace asio = boost::asio;

namespace {

// The msgid of a msgpack-RPC request `[0, msgid, ...]` at the start of `in`,
// read by hand (nothing is decoded, nothing allocated), or nothing.
std::optional<std::uint32_t> request_id(const unsigned char* in, std::size_t n) {
  if (n < 3 || in[0] != 0x94 || in[1] != 0x00) return std::nullopt;
  if (in[2] <= 0x7f) return in[2];
  std::size_t width = in[2] == 0xcc ? 1 : in[2] == 0xcd ? 2 : in[2] == 0xce ? 4 : 0;
  if (width == 0 || n < 3 + width) return std::nullopt;
  std::uint32_t id = 0;
  for (std::size_t i = 0; i < width; ++i) id = (id << 8) | in[3 + i];
  return id;
}

}  // namespace

// On the strand: a plaintext server heard a TLS hello (0x16 0x03). It answers
// with bytes that are no TLS record (a msgpack-RPC error, which a person can
// read too), so the caller's TLS fails at once with "wrong version number",
// which no retry changes, rather than with a closed connection, which it
// would retry until its deadline; then it closes.
void connection::answer_tls_hello() {
  auto answer = std::make_shared<message_buffer>(error_response(
      0, static_cast<int>(errc::unauthorized), "unauthorized", "this worker speaks plaintext msgpack-RPC, not TLS"));
  answer->flatten();
  asio::async_write(socket_, asio::buffer(answer->data(), answer->size()),
                    [self = shared_from_this(), answer](const boost::system::error_code&, std::size_t) {
                      self->do_close(std::make_error_code(std::errc::protocol_error), "the peer speaks TLS to a plaintext worker");
                    });
}

// On the strand, in `writing` with nothing in flight: one step of the
// handshake with `n` bytes received. What TLS has to say is written, then more
// is read, until it is done. A server turns away at once a peer whose first
// byte does not begin a TLS handshake record (a plaintext peer) rather than
// when the handshake times out; a plaintext msgpack-RPC request is answered,
// in plaintext, with an error saying so (as an HTTPS server answers plain
// HTTP), so that its caller fails at once instead of trying again.
void connection::handshake(const char* in, std::size_t n) {
  if (n != 0 && tls_->setup.context->side() == tls_context::role::server && !peeked_) {
    if (static_cast<unsigned char>(in[0]) != 0x16) {
      const auto id = request_id(reinterpret_cast<const unsigned char*>(in), n);
      if (!id) return do_close(not_tls());
      auto answer = std::make_shared<message_buffer>(
          error_response(*id, static_cast<int>(errc::unauthorized), "unauthorized",
                         "this worker speaks TLS only: the caller must connect with TLS (distributed.tls.enabled)"));
      answer->flatten();
      asio::async_write(socket_, asio::buffer(answer->data(), answer->size()),
                        [self = shared_from_this(), answer](const boost::system::error_code&, std::size_t) {
                          self->do_close(not_tls());
                        });
      return;
    }
    peeked_ = true;
  }
  auto out = std::make_shared<message_buffer>();
  std::error_code why;
  const auto progress = tls_->engine.handshake(in, n, *out, why);
  auto next = [self = shared_from_this(), progress, why] {
    switch (progress) {
      case tls_engine::progress::failed:
        return self->do_close(why);
      case tls_engine::progress::wants_input:
        return self->read_handshake();
      case tls_engine::progress::done:
        return self->handshake_done();
    }
  };
  if (out->size() == 0) return next();
  asio::async_write(socket_, asio::buffer(out->data(), out->size()),
                    [self = shared_from_this(), out, next, progress](const boost::system::error_code& ec, std::size_t) {
                      // A failure's alert need not arrive; the failure is what counts.
                      if (ec && progress != tls_engine::progress::failed) return self->do_close(ec);
                      next();
                    });
}

void connection::read_handshake() {
  socket_.async_read_some(asio::buffer(tls_->incoming.get(), tls_stream::incoming_size),
                          [self = shared_from_this()](const boost::system::error_code& ec, std::size_t n) {
                            if (ec == asio::error::eof) return self->do_close(handshake_cut());
                            if (ec) return self->do_close(ec);
                            self->handshake(self->tls_->incoming.get(), n);
                          });
}

// The messages held meanwhile are encrypted in order and written; reading
// begins with whatever came with the handshake's last flight.
void connection::handshake_done() {
  handshaking_ = false;
  tls_resumed_.store(tls_->engine.resumed(), std::memory_order_relaxed);
  bool pending = false, close_now = false;
  {
    std::lock_guard lock(mutex_);
    if (state_ != write_state::writing) return;  // closed meanwhile
    tls_->ready = true;
    for (auto& plain : tls_->held) {
      auto sealed = seal(plain);
      requeue(sealed.size(), plain.size());
      queue_.push_back(std::move(sealed));
    }
    tls_->held.clear();
    pending = !queue_.empty();
    if (!pending) {
      state_ = write_state::idle;
      close_now = close_when_drained_;
    }
  }
  if (close_now) return do_close(std::make_error_code(std::errc::connection_aborted));
  if (pending) flush();
  decrypted(0);
}

// Under mutex_: `plain` as TLS records.
message_buffer connection::seal(const message_buffer& plain) {
  message_buffer sealed(0);
  plain.for_each_segment([&](const char* p, std::size_t n) { tls_->engine.encrypt(p, n, sealed); });
  return sealed;
}

// On the strand, TLS: `n` bytes were fed to the engine (none: it may hold
// some already); decrypts all it can, sends what it has to say, and goes on.
void connection::decrypted(std::size_t n) {
  std::size_t plain = 0;
  for (;;) {
    char* room = reader_.prepare(read_chunk);
    std::error_code why;
    const long got = tls_->engine.decrypt(room, reader_.capacity(), why);
    if (got > 0) {
      reader_.commit(static_cast<std::size_t>(got));
      plain += static_cast<std::size_t>(got);
      continue;
    }
    if (got == -2) return do_close(why);
    if (got == -1 && plain == 0 && !receiving()) return on_end_of_input();  // close_notify
    break;
  }
  {
    std::unique_lock lock(mutex_);
    message_buffer said;
    if (state_ != write_state::closing && state_ != write_state::closed && tls_->engine.take_output(said)) {
      transmit(std::move(said), lock);
    }
  }
  if (plain != 0 || n == 0) return arrived(plain);
  read();
}

}  // namespace framex::net
