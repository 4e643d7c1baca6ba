// Several hosts on one machine: etcd and two workers each in a network
// namespace of their own, joined by a bridge with addresses in a private range
// (10.201.0.0/24) that exists only while the test runs; the caller is this
// process. Cutting a worker's link (`ip link set ... down`) partitions it.
// Needs root and `ip`; skipped, saying why, where namespaces cannot be made.
// Every process is stopped by PID, every namespace and link deleted.
#include "framex/framex.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "etcd_process.hpp"
#include "support.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;

int lab_pid() { return static_cast<int>(::getpid()); }
int lab_sleep_pid(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return static_cast<int>(::getpid());
}

namespace {

using framex::test::clock;
using framex::test::error_of;
using framex::test::eventually;
using framex::test::run;
using framex::test::since;

bool sh(const std::string& command) { return std::system((command + " >/dev/null 2>&1").c_str()) == 0; }

// A process started inside namespace `ns` (`ip netns exec` execs it: its PID is
// the program's), its output in `log`.
class lab_process {
 public:
  lab_process(const std::string& ns, std::vector<std::string> args, const std::string& log) {
    args.insert(args.begin(), {"/usr/sbin/ip", "netns", "exec", ns});
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    const int rc = ::posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("could not start " + args[4]);
  }
  ~lab_process() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  lab_process(const lab_process&) = delete;
  lab_process& operator=(const lab_process&) = delete;
  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

 private:
  pid_t pid_ = -1;
};

// A bridge in this namespace and one namespace per host, each on it.
class lab {
 public:
  explicit lab(std::vector<std::string> hosts) : id_(std::to_string(::getpid() % 100000)) {
    char pattern[] = "/tmp/framex-lab-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
    if (::geteuid() != 0) {
      why_not_ = "not root";
      return;
    }
    if (!sh("ip link add " + bridge() + " type bridge") || !sh("ip link set " + bridge() + " up") ||
        !sh("ip addr add 10.201.0.1/24 dev " + bridge())) {
      why_not_ = "no bridge could be made";
      return;
    }
    for (std::size_t i = 0; i < hosts.size(); ++i) {
      const std::string ns = "fx" + id_ + hosts[i], outside = link(i), inside = "fx" + id_ + "i" + std::to_string(i);
      const std::string address = "10.201.0." + std::to_string(10 + i);
      namespaces_.push_back(ns);
      if (!sh("ip netns add " + ns) || !sh("ip link add " + outside + " type veth peer name " + inside) ||
          !sh("ip link set " + inside + " netns " + ns) || !sh("ip link set " + outside + " master " + bridge()) ||
          !sh("ip link set " + outside + " up") || !sh("ip netns exec " + ns + " ip addr add " + address + "/24 dev " + inside) ||
          !sh("ip netns exec " + ns + " ip link set " + inside + " up") || !sh("ip netns exec " + ns + " ip link set lo up")) {
        why_not_ = "no network namespace could be made";
        return;
      }
      addresses_.push_back(address);
    }
  }
  ~lab() {
    for (std::size_t i = 0; i < namespaces_.size(); ++i) {
      sh("ip link del " + link(i));
      sh("ip netns del " + namespaces_[i]);
    }
    sh("ip link del " + bridge());
    std::filesystem::remove_all(dir_);
  }
  lab(const lab&) = delete;
  lab& operator=(const lab&) = delete;

  [[nodiscard]] const std::string& why_not() const noexcept { return why_not_; }
  [[nodiscard]] const std::string& ns(std::size_t host) const { return namespaces_.at(host); }
  [[nodiscard]] const std::string& address(std::size_t host) const { return addresses_.at(host); }
  [[nodiscard]] std::string log(const std::string& name) const { return (dir_ / name).string(); }
  /// Cuts host `i` off from every other (its cable unplugged), or plugs it back.
  void cut(std::size_t i, bool down) { EXPECT_TRUE(sh("ip link set " + link(i) + (down ? " down" : " up"))); }

