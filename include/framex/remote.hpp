// framex/remote.hpp — wrap a function once, call it with `co_await fn.remote(...)`.
//
// `framex::remote<&f>` is a constexpr object describing a function `f`: a free
// function, a static member function or a member function (overloads are picked
// by a cast: `remote<static_cast<int (*)(int)>(&f)>`). Its `.remote(args...)`
// returns an awaitable for `f`'s result; where the work runs is the runtime's
// business, never the call site's:
//
// | `f` returns          | local runtime                          | distributed runtime           |
// |----------------------|----------------------------------------|-------------------------------|
// | `asio::awaitable<T>` | co_awaited directly on the caller's    | a msgpack-RPC request to a    |
// |                      | executor, no hop                       | worker, run on its I/O thread |
// | anything else        | run on the runtime's pool; the caller  | the same, run on the worker's |
// |                      | resumes on its own executor            | pool                          |
//
// In both, the caller resumes on its own executor. A function whose signature
// cannot cross the wire (see `distributable` below) runs locally in every mode.
//
// Arguments are checked against `f`'s parameters at compile time: `.remote`
// takes exactly `f`'s parameter types (so braced lists such as `{1, 2, 3}` work),
// and a call that does not fit fails with a static_assert whose instantiation
// names `f`, the argument's position and both types.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <type_traits>
#include <utility>

#include "framex/detail/distributed_call.hpp"
#include "framex/detail/object_store.hpp"
#include "framex/detail/signature.hpp"
#include "framex/resources.hpp"
#include "framex/runtime.hpp"

namespace framex {

/// Per-call options, given through `fn.with({...})`.
struct call_options {
  /// Deadline for the call, measured from when it is awaited; zero means none.
  /// On expiry the wait ends with `framex::errc::timeout`.
  std::chrono::steady_clock::duration timeout{};
  /// Runtime to run on; null means `runtime::current()`. In local mode only
  /// blocking functions use it (an async function runs on the caller's executor).
  framex::runtime* runtime = nullptr;
  /// Distributed mode: further attempts after a failure that another worker may
  /// not have, `worker_lost` or `overloaded`; each attempt picks a worker anew,
  /// and all share the one `timeout`. A call lost after it was sent may have
  /// run: retried calls run at least once. A call refused as `overloaded` never
  /// ran: with a `timeout` and at least one retry, it is sent again after a
  /// pause (10 ms, doubling to 500 ms) as often as the timeout allows, without
  /// using up a retry.
  unsigned retries = 0;
  /// Distributed mode: what this call needs of a worker, beyond what its
  /// function needs (`framex::require`); see framex/resources.hpp.
  resource_needs resources{};
};

/// Declares what `F` needs of a worker in distributed mode: its calls go only
/// to workers that have every amount free, and fail at once with
/// `errc::no_worker` (naming what is missing) when no worker has them. Call
/// at start-up, before any call of `F`, e.g. at namespace scope:
///
/// @code
/// const bool train_needs_a_gpu = framex::require<&train>({.gpu = 1});
/// @endcode
///
/// (`requires` is a C++20 keyword, hence the name.) Returns true.
template <auto F>
bool require(const resources& needs) {
  detail::set_needs(detail::registration<F>::get(), needs.to_map());
  return true;
}

namespace detail {
template <class... T>
inline constexpr bool always_false = false;
template <auto F, class Awaitable, class... Ps, class Object, class... Args>
Awaitable start_call(type_list<Ps...>, const call_options& options, Object&& object, Args&&... args);
template <auto F, class Object, class... Args>
decltype(auto) invoke_now(Object&& object, Args&&... args);
template <class T, class Token>
auto complete_with(boost::asio::awaitable<T> call, Token&& token);

// An object reference standing for a parameter of type `P` (by value or const reference).
template <class A, class P>
concept ref_for = is_object_ref<std::remove_cvref_t<A>> && !(std::is_lvalue_reference_v<P> && !std::is_const_v<std::remove_reference_t<P>>) &&
                  std::is_same_v<typename std::remove_cvref_t<A>::value_type, decoded_t<P>>;

// What a local call with references holds for a parameter of type `P`
// until `F` runs: the referred value, or the argument as stored.
template <class T>
struct held_ref {
  std::shared_ptr<const T> value;
};
template <class P, class A>
auto hold_for(A&& a) {
  if constexpr (ref_for<A, P>) {
    return held_ref<decoded_t<P>>{a.share()};
  } else if constexpr (std::is_reference_v<P>) {
    return stored<P>::make(static_cast<P>(a));
  } else {
    return stored<P>::make(P(static_cast<A&&>(a)));
  }
}
template <class P, class T>
decltype(auto) give(held_ref<T>& held) {
  if constexpr (std::is_reference_v<P>) {
    return static_cast<const T&>(*held.value);
  } else {
    return T(*held.value);
  }
}
template <class P, class H>
decltype(auto) give(H& held) {
  return stored<P>::get(held);
}
}  // namespace detail

/// A wrapped function: see the top of this file. `Bound` is the type holding a
/// bound object (see `bind`), `void` when none is bound. Cheap to copy.
template <auto F, class Bound = void, class Params = typename detail::fn_traits<decltype(F)>::params>
class basic_remote;

template <auto F, class Bound, class... Ps>
class basic_remote<F, Bound, detail::type_list<Ps...>> {
  using traits = detail::fn_traits<decltype(F)>;
  using object_type = typename traits::object;
  using held_bound = std::conditional_t<std::is_void_v<Bound>, detail::no_object, Bound>;

