// The process's registry of functions a worker may run. Entries are added
// before main by `registration<F>` (see detail/distributed_call.hpp), so the
// registry is a function-local static, safe to reach during static
// initialisation. Two functions deriving the same name (overloads, or functions
// with internal linkage in different files) make the name ambiguous: it stays
// registered, serving it reports the clash, and a worker or a distributed
// runtime refuses to start while any name is ambiguous.
#include <cxxabi.h>

#include <deque>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <unordered_map>

#include "framex/detail/wire.hpp"
#include "framex/stats.hpp"
#include "core/registry.hpp"

namespace framex::detail {
namespace {

struct registry {
  std::mutex mutex;
  std::deque<function_entry> entries;  // stable addresses
  std::unordered_map<std::string_view, const function_entry*> by_name;
};

registry& the_registry() {
  static registry r;
  return r;
}

}  // namespace

void set_needs(const function_entry& fn, resource_map needs) {
  registry& r = the_registry();
  std::lock_guard lock(r.mutex);
  const_cast<function_entry&>(fn).needs = std::move(needs);  // stored mutable in the registry
}

const function_entry& register_function(function_entry entry) {
  registry& r = the_registry();
  std::lock_guard lock(r.mutex);
  entry.remote_stats = &stats_for(entry.name, true);
  const function_entry& stored = r.entries.emplace_back(std::move(entry));
  auto [it, fresh] = r.by_name.try_emplace(stored.name, &stored);
  const bool same_function = it->second->run_blocking == stored.run_blocking && it->second->run_async == stored.run_async &&
                             it->second->construct == stored.construct && it->second->run_on == stored.run_on &&
                             it->second->run_async_on == stored.run_async_on;
  if (!fresh && !same_function && it->second->signature != ambiguous_signature) {
    function_entry clash;
    clash.name = stored.name;
    clash.signature = ambiguous_signature;
    it->second = &r.entries.emplace_back(std::move(clash));
  }
  return stored;
}

const function_entry* find_function(std::string_view name) noexcept {
  registry& r = the_registry();
  std::lock_guard lock(r.mutex);
  const auto it = r.by_name.find(name);
  return it == r.by_name.end() ? nullptr : it->second;
}

std::vector<const function_entry*> registered_functions() {
  registry& r = the_registry();
  std::lock_guard lock(r.mutex);
  std::vector<const function_entry*> out;
  out.reserve(r.by_name.size());
  for (const auto& [name, entry] : r.by_name) out.push_back(entry);
  return out;
}

void check_unambiguous() {
  std::string names;
  for (const auto* f : registered_functions()) {
    if (f->signature == ambiguous_signature) names += (names.empty() ? "" : ", ") + f->name;
  }
  if (!names.empty()) {
    throw std::invalid_argument("framex: several functions travel under each of these names: " + names +
                                "; give each a framex::wire_name");
  }
}

std::string current_exception_type() {
  const std::type_info* type = abi::__cxa_current_exception_type();
  if (type == nullptr) return "unknown";
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> name(abi::__cxa_demangle(type->name(), nullptr, nullptr, &status), std::free);
  return status == 0 && name ? std::string(name.get()) : std::string(type->name());
}

}  // namespace framex::detail
