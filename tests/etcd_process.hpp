// A real etcd (Debian's etcd-server) for the tests: started on free ports of
// 127.0.0.1 with a temporary data directory, ready once it answers a health
// check, killed by PID. `etcdctl` runs against it.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ports.hpp"

extern char** environ;

namespace framex::test {

/// True when `etcd` can be run here.
inline bool etcd_installed() { return ::access("/usr/bin/etcd", X_OK) == 0 && ::access("/usr/bin/etcdctl", X_OK) == 0; }

class etcd_process {
 public:
  struct tls_files {
    std::string cert_file, key_file, ca_file;  // all empty: plain HTTP
  };

  /// Starts etcd with a new data directory.
  explicit etcd_process(tls_files tls = {}) : tls_(std::move(tls)), client_port_(free_port()), peer_port_(free_port()) {
    char pattern[] = "/tmp/framex-etcd-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
    start();
  }
  ~etcd_process() {
    kill_now();
    std::filesystem::remove_all(dir_);
  }
  etcd_process(const etcd_process&) = delete;
  etcd_process& operator=(const etcd_process&) = delete;

  /// "etcd://127.0.0.1:PORT" + `prefix`.
  [[nodiscard]] std::string discovery(const std::string& prefix) const {
    return "etcd://127.0.0.1:" + std::to_string(client_port_) + prefix;
  }
  [[nodiscard]] std::uint16_t client_port() const noexcept { return client_port_; }
  [[nodiscard]] const std::filesystem::path& dir() const noexcept { return dir_; }

  /// SIGKILL, by PID.
  void kill_now() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  /// Starts it again on the same ports; with `forget`, on an empty data
  /// directory (every lease and key lost).
  void restart(bool forget) {
    kill_now();
    if (forget) std::filesystem::remove_all(dir_ / "data");
    start();
  }

  /// Runs `etcdctl ARGS` against it; its standard output.
  std::string ctl(const std::string& args) const {
    std::string cmd = "ETCDCTL_API=3 /usr/bin/etcdctl --endpoints=" + scheme() + "://127.0.0.1:" + std::to_string(client_port_);
    if (!tls_.ca_file.empty()) cmd += " --cacert=" + tls_.ca_file;
    cmd += " " + args + " 2>&1";
    std::string out;
    if (FILE* p = ::popen(cmd.c_str(), "r")) {
      char buf[4096];
      std::size_t n = 0;
      while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
      ::pclose(p);
    }
    return out;
  }

 private:
  [[nodiscard]] std::string scheme() const { return tls_.cert_file.empty() ? "http" : "https"; }

  void start() {
    const std::string client = scheme() + "://127.0.0.1:" + std::to_string(client_port_);
    const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
    std::vector<std::string> args{"/usr/bin/etcd",
                                  "--name=framex-test",
                                  "--data-dir=" + (dir_ / "data").string(),
                                  "--listen-client-urls=" + client,
                                  "--advertise-client-urls=" + client,
                                  "--listen-peer-urls=" + peer,
                                  "--initial-advertise-peer-urls=" + peer,
                                  "--initial-cluster=framex-test=" + peer};
    if (!tls_.cert_file.empty()) {
      args.push_back("--cert-file=" + tls_.cert_file);
      args.push_back("--key-file=" + tls_.key_file);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    const std::string log = (dir_ / "etcd.log").string();
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    const int rc = ::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("could not start etcd");
    for (int i = 0; i < 200; ++i) {  // ready in about a second; 20 s on a loaded machine
      if (ctl("endpoint health").find("is healthy") != std::string::npos) return;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("etcd exited at start; see " + log);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    throw std::runtime_error("etcd did not become healthy within 20 s; see " + log);
  }

  tls_files tls_;
  std::filesystem::path dir_;
  std::uint16_t client_port_;
  std::uint16_t peer_port_;
  pid_t pid_ = -1;
};

}  // namespace framex::test