 public:
  /// What `F` returns.
  using function_result = typename traits::result;
  /// True when `F` returns `asio::awaitable<T>`.
  static constexpr bool is_async = detail::awaited<function_result>::is_awaitable;
  /// What `co_await fn.remote(...)` yields.
  using value_type = typename detail::awaited<function_result>::type;
  /// What `.remote(...)` returns.
  using awaitable_type = std::conditional_t<is_async, function_result, boost::asio::awaitable<value_type>>;
  /// True when a call must name the object first (an unbound member function).
  static constexpr bool needs_object = traits::is_member && std::is_void_v<Bound>;

 private:
  // The shapes of call that fit F; used to route misfits to a clear diagnostic.
  static void accept(Ps...)
    requires(!needs_object);
  template <class O>
    requires(needs_object && detail::object_for<object_type, O>)
  static void accept(O&&, Ps...);
  template <class... Args>
  static constexpr bool fits = requires(Args&&... a) { accept(static_cast<Args&&>(a)...); };
  // Calls passing an `object_ref<T>` (one at least) where `F` takes a `T`.
  template <class... Args>
  static consteval bool takes_refs() {
    if constexpr (sizeof...(Args) != sizeof...(Ps)) {
      return false;
    } else {
      return (detail::ref_for<Args, Ps> || ...) && ((detail::ref_for<Args, Ps> || std::is_convertible_v<Args&&, Ps>) && ...);
    }
  }
  template <class O, class... Args>
  static consteval bool member_takes_refs() {
    return detail::object_for<object_type, O> && !detail::actor_handle<std::remove_cvref_t<O>>::value && takes_refs<Args...>();
  }
  template <class... Args>
  static consteval bool refs_fit() {
    if constexpr (!needs_object) {
      return takes_refs<Args...>();
    } else if constexpr (sizeof...(Args) == 0) {
      return false;
    } else {
      return member_takes_refs<Args...>();
    }
  }

  // Fails to compile, naming F and the argument that does not fit.
  template <class... Args>
  static void reject() {
    if constexpr (needs_object) {
      static_assert(detail::diagnose<F, detail::type_list<object_type&, Ps...>, Args...>::run());
    } else {
      static_assert(detail::diagnose<F, detail::type_list<Ps...>, Args...>::run());
    }
    static_assert(detail::always_false<Args...>, "framex: these arguments do not fit the wrapped function");
  }

