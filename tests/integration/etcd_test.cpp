// Discovery through a real etcd (Debian's etcd-server, started by each test on
// free ports with a temporary data directory, killed by PID): workers register
// themselves under a lease, callers follow the prefix. Real worker processes
// (this binary with --framex-worker), real TLS certificates made by the test.
// Time bounds are generous functional limits, never performance figures.
#include "framex/framex.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_future.hpp>

#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "membership/etcd.hpp"
#include "etcd_process.hpp"
#include "support.hpp"
#include "tls_certs.hpp"
#include "worker_process.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;

int etcd_test_pid() { return static_cast<int>(::getpid()); }
int etcd_test_sleep(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}

namespace {

using framex::test::clock;
using framex::test::error_of;
using framex::test::etcd_process;
using framex::test::eventually;
using framex::test::run;
using framex::test::since;
using framex::test::worker_process;

class Etcd : public ::testing::Test {
 protected:
  void SetUp() override {
    FRAMEX_REQUIRE(framex::test::etcd_installed(), "etcd is not installed (apt-get install etcd-server etcd-client)");
    etcd = std::make_unique<etcd_process>();
  }

  /// A caller following `prefix`.
  framex::config caller(const std::string& prefix = "/framex/test") const {
    framex::config cfg;
    cfg.runtime.mode = framex::mode::distributed;
    cfg.distributed.discovery = etcd->discovery(prefix);
    cfg.distributed.connect_timeout = 10s;
    return cfg;
  }
  /// A worker registering under `prefix`, with a 2 s lease.
  std::unique_ptr<worker_process> worker(const std::string& prefix = "/framex/test", std::vector<std::string> more = {}) const {
    std::vector<std::string> args{"--distributed.discovery", etcd->discovery(prefix), "--etcd.lease_ttl_ms", "2000"};
    args.insert(args.end(), more.begin(), more.end());
    return std::make_unique<worker_process>(0, std::vector<std::string>{}, "/proc/self/exe", args);
  }
  static int served_by(framex::runtime& rt) {
    return run([&]() { return framex::remote<&etcd_test_pid>.with({.timeout = 20s, .runtime = &rt}).remote(); });
  }
  static std::vector<std::string> addresses(framex::runtime& rt) {
    std::vector<std::string> out;
    for (const auto& w : framex::stats(rt).workers) out.push_back(w.address);
    return out;
  }

