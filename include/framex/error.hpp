// framex/error.hpp — the one error enum framex reports, and the exception that
// carries a failure raised on the far side of a call.
//
// A server that is not framex answers with an error object of its own: a
// `remote_error` with code `errc::exception`, type "msgpack_rpc.error", its
// first string as the message, and the object itself in `error_object()`.
//
// Every failure framex itself detects is a `framex::errc` inside a
// `std::error_code`; the `co_await` surface throws it as `std::system_error`, so
// callers write `catch (const std::system_error& e) { if (e.code() ==
// framex::errc::timeout) ... }`. The numeric values are part of the wire (they
// travel in the `code` field of an error object) and never change.
#pragma once

#include <memory>
#include <string>
#include <system_error>
#include <type_traits>

namespace framex {

class msgpack_value;

/// Why a call failed, when framex (not the called function) decided it.
enum class errc : int {
  worker_lost = 1,         ///< the process running the call went away mid-call
  timeout = 2,             ///< the per-call deadline passed first
  cancelled = 3,           ///< the caller cancelled, or the runtime shut down
  unknown_function = 4,    ///< no function of that name is registered
  bad_arguments = 5,       ///< arguments did not decode as the signature needs
  signature_mismatch = 6,  ///< caller and worker disagree on a function's signature
  too_large = 7,           ///< a message exceeded the configured size limit
  overloaded = 8,          ///< the callee refused the call for lack of capacity
  unauthorized = 9,        ///< the callee refused the caller's credentials
  exception = 10,          ///< the called function threw (see `remote_error` for its type)
  no_worker = 11,          ///< no worker has the resources the call needs
  actor_lost = 12,         ///< the actor is gone: killed, released, or its worker was lost
  object_unavailable = 13, ///< a referenced object is missing from storage, or corrupt
};

/// The category of `framex::errc`; its name is "framex".
/// Thread safety: safe to call from any thread.
const std::error_category& error_category() noexcept;

/// Makes `e` an error code in framex's category (found by ADL).
std::error_code make_error_code(errc e) noexcept;

namespace detail {
/// The `type` of an error object framex raises itself: "framex." and the
/// enumerator's name, as framex.timeout. Part of the wire, like the codes.
/// Thread safety: safe to call from any thread.
[[nodiscard]] const char* wire_type(errc e) noexcept;
}  // namespace detail

/// An exception raised by the called function where it ran, delivered to the
/// caller. Local calls rethrow the original exception object instead; this type
/// appears when only a description could cross the boundary.
class remote_error : public std::system_error {
 public:
  /// @param code   why the call failed, as framex classifies it
  /// @param type   the remote exception's type name, e.g. "std::runtime_error"
  /// @param message the remote exception's `what()`
  remote_error(errc code, std::string type, std::string message);
  /// The same, with the error object the server sent.
  remote_error(errc code, std::string type, std::string message, std::shared_ptr<const msgpack_value> error_object);

  /// The remote exception's type name.
  [[nodiscard]] const std::string& remote_type() const noexcept { return type_; }
  /// The remote exception's message, without the type prefix `what()` adds.
  [[nodiscard]] const std::string& remote_message() const noexcept { return message_; }
  /// The error object as the server sent it, whatever its shape: framex's
  /// `{code, type, message}` map, a string, an array such as Neovim's
  /// `[kind, message]`... (include framex/msgpack_value.hpp to read it). Null
  /// when the failure did not come from a server's answer.
  [[nodiscard]] const msgpack_value* error_object() const noexcept { return error_object_.get(); }

 private:
  std::string type_;
  std::string message_;
  std::shared_ptr<const msgpack_value> error_object_;
};

}  // namespace framex

template <>
struct std::is_error_code_enum<framex::errc> : std::true_type {};