 public:
  static_assert(!std::is_reference_v<value_type>,
                "framex::remote: the wrapped function returns a reference; a remote call returns "
                "values, so return by value");

  constexpr basic_remote() noexcept = default;
  constexpr basic_remote(held_bound object, call_options options) noexcept
      : object_(std::move(object)), options_(options) {}

  /// Starts a call of `F` with `args` and returns an awaitable for its result.
  ///
  /// Completion: the awaitable yields `F`'s result or throws. A local call rethrows
  /// the exception `F` threw, as its original type; a distributed one throws
  /// `framex::remote_error` (its type name and message); framex's own failures
  /// throw `std::system_error` with a `framex::errc` code.
  ///
  /// Arguments: a blocking call stores every argument by value before it starts,
  /// except non-const lvalue reference parameters, which alias the caller's object
  /// (so the function's writes are seen by the caller).
  ///
  /// Cancellation: honours the awaiting coroutine's cancellation slot (e.g.
  /// `awaitable_operators` `||`) and `call_options::timeout`. A blocking call not
  /// yet started never starts; one running is abandoned at once (its body finishes
  /// on the pool and its result is dropped) and the wait ends with `cancelled` or
  /// `timeout`; if the call aliases caller memory (a reference parameter, or an
  /// object passed by reference or raw pointer), the wait ends when the body
  /// returns, so the body never writes into a frame that is gone. An async
  /// function's cancellation is its own: Asio cancels what it awaits; with a
  /// timeout, the wait ends with `timeout` once the function has stopped.
  ///
  /// Thread safety: may be called from any thread, concurrently.
  awaitable_type remote(Ps... args) const
    requires(!needs_object)
  {
    return detail::start_call<F, awaitable_type>(detail::type_list<Ps...>{}, options_, object_, static_cast<Ps&&>(args)...);
  }

  /// As above, for an unbound member function: the object comes first, as with
  /// `std::invoke` (a reference, a pointer, a smart pointer, or an rvalue that
  /// the call then owns).
  template <class O>
    requires(needs_object && detail::object_for<object_type, O>)
  awaitable_type remote(O&& object, Ps... args) const {
    return detail::start_call<F, awaitable_type>(detail::type_list<Ps...>{}, options_, static_cast<O&&>(object), static_cast<Ps&&>(args)...);
  }

  /// As above, with an `object_ref<T>` (framex/object_ref.hpp) for one or
  /// more parameters of type `T` or `const T&`. In distributed mode a spilled
  /// reference travels as its name and the worker reads the object from
  /// storage (once, then from its cache); in local mode `F` gets the value.
  template <class... Args>
    requires(!needs_object && refs_fit<Args...>())
  awaitable_type remote(Args&&... args) const {
    if constexpr (detail::distributable<F>) {
      runtime& rt = runtime::or_current(options_.runtime);
      if (detail::is_distributed(rt)) return detail::call_distributed<F, value_type>(rt, options_, object_, static_cast<Args&&>(args)...);
    }
    return with_values(*this, detail::no_object{}, detail::hold_for<Ps>(static_cast<Args&&>(args))...);
  }
  template <class O, class... Args>
    requires(needs_object && refs_fit<O, Args...>())
  awaitable_type remote(O&& object, Args&&... args) const {
    if constexpr (detail::distributable<F>) {
      runtime& rt = runtime::or_current(options_.runtime);
      if (detail::is_distributed(rt)) return detail::call_distributed<F, value_type>(rt, options_, static_cast<O&&>(object), static_cast<Args&&>(args)...);
    }
    using store = detail::call_target<object_type, O>;
    return with_values(*this, store::make(static_cast<O&&>(object)), detail::hold_for<Ps>(static_cast<Args&&>(args))...);
  }

