// Real processes for the tests: any program (`child_process`), and this test
// binary (or another program) started in worker role on 127.0.0.1, its port
// read from its first line of output (`worker_process`). Stopped with SIGTERM,
// or killed with SIGKILL, by PID, always.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ;

namespace framex::test {

/// A program started for a test, with `env` ("NAME=value") added to the
/// environment, its standard output read through a pipe (see `first_line`),
/// its standard error sent to `log_file` if given, and, with `stdin_pipe`, a
/// standard input that closes when the test lets go (a child that exits on
/// end of input cannot outlive it). Stopped by PID, always.
class child_process {
 public:
  explicit child_process(std::vector<std::string> args, std::vector<std::string> env = {}, const std::string& log_file = {},
                         bool stdin_pipe = false) {
    int out[2];
    int in[2] = {-1, -1};
    if (::pipe2(out, O_CLOEXEC) != 0 || (stdin_pipe && ::pipe2(in, O_CLOEXEC) != 0)) throw std::runtime_error("pipe failed");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> environment;
    for (char** e = environ; *e != nullptr; ++e) environment.emplace_back(*e);
    environment.insert(environment.end(), env.begin(), env.end());
    std::vector<char*> envp;
    for (auto& e : environment) envp.push_back(e.data());
    envp.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    if (stdin_pipe) posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
    if (!log_file.empty()) posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int rc = ::posix_spawnp(&pid_, args[0].c_str(), &actions, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    if (stdin_pipe) ::close(in[0]);
    out_ = out[0];
    in_ = in[1];
    if (rc != 0) {
      close_pipes();
      throw std::runtime_error("cannot start " + args[0]);
    }
  }
  ~child_process() { stop(); }
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  /// The first line the child writes (without the newline), within 10 s; what
  /// arrived by then if it writes none.
  std::string first_line() {
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[256];
      const ssize_t n = ::read(out_, buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, static_cast<std::size_t>(n));
    }
    return line.substr(0, line.find('\n'));
  }

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

  /// SIGKILL: the process dies mid-whatever, without closing anything itself.
  void kill_now() {
    close_pipes();
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  /// SIGTERM, then SIGKILL if it has not exited within 5 s. Returns the exit status.
  int stop() {
    close_pipes();
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 500; ++i) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return status;
      }
      ::usleep(10'000);
    }
    kill_now();
    return -1;
  }

 private:
  void close_pipes() {
    if (out_ >= 0) ::close(out_);
    if (in_ >= 0) ::close(in_);
    out_ = in_ = -1;
  }
  pid_t pid_ = -1;
  int out_ = -1;
  int in_ = -1;
};

class worker_process {
 public:
  /// Starts `program` (default: this executable) as a worker listening on
  /// 127.0.0.1:`port` (0: any), with `env` ("NAME=value") added to the
  /// environment; its log goes to `log_file` if given. `extra_args` may
  /// listen elsewhere (`--listen unix:PATH`: then `port()` is 0). `launcher`
  /// runs the worker (`{"/usr/bin/prlimit", "--nofile=1024:1024"}`).
  explicit worker_process(std::uint16_t port = 0, std::vector<std::string> env = {}, std::string program = "/proc/self/exe",
                          std::vector<std::string> extra_args = {}, const std::string& log_file = {},
                          std::vector<std::string> launcher = {})
      : child_(launched(std::move(launcher), arguments(port, std::move(program), std::move(extra_args))), std::move(env), log_file) {
    // "framex worker listening on 127.0.0.1:PORT" (or "on unix:PATH").
    const std::string line = child_.first_line();
    const auto colon = line.rfind(':');
    if (line.find("listening on") == std::string::npos || colon == std::string::npos) {
      child_.kill_now();
      throw std::runtime_error("the worker did not start: " + line);
    }
    if (line.find("on unix:") == std::string::npos) port_ = static_cast<std::uint16_t>(std::stoi(line.substr(colon + 1)));
  }

