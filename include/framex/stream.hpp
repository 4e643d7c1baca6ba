// framex/stream.hpp — a response sent piece by piece.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <functional>
#include <optional>
#include <string>
#include <utility>

namespace framex {

/// A response sent piece by piece: chunked transfer, or Server-Sent Events
/// (each piece one event; a piece with newlines becomes several `data:` lines).
/// `next` yields the pieces in order and nothing at the end; it runs on the
/// connection's executor, one call at a time.
///
/// @code
/// asio::awaitable<framex::stream> count(int n) {
///   auto i = std::make_shared<int>(0);
///   co_return framex::stream::events([i, n]() -> asio::awaitable<std::optional<std::string>> {
///     if (*i == n) co_return std::nullopt;
///     co_return std::to_string((*i)++);
///   });
/// }
/// @endcode
class stream {
 public:
  using next_fn = std::function<boost::asio::awaitable<std::optional<std::string>>()>;
  enum class format { chunked, events };

  /// Chunked transfer of `content_type`.
  static stream chunked(next_fn next, std::string content_type = "text/plain; charset=utf-8") {
    return stream(std::move(next), format::chunked, std::move(content_type));
  }
  /// Server-Sent Events (`text/event-stream`).
  static stream events(next_fn next) { return stream(std::move(next), format::events, "text/event-stream"); }

  /// The next piece, or nothing at the end.
  boost::asio::awaitable<std::optional<std::string>> next() const { return next_(); }
  [[nodiscard]] format kind() const noexcept { return format_; }
  [[nodiscard]] const std::string& content_type() const noexcept { return content_type_; }

 private:
  stream(next_fn next, format f, std::string type) : next_(std::move(next)), format_(f), content_type_(std::move(type)) {}
  next_fn next_;
  format format_;
  std::string content_type_;
};

}  // namespace framex