  /// As `remote(args...)`, with the result as a reference (`co_await`
  /// yields `object_ref<T>`): in distributed mode a result packed to
  /// `storage.inline_threshold` bytes or more is written to storage by the
  /// worker, and only its name comes back, so the next call can pass it on
  /// without the data crossing this process. In local mode the reference holds
  /// the result. Not for actor methods.
  template <class... Args>
    requires(!std::is_void_v<value_type> && (fits<Args...> || refs_fit<Args...>()))
  boost::asio::awaitable<object_ref<value_type>> remote_ref(Args&&... args) const {
    static_assert(!(detail::actor_handle<std::remove_cvref_t<Args>>::value || ...), "framex: remote_ref is not for actor methods");
    if constexpr (detail::distributable<F>) {
      runtime& rt = runtime::or_current(options_.runtime);
      if (detail::is_distributed(rt)) {
        if constexpr (needs_object) {
          return [&]<class O, class... Rest>(O&& object, Rest&&... rest) {
            return detail::call_distributed<F, object_ref<value_type>>(rt, options_, static_cast<O&&>(object), static_cast<Rest&&>(rest)...);
          }(static_cast<Args&&>(args)...);
        } else {
          return detail::call_distributed<F, object_ref<value_type>>(rt, options_, object_, static_cast<Args&&>(args)...);
        }
      }
    }
    return held_as_ref(remote(static_cast<Args&&>(args)...));
  }

  /// Catches calls whose arguments do not fit, to say which argument and why.
  template <class... Args>
    requires(!fits<Args...> && !refs_fit<Args...>())
  void remote(Args&&...) const {
    reject<Args...>();
  }

  /// `remote(args...)` for any Asio completion token: a callback,
  /// `asio::use_future` from a plain thread, `asio::deferred`,
  /// `asio::as_tuple(...)`, `asio::use_awaitable`...
  ///
  /// Completion signature: `void(std::exception_ptr, T)`, or
  /// `void(std::exception_ptr)` when `F` returns nothing; the exception is what
  /// `co_await fn.remote(args...)` would throw. The handler runs on the
  /// token's associated executor, else on a thread of Asio's system executor.
  /// The arguments are held by the operation until it completes (non-const
  /// lvalue reference parameters, and an object given as an lvalue, are
  /// referred to: they must outlive it). The call starts at once, except with
  /// `asio::deferred`, where it starts when the deferred operation is launched.
  ///
  /// @par Completion signature
  /// `void(std::exception_ptr, T)`; `void(std::exception_ptr)` for `void`.
  ///
  /// @par Per-operation cancellation
  /// `terminal` only (the operation runs as a coroutine through
  /// `asio::co_spawn`, which forwards no other type): the wait ends with
  /// `errc::cancelled`; in distributed mode the worker is told
  /// (`framex.cancel`) and drops the call if it has not begun, an async one
  /// is cancelled there; a blocking body that runs finishes on its pool.
  /// `partial` and `total` are not supported: a call that may have run
  /// elsewhere cannot promise to have had no effect.
  ///
  /// @par Thread safety
  /// The wrapper is immutable: any thread may start calls through it at once.
  template <class Token>
    requires(!needs_object)
  auto async_remote(Ps... args, Token&& token) const {
    return detail::complete_with(owned(*this, detail::no_object{}, detail::stored<Ps>::make(static_cast<Ps&&>(args))...),
                                 static_cast<Token&&>(token));
  }
  /// As above, for an unbound member function: the object (or an actor handle) first.
  template <class O, class Token>
    requires(needs_object && detail::object_for<object_type, O>)
  auto async_remote(O&& object, Ps... args, Token&& token) const {
    using store = detail::call_target<object_type, O>;
    return detail::complete_with(owned(*this, store::make(static_cast<O&&>(object)), detail::stored<Ps>::make(static_cast<Ps&&>(args))...),
                                 static_cast<Token&&>(token));
  }

  /// Calls `F` directly, here and now, as if it had not been wrapped.
  function_result operator()(Ps... args) const
    requires(!needs_object)
  {
    return detail::invoke_now<F>(object_, static_cast<Ps&&>(args)...);
  }
  template <class O>
    requires(needs_object && detail::object_for<object_type, O>)
  function_result operator()(O&& object, Ps... args) const {
    return std::invoke(F, static_cast<O&&>(object), static_cast<Ps&&>(args)...);
  }
  template <class... Args>
    requires(!fits<Args...> && !refs_fit<Args...>())
  void operator()(Args&&...) const {
    reject<Args...>();
  }