  std::unique_ptr<etcd_process> etcd;
};

TEST_F(Etcd, AWorkerRegistersCallersFollowItAndItsKeyGoesWhenItStops) {
  framex::runtime rt(caller());
  auto a = worker();
  EXPECT_EQ(served_by(rt), a->pid());  // waits for the registration if it is not seen yet
  const auto s = framex::stats(rt);
  ASSERT_EQ(s.workers.size(), 1u);
  EXPECT_EQ(s.workers[0].address, a->address());
  EXPECT_EQ(s.workers[0].source, "etcd");
  const std::string key = etcd->ctl("get --prefix /framex/test/");
  EXPECT_NE(key.find("/framex/test/" + a->address()), std::string::npos) << key;
  EXPECT_NE(key.find("\"state\":\"ready\""), std::string::npos) << key;
  EXPECT_NE(key.find("\"functions\":\""), std::string::npos) << key;

  auto b = worker();
  EXPECT_TRUE(eventually([&] { return addresses(rt).size() == 2; })) << "the second worker was never followed";
  EXPECT_TRUE(eventually([&] { return served_by(rt) == b->pid(); }));

  const int status = a->stop();  // drains, revokes its lease, exits 0
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(etcd->ctl("get --prefix /framex/test/").find(a->address()), std::string::npos) << "the key outlived the worker";
  EXPECT_TRUE(eventually([&] { return addresses(rt) == std::vector<std::string>{b->address()}; }));
  for (int i = 0; i < 10; ++i) EXPECT_EQ(served_by(rt), b->pid());
}

TEST_F(Etcd, ACallWaitsForAWorkerThatRegistersWhileItIsInFlight) {
  framex::runtime rt(caller());
  asio::io_context io;
  int served = 0;
  for (int i = 0; i < 4; ++i) {
    asio::co_spawn(io, framex::remote<&etcd_test_sleep>.with({.timeout = 30s, .runtime = &rt}).remote(i),
                   [&, i](std::exception_ptr e, int r) { served += !e && r == i; });
  }
  std::thread calls([&] { io.run(); });
  std::this_thread::sleep_for(200ms);  // the calls wait: no worker is registered yet
  auto w = worker();
  calls.join();
  EXPECT_EQ(served, 4);
}

TEST_F(Etcd, NoWorkerRegisteredEndsACallAtItsDeadlineSayingSo) {
  framex::runtime rt(caller("/framex/empty"));
  const auto start = clock::now();
  const auto ec = run([&] { return error_of(framex::remote<&etcd_test_pid>.with({.timeout = 500ms, .runtime = &rt}).remote()); });
  EXPECT_TRUE(ec == framex::errc::worker_lost || ec == framex::errc::timeout) << ec.message();
  EXPECT_LT(since(start), 10s);
}

TEST_F(Etcd, AKilledWorkersCallsFailAtOnceAndItLeavesWithinItsLease) {
  framex::runtime rt(caller());
  auto a = worker();
  EXPECT_EQ(served_by(rt), a->pid());
  asio::io_context io;
  std::error_code ec;
  asio::co_spawn(io, error_of(framex::remote<&etcd_test_sleep>.with({.timeout = 60s, .runtime = &rt}).remote(5000)),
                 [&](std::exception_ptr, std::error_code e) { ec = e; });
  std::thread call([&] { io.run(); });
  ASSERT_TRUE(eventually([&] { return framex::stats(rt).workers.at(0).in_flight == 1; }));
  const auto killed = clock::now();
  a->kill_now();  // no drain, no revoke: only the lease can tell etcd
  call.join();
  EXPECT_EQ(ec, framex::errc::worker_lost);
  EXPECT_LT(since(killed), 4s) << "the call waited for more than its connection";
  EXPECT_TRUE(eventually([&] { return etcd->ctl("get --prefix /framex/test/ --keys-only").find("/framex/") == std::string::npos; }))
      << "the key outlived its lease";
  EXPECT_TRUE(eventually([&] { return framex::stats(rt).workers.empty(); })) << "the caller kept the dead worker";
}

TEST_F(Etcd, AfterEtcdLosesEverythingWorkersRegisterAgainAndCallersFollowAgain) {
  framex::runtime rt(caller());
  auto a = worker();
  EXPECT_EQ(served_by(rt), a->pid());
  etcd->restart(/*forget=*/true);  // a new, empty store on the same port
  EXPECT_TRUE(eventually([&] { return etcd->ctl("get --prefix /framex/test/ --keys-only").find(a->address()) != std::string::npos; }))
      << "the worker did not register again";
  auto b = worker();  // seen only by a caller that watches again
  EXPECT_TRUE(eventually([&] { return addresses(rt).size() == 2; })) << "the caller did not follow the new store";
  EXPECT_TRUE(eventually([&] { return served_by(rt) == b->pid(); }));
}

TEST_F(Etcd, AWatchFromACompactedRevisionEndsSoTheCallerReadsAgain) {
  namespace etcd_ns = framex::detail::etcd;
  for (int i = 0; i < 5; ++i) etcd->ctl("put /framex/compact/k" + std::to_string(i) + " v");
  const std::string status = etcd->ctl("put /framex/compact/last v -w json");
  const auto at = status.find("\"revision\":");
  ASSERT_NE(at, std::string::npos) << status;
  const long revision = std::stol(status.substr(at + 11));
  EXPECT_NE(etcd->ctl("compact " + std::to_string(revision)).find("compacted revision"), std::string::npos);
  asio::io_context io;
  auto strand = asio::make_strand(io);
  etcd_ns::client c(framex::detail::parse_discovery(etcd->discovery("/framex/compact")).etcd, framex::config{}.etcd);
  int batches = 0;
  auto done = asio::co_spawn(strand, c.watch(2, [&](const std::vector<etcd_ns::event>&) { ++batches; }), asio::use_future);
  io.run();
  EXPECT_NO_THROW(done.get());  // it returned: read again, then watch from there
  EXPECT_EQ(batches, 0);
  auto read = asio::co_spawn(strand, c.read_prefix(), asio::use_future);
  io.restart();
  io.run();
  const auto [kvs, now] = read.get();
  EXPECT_EQ(kvs.size(), 6u);
  EXPECT_GE(now, revision);
}

TEST_F(Etcd, ARegistrationCarriesResourcesAndCallsArePlacedByThem) {
  auto plain = worker();
  auto gpu = worker("/framex/test", {"--worker.resources", "gpu=1"});
  framex::runtime rt(caller());
  EXPECT_TRUE(eventually([&] { return addresses(rt).size() == 2; }));
  EXPECT_NE(etcd->ctl("get /framex/test/" + gpu->address() + " --print-value-only").find("\"resources\":{\"gpu\":1"), std::string::npos);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(run([&] { return framex::remote<&etcd_test_pid>.with({.timeout = 20s, .runtime = &rt, .resources = {{"gpu", 1}}}).remote(); }),
              gpu->pid());
  }
  const auto ec = run([&] {
    return error_of(framex::remote<&etcd_test_pid>.with({.timeout = 60s, .runtime = &rt, .resources = {{"gpu", 2}}}).remote());
  });
  EXPECT_EQ(ec, framex::errc::no_worker);
}

