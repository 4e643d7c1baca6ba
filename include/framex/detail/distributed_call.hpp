// How a typed function crosses a process boundary: its wire name and
// signature, its registration, how a caller packs a call and decodes the
// result, and how a worker decodes, runs and answers it.
//
// Registration is automatic: instantiating a distributed call of `F` (which any
// `.remote()` of `F` does) instantiates `registration<F>::registered`, whose
// initialiser adds `F` to the registry before `main`. A worker is the same
// binary, so it knows every function its callers call.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "framex/codec.hpp"
#include "framex/msgpack_value.hpp"
#include "framex/detail/object_store.hpp"
#include "framex/detail/signature.hpp"
#include "framex/detail/wire.hpp"

namespace framex {

/// The name a function travels under. Empty (the default) means derived from
/// its qualified name, e.g. `Worker::total`. Give a stable one that survives
/// renames by specializing it before the function is used:
///
/// @code
/// template <> inline constexpr std::string_view framex::wire_name<&heavy_job> = "jobs.heavy";
/// @endcode
template <auto F>
inline constexpr std::string_view wire_name{};

/// True for a blocking function cheap enough to run where its call arrives:
/// on the worker's I/O thread rather than its pool, and on the caller's own
/// thread in local mode, saving the hop (two thread wake-ups) to a pool
/// thread. Only for functions that never block or take long: while one runs,
/// its I/O thread serves nothing else, and a timeout cannot interrupt it.
///
/// @code
/// template <> inline constexpr bool framex::inline_ok<&lookup> = true;
/// @endcode
template <auto F>
inline constexpr bool inline_ok = false;

namespace detail {

template <auto F>
std::string derived_name() {
  // GCC: "... derived_name() [with auto F = heavy_job; ...]" or "= &Worker::total";
  // Clang: "... derived_name() [F = &heavy_job]".
  const std::string_view pretty = __PRETTY_FUNCTION__;
  const std::size_t at = pretty.find("F = ");
  std::string_view s = pretty.substr(at + 4);
  s = s.substr(0, s.find_first_of(";]"));
  if (!s.empty() && s.front() == '(') s = s.substr(s.rfind(')') + 1);  // a cast picking an overload
  if (!s.empty() && s.front() == '&') s.remove_prefix(1);
  std::string name(s);
  for (const std::string_view anon : {"(anonymous namespace)", "{anonymous}"}) {
    for (std::size_t p; (p = name.find(anon)) != std::string::npos;) name.replace(p, anon.size(), "anon");
  }
  return name;
}

template <auto F>
constexpr std::string_view pretty_of() {
  return __PRETTY_FUNCTION__;
}

// False when the name derived for F would be shared by other functions: one in
// an anonymous namespace (every translation unit's is `anon`) or a lambda
// (every captureless lambda of one signature is `<lambda(int)>::_FUN`).
template <auto F>
constexpr bool derives_a_unique_name() {
  constexpr std::string_view pretty = pretty_of<F>();
  constexpr std::string_view f = pretty.substr(pretty.find("F = "));
  for (std::string_view marker : {"(anonymous namespace)", "{anonymous}", "(anonymous class)", "<unnamed", "<lambda",
                                  "(lambda at", "{lambda"}) {
    if (f.find(marker) != std::string_view::npos) return false;
  }
  return true;
}

template <auto F>
std::string name_of() {
  if constexpr (!wire_name<F>.empty()) {
    return std::string(wire_name<F>);
  } else {
    return derived_name<F>();
  }
}

template <class T>
using decoded_t = std::remove_cvref_t<T>;

template <class T>
concept wire_value = serializable<decoded_t<T>> && std::default_initializable<decoded_t<T>>;

template <class T>
concept wire_parameter = wire_value<T> && !(std::is_lvalue_reference_v<T> && !std::is_const_v<std::remove_reference_t<T>>);

template <class Traits, class Params = typename Traits::params>
struct wire_shape;
template <class Traits, class... Ps>
struct wire_shape<Traits, type_list<Ps...>> {
  using value = typename awaited<typename Traits::result>::type;
  static constexpr bool object_ok = [] {
    if constexpr (Traits::is_member) {
      return wire_value<std::remove_cv_t<typename Traits::object>>;
    } else {
      return true;
    }
  }();
  static constexpr bool async_ok = [] {
    if constexpr (awaited<typename Traits::result>::is_awaitable) {
      return std::is_same_v<typename awaited<typename Traits::result>::executor_type, boost::asio::any_io_executor>;
    } else {
      return true;
    }
  }();
  static constexpr bool value_ok = [] {
    if constexpr (std::is_void_v<value>) {
      return true;
    } else {
      return wire_value<value>;
    }
  }();
  static constexpr bool ok = object_ok && async_ok && value_ok && (wire_parameter<Ps> && ...);

