// The error vocabulary of the wire (framex/error.hpp): the codes' category,
// the `type` framex gives its own error objects, and the exception that
// carries a far side's error.
#include "framex/error.hpp"

#include <utility>

namespace framex {
namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "framex"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::worker_lost: return "the worker running the call was lost";
      case errc::timeout: return "the call timed out";
      case errc::cancelled: return "the call was cancelled";
      case errc::unknown_function: return "no such function is registered";
      case errc::bad_arguments: return "the request does not fit the function or actor it names";
      case errc::signature_mismatch: return "caller and callee disagree on the function's signature";
      case errc::too_large: return "the message exceeds the size limit";
      case errc::overloaded: return "the callee is overloaded";
      case errc::unauthorized: return "the caller is not authorized";
      case errc::exception: return "the called function threw an exception";
      case errc::no_worker: return "no worker has the resources the call needs";
      case errc::actor_lost: return "the actor is gone";
      case errc::object_unavailable: return "the referenced object is missing or corrupt";
    }
    return "unknown framex error " + std::to_string(value);
  }
};

}  // namespace

namespace detail {
const char* wire_type(errc e) noexcept {
  switch (e) {
    case errc::worker_lost: return "framex.worker_lost";
    case errc::timeout: return "framex.timeout";
    case errc::cancelled: return "framex.cancelled";
    case errc::unknown_function: return "framex.unknown_function";
    case errc::bad_arguments: return "framex.bad_arguments";
    case errc::signature_mismatch: return "framex.signature_mismatch";
    case errc::too_large: return "framex.too_large";
    case errc::overloaded: return "framex.overloaded";
    case errc::unauthorized: return "framex.unauthorized";
    case errc::exception: return "framex.exception";
    case errc::no_worker: return "framex.no_worker";
    case errc::actor_lost: return "framex.actor_lost";
    case errc::object_unavailable: return "framex.object_unavailable";
  }
  return "framex.error";
}
}  // namespace detail

const std::error_category& error_category() noexcept {
  static const category instance;
  return instance;
}

std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

remote_error::remote_error(errc code, std::string type, std::string message)
    : std::system_error(make_error_code(code), type + ": " + message),
      type_(std::move(type)),
      message_(std::move(message)) {}

remote_error::remote_error(errc code, std::string type, std::string message, std::shared_ptr<const msgpack_value> error_object)
    : remote_error(code, std::move(type), std::move(message)) {
  error_object_ = std::move(error_object);
}

}  // namespace framex
