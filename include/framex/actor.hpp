// framex/actor.hpp — state that lives in one place: an object whose methods
// are called remotely, one call at a time.
//
// @code
// struct Counter {
//   explicit Counter(int start) : total(start) {}
//   int add(int n) { return total += n; }
//   int total;
// };
// auto counter = co_await framex::spawn<Counter>(10);                          // constructed on a worker
// int v = co_await framex::remote<&Counter::add>.remote(counter, 5);           // 15: runs on that object
// auto hits = co_await framex::spawn<Counter>({.name = "hits", .max_restarts = 2}, 0);
// auto again = co_await framex::actor<Counter>::lookup("hits");                // the same actor
// co_await framex::kill(hits);
// @endcode
//
// Placement. In distributed mode the constructor runs on a worker chosen as a
// call's would be (least loaded, with `actor_options::resources` free), and
// the actor stays there: every call of its methods goes to that worker. In
// local mode the runtime owns the object. Same semantics in both:
//
// - Turns. An actor's calls run one at a time, in the order they reach it.
//   Blocking methods run on the pool (the worker's, or the runtime's), async
//   ones on an I/O thread. An async method holds the turn across its
//   `co_await`s unless the class opts in to interleaving
//   (`framex::actor_interleaves<C> = true`).
// - Lifetime. An unnamed actor lives while a handle to it does: handles
//   within a process share one reference, and a worker drops an actor once no
//   process holds one — a process whose last connection closed counts as gone
//   after `worker.actor_grace_ms`. A named actor lives until `kill`. `kill`
//   ends an actor at once: calls queued for it and calls made later fail with
//   `errc::actor_lost`; a running call finishes.
// - Faults. If the actor's worker is lost, its calls in flight and later ones
//   fail with `errc::actor_lost`. With `max_restarts`, the next call after the
//   loss re-creates the actor from its constructor's arguments on another
//   worker (counted in `stats_snapshot::actor_restarts`); the state it had is
//   not recovered, unless the class saves it: with `State save() const` and
//   `void load(State)` (any serializable `State`) and
//   `actor_options::snapshot_every = N`, the worker stores `save()` in
//   storage (`storage.path`) after every N-th call, and a re-created actor is
//   `load`ed from the last one. The snapshot goes with the caller's handles.
// - Errors. A method's exception reaches the caller as for any call; the
//   actor lives on.
//
// Requirements. In distributed mode the constructor's arguments and the
// methods' parameters and results must cross the wire (see codec.hpp); the
// class itself need not. An actor whose constructor arguments cannot cross it
// is made in-process, like a function that cannot.
#pragma once

#include <boost/asio/async_result.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "framex/detail/actor.hpp"
#include "framex/remote.hpp"

namespace framex {

/// How an actor is made (`framex::spawn`). Trivially destructible, like
/// `call_options`, so a braced temporary is safe in a `co_await` expression
/// (GCC 12 destroys such temporaries twice); `spawn` copies what it refers to.
struct actor_options {
  /// Non-empty: a named actor, found by `actor<T>::lookup`, living until
  /// killed. A name is unique among the actors of a runtime's workers.
  std::string_view name{};
  /// Distributed mode: how many times the actor is re-created after its
  /// worker was lost.
  unsigned max_restarts = 0;
  /// Distributed mode: what the actor's worker must have free (as
  /// `call_options::resources`); held by its construction only.
  resource_needs resources{};
  /// Deadline for the construction; zero: the runtime's default.
  std::chrono::steady_clock::duration timeout{};
  /// Distributed mode, a class with `save`/`load` (see the top of this
  /// file): store its state after every this many calls, for a restart to
  /// begin from; 0: never.
  unsigned snapshot_every = 0;
  /// Runtime to use; null: `runtime::current()`.
  framex::runtime* runtime = nullptr;
};

/// True when the async methods of `C`'s actors may interleave at their
/// `co_await`s; by default an actor's call holds its turn until it returns.
template <class C>
inline constexpr bool actor_interleaves = false;

/// The name `C`'s actors travel under; empty (the default): derived from its
/// qualified name. Specialize it for a name that survives renames.
template <class C>
inline constexpr std::string_view actor_class_name{};

namespace detail {

template <class C>
std::string derived_class_name() {
  const std::string_view pretty = __PRETTY_FUNCTION__;  // "... [with C = Counter; ...]" or "[C = Counter]"
  std::string_view s = pretty.substr(pretty.find("C = ") + 4);
  return std::string(s.substr(0, s.find_first_of(";]")));
}

template <class C>
const std::string& class_name_of() {
  static const std::string name = actor_class_name<C>.empty() ? derived_class_name<C>() : std::string(actor_class_name<C>);
  return name;
}

}  // namespace detail

/// A handle to an actor of class `T`. Cheap to copy; the actor lives while
/// any handle does (unless named). Its methods are called through
/// `framex::remote<&T::method>.remote(handle, args...)`.
template <class T>
class actor {
 public:
  /// An empty handle.
  actor() = default;
  explicit actor(std::shared_ptr<detail::actor_state> state) noexcept : state_(std::move(state)) {}

