// The boundary between framex/actor.hpp's templates and the compiled actor
// runtime (src/actors/actor.cpp): an actor handle's shared state, the turn its calls
// take, and the calls that spawn, find, release and kill actors on workers.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <system_error>

#include "framex/detail/wire.hpp"
#include "framex/resources.hpp"

namespace framex {
class runtime;
}

namespace framex::detail {

// The layouts of the actor messages a caller packs (the worker reads them in
// src/protocol/actor_layout.hpp; tests/unit/protocol_test.cpp pins the two
// against each other).

/// An actor's method call, `[actor, caller, arguments...]`: all but the
/// `arguments` arguments, which the caller packs next.
template <class Packer>
void pack_actor_call_head(Packer& p, std::uint64_t actor, std::uint64_t caller, std::uint32_t arguments) {
  p.pack_array(2 + arguments);
  p.pack(actor);
  p.pack(caller);
}

/// An actor's spawn, `[caller, name, [arguments...]]`, with `, [snapshot_every,
/// key]` when `snapshot_key` is not 0: all before the arguments, which the
/// caller packs next, and then `pack_actor_spawn_tail`.
template <class Packer>
void pack_actor_spawn_head(Packer& p, std::uint64_t caller, std::string_view name, std::uint32_t arguments,
                           std::uint64_t snapshot_key) {
  p.pack_array(snapshot_key != 0 ? 4 : 3);
  p.pack(caller);
  p.pack(name);
  p.pack_array(arguments);
}
template <class Packer>
void pack_actor_spawn_tail(Packer& p, unsigned snapshot_every, std::uint64_t snapshot_key) {
  if (snapshot_key == 0) return;
  p.pack_array(2);
  p.pack(snapshot_every);
  p.pack(snapshot_key);
}

/// One at a time, first come first served: an actor's calls take turns. The
/// holder calls `leave` when done; the next waiter's handler is then posted to
/// its executor. A waiter whose cancellation slot fires before its turn leaves
/// the line and completes with `errc::cancelled`.
class turnstile {
 public:
  using handler = boost::asio::any_completion_handler<void(std::error_code)>;
  /// Takes the turn if nobody holds it.
  [[nodiscard]] bool try_enter() noexcept;
  /// Completes `h` on `ex` when its turn comes (at once, posted, if it is
  /// free). With no `ex`, `h` runs where the turn is given: in `wait`, or in
  /// the `leave` of the call before it (so it must not leave the turn itself).
  void wait(const boost::asio::any_io_executor& ex, handler h);
  /// The holder is done.
  void leave() noexcept;

  struct waiter;

 private:
  std::mutex mutex_;
  bool busy_ = false;
  std::list<std::shared_ptr<waiter>> line_;
};

/// What every handle of one actor shares in a process.
struct actor_state {
  actor_state(runtime& r, std::string cls, std::string n) : rt(&r), class_name(std::move(cls)), name(std::move(n)) {}
  ~actor_state();  // a remote actor's last handle here tells its worker
  actor_state(const actor_state&) = delete;
  actor_state& operator=(const actor_state&) = delete;

  runtime* rt;
  const std::string class_name;
  const std::string name;  // empty: unnamed
  bool remote = false;

  // Local: the object and its turn. `object` is null once killed.
  mutable std::mutex mutex;
  std::shared_ptr<void> object;
  turnstile turn;

  // Remote, under `mutex`: where it lives, and how to make it again.
  std::uint64_t id = 0;
  std::string worker;
  bool lost = false;
  bool restarting = false;
  bool killed = false;
  unsigned max_restarts = 0;
  unsigned restarts = 0;
  const function_entry* constructor = nullptr;
  message_buffer constructor_args{0};  // [caller, name, [args...](, [snapshot_every, key])], packed
  std::uint64_t snapshot_key = 0;      // its snapshots' name in storage; 0: none
  resource_map needs;
  std::chrono::steady_clock::duration timeout{};
};

/// This process's id as an actor holder: random, the same for all its runtimes.
std::uint64_t caller_id() noexcept;

/// A random name for an actor's snapshots (never 0).
std::uint64_t new_snapshot_key() noexcept;

/// Makes a local actor of `object`; a named one is kept by `rt` until killed.
/// Throws `std::system_error` (`bad_arguments`) when the name is taken.
std::shared_ptr<actor_state> adopt_local_actor(runtime& rt, std::shared_ptr<void> object, std::string class_name,
                                               std::string name);

/// Spawns an actor on a worker of `rt` with `constructor` (packed args as
/// `actor_state::constructor_args` says).
boost::asio::awaitable<std::shared_ptr<actor_state>> spawn_remote_actor(runtime& rt, const function_entry& constructor,
                                                                        message_buffer args, std::string class_name,
                                                                        std::string name, unsigned max_restarts,
                                                                        resource_map needs,
                                                                        std::chrono::steady_clock::duration timeout);

/// The actor of class `class_name` called `name`, in `rt` or on its workers.
boost::asio::awaitable<std::shared_ptr<actor_state>> lookup_actor(runtime& rt, std::string class_name, std::string name);

/// Ends the actor now, wherever it lives.
boost::asio::awaitable<void> kill_actor(std::shared_ptr<actor_state> state);

/// Where a remote actor's next call goes: re-creates a lost actor while
/// restarts remain; throws `actor_lost` otherwise.
struct actor_address {
  std::uint64_t id;
  std::string worker;
};
boost::asio::awaitable<actor_address> locate_actor(std::shared_ptr<actor_state> state);

/// A remote actor's call failed with `ec`: true (and the actor is marked lost)
/// when that means the actor is gone.
bool actor_call_lost(actor_state& state, const actor_address& at, std::error_code ec) noexcept;

/// Sends a call to the worker at `worker` and no other.
void start_pinned(runtime& rt, const function_entry& fn, message_buffer params, std::chrono::steady_clock::duration timeout,
                  const std::string& worker, const boost::asio::any_io_executor& caller, reply_handler handler);

}  // namespace framex::detail