// Two workers under steady calls with one retry; each is drained (SIGTERM)
// and a new one registers: no call fails.
TEST_F(Etcd, DrainingWorkersUnderLoadLoseNoCall) {
  auto a = worker();
  auto b = worker();
  framex::runtime rt(caller());
  framex::test::steady_load load(8, [&]() -> asio::awaitable<void> {
    co_await framex::remote<&etcd_test_sleep>.with({.timeout = 20s, .runtime = &rt, .retries = 1}).remote(10);
  });
  EXPECT_TRUE(load.succeeds(30)) << "the load stalled";
  EXPECT_EQ(a->stop(), 0) << "a drained worker exits 0";
  a = worker();
  EXPECT_TRUE(load.succeeds(30)) << "the load stalled";
  EXPECT_EQ(b->stop(), 0);
  b = worker();
  EXPECT_TRUE(load.succeeds(30)) << "the load stalled";
  load.stop();
  EXPECT_EQ(load.failed(), 0) << load.first_failure();
}

// etcd with authentication on: a role may touch only /framex/secure/.
TEST_F(Etcd, WithAuthenticationAUserRegistersAndFollowsAndAWrongPasswordIsNamed) {
  for (const char* step : {"user add root:root-password", "role add framex", "role grant-permission framex --prefix=true readwrite /framex/secure/",
                           "user add framex:framex-password", "user grant-role framex framex", "auth enable"}) {
    const auto out = etcd->ctl(step);
    ASSERT_EQ(out.find("Error"), std::string::npos) << step << ": " << out;
  }
  const auto password = etcd->dir() / "password";
  std::ofstream(password) << "framex-password\n";
  const std::vector<std::string> as_framex{"--etcd.user", "framex", "--etcd.password_file", password.string()};
  auto w = worker("/framex/secure", as_framex);
  auto cfg = caller("/framex/secure");
  cfg.etcd.user = "framex";
  cfg.etcd.password_file = password.string();
  {
    framex::runtime rt(cfg);
    EXPECT_EQ(served_by(rt), w->pid());
  }
  const auto wrong = etcd->dir() / "wrong";
  std::ofstream(wrong) << "not-the-password\n";
  cfg.etcd.password_file = wrong.string();
  framex::runtime refused(cfg);
  try {
    run([&] { return framex::remote<&etcd_test_pid>.with({.timeout = 2s, .runtime = &refused}).remote(); });
    ADD_FAILURE() << "a caller with a wrong etcd password found a worker";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find("authentication failed"), std::string::npos) << e.what();
  }
  auto outside = caller("/framex/elsewhere");  // a prefix the role may not read
  outside.etcd.user = "framex";
  outside.etcd.password_file = password.string();
  framex::runtime denied(outside);
  try {
    run([&] { return framex::remote<&etcd_test_pid>.with({.timeout = 2s, .runtime = &denied}).remote(); });
    ADD_FAILURE() << "a caller read a prefix its role may not";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find("permission denied"), std::string::npos) << e.what();
  }
}

