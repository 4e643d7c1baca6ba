// What a `framex::runtime` owns; shared by the compiled parts that serve it.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "caller/distributed.hpp"
#include "framex/runtime.hpp"
#include "core/thread_pool.hpp"

namespace framex::detail {

struct actor_state;

class runtime_impl {
 public:
  runtime_impl(std::size_t threads, std::chrono::microseconds spin, const config* distributed_config,
               boost::asio::io_context* io = nullptr)
      : pool(threads != 0 ? threads : std::max(1u, std::thread::hardware_concurrency()), spin) {
    if (distributed_config != nullptr) remote.emplace(*distributed_config, io);
  }

  thread_pool pool;
  std::optional<distributed_runtime> remote;
  // Local mode's named actors, kept until killed (src/actors/actor.cpp).
  std::mutex actors_mutex;
  std::map<std::string, std::shared_ptr<actor_state>, std::less<>> named_actors;
};

/// Adds the process's actor counters to `out` (src/actors/actor.cpp).
void fill_actor_stats(stats_snapshot& out);

}  // namespace framex::detail