  /// The named actor of class `T` called `name`, in `rt` (null: the current
  /// runtime) or on its workers. Fails with `errc::actor_lost` if there is none.
  static boost::asio::awaitable<actor> lookup(std::string_view name, framex::runtime* rt = nullptr) {
    return found(detail::lookup_actor(runtime::or_current(rt), detail::class_name_of<T>(), std::string(name)));
  }

  [[nodiscard]] explicit operator bool() const noexcept { return state_ != nullptr; }
  /// Its name; empty when unnamed.
  [[nodiscard]] const std::string& name() const noexcept { return state_->name; }
  /// Where it lives: "local", or the address of its worker.
  [[nodiscard]] std::string where() const {
    if (!state_->remote) return "local";
    std::lock_guard lock(state_->mutex);
    return state_->worker;
  }
  [[nodiscard]] const std::shared_ptr<detail::actor_state>& state() const noexcept { return state_; }

 private:
  static boost::asio::awaitable<actor> found(boost::asio::awaitable<std::shared_ptr<detail::actor_state>> lookup) {
    std::shared_ptr<detail::actor_state> state = co_await std::move(lookup);
    co_return actor(std::move(state));
  }

  std::shared_ptr<detail::actor_state> state_;
};

/// True for an actor class whose state framex can snapshot: `save() const`
/// gives a serializable value, and `load` takes it back.
template <class C>
concept saves_state = requires(const C& c, C& m) {
  c.save();
  m.load(c.save());
} && detail::wire_value<decltype(std::declval<const C&>().save())>;

namespace detail {

// ---- worker side ----

template <class T, class... A>
struct actor_constructor {
  using holder = std::tuple<A...>;

  static const std::string& name() {
    static const std::string n = [] {
      std::string s = class_name_of<T>() + "::new(";
      ((s += (s.back() == '(' ? "" : ","), s += codec<A>::schema()), ...);
      return s + ")";
    }();
    return n;
  }

  static std::string save(const void* object) {
    msgpack::sbuffer packed;
    msgpack::packer<msgpack::sbuffer> p(packed);
    const auto state = static_cast<const T*>(object)->save();
    codec<std::remove_cvref_t<decltype(state)>>::pack(p, state);
    return std::string(packed.data(), packed.size());
  }
  static void load(void* object, const msgpack::object& packed) {
    std::remove_cvref_t<decltype(std::declval<const T&>().save())> state{};
    codec<decltype(state)>::unpack(packed, state);
    static_cast<T*>(object)->load(std::move(state));
  }

  static std::shared_ptr<void> construct(invocation& inv) noexcept {
    try {
      holder args;
      if (!decode_arguments(inv, args, name(), false)) return nullptr;
      return std::apply([](A&... a) { return std::shared_ptr<void>(std::make_shared<T>(std::move(a)...)); }, args);
    } catch (...) {
      fail_current(inv);
      return nullptr;
    }
  }

