#include "cost.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

extern char** environ;

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FRAMEX_BENCH_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define FRAMEX_BENCH_SANITIZED 1
#endif
#endif

namespace {
std::atomic<std::uint64_t> allocated{0}, allocated_size{0};
}  // namespace

#ifndef FRAMEX_BENCH_SANITIZED
namespace {
void count(std::size_t bytes) noexcept {
  allocated.fetch_add(1, std::memory_order_relaxed);
  allocated_size.fetch_add(bytes, std::memory_order_relaxed);
}
}  // namespace

// glibc's allocator under its other names; the definitions below take the
// public ones for the whole process (operator new calls malloc).
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);

void* malloc(std::size_t n) {
  count(n);
  return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t size) {
  count(n * size);
  return __libc_calloc(n, size);
}
void* realloc(void* p, std::size_t n) {
  if (p == nullptr) count(n);
  void* q = __libc_realloc(p, n);
  if (p != nullptr && q != p) count(n);  // moved: a new block
  return q;
}
void* memalign(std::size_t alignment, std::size_t n) {
  count(n);
  return __libc_memalign(alignment, n);
}
void* aligned_alloc(std::size_t alignment, std::size_t n) { return memalign(alignment, n); }
int posix_memalign(void** out, std::size_t alignment, std::size_t n) {
  void* p = memalign(alignment, n);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
}
#endif

namespace framex::bench {

std::uint64_t allocations() noexcept { return allocated.load(std::memory_order_relaxed); }
std::uint64_t allocated_bytes() noexcept { return allocated_size.load(std::memory_order_relaxed); }

bool allocations_counted() noexcept {
#ifdef FRAMEX_BENCH_SANITIZED
  return false;
#else
  return true;
#endif
}

double cpu_seconds(pid_t pid) {
  if (pid == 0) {
    rusage self{};
    ::getrusage(RUSAGE_SELF, &self);
    return static_cast<double>(self.ru_utime.tv_sec + self.ru_stime.tv_sec) +
           static_cast<double>(self.ru_utime.tv_usec + self.ru_stime.tv_usec) / 1e6;
  }
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields 14 and 15 (utime, stime, in clock ticks) follow the command's closing parenthesis.
  const auto close = all.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(all.substr(close + 2));
  std::string skip;
  for (int i = 3; i < 14; ++i) fields >> skip;
  unsigned long utime = 0, stime = 0;
  fields >> utime >> stime;
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

syscall_counter::~syscall_counter() { (void)detach(); }

bool syscall_counter::attach(pid_t pid) {
  char tmpl[] = "/tmp/framex-bench-perf-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return false;
  dir_ = tmpl;
  const std::string ctl = dir_ + "/ctl", ack = dir_ + "/ack";
  if (::mkfifo(ctl.c_str(), 0600) != 0 || ::mkfifo(ack.c_str(), 0600) != 0) return false;
  std::vector<std::string> args = {"perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter", "-D", "-1",
                                   "--control", "fifo:" + ctl + "," + ack, "-o", dir_ + "/out",
                                   "-p", std::to_string(pid == 0 ? ::getpid() : pid)};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  const int spawned = ::posix_spawnp(&perf_, "perf", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (spawned != 0) {
    perf_ = -1;
    return false;
  }
  // perf opens its ends when it is ready; a perf that fails first exits.
  for (int i = 0; i < 500 && ctl_ < 0; ++i) {
    ctl_ = ::open(ctl.c_str(), O_WRONLY | O_NONBLOCK);
    if (ctl_ < 0) {
      if (::waitpid(perf_, nullptr, WNOHANG) == perf_) {
        perf_ = -1;
        return false;
      }
      ::usleep(10'000);
    }
  }
  if (ctl_ < 0) return false;
  ack_ = ::open(ack.c_str(), O_RDONLY);
  ok_ = ack_ >= 0;
  return ok_;
}

void syscall_counter::command(const char* what) {
  if (!ok_) return;
  const std::string line = std::string(what) + "\n";
  if (::write(ctl_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    ok_ = false;
    return;
  }
  char buf[16];
  if (::read(ack_, buf, sizeof buf) <= 0) ok_ = false;  // "ack\n"
}

void syscall_counter::start() { command("enable"); }
void syscall_counter::stop() { command("disable"); }

std::optional<std::uint64_t> syscall_counter::detach() {
  std::optional<std::uint64_t> count;
  if (perf_ > 0) {
    ::kill(perf_, SIGINT);
    ::waitpid(perf_, nullptr, 0);
    perf_ = -1;
    std::ifstream out(dir_ + "/out");
    for (std::string line; std::getline(out, line);) {
      // "12345,,raw_syscalls:sys_enter,..."
      if (line.find("raw_syscalls:sys_enter") == std::string::npos) continue;
      char* end = nullptr;
      const unsigned long long n = std::strtoull(line.c_str(), &end, 10);
      if (ok_ && end != line.c_str()) count = n;
    }
  }
  if (ctl_ >= 0) ::close(ctl_);
  if (ack_ >= 0) ::close(ack_);
  ctl_ = ack_ = -1;
  if (!dir_.empty()) {
    for (const char* f : {"/ctl", "/ack", "/out"}) ::unlink((dir_ + f).c_str());
    ::rmdir(dir_.c_str());
    dir_.clear();
  }
  ok_ = false;
  return count;
}

}  // namespace framex::bench
