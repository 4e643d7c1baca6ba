// framex/object_ref.hpp — data that travels once: object references.
// (Included by framex/remote.hpp, at its end.)
//
// `co_await framex::put(value)` gives an `object_ref<T>`, which a call takes
// wherever a parameter of type `T` or `const T&` is expected:
//
// @code
// framex::object_ref<std::vector<float>> ref = co_await framex::put(std::move(big));
// co_await score.remote(ref, 3);          // score(const std::vector<float>&, int)
// std::vector<float> back = co_await framex::get(ref);
// @endcode
//
// In distributed mode a value whose msgpack form is smaller than
// `storage.inline_threshold` (1 MiB) travels inline, in every call that uses
// it; a larger one is written once to `storage.path` (a directory every caller
// and worker sees: a network file system past one machine), and each call
// sends only its name, 48 bytes. A worker reads a given object once and keeps
// it decoded (`storage.cache_bytes`). In local mode a reference holds the
// value and nothing is written.
//
// A call's result can come back as a reference (`fn.remote_ref(args...)`):
// a large result is then written to storage by the worker and never crosses
// the caller's connection, so a pipeline passes data from worker to worker.
//
// Lifetime: a spilled object is deleted when the last reference to it in the
// process that holds it is gone; the objects of a process that died are
// deleted by any other after `storage.orphan_ttl`. A missing or corrupt object
// is `errc::object_unavailable`, naming it.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <exception>
#include <stdexcept>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "framex/codec.hpp"
#include "framex/detail/object_store.hpp"
#include "framex/detail/wire.hpp"
#include "framex/remote.hpp"
#include "framex/runtime.hpp"

namespace framex {

/// What this process's storage did since it started (see `storage_counters`).
struct storage_stats {
  std::uint64_t objects_written = 0, bytes_written = 0;
  /// Objects read from storage (each at most once while cached) and their bytes.
  std::uint64_t objects_read = 0, bytes_read = 0;
  /// Loads answered from the cache.
  std::uint64_t cache_hits = 0;
  /// Objects deleted with their last reference, and directories of dead processes deleted.
  std::uint64_t objects_deleted = 0, orphans_deleted = 0;
};

/// This process's storage counters. Thread safety: any thread.
storage_stats storage_counters() noexcept;

/// A reference to a value of type `T`: held here, inline, or spilled to
/// storage (see the top of this file). Cheap to copy; copies share the value.
/// Thread safety: a `const object_ref` may be used from any thread.
template <class T>
class object_ref {
  static_assert(serializable<T> && std::is_same_v<T, std::remove_cvref_t<T>>,
                "framex::object_ref<T>: T must be a plain serializable type");

 public:
  using value_type = T;

  /// An empty reference.
  object_ref() = default;

  /// True unless empty.
  explicit operator bool() const noexcept { return value_ != nullptr || spilled_ != nullptr; }
  /// True when the value lives in storage.
  [[nodiscard]] bool spilled() const noexcept { return spilled_ != nullptr; }
  /// The stored object's name (its digest), or "" when not spilled.
  [[nodiscard]] std::string name() const { return spilled_ ? spilled_->id().name() : std::string(); }

  /// The value: held here, else read from storage (blocking; once per process
  /// while cached). Throws `std::system_error` (`object_unavailable`).
  [[nodiscard]] std::shared_ptr<const T> share() const {
    if (value_) return value_;
    if (!spilled_) throw std::logic_error("framex::object_ref: empty reference");
    return detail::load_as<T>(spilled_->id());
  }

