// Actors, caller's side (framex/actor.hpp): the turn an actor's calls take,
// local actors kept by their runtime, and the requests that spawn, find,
// release and kill actors on workers (served by src/worker/dispatch.cpp).
#include "framex/detail/actor.hpp"
#include "framex/detail/object_store.hpp"

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <openssl/rand.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <random>

#include "framex/detail/distributed_call.hpp"
#include "framex/runtime.hpp"
#include "core/runtime_impl.hpp"
#include "protocol/protocol.hpp"

namespace framex::detail {

namespace asio = boost::asio;

namespace {

std::atomic<std::uint64_t> spawned{0};
std::atomic<std::uint64_t> restarted{0};
std::atomic<std::uint64_t> lost_calls{0};

std::system_error actor_error(errc code, const std::string& what) { return std::system_error(make_error_code(code), what); }

// The requests of protocol/protocol.hpp served by a worker itself; none is a registered function.
const function_entry& builtin(const char* name) {
  static std::mutex mutex;
  static std::map<std::string, function_entry, std::less<>> entries;
  std::lock_guard lock(mutex);
  auto [it, fresh] = entries.try_emplace(name);
  if (fresh) it->second.name = name;
  return it->second;
}

// One request to the worker at `worker` (any worker when empty, with `needs`).
// Made in a statement of its own, then awaited: GCC 12 destroys twice the
// temporaries of a co_await expression, such as the copies its parameters take.
asio::awaitable<std::pair<std::error_code, reply>> ask(runtime& rt, const function_entry& fn, message_buffer params,
                                                       std::chrono::steady_clock::duration timeout, std::string worker,
                                                       resource_map needs = {}) {
  static constexpr auto token = asio::as_tuple(asio::use_awaitable);
  auto [ec, r] = co_await asio::async_initiate<decltype(token), void(std::error_code, reply)>(
      [&](auto handler) {
        const asio::any_io_executor caller = asio::get_associated_executor(handler);
        impl_of(rt).remote->start(fn, std::move(params), timeout, distributed_runtime::placement{std::move(needs), std::move(worker)},
                                  caller, std::move(handler));
      },
      token);
  co_return std::pair{ec, std::move(r)};
}

std::uint64_t actor_id_in(const reply& r, const std::string& what) {
  if (r.result == nullptr || r.result->type != msgpack::type::POSITIVE_INTEGER || r.result->via.u64 == 0) {
    throw actor_error(errc::signature_mismatch, what + ": the worker's answer is no actor id");
  }
  return r.result->via.u64;
}

// The actor named `name` on the worker at `worker`: its id, or 0 when it has none.
asio::awaitable<std::uint64_t> find_on(runtime& rt, const std::string& worker, const std::string& class_name,
                                       const std::string& name) {
  message_buffer params(64);
  msgpack::packer<message_buffer> p(params);
  p.pack_array(3);
  p.pack(class_name);
  p.pack(caller_id());
  p.pack(name);
  auto asked = ask(rt, builtin(protocol::actor_lookup), std::move(params), {}, worker);  // see ask
  auto [ec, r] = co_await std::move(asked);
  if (ec == errc::actor_lost || ec == errc::worker_lost) co_return 0;
  if (ec) throw_failure(ec, r, "framex::actor::lookup(\"" + name + "\")");
  co_return actor_id_in(r, "lookup of " + name);
}

std::shared_ptr<actor_state> find_local(runtime& rt, const std::string& class_name, const std::string& name) {
  auto& impl = impl_of(rt);
  std::lock_guard lock(impl.actors_mutex);
  const auto it = impl.named_actors.find(name);
  if (it == impl.named_actors.end()) return nullptr;
  if (it->second->class_name != class_name) {
    throw actor_error(errc::bad_arguments, "the actor named \"" + name + "\" is a " + it->second->class_name + ", not a " + class_name);
  }
  return it->second;
}

// Constructs `state`'s actor on a worker chosen as for a call.
asio::awaitable<void> create(const std::shared_ptr<actor_state>& state) {
  auto asked = ask(*state->rt, *state->constructor, state->constructor_args.clone(), state->timeout, {}, state->needs);
  auto [ec, r] = co_await std::move(asked);
  if (ec) throw_failure(ec, r, state->constructor->name);
  const std::uint64_t id = actor_id_in(r, state->constructor->name);
  std::lock_guard lock(state->mutex);
  state->id = id;
  state->worker = r.worker != nullptr ? *r.worker : std::string();
  state->lost = false;
}

}  // namespace

// ---- turnstile ----

struct turnstile::waiter {
  // Built, never assigned: Boost 1.81's any_completion_handler move
  // assignment wraps the handler in itself, endlessly.
  waiter(handler handed, asio::any_io_executor ex) : h(std::move(handed)), work(std::move(ex)) {}
  handler h;
  asio::any_io_executor work;  // where it completes; keeps that context running
};

namespace {
void grant(turnstile::handler h, asio::any_io_executor work, std::error_code ec) {
  if (!work) return std::move(h)(ec);  // where the turn is given
  asio::post(work, [h = std::move(h), ec]() mutable {
    auto slot = asio::get_associated_cancellation_slot(h);
    if (slot.is_connected()) slot.clear();
    std::move(h)(ec);
  });
}
}  // namespace

bool turnstile::try_enter() noexcept {
  std::lock_guard lock(mutex_);
  if (busy_) return false;
  busy_ = true;
  return true;
}

void turnstile::wait(const asio::any_io_executor& ex, handler h) {
  asio::any_io_executor work = ex ? asio::prefer(ex, asio::execution::outstanding_work.tracked) : ex;
  auto slot = asio::get_associated_cancellation_slot(h);
  std::unique_lock lock(mutex_);
  if (!busy_) {
    busy_ = true;
    lock.unlock();
    return grant(std::move(h), std::move(work), {});
  }
  auto w = std::make_shared<waiter>(std::move(h), std::move(work));
  line_.push_back(w);
  lock.unlock();
  if (slot.is_connected()) {
    slot.assign([this, weak = std::weak_ptr<waiter>(w)](asio::cancellation_type type) {
      const auto me = weak.lock();  // gone: its turn came, and `this` may be gone too
      if (type == asio::cancellation_type::none || me == nullptr) return;
      std::unique_lock lock(mutex_);
      const auto it = std::find(line_.begin(), line_.end(), me);
      if (it == line_.end()) return;
      line_.erase(it);
      lock.unlock();
      grant(std::move(me->h), std::move(me->work), make_error_code(errc::cancelled));
    });
  }
}

void turnstile::leave() noexcept {
  std::unique_lock lock(mutex_);
  if (line_.empty()) {
    busy_ = false;
    return;
  }
  const auto next = std::move(line_.front());
  line_.pop_front();
  lock.unlock();
  grant(std::move(next->h), std::move(next->work), {});  // the turn passes to it
}

// ---- handles ----

std::uint64_t caller_id() noexcept {
  static const std::uint64_t id = [] {
    std::uint64_t v = 0;
    while (v == 0) {
      if (RAND_bytes(reinterpret_cast<unsigned char*>(&v), sizeof v) != 1) {
        std::random_device r;
        v = static_cast<std::uint64_t>(r()) << 32 | r();
      }
    }
    return v;
  }();
  return id;
}

std::uint64_t new_snapshot_key() noexcept {
  std::uint64_t v = 0;
  while (v == 0) {
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&v), sizeof v) != 1) v = caller_id() ^ static_cast<std::uint64_t>(std::random_device()());
  }
  return v;
}