  /// The same function with per-call options: `fn.with({.timeout = 200ms}).remote(x)`.
  [[nodiscard]] constexpr basic_remote with(call_options options) const noexcept { return {object_, options}; }

  /// Binds the object of a member function, so calls read `bound.remote(args...)`.
  /// Takes a named object (referred to, which pins calls to it: see `remote`) or a
  /// pointer or smart pointer (a `std::shared_ptr` keeps the object alive for
  /// every call, so calls can be abandoned at once).
  template <class O>
    requires(needs_object && detail::object_for<object_type, O>)
  [[nodiscard]] auto bind(O&& object) const {
    using store = detail::call_target<object_type, O>;
    static_assert(!store::is_object || std::is_lvalue_reference_v<O>,
                  "framex: bind() refers to its object; pass a named object or a smart pointer, "
                  "not a temporary");
    return basic_remote<F, typename store::type>(store::make(static_cast<O&&>(object)), options_);
  }

  [[nodiscard]] constexpr const call_options& options() const noexcept { return options_; }

 private:
  // A call that owns its arguments (and its object, unless referred to).
  template <class Held>
  static boost::asio::awaitable<value_type> owned(basic_remote self, Held object, typename detail::stored<Ps>::type... held) {
    auto call = [&] {  // made, then awaited: GCC 12 destroys a co_await expression's temporaries twice
      if constexpr (std::is_same_v<Held, detail::no_object>) {
        return self.remote(detail::stored<Ps>::get(held)...);
      } else {
        return self.remote(std::move(object), detail::stored<Ps>::get(held)...);
      }
    }();
    co_return co_await std::move(call);
  }

  // A local call with references: holds each referred value while `F` runs.
  template <class Held, class... H>
  static awaitable_type with_values(basic_remote self, Held object, H... held) {
    auto call = [&] {
      if constexpr (std::is_same_v<Held, detail::no_object>) {
        return self.remote(detail::give<Ps>(held)...);
      } else {
        return self.remote(std::move(object), detail::give<Ps>(held)...);
      }
    }();
    co_return co_await std::move(call);
  }

  // A local call's result, as a reference holding it.
  static boost::asio::awaitable<object_ref<value_type>> held_as_ref(awaitable_type call) {
    value_type value = co_await std::move(call);
    auto held = std::make_shared<const value_type>(std::move(value));
    co_return detail::ref_access<value_type>::make(std::move(held), nullptr);
  }

  [[no_unique_address]] held_bound object_{};
  call_options options_{};
};

/// The wrapper for `F`; see the top of this file.
///
/// @code
/// int heavy_job(int x) { return x * 2; }
/// inline constexpr auto heavy = framex::remote<&heavy_job>;
/// int a = co_await heavy.remote(21);                                   // 42
/// int b = co_await heavy.with({.timeout = 200ms}).remote(21);
/// @endcode
template <auto F>
inline constexpr basic_remote<F> remote{};

/// True when every type in `F`'s signature can cross the wire (see codec.hpp),
/// so a distributed runtime ships `F`'s calls to workers. Functions that take
/// non-const references or types without a codec always run in-process.
/// `static_assert(framex::distributable<&f>)` makes the requirement explicit.
template <auto F>
inline constexpr bool distributable = detail::distributable<F>;

/// Registers `F` with this process's workers without calling it. Any use of
/// `remote<F>.remote(...)` in the binary registers `F` already; this is for a
/// worker-only function, called only by other programs.
template <auto F>
void expose() {
  (void)detail::registration<F>::entry;  // a type without a codec fails here, named by codec<T>
}

}  // namespace framex

#include "framex/impl/remote.hpp"
#include "framex/object_ref.hpp"  // object_ref<T>, which remote_ref returns and remote takes
