// TLS between callers and workers: certificates made here by OpenSSL (a CA, a
// worker certificate for 127.0.0.1, a client certificate, an expired one, one
// for another host, one from another CA), real worker processes, and every
// path ending with the documented error while the worker serves others.
#include "framex/framex.hpp"

#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>

#include <sys/resource.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>

#include "net/client.hpp"
#include "net/tls.hpp"
#include "raw_peer.hpp"
#include "support.hpp"
#include "tls_certs.hpp"
#include "worker_process.hpp"

namespace asio = boost::asio;
using namespace std::chrono_literals;

int tls_double(int x) { return 2 * x; }
std::string tls_echo(std::string s) { return s; }

namespace {

using framex::test::distributed;
using framex::test::error_of;
using framex::test::pki;
using framex::test::run;
using framex::test::worker_process;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct Tls : ::testing::Test {
  pki ca;
  pki stranger{"another CA"};
  pki::files worker_cert = ca.issue("worker", "IP:127.0.0.1,DNS:localhost");
  pki::files client_cert = ca.issue("caller", "DNS:caller.example");
  std::string log_file = std::filesystem::temp_directory_path() / ("framex-tls-" + std::to_string(::getpid()) + ".log");

  ~Tls() override { std::filesystem::remove(log_file); }

  // A TLS worker with `cert`; `mutual`: callers need a certificate from `ca`.
  std::vector<std::string> worker_env(const pki::files& cert, bool mutual = true) const {
    return {"FRAMEX_WORKER__TLS=true", "FRAMEX_WORKER__CERT_FILE=" + cert.cert, "FRAMEX_WORKER__KEY_FILE=" + cert.key,
            "FRAMEX_WORKER__CA_FILE=" + ca.ca_file(), std::string("FRAMEX_WORKER__REQUIRE_CLIENT_CERT=") + (mutual ? "true" : "false")};
  }
  framex::config caller(const std::string& address, const pki::files* cert = nullptr) const {
    auto cfg = distributed({address});
    cfg.distributed.tls.enabled = true;
    cfg.distributed.tls.ca_file = ca.ca_file();
    if (cert != nullptr) {
      cfg.distributed.tls.cert_file = cert->cert;
      cfg.distributed.tls.key_file = cert->key;
    }
    return cfg;
  }
  static int twice(framex::runtime& rt, int x) {
    return run([&]() { return framex::remote<&tls_double>.with({.timeout = 20s, .runtime = &rt}).remote(x); });
  }
  // The error a call fails with; the test fails if it succeeds.
  static std::system_error failure(framex::runtime& rt) {
    try {
      twice(rt, 1);
    } catch (const std::system_error& e) {
      return e;
    }
    ADD_FAILURE() << "the call succeeded";
    return std::system_error(std::error_code{});
  }
  // A call fails with `unauthorized`, saying `says`.
  static void expect_refused(framex::runtime& rt, const std::string& says) {
    const auto e = failure(rt);
    EXPECT_EQ(e.code(), framex::errc::unauthorized);
    EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
  }
  // The worker still serves a good caller.
  void still_serves(const worker_process& w) {
    framex::runtime good(caller(w.address(), &client_cert));
    EXPECT_EQ(twice(good, 21), 42);
  }
};

TEST_F(Tls, MutualTlsServesACallerManyCallsAtOnceLargeAndSmall) {
  worker_process w(0, worker_env(worker_cert));
  framex::runtime rt(caller(w.address(), &client_cert));
  EXPECT_EQ(twice(rt, 21), 42);
  // Many in flight at once, gathered into few records, and messages far larger than a record.
  const std::string big(3 << 20, 'x');
  asio::io_context io;
  std::vector<std::size_t> sizes(201 * 3, 0);
  std::atomic<int> failures{0};
  auto echo = framex::remote<&tls_echo>.with({.timeout = 60s, .runtime = &rt});
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    const std::size_t n = i % 201 == 200 ? big.size() : (i % 201) * 97;
    asio::co_spawn(io, echo.remote(std::string(n, static_cast<char>('a' + i % 26))),
                   [&, i](std::exception_ptr e, std::string r) {
                     if (e) ++failures;
                     sizes[i] = r.size();
                   });
  }
  io.run();
  EXPECT_EQ(failures.load(), 0);
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    ASSERT_EQ(sizes[i], i % 201 == 200 ? big.size() : (i % 201) * 97) << i;
  }
}