  static const function_entry& get() {
    static const function_entry& e = []() -> const function_entry& {
      function_entry f;
      f.name = name();
      f.signature = name() + "->actor";
      f.actor_class = class_name_of<T>();
      f.construct = &construct;
      if constexpr (saves_state<T>) {
        f.save = &save;
        f.load = &load;
      }
      return register_function(std::move(f));
    }();
    return e;
  }
  static inline const function_entry& entry = get();
};

template <auto F, class Traits = fn_traits<decltype(F)>, class Params = typename Traits::params>
struct actor_method;
template <auto F, class Traits, class... Ps>
struct actor_method<F, Traits, type_list<Ps...>> {
  using object_type = std::remove_cv_t<typename Traits::object>;
  using holder = std::tuple<decoded_t<Ps>...>;
  using shape = wire_shape<fn_traits_base<typename Traits::result, void, Ps...>>;
  static constexpr bool is_async = awaited<typename Traits::result>::is_awaitable;

  static decltype(auto) call(void* object, holder& args) {
    return std::apply([object](auto&... a) -> decltype(auto) { return std::invoke(F, *static_cast<object_type*>(object), static_cast<Ps&&>(a)...); },
                      args);
  }
  static void run_on(invocation& inv, void* object) {
    answer_blocking<holder>(inv, name(), false, [object](holder& a) -> decltype(auto) { return call(object, a); });
  }
  static boost::asio::awaitable<void> run_async_on(std::unique_ptr<invocation> inv, void* object) {
    return answer_async<holder>(std::move(inv), name(), false, [object](holder& a) { return call(object, a); });
  }
  static const std::string& name() {
    static const std::string n = name_of<F>() + "@actor";
    return n;
  }
  static const function_entry& get() {
    static const function_entry& e = []() -> const function_entry& {
      function_entry f;
      f.name = name();
      f.signature = shape::signature();
      f.actor_class = class_name_of<object_type>();
      f.is_async = is_async;
      f.interleaves = actor_interleaves<object_type>;
      if constexpr (is_async) {
        f.run_async_on = &run_async_on;
      } else {
        f.run_on = &run_on;
      }
      return register_function(std::move(f));
    }();
    return e;
  }
  static inline const function_entry& entry = get();
};

// ---- caller side ----

// Holds an actor's turn until destroyed.
class turn_held {
 public:
  explicit turn_held(turnstile* t) noexcept : turn_(t) {}
  turn_held(turn_held&& o) noexcept : turn_(std::exchange(o.turn_, nullptr)) {}
  turn_held& operator=(turn_held&&) = delete;
  ~turn_held() {
    if (turn_ != nullptr) turn_->leave();
  }