  ~worker_process() { stop(); }
  worker_process(const worker_process&) = delete;
  worker_process& operator=(const worker_process&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  [[nodiscard]] pid_t pid() const noexcept { return child_.pid(); }
  void kill_now() { child_.kill_now(); }
  int stop() { return child_.stop(); }

 private:
  static std::vector<std::string> launched(std::vector<std::string> launcher, std::vector<std::string> args) {
    launcher.insert(launcher.end(), std::make_move_iterator(args.begin()), std::make_move_iterator(args.end()));
    return launcher;
  }
  static std::vector<std::string> arguments(std::uint16_t port, std::string program, std::vector<std::string> extra) {
    std::vector<std::string> args{std::move(program), "--framex-worker", "--listen", "127.0.0.1:" + std::to_string(port), "--threads", "4"};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }
  child_process child_;
  std::uint16_t port_ = 0;
};

/// A figure of /proc/PID/status (`field`, such as "VmHWM:"), in MiB. Throws
/// when it cannot be read (the process is gone), so no memory bound passes by
/// default.
inline long status_mib(pid_t pid, const std::string& field) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (status >> key) {
    if (key == field) {
      long kib = 0;
      if (status >> kib) return kib / 1024;
      break;
    }
    status.ignore(4096, '\n');
  }
  throw std::runtime_error("the memory of process " + std::to_string(pid) + " cannot be read: is it gone?");
}

/// The peak resident memory (VmHWM) of process `pid`, in MiB.
inline long peak_rss_mib(pid_t pid) { return status_mib(pid, "VmHWM:"); }
/// The resident memory (VmRSS) of process `pid` now, in MiB.
inline long rss_mib(pid_t pid) { return status_mib(pid, "VmRSS:"); }

/// What the peak memory of process `pid` has grown by since this was made (at
/// rest, before an attack). The bounds are on what an attack adds, not on what a
/// build rests at: an ASan test binary's own pages take about 460 MiB.
class peak_growth {
 public:
  explicit peak_growth(pid_t pid) : pid_(pid), at_rest_(peak_rss_mib(pid)) {}
  [[nodiscard]] long at_rest() const noexcept { return at_rest_; }
  [[nodiscard]] long mib() const { return peak_rss_mib(pid_) - at_rest_; }

 private:
  pid_t pid_;
  long at_rest_;
};

/// What a siege may add to a worker's peak memory: 256 MiB, as users see it;
/// under ASan, where every allocation costs a redzone, shadow bytes and a size
/// class (about twice what it costs a plain build), 512.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr long siege_bound_mib = 512;
#else
inline constexpr long siege_bound_mib = 256;
#endif

/// The environment of a worker under siege: under ASan, which holds up to
/// 256 MiB of freed memory in quarantine, a small quarantine, so the bound
/// measures what framex holds.
inline std::vector<std::string> siege_env() {
#if defined(__SANITIZE_ADDRESS__)
  const char* asan = std::getenv("ASAN_OPTIONS");
  return {std::string("ASAN_OPTIONS=") + (asan != nullptr ? asan : "") + ":quarantine_size_mb=16"};
#else
  return {};
#endif
}

/// A port on 127.0.0.1 where nothing listens, held for the test's life so no
/// other process can take it: a connection to it is refused at once.
class refusing_port {
 public:
  refusing_port() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      throw std::runtime_error("cannot bind a port on 127.0.0.1");
    }
    port_ = ntohs(a.sin_port);  // bound, never listening
  }
  ~refusing_port() { ::close(fd_); }
  refusing_port(const refusing_port&) = delete;
  refusing_port& operator=(const refusing_port&) = delete;
  [[nodiscard]] std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 protected:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

/// A port on 127.0.0.1 that listens and never accepts: the kernel completes
/// each connection, and nothing ever answers on it (a hung worker's hello).
class silent_port : public refusing_port {
 public:
  silent_port() {
    if (::listen(fd_, 64) != 0) throw std::runtime_error("cannot listen on 127.0.0.1");
  }
};

}  // namespace framex::test