TEST_F(Tls, ACallerVerifiesTheWorkerByNameToo) {
  worker_process w(0, worker_env(worker_cert));
  framex::runtime rt(caller("localhost:" + std::to_string(w.port()), &client_cert));
  EXPECT_EQ(twice(rt, 4), 8);
}

TEST_F(Tls, AnExpiredWorkerCertificateIsRefusedByTheCallerWhichSaysWhy) {
  const auto expired = ca.issue_expired("expired", "IP:127.0.0.1");
  worker_process w(0, worker_env(expired));
  framex::runtime rt(caller(w.address(), &client_cert));
  expect_refused(rt, "the caller refused the worker's certificate: certificate has expired");
}

TEST_F(Tls, ACertificateForAnotherHostIsRefusedByAddressAndByName) {
  const auto elsewhere = ca.issue("elsewhere", "DNS:elsewhere.example,IP:10.9.8.7");
  worker_process w(0, worker_env(elsewhere));
  {
    framex::runtime rt(caller(w.address(), &client_cert));
    expect_refused(rt, "IP address mismatch");
  }
  framex::runtime by_name(caller("localhost:" + std::to_string(w.port()), &client_cert));
  expect_refused(by_name, "hostname mismatch");
}

TEST_F(Tls, AWorkerFromAnUnknownCaIsRefused) {
  const auto foreign = stranger.issue("foreign", "IP:127.0.0.1");
  worker_process w(0, worker_env(foreign));
  framex::runtime rt(caller(w.address(), &client_cert));
  expect_refused(rt, "unable to get local issuer certificate");
}

TEST_F(Tls, ACallerWithoutAGoodClientCertificateIsRefusedAndTheWorkerLogsWhy) {
  worker_process w(0, worker_env(worker_cert), "/proc/self/exe", {}, log_file);
  {
    framex::runtime none(caller(w.address()));
    expect_refused(none, "the worker refused the TLS handshake");
  }
  still_serves(w);
  std::this_thread::sleep_for(1100ms);  // the worker logs one such line a second
  const auto foreign = stranger.issue("foreign-caller", "DNS:caller.example");
  {
    framex::runtime wrong(caller(w.address(), &foreign));
    EXPECT_EQ(failure(wrong).code(), framex::errc::unauthorized);
  }
  still_serves(w);
  w.stop();
  const std::string log = slurp(log_file);
  EXPECT_NE(log.find("peer did not return a certificate"), std::string::npos) << log;
  EXPECT_NE(log.find("unable to get local issuer certificate"), std::string::npos) << log;
}