 private:
  [[nodiscard]] std::string bridge() const { return "fx" + id_ + "br"; }
  [[nodiscard]] std::string link(std::size_t i) const { return "fx" + id_ + "o" + std::to_string(i); }
  std::string id_;
  std::filesystem::path dir_;
  std::vector<std::string> namespaces_;
  std::vector<std::string> addresses_;
  std::string why_not_;
};

std::string this_program() {
  char path[4096];
  const ssize_t n = ::readlink("/proc/self/exe", path, sizeof path - 1);
  return n > 0 ? std::string(path, static_cast<std::size_t>(n)) : std::string();
}

TEST(Netns, APartitionedWorkersCallsEndWithinTheirDeadlineOthersGoOnAndItRejoins) {
  FRAMEX_REQUIRE(framex::test::etcd_installed(), "etcd is not installed");
  lab hosts({"etcd", "w1", "w2"});
  FRAMEX_REQUIRE(hosts.why_not().empty(), "network namespaces cannot be made here (" << hosts.why_not() << "): untested");
  const std::string etcd_at = hosts.address(0) + ":2379";
  lab_process etcd(hosts.ns(0),
                   {"/usr/bin/etcd", "--name=lab", "--data-dir=" + hosts.log("etcd-data"), "--listen-client-urls=http://" + etcd_at,
                    "--advertise-client-urls=http://" + etcd_at, "--listen-peer-urls=http://127.0.0.1:2380",
                    "--initial-advertise-peer-urls=http://127.0.0.1:2380", "--initial-cluster=lab=http://127.0.0.1:2380"},
                   hosts.log("etcd.log"));
  ASSERT_TRUE(eventually([&] { return sh("ETCDCTL_API=3 /usr/bin/etcdctl --endpoints=" + etcd_at + " endpoint health"); }, 30s))
      << "etcd did not start in its namespace";
  const std::string discovery = "etcd://" + etcd_at + "/framex/lab";
  const auto worker = [&](std::size_t host) {
    return std::make_unique<lab_process>(
        hosts.ns(host),
        std::vector<std::string>{this_program(), "--framex-worker", "--listen", hosts.address(host) + ":7001", "--threads", "4",
                                 "--worker.insecure", "true", "--distributed.discovery", discovery, "--etcd.lease_ttl_ms", "2000"},
        hosts.log("w" + std::to_string(host) + ".log"));
  };
  auto w1 = worker(1);
  auto w2 = worker(2);

  framex::config cfg;
  cfg.runtime.mode = framex::mode::distributed;
  cfg.distributed.discovery = discovery;
  cfg.distributed.heartbeat = 500ms;
  cfg.distributed.connect_timeout = 2s;
  framex::runtime rt(cfg);
  const auto served_by = [&] { return run([&] { return framex::remote<&lab_pid>.with({.timeout = 10s, .runtime = &rt, .retries = 1}).remote(); }); };
  ASSERT_TRUE(eventually([&] { return served_by() == w1->pid(); }, 30s)) << "the worker in w1 was never called";
  ASSERT_TRUE(eventually([&] { return served_by() == w2->pid(); }, 30s)) << "the worker in w2 was never called";

  // Two calls running, one in each worker (the fewest calls in flight), when w1's link is cut.
  asio::io_context io;
  std::vector<std::error_code> failed;
  std::vector<int> served;
  for (int i = 0; i < 2; ++i) {
    asio::co_spawn(io, framex::remote<&lab_sleep_pid>.with({.timeout = 15s, .runtime = &rt}).remote(3000),
                   [&](std::exception_ptr e, int pid) {
                     if (!e) return served.push_back(pid);
                     try {
                       std::rethrow_exception(e);
                     } catch (const std::system_error& x) {
                       failed.push_back(x.code());
                     } catch (...) {
                       failed.push_back(framex::errc::exception);
                     }
                   });
  }
  std::thread in_flight([&] { io.run(); });
  ASSERT_TRUE(eventually([&] {
    const auto s = framex::stats(rt);
    return s.workers.size() == 2 && s.workers[0].in_flight == 1 && s.workers[1].in_flight == 1;
  })) << "the two calls did not go one to each worker";
  const auto cut_at = clock::now();
  hosts.cut(1, true);
  in_flight.join();
  EXPECT_EQ(served, std::vector<int>{w2->pid()}) << "the call in the worker that was not cut off";
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_TRUE(failed[0] == framex::errc::worker_lost || failed[0] == framex::errc::timeout) << failed[0].message();
  EXPECT_LT(since(cut_at), 15s) << "the call outlived its deadline";
  for (int i = 0; i < 20; ++i) EXPECT_EQ(served_by(), w2->pid()) << "calls stopped while one worker was cut off";
  EXPECT_TRUE(eventually([&] {
    return !sh("ETCDCTL_API=3 /usr/bin/etcdctl --endpoints=" + etcd_at + " get --prefix /framex/lab/" + hosts.address(1) +
               " --keys-only | grep -q framex");
  }, 30s)) << "the cut-off worker's lease outlived the partition's first seconds";

  hosts.cut(1, false);  // back: it registers again and is called again
  EXPECT_TRUE(eventually([&] { return served_by() == w1->pid(); }, 60s)) << "the worker did not rejoin";
}

}  // namespace
