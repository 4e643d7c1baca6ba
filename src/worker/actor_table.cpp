#include "worker/actor_table.hpp"

#include <openssl/rand.h>

#include <vector>

namespace framex::detail {

void actor_table::seen(session_key session, std::uint64_t caller) {
  std::lock_guard lock(mutex_);
  auto& callers = session_callers_[session];
  // A caller process has one id; a peer that claims many is held to a few.
  if (callers.size() >= max_callers_per_session && !callers.contains(caller)) return;
  if (!callers.insert(caller).second) return;
  auto& c = callers_[caller];
  ++c.sessions;
  ++c.epoch;
}

std::uint64_t actor_table::add(std::shared_ptr<void> object, std::string class_name, std::string name, std::uint64_t caller,
                               snapshot_plan plan) {
  std::lock_guard lock(mutex_);
  if (!name.empty() && by_name_.contains(name)) return 0;
  // Random: an id from before a restart finds nothing, and a caller cannot
  // guess the ids of other callers' actors from its own.
  std::uint64_t id = 0;
  while (id == 0 || by_id_.contains(id)) {
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&id), sizeof id) != 1) id = ++fallback_id_;
  }
  auto actor = std::make_shared<hosted_actor>(id, std::move(class_name), std::move(name), std::move(object), io_, plan);
  actor->holders[caller] = 1;
  if (!actor->name.empty()) by_name_.emplace(actor->name, id);
  by_id_.emplace(id, std::move(actor));
  return id;
}

std::shared_ptr<hosted_actor> actor_table::find(std::uint64_t id) {
  std::lock_guard lock(mutex_);
  const auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second;
}

std::uint64_t actor_table::lookup(std::string_view class_name, std::string_view name, std::uint64_t caller) {
  std::lock_guard lock(mutex_);
  const auto named = by_name_.find(name);
  if (named == by_name_.end()) return 0;
  const auto& actor = by_id_.at(named->second);
  if (actor->class_name != class_name) return 0;
  (void)caller;  // a named actor lives until killed, whoever holds it
  return actor->id;
}

void actor_table::release(std::uint64_t id, std::uint64_t caller) {
  std::shared_ptr<hosted_actor> dropped;  // destroyed after the lock
  std::lock_guard lock(mutex_);
  const auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  auto& holders = it->second->holders;
  const auto held = holders.find(caller);
  if (held == holders.end()) return;
  if (--held->second == 0) holders.erase(held);
  if (holders.empty() && it->second->name.empty()) dropped = drop_locked(it);
}

bool actor_table::kill(std::uint64_t id) {
  std::shared_ptr<hosted_actor> dropped;  // destroyed after the lock
  std::lock_guard lock(mutex_);
  const auto it = by_id_.find(id);
  if (it == by_id_.end()) return false;
  dropped = drop_locked(it);
  return true;
}

std::shared_ptr<hosted_actor> actor_table::drop_locked(std::unordered_map<std::uint64_t, std::shared_ptr<hosted_actor>>::iterator it) {
  auto actor = std::move(it->second);
  actor->gone.store(true, std::memory_order_release);
  if (!actor->name.empty()) by_name_.erase(actor->name);
  by_id_.erase(it);
  return actor;  // the object goes with the last call holding it
}

void actor_table::session_closed(session_key session) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> orphaned;  // caller, epoch
  {
    std::lock_guard lock(mutex_);
    const auto it = session_callers_.find(session);
    if (it == session_callers_.end()) return;
    for (const auto caller : it->second) {
      auto& c = callers_[caller];
      if (--c.sessions == 0) orphaned.emplace_back(caller, c.epoch);
    }
    session_callers_.erase(it);
  }
  for (const auto& [caller, epoch] : orphaned) {
    auto timer = std::make_shared<boost::asio::steady_timer>(io_, grace_);
    timer->async_wait([this, timer, caller = caller, epoch = epoch](const boost::system::error_code& ec) {
      if (!ec) expire(caller, epoch);
    });
  }
}

// The grace after a caller's last connection closed is over: unless it came
// back meanwhile, its handles are gone.
void actor_table::expire(std::uint64_t caller, std::uint64_t epoch) {
  std::vector<std::shared_ptr<hosted_actor>> dropped;  // destroyed after the lock
  std::lock_guard lock(mutex_);
  const auto c = callers_.find(caller);
  if (c == callers_.end() || c->second.sessions != 0 || c->second.epoch != epoch) return;
  callers_.erase(c);
  for (auto it = by_id_.begin(); it != by_id_.end();) {
    auto next = std::next(it);
    it->second->holders.erase(caller);
    if (it->second->holders.empty() && it->second->name.empty()) dropped.push_back(drop_locked(it));
    it = next;
  }
}

void actor_table::clear() {
  std::unordered_map<std::uint64_t, std::shared_ptr<hosted_actor>> all;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, actor] : by_id_) actor->gone.store(true, std::memory_order_release);
    all.swap(by_id_);
    by_name_.clear();
  }
}

std::size_t actor_table::size() {
  std::lock_guard lock(mutex_);
  return by_id_.size();
}

}  // namespace framex::detail