  static std::string signature() {
    std::string s = "(";
    if constexpr (Traits::is_member) s += codec<std::remove_cv_t<typename Traits::object>>::schema();
    ((s += (s.size() > 1 ? "," : ""), s += codec<decoded_t<Ps>>::schema()), ...);
    s += ")->";
    if constexpr (std::is_void_v<value>) {
      s += "nil";
    } else {
      s += codec<value>::schema();
    }
    return s;
  }
};

/// True when every type in `F`'s signature can cross the wire, so a
/// distributed runtime ships its calls. Otherwise (non-const reference
/// parameters, types without a codec) its calls always run in-process.
template <auto F>
inline constexpr bool distributable = wire_shape<fn_traits<decltype(F)>>::ok;

// ---- worker side: decode, run, answer ----

// Packs a result and sends it. A result the call gave up (a prvalue) with a
// large string or binary in it is kept by the message, which is then written
// from the value itself: the first packing leaves the large parts out and
// finds out whether there are any; only then is the value packed again, into
// a buffer that keeps it.
template <class T>
void pack_result(invocation& inv, T&& value) {
  using value_type = std::remove_cvref_t<T>;
  constexpr bool may_keep = !std::is_reference_v<T> && !std::is_arithmetic_v<value_type> && !std::is_enum_v<value_type>;
  message_buffer body(invocation::response_headroom);
  if constexpr (may_keep) body.leave_out_large();
  {
    msgpack::packer<message_buffer> p(body);
    codec<value_type>::pack(p, value);
  }
  if constexpr (may_keep) {
    if (body.left_out()) {
      message_buffer kept(invocation::response_headroom);
      const value_type& v = kept.keep(std::move(value));
      msgpack::packer<message_buffer> p(kept);
      codec<value_type>::pack(p, v);
      body = std::move(kept);
    }
  }
  inv.succeed(std::move(body));
}

inline void pack_void_result(invocation& inv) {
  message_buffer body(invocation::response_headroom);
  msgpack::packer<message_buffer>(body).pack_nil();
  inv.succeed(std::move(body));
}

// Reports the exception being handled to the caller.
inline void fail_current(invocation& inv) noexcept {
  try {
    throw;
  } catch (const remote_error& e) {
    inv.fail(static_cast<errc>(e.code().value()), e.remote_type(), e.remote_message());
  } catch (const std::system_error& e) {
    const errc code = e.code().category() == error_category() ? static_cast<errc>(e.code().value()) : errc::exception;
    inv.fail(code, current_exception_type(), e.what());
  } catch (const std::exception& e) {
    inv.fail(errc::exception, current_exception_type(), e.what());
  } catch (...) {
    inv.fail(errc::exception, current_exception_type(), "a non-standard exception");
  }
}

// Decodes the params array into `args` (the object first when `is_member`);
// reports `bad_arguments` and returns false on failure, whatever a codec or a
// constructor throws.
template <class Holder>
bool decode_arguments(invocation& inv, Holder& args, const std::string& name, bool is_member) noexcept {
  constexpr std::size_t arity = std::tuple_size_v<Holder>;
  const msgpack::object& params = inv.params();
  std::size_t position = 0;
  try {
    if (params.type != msgpack::type::ARRAY || params.via.array.size != arity) {
      inv.fail(errc::bad_arguments, detail::wire_type(errc::bad_arguments),
               name + ": expected " + std::to_string(arity) + " arguments, got " +
                   (params.type == msgpack::type::ARRAY ? std::to_string(params.via.array.size) : "no array"));
      return false;
    }
    std::apply([&](auto&... a) { ((unpack_argument(params.via.array.ptr[position], a), ++position), ...); }, args);
    return true;
  } catch (...) {
    std::string why;
    errc code = errc::bad_arguments;
    try {
      throw;
    } catch (const decode_error& e) {
      why = e.what();
    } catch (const std::system_error& e) {
      if (e.code() == errc::object_unavailable) code = errc::object_unavailable;  // a referenced object missing or corrupt
      why = code == errc::object_unavailable ? std::string(e.what()) : current_exception_type() + ": " + e.what();
    } catch (const std::exception& e) {
      why = current_exception_type() + ": " + e.what();
    } catch (...) {
      why = current_exception_type();
    }
    const std::string which = is_member && position == 0 ? "the object" : "argument " + std::to_string(position - (is_member ? 1 : 0) + 1);
    inv.fail(code, wire_type(code), name + ": " + which + ": " + why);
    return false;
  }
}

// Decodes, runs `call(args)` and answers. Whatever happens, the call is
// answered: a throwing default constructor, a codec, the function itself or
// packing its result.
template <class Holder, class Call>
void answer_blocking(invocation& inv, const std::string& name, bool is_member, Call&& call) noexcept {
  try {
    Holder args;
    if (!decode_arguments(inv, args, name, is_member)) return;
    if constexpr (std::is_void_v<decltype(call(args))>) {
      call(args);
      pack_void_result(inv);
    } else {
      pack_result(inv, call(args));
    }
  } catch (...) {
    fail_current(inv);
  }
}

// The same for a call that is awaited.
template <class Holder, class Call>
boost::asio::awaitable<void> answer_async(std::unique_ptr<invocation> inv, const std::string& name, bool is_member, Call call) {
  try {
    Holder args;
    if (!decode_arguments(*inv, args, name, is_member)) co_return;
    if constexpr (std::is_void_v<typename awaited<decltype(call(args))>::type>) {
      co_await call(args);
      pack_void_result(*inv);
    } else {
      pack_result(*inv, co_await call(args));
    }
  } catch (...) {
    fail_current(*inv);
  }
}

template <auto F, class Traits, class Params = typename Traits::params>
struct served;
template <auto F, class Traits, class... Ps>
struct served<F, Traits, type_list<Ps...>> {
  using object_type = std::remove_cv_t<typename Traits::object>;
  static constexpr std::size_t arity = sizeof...(Ps) + (Traits::is_member ? 1 : 0);
  using holder = std::conditional_t<Traits::is_member, std::tuple<object_type, decoded_t<Ps>...>,
                                    std::tuple<decoded_t<Ps>...>>;