actor_state::~actor_state() {
  if (snapshot_key != 0) remove_snapshot(snapshot_key);  // the state of an actor nobody here holds any more
  if (!remote || id == 0 || killed || lost || rt->stopping()) return;
  try {
    message_buffer params(64);
    msgpack::packer<message_buffer> p(params);
    p.pack_array(2);
    p.pack(id);
    p.pack(caller_id());
    impl_of(*rt).remote->notify(builtin(protocol::actor_release), std::move(params), worker);
  } catch (...) {  // out of memory: the worker drops it when this process goes
  }
}

std::shared_ptr<actor_state> adopt_local_actor(runtime& rt, std::shared_ptr<void> object, std::string class_name,
                                               std::string name) {
  auto state = std::make_shared<actor_state>(rt, std::move(class_name), std::move(name));
  state->object = std::move(object);
  if (!state->name.empty()) {
    auto& impl = impl_of(rt);
    std::lock_guard lock(impl.actors_mutex);
    if (!impl.named_actors.try_emplace(state->name, state).second) {
      throw actor_error(errc::bad_arguments, "an actor named \"" + state->name + "\" exists already");
    }
  }
  spawned.fetch_add(1, std::memory_order_relaxed);
  return state;
}

asio::awaitable<std::shared_ptr<actor_state>> spawn_remote_actor(runtime& rt, const function_entry& constructor,
                                                                 message_buffer args, std::string class_name,
                                                                 std::string name, unsigned max_restarts,
                                                                 resource_map needs,
                                                                 std::chrono::steady_clock::duration timeout) {
  if (!name.empty()) {
    if (find_local(rt, class_name, name) != nullptr) throw actor_error(errc::bad_arguments, "an actor named \"" + name + "\" exists already");
    for (const auto& worker : impl_of(rt).remote->worker_addresses()) {
      if (co_await find_on(rt, worker, class_name, name) != 0) {
        throw actor_error(errc::bad_arguments, "an actor named \"" + name + "\" exists already, on " + worker);
      }
    }
  }
  auto state = std::make_shared<actor_state>(rt, std::move(class_name), std::move(name));
  state->remote = true;
  state->constructor = &constructor;
  state->constructor_args = std::move(args);
  state->max_restarts = max_restarts;
  state->needs = std::move(needs);
  state->timeout = timeout;
  co_await create(state);
  spawned.fetch_add(1, std::memory_order_relaxed);
  co_return state;
}