 private:
  template <class U>
  friend struct detail::ref_access;
  std::shared_ptr<const T> value_;
  std::shared_ptr<const detail::spilled_object> spilled_;
};

namespace detail {
template <class T>
struct ref_access {
  static object_ref<T> make(std::shared_ptr<const T> value, std::shared_ptr<const spilled_object> spilled) {
    object_ref<T> r;
    r.value_ = std::move(value);
    r.spilled_ = std::move(spilled);
    return r;
  }
  static const std::shared_ptr<const T>& value(const object_ref<T>& r) noexcept { return r.value_; }
  static const std::shared_ptr<const spilled_object>& spilled(const object_ref<T>& r) noexcept { return r.spilled_; }
};
}  // namespace detail

/// A reference travels as its value when inline, as its name when spilled;
/// its schema is `T`'s, so a function taking `object_ref<T>` and one taking
/// `T` have the same wire signature.
template <class T>
struct codec<object_ref<T>> {
  using access = detail::ref_access<T>;
  template <class S>
  static void pack(msgpack::packer<S>& p, const object_ref<T>& r) {
    if (const auto& s = access::spilled(r)) {
      detail::pack_object_id(p, s->id());
    } else if (const auto& v = access::value(r)) {
      codec<T>::pack(p, *v);
    } else {
      throw std::logic_error("framex::object_ref: an empty reference cannot be sent");
    }
  }
  static void unpack(const msgpack::object& o, object_ref<T>& out) {
    if (const auto id = detail::object_id_of(o)) {
      out = access::make(nullptr, detail::adopt(*id));
      return;
    }
    auto value = std::make_shared<T>();
    codec<T>::unpack(o, *value);
    out = access::make(std::move(value), nullptr);
  }
  static std::string schema() { return codec<T>::schema(); }
};

namespace detail {
// An awaitable that rethrows `error`, else yields `value`: `put` and `get` do
// their work when called and report it when awaited.
template <class T>
boost::asio::awaitable<T> ready(std::exception_ptr error, T value) {
  if (error) std::rethrow_exception(error);
  co_return std::move(value);
}
}  // namespace detail

namespace detail {
// `put`'s work in distributed mode, on the runtime's pool: packs the value
// and, when it is large, hashes it and writes it to storage.
template <class V>
struct put_work {
  static constexpr bool pinned = false;
  std::shared_ptr<const V> value;
  object_ref<V> operator()() const {
    msgpack::sbuffer packed;
    msgpack::packer<msgpack::sbuffer> p(packed);
    codec<V>::pack(p, *value);
    std::shared_ptr<const spilled_object> spilled;
    if (packed.size() >= inline_threshold()) spilled = spill(std::string_view(packed.data(), packed.size()));
    return ref_access<V>::make(value, std::move(spilled));
  }
};
// `get`'s for a value this process does not hold: reads it from storage.
template <class V>
struct get_work {
  static constexpr bool pinned = false;
  object_ref<V> ref;
  V operator()() const { return *ref.share(); }
};
}  // namespace detail

/// Makes a reference to `value`. In distributed mode the value is packed on
/// the runtime's pool and, at `storage.inline_threshold` bytes or more,
/// hashed and written to storage there, while the caller's executor stays
/// free. The reference keeps the value too, so `get` here reads nothing.
/// Failures (`object_unavailable`: storage not writable) are thrown when awaited.
template <class T>
boost::asio::awaitable<object_ref<std::remove_cvref_t<T>>> put(T&& value, runtime* rt = nullptr) {
  using V = std::remove_cvref_t<T>;
  runtime& on = runtime::or_current(rt);
  auto held = std::make_shared<const V>(std::forward<T>(value));
  if (!detail::is_distributed(on)) return detail::ready(nullptr, detail::ref_access<V>::make(std::move(held), nullptr));
  static detail::stats_cell& stats = detail::stats_for("framex::put", false);
  return detail::run_blocking<object_ref<V>>(on, {}, stats, detail::put_work<V>{std::move(held)});
}

/// The value `ref` refers to, as a copy: from this process when it holds it,
/// else read from storage on the pool of `rt` (default: the current runtime).
template <class T>
boost::asio::awaitable<T> get(const object_ref<T>& ref, runtime* rt = nullptr) {
  if (const auto& held = detail::ref_access<T>::value(ref)) return detail::ready(nullptr, T(*held));
  if (!ref) return detail::ready(std::make_exception_ptr(std::logic_error("framex::get: an empty reference")), T{});
  static detail::stats_cell& stats = detail::stats_for("framex::get", false);
  return detail::run_blocking<T>(runtime::or_current(rt), {}, stats, detail::get_work<T>{ref});
}

}  // namespace framex