  // Hands each decoded value to F as its parameter type asks: moved into a
  // by-value parameter, referred to by a const reference one.
  static decltype(auto) call(holder& args) {
    return [&]<std::size_t... I>(std::index_sequence<I...>) -> decltype(auto) {
      if constexpr (Traits::is_member) {
        return std::invoke(F, std::get<0>(args), static_cast<Ps&&>(std::get<I + 1>(args))...);
      } else {
        return std::invoke(F, static_cast<Ps&&>(std::get<I>(args))...);
      }
    }(std::index_sequence_for<Ps...>{});
  }

  static void run_blocking(invocation& inv) noexcept {
    answer_blocking<holder>(inv, name(), Traits::is_member, [](holder& args) -> decltype(auto) { return call(args); });
  }

  static boost::asio::awaitable<void> run_async(std::unique_ptr<invocation> inv) {
    return answer_async<holder>(std::move(inv), name(), Traits::is_member, [](holder& args) { return call(args); });
  }

  static const std::string& name() {
    static const std::string n = name_of<F>();
    return n;
  }
};

template <auto F>
struct registration {
  static_assert(!wire_name<F>.empty() || derives_a_unique_name<F>(),
                "framex: this function is in an anonymous namespace or is a lambda, so the name it would "
                "travel under is not unique; give it one: template <> inline constexpr std::string_view "
                "framex::wire_name<&f> = \"service.f\";");
  using traits = fn_traits<decltype(F)>;
  static const function_entry& make() {
    using serve = served<F, traits>;
    function_entry e;
    e.name = serve::name();
    e.signature = wire_shape<traits>::signature();
    e.is_async = awaited<typename traits::result>::is_awaitable;
    e.run_inline = inline_ok<F>;
    if constexpr (awaited<typename traits::result>::is_awaitable) {
      e.run_async = &serve::run_async;
    } else {
      e.run_blocking = &serve::run_blocking;
    }
    return register_function(std::move(e));
  }
  // Registers once, whichever initialiser asks first (`entry`, `framex::require`).
  static const function_entry& get() {
    static const function_entry& e = make();
    return e;
  }
  static inline const function_entry& entry = get();
};

// ---- caller side: pack, send, decode ----

template <class O>
decltype(auto) object_value(O&& o) {
  if constexpr (requires { o.get(); *o.get(); } || std::is_pointer_v<std::remove_cvref_t<O>>) {
    return *o;
  } else if constexpr (is_reference_wrapper<std::remove_cvref_t<O>>::value) {
    return o.get();
  } else {
    return static_cast<O&&>(o);
  }
}

// Throws what a failed call's `ec` and reply say: a `remote_error` when the
// far side sent an error object, else a `std::system_error`.
[[noreturn]] inline void throw_failure(std::error_code ec, reply& r, const std::string& name) {
  if (r.error != nullptr) {
    throw remote_error(static_cast<errc>(ec.value()), std::move(r.error_type), std::move(r.error_message),
                       std::make_shared<const msgpack_value>(*r.error));
  }
  if (!r.error_type.empty()) throw remote_error(static_cast<errc>(ec.value()), std::move(r.error_type), std::move(r.error_message));
  if (!r.error_message.empty()) throw std::system_error(ec, r.error_message);
  throw std::system_error(ec, name);
}

// The pause before a call refused as `overloaded` is sent again: from 10 ms,
// doubling, to at most half a second.
inline constexpr auto first_overload_pause = std::chrono::milliseconds(10);
inline constexpr auto last_overload_pause = std::chrono::milliseconds(500);

// A pause, in a frame of its own: a timer in await_remote's frame would make
// every call's frame larger than Asio recycles without allocating.
inline boost::asio::awaitable<void> wait_for(std::chrono::steady_clock::duration pause) {
  boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, pause);
  co_await timer.async_wait(boost::asio::use_awaitable);
}

// Sends a call with `start` (which forwards to `start_remote` or its like),
// retrying `retries` times on a lost worker or overload, and decodes its result.
// All attempts share the call's deadline (`timeout` from now). A call refused
// as `overloaded` never ran: with retries allowed and a deadline, it is sent
// again after a pause that grows, as often as the deadline allows, without
// using up a retry.
template <class T, class Start>
boost::asio::awaitable<T> await_remote(Start start, const function_entry& fn, message_buffer params,
                                       std::chrono::steady_clock::duration timeout, unsigned retries,
                                       resource_needs needs,  // by value: the call options are gone when it runs
                                       std::vector<std::shared_ptr<const spilled_object>> keep = {}) {  // the objects its arguments refer to
  using clock = std::chrono::steady_clock;
  static constexpr auto token = boost::asio::as_tuple(boost::asio::use_awaitable);
  const bool has_deadline = timeout > clock::duration::zero();
  const auto deadline = has_deadline ? clock::now() + timeout : clock::time_point::max();
  clock::duration pause = first_overload_pause;
  std::error_code ec;
  reply r;
  for (unsigned attempt = 0;;) {
    const bool last = attempt >= retries;
    message_buffer sent = last ? std::move(params) : params.clone();
    const auto left = has_deadline ? std::max<clock::duration>(deadline - clock::now(), std::chrono::milliseconds(1)) : timeout;
    std::tie(ec, r) = co_await boost::asio::async_initiate<decltype(token), void(std::error_code, reply)>(
        [&](auto handler) {
          const boost::asio::any_io_executor caller = boost::asio::get_associated_executor(handler);
          start(fn, std::move(sent), left, needs, caller, std::move(handler));
        },
        token);
    if (last || (ec != errc::worker_lost && ec != errc::overloaded)) break;
    if (ec == errc::overloaded) {
      if (!has_deadline) ++attempt;
      else if (clock::now() + pause >= deadline) break;
      co_await wait_for(pause);
      pause = std::min<clock::duration>(2 * pause, last_overload_pause);
    } else {
      ++attempt;
    }
  }
  keep.clear();
  if (ec) throw_failure(ec, r, fn.name);
  if constexpr (!std::is_void_v<T>) {
    T value{};
    try {
      codec<T>::unpack(*r.result, value);
    } catch (const decode_error& e) {
      throw std::system_error(make_error_code(errc::signature_mismatch), fn.name + ": the result: " + e.what());
    }
    co_return value;
  }
}

// Packs an argument for a parameter of type `P`: an object reference as a
// reference (its name when spilled, kept in `keep` until the call ends),
// anything else as `P`'s value.
template <class P, class A>
void pack_argument(msgpack::packer<message_buffer>& p, const A& arg, std::vector<std::shared_ptr<const spilled_object>>& keep) {
  if constexpr (is_object_ref<A>) {
    codec<A>::pack(p, arg);
    if (arg.spilled()) keep.push_back(ref_access<typename A::value_type>::spilled(arg));
  } else {
    codec<decoded_t<P>>::pack(p, arg);
  }
}

/// Packs a call of `F` and ships it to a worker of `rt`. `T`, the result:
/// `object_ref<V>` for a call of a function returning `V` asks the worker
/// for its result as a reference (`remote_ref`).
template <auto F, class T, class Options, class Object, class... Args>
boost::asio::awaitable<T> call_distributed(runtime& rt, const Options& options, Object&& object, Args&&... args) {
  using traits = fn_traits<decltype(F)>;
  constexpr bool as_ref = is_object_ref<T> && !is_object_ref<typename awaited<typename traits::result>::type>;
  const function_entry& fn = registration<F>::entry;
  message_buffer params(request_headroom(fn));
  msgpack::packer<message_buffer> p(params);
  p.pack_array(static_cast<std::uint32_t>(served<F, traits>::arity + (as_ref ? 1 : 0)));
  if constexpr (as_ref) pack_result_as_ref(p, caller_id());
  if constexpr (traits::is_member) {
    codec<std::remove_cv_t<typename traits::object>>::pack(p, object_value(object));
  }
  std::vector<std::shared_ptr<const spilled_object>> keep;
  [&]<class... Ps>(type_list<Ps...>) { (pack_argument<Ps>(p, args, keep), ...); }(typename traits::params{});
  const auto start = [&rt](const function_entry& f, message_buffer b, std::chrono::steady_clock::duration t, const resource_needs& n,
                           const boost::asio::any_io_executor& caller, reply_handler h) {
    start_remote(rt, f, std::move(b), t, n, caller, std::move(h));
  };
  return await_remote<T>(start, fn, std::move(params), options.timeout, options.retries, options.resources, std::move(keep));
}

}  // namespace detail
}  // namespace framex
