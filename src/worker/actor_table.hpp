// Actors, worker's side: the actors a worker hosts, and who holds them.
//
// Each actor has an id (random, so an id from before a restart finds
// nothing, and ids cannot be guessed), its class, its name if any, its object
// and its turn, and the callers that hold handles to it (a count per caller
// process, as `framex.actor.release` and spawns change it). A caller is known
// by the id its requests carry (a few per connection at most), and by the
// connections they came on: when a caller's last connection closes, it has
// `worker.actor_grace_ms` to come back, after which its holds are dropped. An
// unnamed actor that nobody holds is dropped; a named one stays until killed.
// A dropped or killed actor is `gone`: calls that wait for its turn fail with
// `actor_lost`, and its object is destroyed with the last call that holds it.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>

#include "framex/detail/actor.hpp"

namespace framex::detail {

// Where and how often an actor's state is saved (`actor_options::snapshot_every`).
struct snapshot_plan {
  std::uint32_t every = 0;  // 0: never
  std::uint64_t key = 0, owner = 0;
  std::string (*save)(const void* object) = nullptr;
};

struct hosted_actor {
  hosted_actor(std::uint64_t i, std::string cls, std::string n, std::shared_ptr<void> o, boost::asio::io_context& io, snapshot_plan plan)
      : id(i), class_name(std::move(cls)), name(std::move(n)), object(std::move(o)), strand(boost::asio::make_strand(io)), snapshot(plan) {}
  const std::uint64_t id;
  const std::string class_name;
  const std::string name;
  const std::shared_ptr<void> object;
  turnstile turn;
  // Where its async methods run: one at a time, even when they interleave.
  boost::asio::strand<boost::asio::io_context::executor_type> strand;
  std::atomic<bool> gone{false};
  std::map<std::uint64_t, std::uint64_t> holders;  // caller -> handles; under the table's mutex
  const snapshot_plan snapshot;
  std::uint64_t calls = 0;  // calls that held the turn: touched only by the one holding it
};

class actor_table {
 public:
  using session_key = const void*;

  actor_table(boost::asio::io_context& io, std::chrono::milliseconds grace) : io_(io), grace_(grace) {}

  /// `caller` spoke on `session`.
  void seen(session_key session, std::uint64_t caller);
  /// Hosts `object`, held by `caller`; 0 when `name` is taken.
  std::uint64_t add(std::shared_ptr<void> object, std::string class_name, std::string name, std::uint64_t caller, snapshot_plan plan = {});
  /// The live actor `id`, or null.
  std::shared_ptr<hosted_actor> find(std::uint64_t id);
  /// The live actor of `class_name` called `name`: its id, or 0.
  std::uint64_t lookup(std::string_view class_name, std::string_view name, std::uint64_t caller);
  /// `caller` holds one handle fewer.
  void release(std::uint64_t id, std::uint64_t caller);
  /// Ends actor `id`; false when there is none.
  bool kill(std::uint64_t id);
  /// A connection closed: its callers may be gone.
  void session_closed(session_key session);
  /// Drops every actor (the worker stops).
  void clear();
  /// Actors hosted now.
  [[nodiscard]] std::size_t size();

 private:
  struct caller_state {
    std::size_t sessions = 0;
    std::uint64_t epoch = 0;  // bumped when it comes back: a pending expiry is void
  };
  std::shared_ptr<hosted_actor> drop_locked(std::unordered_map<std::uint64_t, std::shared_ptr<hosted_actor>>::iterator it);
  void expire(std::uint64_t caller, std::uint64_t epoch);

  static constexpr std::size_t max_callers_per_session = 4;
  boost::asio::io_context& io_;
  std::chrono::milliseconds grace_;
  std::mutex mutex_;
  std::uint64_t fallback_id_ = 0;  // should the random generator fail
  std::unordered_map<std::uint64_t, std::shared_ptr<hosted_actor>> by_id_;
  std::map<std::string, std::uint64_t, std::less<>> by_name_;
  std::unordered_map<std::uint64_t, caller_state> callers_;
  std::unordered_map<session_key, std::set<std::uint64_t>> session_callers_;
};

}  // namespace framex::detail