 private:
  turnstile* turn_;
};

inline boost::asio::awaitable<turn_held> take_turn(turnstile& turn) {
  if (!turn.try_enter()) {
    const std::error_code ec = co_await boost::asio::async_initiate<const boost::asio::use_awaitable_t<>&, void(std::error_code)>(
        [&turn](auto handler) {
          const auto ex = boost::asio::get_associated_executor(handler);
          turn.wait(ex, std::move(handler));
        },
        boost::asio::use_awaitable);
    if (ec) throw std::system_error(ec);
  }
  co_return turn_held(&turn);
}

// A local actor's object, or `actor_lost`.
template <class C>
std::shared_ptr<void> local_object(const actor_state& state) {
  std::shared_ptr<void> object;
  {
    std::lock_guard lock(state.mutex);
    object = state.object;
  }
  if (object == nullptr) throw std::system_error(make_error_code(errc::actor_lost), class_name_of<C>() + ": the actor was killed");
  return object;
}

// Runs a blocking method on the pool. Pinned: a call abandoned while it runs
// is waited for, so the turn passes only once the body has returned.
template <auto F, class C, class... Ps>
struct actor_invoker {
  static constexpr bool pinned = true;
  std::shared_ptr<void> object;
  std::tuple<typename stored<Ps>::type...>* args;
  decltype(auto) operator()() {
    return std::apply([this](auto&... a) -> decltype(auto) { return std::invoke(F, *static_cast<C*>(object.get()), stored<Ps>::get(a)...); },
                      *args);
  }
};

template <auto F, class T, class C, class... Ps>
boost::asio::awaitable<T> local_actor_call(std::shared_ptr<actor_state> state, typename stored<Ps>::type... held) {
  using result = typename fn_traits<decltype(F)>::result;
  std::tuple<typename stored<Ps>::type...> args(std::move(held)...);
  // The object is taken once the turn is: a call that waited while the actor
  // was killed finds it gone.
  if constexpr (awaited<result>::is_awaitable) {
    std::optional<turn_held> turn;
    if constexpr (!actor_interleaves<C>) turn.emplace(co_await take_turn(state->turn));
    std::shared_ptr<void> object = local_object<C>(*state);
    co_return co_await std::apply([&](auto&... a) { return std::invoke(F, *static_cast<C*>(object.get()), stored<Ps>::get(a)...); }, args);
  } else {
    static stats_cell& stats = stats_for(name_of<F>(), false);
    turn_held turn = co_await take_turn(state->turn);
    std::shared_ptr<void> object = local_object<C>(*state);
    // Made, then awaited: GCC 12 destroys a co_await expression's temporaries twice.
    auto body = run_blocking<result>(*state->rt, {}, stats, actor_invoker<F, C, Ps...>{std::move(object), &args});
    co_return co_await std::move(body);
  }
}

template <auto F, class T, class... Ps>
boost::asio::awaitable<T> remote_actor_call(std::shared_ptr<actor_state> state, std::chrono::steady_clock::duration timeout,
                                            typename stored<Ps>::type... held) {
  using method = actor_method<F>;
  const function_entry& fn = method::entry;
  auto locating = locate_actor(state);  // made, then awaited (see local_actor_call)
  const actor_address at = co_await std::move(locating);
  message_buffer params(request_headroom(fn));
  msgpack::packer<message_buffer> p(params);
  pack_actor_call_head(p, at.id, caller_id(), static_cast<std::uint32_t>(sizeof...(Ps)));
  (codec<decoded_t<Ps>>::pack(p, held), ...);
  runtime& rt = *state->rt;
  const auto start = [&rt, &at](const function_entry& f, message_buffer b, std::chrono::steady_clock::duration t,
                                const resource_needs&, const boost::asio::any_io_executor& caller, reply_handler h) {
    start_pinned(rt, f, std::move(b), t, at.worker, caller, std::move(h));
  };
  std::error_code lost;
  std::string why;
  try {
    auto call = await_remote<T>(start, fn, std::move(params), timeout, 0, {});
    co_return co_await std::move(call);
  } catch (const std::system_error& e) {
    if (!actor_call_lost(*state, at, e.code())) throw;
    lost = make_error_code(errc::actor_lost);
    why = e.what();
  }
  throw std::system_error(lost, state->class_name + " actor " + std::to_string(at.id) + " on " + at.worker + ": " + why);
}

template <auto F, class Awaitable, class... Ps, class T, class... Args>
Awaitable call_actor(type_list<Ps...>, const call_options& options, const actor<T>& handle, Args&&... args) {
  using traits = fn_traits<decltype(F)>;
  using C = std::remove_cv_t<typename traits::object>;
  using value = typename awaited<typename traits::result>::type;
  if (!handle) throw std::system_error(make_error_code(errc::actor_lost), name_of<F>() + ": an empty actor handle");
  const auto& state = handle.state();
  if (state->remote) {
    if constexpr (actor_method<F>::shape::ok) {
      return remote_actor_call<F, value, Ps...>(state, options.timeout, stored<Ps>::make(static_cast<Ps&&>(args))...);
    } else {
      throw std::system_error(make_error_code(errc::bad_arguments),
                              name_of<F>() + ": its parameters or result cannot cross the wire, and the actor lives on a worker");
    }
  }
  auto call = local_actor_call<F, value, C, Ps...>(state, stored<Ps>::make(static_cast<Ps&&>(args))...);
  if (options.timeout <= std::chrono::steady_clock::duration::zero()) return call;
  return await_with_deadline(std::move(call), options.timeout);
}

// Runs a constructor on the pool.
template <class T, class... A>
struct constructing {
  static constexpr bool pinned = false;
  std::tuple<A...> args;
  std::shared_ptr<T> operator()() {
    return std::apply([](A&... a) { return std::make_shared<T>(std::move(a)...); }, args);
  }
};

template <class T, class... A>
boost::asio::awaitable<actor<T>> spawn_actor(actor_options options, std::string name, A... args) {
  runtime& rt = runtime::or_current(options.runtime);
  if constexpr ((wire_value<A> && ...)) {
    if (is_distributed(rt)) {
      const function_entry& ctor = actor_constructor<T, A...>::entry;
      message_buffer packed(request_headroom(ctor));
      msgpack::packer<message_buffer> p(packed);
      const std::uint64_t snapshot_key = saves_state<T> && options.snapshot_every > 0 ? new_snapshot_key() : 0;
      pack_actor_spawn_head(p, caller_id(), name, static_cast<std::uint32_t>(sizeof...(A)), snapshot_key);
      (codec<A>::pack(p, args), ...);
      pack_actor_spawn_tail(p, options.snapshot_every, snapshot_key);
      resource_map needs;
      for (const auto& item : options.resources) needs[std::string(item.name)] = item.amount;
      auto spawning = spawn_remote_actor(rt, ctor, std::move(packed), class_name_of<T>(), std::move(name), options.max_restarts,
                                         std::move(needs), options.timeout);  // made, then awaited (see local_actor_call)
      std::shared_ptr<actor_state> state = co_await std::move(spawning);
      state->snapshot_key = snapshot_key;
      co_return actor<T>(std::move(state));
    }
  }
  static stats_cell& stats = stats_for(class_name_of<T>() + "::new", false);
  auto constructed = run_blocking<std::shared_ptr<T>>(rt, options.timeout, stats, constructing<T, A...>{std::tuple<A...>(std::move(args)...)});
  std::shared_ptr<T> object = co_await std::move(constructed);
  co_return actor<T>(adopt_local_actor(rt, std::move(object), class_name_of<T>(), std::move(name)));
}

}  // namespace detail

/// Makes an actor of class `T` from `args` (see the top of this file). The
/// arguments are stored by value; the constructor runs on the pool (local) or
/// on a worker.
///
/// @par Per-operation cancellation
/// `terminal`, from the awaiting coroutine: the await throws
/// `errc::cancelled` (a blocking constructor already running finishes where
/// it runs). No other type.
template <class T, class... Args>
  requires(sizeof...(Args) == 0 || !(std::is_same_v<std::remove_cvref_t<Args>, actor_options> || ...))
boost::asio::awaitable<actor<T>> spawn(Args&&... args) {
  return detail::spawn_actor<T>(actor_options{}, std::string(), std::decay_t<Args>(std::forward<Args>(args))...);
}

/// The same with options: `spawn<Counter>({.name = "hits", .max_restarts = 2}, 10)`.
template <class T, class... Args>
boost::asio::awaitable<actor<T>> spawn(actor_options options, Args&&... args) {
  return detail::spawn_actor<T>(options, std::string(options.name), std::decay_t<Args>(std::forward<Args>(args))...);
}

/// Ends the actor now: its queued calls and any later call fail with
/// `errc::actor_lost`; a call running finishes. A named actor's name is free
/// again.
template <class T>
boost::asio::awaitable<void> kill(const actor<T>& handle) {
  if (!handle) throw std::system_error(make_error_code(errc::actor_lost), "framex::kill: an empty actor handle");
  return detail::kill_actor(handle.state());
}

}  // namespace framex
