// What a call costs, counted: heap allocations (every malloc of the process,
// operator new included, counted by interposing glibc's allocator in the
// benchmark binary), system calls (perf's raw_syscalls:sys_enter tracepoint,
// attached to a process for the measured stretch only) and CPU time.
//
// Counting allocations needs the benchmark binary to be the one that defines
// `malloc`; under a sanitizer (which has its own allocator) nothing is counted
// and `allocations_counted()` is false.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>

namespace framex::bench {

/// Allocations (malloc, calloc, realloc to a new block, aligned forms) made by
/// this process so far.
std::uint64_t allocations() noexcept;
/// Bytes those allocations asked for.
std::uint64_t allocated_bytes() noexcept;
/// False when the allocator could not be counted (a sanitizer build).
bool allocations_counted() noexcept;

/// CPU seconds (user + system) a process has used so far; `pid` 0: this one.
double cpu_seconds(pid_t pid);

/// Counts the system calls of every thread of one process between `start` and
/// `stop`, with `perf stat`. Unavailable (no perf, no permission) means empty.
class syscall_counter {
 public:
  syscall_counter() = default;
  syscall_counter(const syscall_counter&) = delete;
  syscall_counter& operator=(const syscall_counter&) = delete;
  ~syscall_counter();

  /// Attaches to `pid` (0: this process), counting nothing yet; false if perf
  /// cannot be used here.
  bool attach(pid_t pid);
  /// Counting on / off; blocks until perf has done it.
  void start();
  void stop();
  /// System calls counted while on; empty if perf was not usable.
  std::optional<std::uint64_t> detach();

 private:
  pid_t perf_ = -1;
  std::string dir_;
  int ctl_ = -1, ack_ = -1;
  bool ok_ = false;
  void command(const char* what);
};

}  // namespace framex::bench