asio::awaitable<std::shared_ptr<actor_state>> lookup_actor(runtime& rt, std::string class_name, std::string name) {
  if (auto local = find_local(rt, class_name, name)) co_return local;
  std::string tried;
  if (is_distributed(rt)) {
    for (const auto& worker : impl_of(rt).remote->worker_addresses()) {
      const std::uint64_t id = co_await find_on(rt, worker, class_name, name);
      if (id != 0) {
        auto state = std::make_shared<actor_state>(rt, std::move(class_name), std::move(name));
        state->remote = true;
        state->id = id;
        state->worker = worker;
        co_return state;
      }
      tried += (tried.empty() ? " (asked " : ", ") + worker;
    }
  }
  throw actor_error(errc::actor_lost, "no " + class_name + " actor is named \"" + name + "\"" + (tried.empty() ? "" : tried + ")"));
}

asio::awaitable<void> kill_actor(std::shared_ptr<actor_state> state) {
  if (!state->remote) {
    std::shared_ptr<void> object;  // destroyed here, or by the call still running on it
    {
      std::lock_guard lock(state->mutex);
      object = std::move(state->object);
      state->object.reset();
    }
    if (!state->name.empty()) {
      auto& impl = impl_of(*state->rt);
      std::lock_guard lock(impl.actors_mutex);
      const auto it = impl.named_actors.find(state->name);
      if (it != impl.named_actors.end() && it->second == state) impl.named_actors.erase(it);
    }
    co_return;
  }
  std::uint64_t id = 0;
  std::string worker;
  {
    std::lock_guard lock(state->mutex);
    if (state->killed || state->lost) {
      state->killed = true;
      co_return;
    }
    state->killed = true;
    id = state->id;
    worker = state->worker;
  }
  message_buffer params(32);
  msgpack::packer<message_buffer> p(params);
  p.pack_array(1);
  p.pack(id);
  auto asked = ask(*state->rt, builtin(protocol::actor_kill), std::move(params), {}, worker);
  auto [ec, r] = co_await std::move(asked);
  // Gone already (killed elsewhere, or with its worker): what kill wanted.
  if (ec && ec != errc::actor_lost && ec != errc::worker_lost) throw_failure(ec, r, "framex::kill");
}

asio::awaitable<actor_address> locate_actor(std::shared_ptr<actor_state> state) {
  {
    std::lock_guard lock(state->mutex);
    if (state->killed) throw actor_error(errc::actor_lost, state->class_name + ": the actor was killed");
    if (!state->lost) co_return actor_address{state->id, state->worker};
    if (state->restarting) throw actor_error(errc::actor_lost, state->class_name + ": the actor was lost and is being re-created");
    if (state->constructor == nullptr || state->restarts >= state->max_restarts) {
      throw actor_error(errc::actor_lost, state->class_name + " actor " + std::to_string(state->id) + " on " + state->worker +
                                              " was lost" + (state->max_restarts > 0 ? " and restarted as often as allowed" : ""));
    }
    ++state->restarts;
    state->restarting = true;
  }
  std::exception_ptr failed;
  try {
    co_await create(state);
  } catch (...) {
    failed = std::current_exception();
  }
  std::lock_guard lock(state->mutex);
  state->restarting = false;
  if (failed) std::rethrow_exception(failed);
  restarted.fetch_add(1, std::memory_order_relaxed);
  co_return actor_address{state->id, state->worker};
}

bool actor_call_lost(actor_state& state, const actor_address& at, std::error_code ec) noexcept {
  if (ec != errc::actor_lost && ec != errc::worker_lost) return false;
  lost_calls.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard lock(state.mutex);
  if (state.id == at.id && state.worker == at.worker) state.lost = true;
  return true;
}

void start_pinned(runtime& rt, const function_entry& fn, message_buffer params, std::chrono::steady_clock::duration timeout,
                  const std::string& worker, const asio::any_io_executor& caller, reply_handler handler) {
  impl_of(rt).remote->start(fn, std::move(params), timeout, distributed_runtime::placement{{}, worker}, caller, std::move(handler));
}

void fill_actor_stats(stats_snapshot& out) {
  out.actors_spawned = spawned.load(std::memory_order_relaxed);
  out.actor_restarts = restarted.load(std::memory_order_relaxed);
  out.actors_lost = lost_calls.load(std::memory_order_relaxed);
}

}  // namespace framex::detail