// etcd over TLS: callers and workers verify its certificate against the CA.
TEST(EtcdTls, WorkersAndCallersSpeakTlsToEtcdAndRefuseAnUnknownCa) {
  FRAMEX_REQUIRE(framex::test::etcd_installed(), "etcd is not installed");
  framex::test::pki ca;
  const auto server = ca.issue("etcd", "IP:127.0.0.1");
  etcd_process etcd({server.cert, server.key, ca.ca_file()});
  const std::vector<std::string> tls{"--distributed.discovery", etcd.discovery("/framex/tls"), "--etcd.lease_ttl_ms", "2000",
                                     "--etcd.tls", "true", "--etcd.ca_file", ca.ca_file()};
  worker_process w(0, {}, "/proc/self/exe", tls);
  framex::config cfg;
  cfg.runtime.mode = framex::mode::distributed;
  cfg.distributed.discovery = etcd.discovery("/framex/tls");
  cfg.etcd.tls.enabled = true;
  cfg.etcd.tls.ca_file = ca.ca_file();
  {
    framex::runtime rt(cfg);
    EXPECT_EQ(run([&] { return framex::remote<&etcd_test_pid>.with({.timeout = 20s, .runtime = &rt}).remote(); }), w.pid());
    EXPECT_EQ(framex::stats(rt).workers.at(0).source, "etcd");
  }
  framex::test::pki other("another CA");
  cfg.etcd.tls.ca_file = other.ca_file();
  framex::runtime refused(cfg);
  try {
    run([&] { return framex::remote<&etcd_test_pid>.with({.timeout = 2s, .runtime = &refused}).remote(); });
    ADD_FAILURE() << "a caller trusted etcd's certificate from an unknown CA";
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find("its certificate was refused: unable to get local issuer certificate"), std::string::npos)
        << e.what();
  }
}

TEST(EtcdConfig, AnEtcdDiscoveryIsCheckedWhenSet) {
  framex::config cfg;
  EXPECT_NO_THROW(cfg.apply("distributed.discovery", "etcd://127.0.0.1:2379,10.0.0.2:2379/framex/prod", "test"));
  EXPECT_THROW(cfg.apply("distributed.discovery", "etcd://127.0.0.1:2379", "test"), framex::config_error);  // no prefix
  EXPECT_THROW(cfg.apply("distributed.discovery", "etcd://127.0.0.1/framex", "test"), framex::config_error);  // no port
  EXPECT_THROW(cfg.apply("etcd.lease_ttl_ms", "1500", "test"), framex::config_error);
  const auto target = framex::detail::parse_discovery("etcd://127.0.0.1:2379,10.0.0.2:2380/framex/prod/").etcd;
  ASSERT_EQ(target.endpoints.size(), 2u);
  EXPECT_EQ(target.endpoints[1].second, "2380");
  EXPECT_EQ(target.prefix, "/framex/prod");
}

TEST(EtcdConfig, ARegistrationReadsBackAndNonsenseIsRefused) {
  framex::detail::etcd::registered_worker w;
  w.address = "10.1.2.3:7001";
  w.draining = true;
  w.functions = "0123abcd";
  w.resources = {{"gpu", 1}, {"zone:eu", 1}};
  const auto back = framex::detail::etcd::registered_worker::from_json(w.to_json());
  EXPECT_EQ(back.address, w.address);
  EXPECT_TRUE(back.draining);
  EXPECT_EQ(back.resources, w.resources);
  for (const char* bad : {"", "[]", R"({"address":"nowhere","state":"ready"})", R"({"address":"h:1","state":"asleep"})",
                          R"({"address":"h:1","state":"ready","resources":{"gpu":"one"}})"}) {
    EXPECT_THROW(framex::detail::etcd::registered_worker::from_json(bad), framex::detail::etcd::etcd_error) << bad;
  }
}

}  // namespace
