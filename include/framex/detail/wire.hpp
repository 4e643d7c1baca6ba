// The boundary between the typed templates and the compiled distributed runtime.
//
// A typed call becomes: a registered `function_entry` (name, signature string,
// and the worker-side entry points), the arguments packed as one msgpack array
// in a `message_buffer`, and a type-erased completion handler that receives a
// `reply`. The compiled part (src/, net/) never sees a user type.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "framex/codec.hpp"
#include "framex/detail/message_buffer.hpp"
#include "framex/detail/received_message.hpp"
#include "framex/error.hpp"
#include "framex/resources.hpp"

namespace framex {
class runtime;
}

namespace framex::detail {

class stats_cell;

/// What a worker answered. On success `result` points into `message`; when
/// the worker sent an error object, `error` does.
struct reply {
  received_message message;
  const msgpack::object* result = nullptr;
  const msgpack::object* error = nullptr;
  /// Filled when the worker sent an error object.
  std::string error_type;
  std::string error_message;
  /// The error object is not framex's {code, type, message} map.
  bool foreign_error = false;
  /// The address of the worker that answered; null when none did.
  const std::string* worker = nullptr;
};

/// A call being served by a worker; implemented by the worker runtime.
class invocation {
 public:
  virtual ~invocation() = default;
  /// The request's params array (an actor call's: the method's arguments).
  [[nodiscard]] virtual const msgpack::object& params() const noexcept = 0;
  /// Room to leave at the front of the result buffer for the response header.
  static constexpr std::size_t response_headroom = 16;
  /// Sends the result: `body` holds the packed result after `response_headroom`.
  virtual void succeed(message_buffer body) noexcept = 0;
  /// Sends an error object `{code, type, message}`.
  virtual void fail(errc code, std::string type, std::string message) noexcept = 0;
};

/// A function a worker can run, and what a caller checks it against.
struct function_entry {
  std::string name;
  std::string signature;
  bool is_async = false;
  /// A blocking function marked `framex::inline_ok`: run on the I/O thread.
  bool run_inline = false;
  /// Decodes, runs and answers a blocking function, on a pool thread.
  void (*run_blocking)(invocation&) = nullptr;
  /// The same for an async function, on the worker's I/O executor.
  boost::asio::awaitable<void> (*run_async)(std::unique_ptr<invocation>) = nullptr;
  /// An actor's constructor or method (framex/actor.hpp): the class's name;
  /// empty for a plain function.
  std::string actor_class;
  /// An actor's constructor: decodes the arguments and makes the object; null
  /// once it has reported a failure to `inv`.
  std::shared_ptr<void> (*construct)(invocation& inv) = nullptr;
  /// An actor's constructor, for a class with `save`/`load`: packs the
  /// object's `save()`, and `load`s a packed state into an object (throwing
  /// what decoding throws).
  std::string (*save)(const void* object) = nullptr;
  void (*load)(void* object, const msgpack::object& state) = nullptr;
  /// An actor's blocking method: decodes, runs on `object` and answers.
  void (*run_on)(invocation& inv, void* object) = nullptr;
  /// An actor's async method; `object` outlives the invocation.
  boost::asio::awaitable<void> (*run_async_on)(std::unique_ptr<invocation> inv, void* object) = nullptr;
  /// An async method whose calls may interleave at their `co_await`s.
  bool interleaves = false;
  /// Its counters as a remote call (set by the registry).
  stats_cell* remote_stats = nullptr;
  /// What a worker must have to run it (see `framex::require`); set at start-up.
  resource_map needs;
};

/// Sets what `fn` needs of a worker (`framex::require`).
void set_needs(const function_entry& fn, resource_map needs);

/// Adds `entry` to the process's registry; returns it as stored (stable address).
/// Throws `std::invalid_argument` if another function already has its name.
const function_entry& register_function(function_entry entry);

/// The registered function called `name`, or null.
const function_entry* find_function(std::string_view name) noexcept;

/// True when `rt` ships calls to workers.
bool is_distributed(const runtime& rt) noexcept;

using reply_handler = boost::asio::any_completion_handler<void(std::error_code, reply)>;

/// Sends a call of `fn` with packed `params` (an array, after `request_headroom(fn)`
/// bytes of room) to a worker of `rt`. Completes with an empty code and the
/// result, or with an `errc` (a worker's error object fills `error_type` and
/// `error_message`). Honours the handler's cancellation slot and `timeout`
/// (zero: the runtime's default).
/// `caller` is the executor the handler completes on.
/// `needs`: what the call asks of a worker beyond `fn.needs` (may be empty).
void start_remote(runtime& rt, const function_entry& fn, message_buffer params,
                  std::chrono::steady_clock::duration timeout, const resource_needs& needs,
                  const boost::asio::any_io_executor& caller, reply_handler handler);

/// Room a request header needs in front of the params of a call of `fn`.
inline std::size_t request_headroom(const function_entry& fn) noexcept { return 16 + fn.name.size(); }

/// The type name of the exception being handled, demangled.
std::string current_exception_type();

}  // namespace framex::detail