TEST_F(Tls, PlaintextAgainstTlsFailsClearlyEitherWay) {
  // A worker that may come back is retried until the call's deadline; the
  // call then fails naming why it never got through.
  const auto expect_fails_saying = [](framex::config cfg, const std::string& says) {
    cfg.distributed.call_timeout = 3s;
    framex::runtime rt(cfg);
    try {
      run([&]() { return framex::remote<&tls_double>.with({.runtime = &rt}).remote(1); });
      ADD_FAILURE() << "served";
    } catch (const std::system_error& e) {
      EXPECT_TRUE(e.code() == framex::errc::worker_lost || e.code() == framex::errc::timeout) << e.what();
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  worker_process tls_worker(0, worker_env(worker_cert));
  // A TLS worker answers a plaintext caller's hello, in plaintext, that it
  // speaks TLS only: the call fails at once, as with wrong credentials, not
  // with `timeout` or `worker_lost` after retrying until the deadline.
  framex::runtime plain_to_tls(distributed({tls_worker.address()}));
  const auto refused = failure(plain_to_tls);
  EXPECT_EQ(refused.code(), framex::errc::unauthorized) << refused.what();
  EXPECT_NE(std::string(refused.what()).find("speaks TLS only"), std::string::npos) << refused.what();
  still_serves(tls_worker);
  worker_process plain_worker(0);
  expect_fails_saying(caller(plain_worker.address(), &client_cert), "does the worker speak TLS?");
  framex::runtime plain(distributed({plain_worker.address()}));
  EXPECT_EQ(twice(plain, 5), 10);
  framex::runtime tls_to_plain(caller(plain_worker.address(), &client_cert));
  // A plaintext worker answers a TLS hello with bytes that are no TLS record:
  // the caller's TLS fails with "wrong version number", which no retry changes.
  const auto spoke_tls = failure(tls_to_plain);
  EXPECT_EQ(spoke_tls.code(), framex::errc::worker_lost) << spoke_tls.what();  // at once, not `timeout` after 20 s
  EXPECT_NE(std::string(spoke_tls.what()).find("wrong version number"), std::string::npos) << spoke_tls.what();
}

TEST_F(Tls, ATokenOverTlsIsCheckedAsWithout) {
  const auto dir = std::filesystem::path(ca.ca_file()).parent_path();
  std::ofstream(dir / "good") << "tls-token-good-0123456789abcdef\n";
  std::ofstream(dir / "bad") << "tls-token-bad-0123456789abcdef\n";
  for (const char* name : {"good", "bad"}) std::filesystem::permissions(dir / name, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  auto env = worker_env(worker_cert, false);
  env.push_back("FRAMEX_WORKER__TOKEN_FILE=" + (dir / "good").string());
  worker_process w(0, env);
  auto good = caller(w.address());
  good.distributed.token_file = dir / "good";
  framex::runtime rt(good);
  EXPECT_EQ(twice(rt, 8), 16);
  auto bad = caller(w.address());
  bad.distributed.token_file = dir / "bad";
  framex::runtime wrong(bad);
  EXPECT_EQ(failure(wrong).code(), framex::errc::unauthorized);
}

// A pending call that hands its outcome to a future.
struct awaited_call final : framex::net::pending_call {
  std::promise<bool> answered;  // true: a response; false: the connection ended
  void on_response(framex::net::received_message) noexcept override { answered.set_value(true); }
  void on_lost(std::error_code) noexcept override { answered.set_value(false); }
};

TEST_F(Tls, AReconnectResumesTheSessionInsteadOfAFullHandshake) {
  worker_process w(0, worker_env(worker_cert));
  auto context = std::make_shared<framex::net::tls_context>(
      framex::net::tls_context::role::client, framex::net::tls_files{ca.ca_file(), client_cert.cert, client_cert.key}, "test");
  asio::io_context io;
  auto guard = asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });
  std::vector<bool> resumed;
  for (int i = 0; i < 3; ++i) {
    asio::ip::tcp::socket socket(asio::make_strand(io));
    socket.connect({asio::ip::make_address("127.0.0.1"), w.port()});
    framex::net::tls_setup setup{context, "127.0.0.1", w.address()};
    auto conn = std::make_shared<framex::net::client>(std::move(socket), framex::net::connection_limits{}, setup);
    conn->start();
    awaited_call call;
    auto answered = call.answered.get_future();
    framex::detail::message_buffer body(16 + std::strlen("no_such_function"));
    msgpack::packer<framex::detail::message_buffer> p(body);
    p.pack_array(0);
    ASSERT_NE(conn->call("no_such_function", std::move(body), call), 0u);
    ASSERT_EQ(answered.wait_for(20s), std::future_status::ready);
    EXPECT_TRUE(answered.get());  // answered (unknown_function) over TLS
    resumed.push_back(conn->tls_resumed());
    conn->close(std::make_error_code(std::errc::connection_aborted));
  }
  guard.reset();
  runner.join();
  EXPECT_FALSE(resumed[0]);
  EXPECT_TRUE(resumed[1]);
  EXPECT_TRUE(resumed[2]);
}

TEST_F(Tls, PeersThatNeverCompleteTheHandshakeAreCutOffAndGarbageIsRefused) {
  auto env = worker_env(worker_cert);
  env.push_back("FRAMEX_WORKER__AUTH_TIMEOUT_MS=300");
  worker_process w(0, env);
  framex::test::raw_peer silent(w.port());
  framex::test::raw_peer garbage(w.port());
  garbage.send(std::string(4096, '\x16'));
  const auto start = framex::test::clock::now();
  EXPECT_FALSE(silent.receive().has_value());  // closed, with nothing said
  EXPECT_LT(framex::test::since(start), 15s);
  EXPECT_FALSE(garbage.receive().has_value());
  still_serves(w);
}

// TLS 1.2 is spoken with AEAD suites only: a client that offers nothing but
// CBC with SHA-1 is refused; one that offers GCM is served. (OpenSSL's own
// client, so the offer is exactly what the command line says.)
TEST_F(Tls, Tls12TakesAeadSuitesOnly) {
  worker_process w(0, worker_env(worker_cert));
  const auto handshake = [&](const std::string& ciphers) {
    const std::string cmd = "echo | timeout 20 openssl s_client -connect 127.0.0.1:" + std::to_string(w.port()) +
                            " -tls1_2 -cipher '" + ciphers + "' -cert " + client_cert.cert + " -key " + client_cert.key +
                            " -CAfile " + ca.ca_file() + " 2>&1";
    std::string out;
    if (FILE* p = ::popen(cmd.c_str(), "r")) {
      char buffer[4096];
      while (std::size_t n = std::fread(buffer, 1, sizeof buffer, p)) out.append(buffer, n);
      ::pclose(p);
    }
    return out;
  };
  const std::string cbc = handshake("ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:AES128-SHA:AES256-SHA");
  EXPECT_EQ(cbc.find("Cipher is ECDHE"), std::string::npos) << cbc;
  EXPECT_NE(cbc.find("Cipher is (NONE)"), std::string::npos) << cbc;
  const std::string gcm = handshake("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256");
  EXPECT_NE(gcm.find("Cipher is ECDHE-"), std::string::npos) << gcm;
  still_serves(w);
}

TEST_F(Tls, SettingsThatCannotWorkAreConfigErrorsNamingTheKey) {
  const auto expect_error = [](framex::config cfg, const std::string& says) {
    try {
      framex::worker worker(cfg);
      ADD_FAILURE() << "the worker started";
    } catch (const framex::config_error& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  framex::config cfg;
  cfg.worker.listen = "127.0.0.1:0";
  cfg.worker.tls.enabled = true;
  expect_error(cfg, "worker.tls needs worker.cert_file and worker.key_file");
  cfg.worker.tls.cert_file = "/nonexistent/worker.pem";
  cfg.worker.tls.key_file = worker_cert.key;
  expect_error(cfg, "worker.cert_file: cannot use /nonexistent/worker.pem");
  cfg.worker.tls.cert_file = worker_cert.cert;
  cfg.worker.tls.key_file = client_cert.key;
  expect_error(cfg, "worker.key_file: cannot use " + client_cert.key);
  cfg.worker.tls.key_file = worker_cert.key;
  cfg.worker.tls.require_client_cert = true;
  expect_error(cfg, "worker.require_client_cert needs worker.ca_file");
  cfg.worker.tls.ca_file = ca.ca_file();
  framex::worker ok(cfg);
  EXPECT_NE(ok.port(), 0);

  // TLS alone authenticates no caller: a non-loopback worker needs client certificates or a token.
  cfg.worker.listen = "192.0.2.1:0";
  cfg.worker.tls.require_client_cert = false;
  expect_error(cfg, "worker.require_client_cert");
  cfg.worker.tls.require_client_cert = true;
  EXPECT_THROW(framex::worker{cfg}, std::system_error);  // allowed; fails only to bind an address not here
}

// ---- a TLS worker under attack ----

// Full handshakes from many threads, connections that stall inside the
// handshake, garbage before it, idle connections after it, and garbage inside
// it, all at once, while a good caller keeps calling: it never fails, and the
// worker's memory stays bounded.
TEST(SiegeTls, ATlsWorkerUnderHandshakeFloodsKeepsServingAGoodCaller) {
  pki ca;
  const auto worker_cert = ca.issue("worker", "IP:127.0.0.1");
  const auto client_cert = ca.issue("caller", "DNS:caller.example");
  auto env = framex::test::siege_env();
  for (const std::string& setting : {std::string("TLS=true"), "CERT_FILE=" + worker_cert.cert, "KEY_FILE=" + worker_cert.key,
                              "CA_FILE=" + ca.ca_file(), std::string("REQUIRE_CLIENT_CERT=true"), std::string("AUTH_TIMEOUT_MS=2000")}) {
    env.push_back("FRAMEX_WORKER__" + setting);
  }
  worker_process w(0, env);
  auto cfg = distributed({w.address()});
  cfg.distributed.tls = {.enabled = true, .ca_file = ca.ca_file(), .cert_file = client_cert.cert, .key_file = client_cert.key};
  framex::runtime good(cfg);
  ASSERT_EQ(run([&]() { return framex::remote<&tls_double>.with({.timeout = 20s, .runtime = &good}).remote(1); }), 2);
  const framex::test::peak_growth growth(w.pid());

  std::atomic<bool> stop{false};
  std::vector<std::thread> attackers;
  const auto endpoint = asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), w.port());
  // Full handshakes with a good certificate, then silence, then gone; and with none.
  for (int t = 0; t < 2; ++t) {
    attackers.emplace_back([&, t] {
      asio::io_context io;
      asio::ssl::context ctx(asio::ssl::context::tls_client);
      ctx.load_verify_file(ca.ca_file());
      if (t == 0) {
        ctx.use_certificate_chain_file(client_cert.cert);
        ctx.use_private_key_file(client_cert.key, asio::ssl::context::pem);
      }
      for (int i = 0; i < 150 && !stop; ++i) {
        asio::ssl::stream<asio::ip::tcp::socket> s(io, ctx);
        boost::system::error_code ec;
        s.lowest_layer().connect(endpoint, ec);
        if (!ec) s.handshake(asio::ssl::stream_base::client, ec);
        if (!ec) asio::write(s, asio::buffer(std::string(64, '\xc1')), ec);  // garbage inside TLS
      }
    });
  }
  // Stalled inside the handshake (a ClientHello's first bytes), garbage before
  // it, and idle connections that completed it.
  attackers.emplace_back([&] {
    std::vector<std::unique_ptr<framex::test::raw_peer>> held;
    for (int i = 0; i < 300 && !stop; ++i) {
      try {
        auto p = std::make_unique<framex::test::raw_peer>(w.port());
        p->send(i % 2 == 0 ? std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11) : std::string(2000, '\x00'));
        held.push_back(std::move(p));
      } catch (const std::exception&) {
      }
    }
    while (!stop) std::this_thread::sleep_for(50ms);
  });
  attackers.emplace_back([&] {
    asio::io_context io;
    asio::ssl::context ctx(asio::ssl::context::tls_client);
    ctx.load_verify_file(ca.ca_file());
    ctx.use_certificate_chain_file(client_cert.cert);
    ctx.use_private_key_file(client_cert.key, asio::ssl::context::pem);
    std::vector<std::unique_ptr<asio::ssl::stream<asio::ip::tcp::socket>>> idle;
    for (int i = 0; i < 100 && !stop; ++i) {
      auto s = std::make_unique<asio::ssl::stream<asio::ip::tcp::socket>>(io, ctx);
      boost::system::error_code ec;
      s->lowest_layer().connect(endpoint, ec);
      if (!ec) s->handshake(asio::ssl::stream_base::client, ec);
      if (!ec) idle.push_back(std::move(s));
    }
    while (!stop) std::this_thread::sleep_for(50ms);
  });

  int served = 0;
  std::error_code failed;
  const auto until = framex::test::clock::now() + 8s;
  while (framex::test::clock::now() < until && !failed) {
    failed = run([&]() { return error_of(framex::remote<&tls_double>.with({.timeout = 20s, .runtime = &good}).remote(served)); });
    ++served;
  }
  stop = true;
  for (auto& t : attackers) t.join();
  EXPECT_EQ(failed, std::error_code{}) << "after " << served << " calls";
  EXPECT_GT(served, 10);
  EXPECT_EQ(run([&]() { return framex::remote<&tls_double>.with({.timeout = 20s, .runtime = &good}).remote(21); }), 42);
  EXPECT_LT(growth.mib(), framex::test::siege_bound_mib) << "MiB above resting";
  std::cout << "[ siege    ] good calls " << served << ", TLS worker peak RSS " << growth.mib() << " MiB above "
            << growth.at_rest() << " at rest\n";
}

}  // namespace
