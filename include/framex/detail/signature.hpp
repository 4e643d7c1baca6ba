// What framex learns from a wrapped function's type, and how a call's arguments
// are held until the function runs.
//
// A blocking call may be abandoned (timeout, cancellation) while its body keeps
// running on the pool, so the arguments it reads must not live in the caller's
// frame. Every argument is therefore stored by value in the call, except a
// non-const lvalue reference parameter, which must alias the caller's object,
// and an object passed by reference or raw pointer to a member function. A call
// holding such an alias is "pinned": it is never abandoned once its body runs.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <cstddef>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>

namespace framex::detail {

template <class... T>
struct type_list {
  static constexpr std::size_t size = sizeof...(T);
};

template <class T>
struct awaited {
  static constexpr bool is_awaitable = false;
  using type = T;
};
template <class T, class Executor>
struct awaited<boost::asio::awaitable<T, Executor>> {
  static constexpr bool is_awaitable = true;
  using type = T;
  using executor_type = Executor;
};

template <class F>
struct fn_traits {
  static_assert(sizeof(F) == 0,
                "framex::remote<F>: F must be a pointer to a function, a static member function "
                "or a member function without ref-qualifier");
};

template <class R, class Object, class... Ps>
struct fn_traits_base {
  using result = R;
  using params = type_list<Ps...>;
  using object = Object;  // void for free and static functions
  static constexpr bool is_member = !std::is_void_v<Object>;
};

template <class R, class... Ps>
struct fn_traits<R (*)(Ps...)> : fn_traits_base<R, void, Ps...> {};
template <class R, class... Ps>
struct fn_traits<R (*)(Ps...) noexcept> : fn_traits_base<R, void, Ps...> {};
template <class R, class C, class... Ps>
struct fn_traits<R (C::*)(Ps...)> : fn_traits_base<R, C, Ps...> {};
template <class R, class C, class... Ps>
struct fn_traits<R (C::*)(Ps...) const> : fn_traits_base<R, const C, Ps...> {};
template <class R, class C, class... Ps>
struct fn_traits<R (C::*)(Ps...) noexcept> : fn_traits_base<R, C, Ps...> {};
template <class R, class C, class... Ps>
struct fn_traits<R (C::*)(Ps...) const noexcept> : fn_traits_base<R, const C, Ps...> {};

// How one parameter of type P is held inside a call.
template <class P>
struct stored {
  using type = std::remove_cvref_t<P>;
  static constexpr bool pinned = false;
  static type make(P&& arg) { return type(static_cast<P&&>(arg)); }
  static P&& get(type& held) { return static_cast<P&&>(held); }
};
template <class T>
  requires(!std::is_const_v<T>)
struct stored<T&> {
  using type = T*;
  static constexpr bool pinned = true;
  static type make(T& arg) { return std::addressof(arg); }
  static T& get(type held) { return *held; }
};

template <class T>
struct is_reference_wrapper : std::false_type {};
template <class T>
struct is_reference_wrapper<std::reference_wrapper<T>> : std::true_type {};

}  // namespace framex::detail
namespace framex {
template <class T>
class actor;
}  // namespace framex
namespace framex::detail {

// A handle to an actor (framex/actor.hpp) of class T.
template <class O>
struct actor_handle : std::false_type {};
template <class T>
struct actor_handle<actor<T>> : std::true_type {
  using object = T;
};

// A value that can stand first in a call of a member function of Class: the
// object itself, something that points at one, or a handle to an actor of it.
template <class Class, class O>
concept object_for = std::is_invocable_v<void (Class::*)() const, const std::remove_cvref_t<O>&> ||
                     std::is_base_of_v<std::remove_cv_t<Class>, std::remove_cvref_t<O>> ||
                     std::is_base_of_v<std::remove_cv_t<Class>, typename actor_handle<std::remove_cvref_t<O>>::object>;

// How the target object of a member-function call is held (not to be confused
// with the object store of spilled values, detail/object_store.hpp). An object passed as an
// lvalue is referred to (pinned); one passed as an rvalue is moved in; pointers
// are copied (a raw pointer or reference_wrapper pins, a smart pointer owns).
template <class Class, class O>
struct call_target {
  static constexpr bool is_object = std::is_base_of_v<std::remove_cv_t<Class>, std::remove_cvref_t<O>>;
  static constexpr bool pinned =
      is_object ? std::is_lvalue_reference_v<O>
                : std::is_pointer_v<std::decay_t<O>> || is_reference_wrapper<std::decay_t<O>>::value;
  using type = std::conditional_t<is_object && std::is_lvalue_reference_v<O>, std::remove_reference_t<O>*,
                                  std::decay_t<O>>;
  static type make(O&& o) {
    if constexpr (is_object && std::is_lvalue_reference_v<O>) {
      return std::addressof(o);
    } else {
      return type(static_cast<O&&>(o));
    }
  }
};

struct no_object {
  static constexpr bool pinned = false;
};

// Everything one call needs to run the function later, on another thread.
template <auto F, class Object, class... Ps>
class invoker {
 public:
  static constexpr bool pinned = Object::pinned || (stored<Ps>::pinned || ...);

  template <class O>
  explicit invoker(O&& object, Ps... args)
      : object_(static_cast<O&&>(object)), args_(stored<Ps>::make(static_cast<Ps&&>(args))...) {}

  decltype(auto) operator()() { return call(std::index_sequence_for<Ps...>{}); }

 private:
  template <std::size_t... I>
  decltype(auto) call(std::index_sequence<I...>) {
    if constexpr (std::is_same_v<Object, no_object>) {
      return std::invoke(F, stored<Ps>::get(std::get<I>(args_))...);
    } else {
      return std::invoke(F, object_.value, stored<Ps>::get(std::get<I>(args_))...);
    }
  }

  [[no_unique_address]] Object object_;
  std::tuple<typename stored<Ps>::type...> args_;
};

// Holds an object_store's value; no_object holds nothing.
template <class Store>
struct held_object {
  static constexpr bool pinned = Store::pinned;
  template <class O>
  explicit held_object(O&& o) : value(Store::make(static_cast<O&&>(o))) {}
  typename Store::type value;
};

// ---- diagnostics for a .remote()/direct call whose arguments do not fit ----

template <auto F, std::size_t Position, class Parameter, class Argument>
struct argument_check {
  static_assert(std::is_convertible_v<Argument, Parameter>,
                "framex: an argument does not convert to the wrapped function's parameter; "
                "the instantiation argument_check<function, position, parameter, argument> "
                "named in this error says which");
  static constexpr bool ok = true;
};

template <auto F, std::size_t Expected, std::size_t Given>
struct argument_count_check {
  static_assert(Expected == Given,
                "framex: wrong number of arguments for the wrapped function; the instantiation "
                "argument_count_check<function, expected, given> named in this error says which");
  static constexpr bool ok = true;
};

template <auto F, class Params, class... Args>
struct diagnose;
template <auto F, class... Ps, class... Args>
struct diagnose<F, type_list<Ps...>, Args...> {
  template <std::size_t... I>
  static constexpr bool each(std::index_sequence<I...>) {
    return (argument_check<F, I, Ps, Args>::ok && ...);
  }
  static constexpr bool run() {
    if constexpr (sizeof...(Ps) != sizeof...(Args)) {
      return argument_count_check<F, sizeof...(Ps), sizeof...(Args)>::ok;
    } else {
      return each(std::index_sequence_for<Ps...>{});
    }
  }
};

}  // namespace framex::detail
