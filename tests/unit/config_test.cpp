#include "framex/config.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "config/keys.hpp"

namespace config_test {

// Sets an environment variable for one test.
struct scoped_env {
  scoped_env(const char* name, const char* value) : name(name) { ::setenv(name, value, 1); }
  ~scoped_env() { ::unsetenv(name); }
  const char* name;
};

std::string error_of(auto&& fn) {
  try {
    fn();
  } catch (const framex::config_error& e) {
    return e.what();
  }
  return "";
}

TEST(Config, DefaultsAreLocalWithA64MiBLimit) {
  const framex::config c;
  EXPECT_EQ(c.runtime.mode, framex::mode::local);
  EXPECT_EQ(c.distributed.max_message_size, 64u << 20);
  EXPECT_EQ(c.worker.listen, "127.0.0.1:7001");
}

TEST(Config, TheEnvironmentOverridesTheFileWhichOverridesDefaults) {
  const auto path = std::filesystem::temp_directory_path() / "framex_config_test.toml";
  {
    std::ofstream f(path);
    f << "[runtime]\nmode = \"distributed\"\nthreads = 3\n[distributed]\nworkers = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\n";
  }
  scoped_env env("FRAMEX_RUNTIME__THREADS", "5");
  const auto c = framex::config::load(path);
  EXPECT_EQ(c.runtime.mode, framex::mode::distributed);
  EXPECT_EQ(c.runtime.threads, 5u);
  EXPECT_EQ(c.distributed.workers, (std::vector<std::string>{"127.0.0.1:1", "127.0.0.1:2"}));
  const std::string described = c.describe();
  EXPECT_NE(described.find("runtime.threads = 5  # environment FRAMEX_RUNTIME__THREADS"), std::string::npos) << described;
  EXPECT_NE(described.find("runtime.mode = distributed  # file "), std::string::npos) << described;
  EXPECT_NE(described.find("worker.threads = 0  # default"), std::string::npos) << described;
  std::filesystem::remove(path);
}

TEST(Config, EachSideHasItsOwnTlsSettingsFromTomlTheEnvironmentAndFlags) {
  framex::config c;
  c.apply_toml(R"([worker]
tls = true
cert_file = "w.pem"
key_file = "w.key"
ca_file = "ca.pem"
require_client_cert = true
[distributed]
tls = true
ca_file = "ca.pem"
[server]
tls = true
cert_file = "s.pem"
key_file = "s.key"
)",
               "file t.toml");
  scoped_env env("FRAMEX_DISTRIBUTED__CERT_FILE", "caller.pem");
  c.apply_environment();
  c.apply("distributed.key_file", "caller.key", "command line --distributed.key_file");
  EXPECT_TRUE(c.worker.tls.enabled && c.worker.tls.require_client_cert);
  EXPECT_EQ(c.worker.tls.cert_file, "w.pem");
  EXPECT_EQ(c.worker.tls.ca_file, "ca.pem");
  EXPECT_TRUE(c.distributed.tls.enabled);
  EXPECT_EQ(c.distributed.tls.cert_file, "caller.pem");
  EXPECT_EQ(c.distributed.tls.key_file, "caller.key");
  EXPECT_FALSE(c.distributed.tls.require_client_cert);
  EXPECT_EQ(c.server.tls.key_file, "s.key");
  const std::string described = c.describe();
  EXPECT_NE(described.find("worker.require_client_cert = true  # file t.toml"), std::string::npos) << described;
  EXPECT_NE(described.find("distributed.cert_file = caller.pem  # environment FRAMEX_DISTRIBUTED__CERT_FILE"), std::string::npos)
      << described;
  EXPECT_NE(described.find("server.require_client_cert = false  # default"), std::string::npos) << described;
  EXPECT_EQ(error_of([&] { c.apply_toml("[worker]\ntls = \"yes\"\n", "file u.toml"); }),
            "file u.toml: worker.tls: expected a boolean, got a TOML string");
  EXPECT_NE(error_of([&] { c.apply_toml("[distributed]\nrequire_client_cert = true\n", "file v.toml"); }), "");  // a server's key
}

TEST(Config, AnUnknownKeyIsAnErrorNamingTheKeyAndItsSource) {
  framex::config c;
  EXPECT_EQ(error_of([&] { c.apply_toml("[runtime]\nmood = 1\n", "file x.toml"); }),
            "file x.toml: unknown key \"runtime.mood\"");
  scoped_env env("FRAMEX_RUNTIME__COLOUR", "blue");
  EXPECT_EQ(error_of([&] { c.apply_environment(); }), "environment FRAMEX_RUNTIME__COLOUR: unknown key \"runtime.colour\"");
}

TEST(Config, KeyRulesComeAsATomlTableOrAsTextAndNeverShowTheirKeys) {
  framex::config c;
  c.apply_toml("[auth]\nrules = { \"/api/v1/admin/*\" = [\"key-a\", \"env:ADMIN_KEY\"], \"/api/v1/run\" = [\"file:/etc/k\"] }\n",
               "file x.toml");
  const std::map<std::string, std::vector<std::string>> expected{{"/api/v1/admin/*", {"key-a", "env:ADMIN_KEY"}},
                                                                  {"/api/v1/run", {"file:/etc/k"}}};
  EXPECT_EQ(c.auth.rules, expected);
  EXPECT_NE(c.describe().find("auth.rules = /api/v1/admin/*=(a key)|env:ADMIN_KEY;/api/v1/run=file:/etc/k"), std::string::npos)
      << c.describe();
  scoped_env env("FRAMEX_AUTH__RULES", "/a=k1|k2;/b*=k3");
  c.apply_environment();
  EXPECT_EQ(c.auth.rules, (std::map<std::string, std::vector<std::string>>{{"/a", {"k1", "k2"}}, {"/b*", {"k3"}}}));
  EXPECT_NE(error_of([&] { c.apply("auth.rules", "/a", "command line"); }).find("PATH=KEY"), std::string::npos);
  EXPECT_NE(error_of([&] { c.apply_toml("[auth]\nrules = { \"/a\" = \"k\" }\n", "file y.toml"); }).find("array of keys"),
            std::string::npos);
}

TEST(Config, SpinBudgetsAreMicrosecondsAndBounded) {
  framex::config c;
  EXPECT_EQ(c.runtime.spin, std::chrono::microseconds(50));
  c.apply_toml("[runtime]\nspin_us = 0\n[worker]\nspin_us = 200\n", "file s.toml");
  EXPECT_EQ(c.runtime.spin, std::chrono::microseconds(0));
  EXPECT_EQ(c.worker.spin, std::chrono::microseconds(200));
  EXPECT_EQ(error_of([&] { c.apply("worker.spin_us", "20000", "command line"); }),
            "command line: worker.spin_us = \"20000\": at most 10000 (10 ms)");
}

TEST(Config, ResourceAmountsKeepEveryDigitFromTomlToPrintConfig) {
  framex::config c;
  c.apply_toml("[worker]\nresources = {mem = 17179869184, gpu = 0.5}\n", "test.toml");
  EXPECT_EQ(c.worker.resources.at("mem"), 17179869184.0);
  EXPECT_EQ(c.worker.resources.at("gpu"), 0.5);
  const std::string described = c.describe();
  EXPECT_NE(described.find("worker.resources = gpu=0.5,mem=17179869184"), std::string::npos) << described;
}

TEST(Config, DiscoveryIsCheckedWhenItIsSet) {
  framex::config c;
  EXPECT_NO_THROW(c.apply("distributed.discovery", "dns://workers.internal:7001?refresh_ms=200", "test"));
  EXPECT_NE(error_of([&] { c.apply("distributed.discovery", "dns://workers.internal:7001?every=2", "test"); }).find("refresh_ms=N"),
            std::string::npos);
  EXPECT_NE(error_of([&] { c.apply("distributed.discovery", "dns://workers.internal", "test"); }).find("host:port"), std::string::npos);
  EXPECT_NE(error_of([&] { c.apply("distributed.discovery", "consul://x", "test"); }).find("etcd://"), std::string::npos);
}

TEST(Config, AWronglyTypedValueIsAnError) {
  framex::config c;
  EXPECT_EQ(error_of([&] { c.apply_toml("[runtime]\nthreads = \"four\"\n", "file x.toml"); }),
            "file x.toml: runtime.threads: expected an integer, got a TOML string");
  EXPECT_EQ(error_of([&] { c.apply("runtime.mode", "remote", "command line"); }),
            "command line: runtime.mode = \"remote\": expected \"local\" or \"distributed\"");
  EXPECT_NE(error_of([&] { c.apply("distributed.workers", "localhost", "environment X"); }).find("not host:port"),
            std::string::npos);
}

TEST(Config, ABadFileIsAnError) {
  framex::config c;
  EXPECT_NE(error_of([&] { c.apply_toml("[runtime\n", "file bad.toml"); }).find("file bad.toml: not valid TOML"),
            std::string::npos);
  EXPECT_EQ(error_of([] { (void)framex::config::load("/nonexistent/framex.toml"); }),
            "file /nonexistent/framex.toml: cannot be read");
}

}  // namespace config_test

namespace config_test {

TEST(Config, CommandLineFlagsOverrideTheEnvironmentAndTheFile) {
  const auto path = std::filesystem::temp_directory_path() / "framex_cli_test.toml";
  {
    std::ofstream f(path);
    f << "[server]\nport = 7000\ndashboard_port = 7001\nhost = \"0.0.0.0\"\n";
  }
  scoped_env env("FRAMEX_SERVER__PORT", "8000");
  const std::string config_flag = "--config=" + path.string();
  const char* argv[] = {"app", config_flag.c_str(), "--server.port", "9000", "--keep-me", "--print-config"};
  const auto c = framex::config::load(6, argv);
  EXPECT_EQ(c.server.port, 9000);           // flag
  EXPECT_EQ(c.server.dashboard_port, 7001);  // file
  EXPECT_EQ(c.server.host, "0.0.0.0");
  EXPECT_TRUE(c.print_only);
  EXPECT_NE(c.describe().find("server.port = 9000  # command line --server.port"), std::string::npos) << c.describe();
  const char* bad[] = {"app", "--server.colour=blue"};
  EXPECT_EQ(error_of([&] { (void)framex::config::load(2, bad); }),
            "command line --server.colour: unknown key \"server.colour\"");
  std::filesystem::remove(path);
}

TEST(Config, FlagsThatAreNotFramexsAreLeftAloneEvenWithADotInTheirValue) {
  const auto path = std::filesystem::temp_directory_path() / "framex_cli_test_no_dot";  // no dot in the name
  {
    std::ofstream f(path);
    f << "[server]\ndashboard_port = 7101\n";
  }
  const std::string config_flag = "--config=" + path.string();
  const char* argv[] = {"app", "--out=a.txt", "--name.first=ada", config_flag.c_str(), "--server.port=9001"};
  const auto c = framex::config::load(5, argv);
  EXPECT_EQ(c.server.port, 9001);
  EXPECT_EQ(c.server.dashboard_port, 7101);  // the file given with --config=
  std::filesystem::remove(path);
}

TEST(Config, OnlyFramexSectionKeyVariablesAreRead) {
  scoped_env unrelated("FRAMEX_FOO", "1");
  scoped_env ours("FRAMEX_SERVER__THREADS", "3");
  const auto c = framex::config::load();
  EXPECT_EQ(c.server.threads, 3u);
}

}  // namespace config_test

namespace config_test {

// Plugins: top-level keys, [plugins] and [plugins.NAME] tables, from TOML, the
// environment and flags, each with its source.
TEST(Config, PluginSettingsComeFromTomlTheEnvironmentAndFlags) {
  const auto path = std::filesystem::temp_directory_path() / "framex_plugins_test.toml";
  {
    std::ofstream f(path);
    f << R"(load_builtin_plugins = ["echo"]
load_plugins = ["inventory", "/opt/svc/libbilling.so"]
plugins_strict = true
[plugins]
max_ongoing_requests = 50
[plugins.inventory]
stock = { apple = 5, "pear tree" = 2 }
ratio = 0.25
tags = ["a", "b\"c"]
max_ongoing_requests = 3
[plugins.billing]
deploy = "workers"
)";
  }
  scoped_env prefix("FRAMEX_PLUGINS__ECHO__PREFIX", "> ");
  scoped_env count("FRAMEX_PLUGINS__INVENTORY__LIMIT", "12");
  scoped_env strict("FRAMEX_PLUGINS_STRICT", "false");
  const std::string config_flag = "--config=" + path.string();
  const char* argv[] = {"app", config_flag.c_str(), "--plugins.billing.currency=CHF", "--load_builtin_plugins", "echo,proxy"};
  const auto c = framex::config::load(5, argv);
  EXPECT_EQ(c.plugins.load, (std::vector<std::string>{"inventory", "/opt/svc/libbilling.so"}));
  EXPECT_EQ(c.plugins.load_builtin, (std::vector<std::string>{"echo", "proxy"}));
  EXPECT_FALSE(c.plugins.strict);
  EXPECT_EQ(c.plugins.max_ongoing_requests, 50u);
  const auto& inventory = c.plugins.each.at("inventory");
  EXPECT_EQ(inventory.keys.at("stock"), R"({"apple":5,"pear tree":2})");
  EXPECT_EQ(inventory.keys.at("ratio"), "0.25");
  EXPECT_EQ(inventory.keys.at("tags"), R"(["a","b\"c"])");
  EXPECT_EQ(inventory.keys.at("limit"), "12");  // JSON when it is JSON
  EXPECT_EQ(inventory.max_ongoing_requests, 3u);
  EXPECT_FALSE(inventory.on_workers);
  EXPECT_TRUE(c.plugins.each.at("billing").on_workers);
  EXPECT_EQ(c.plugins.each.at("billing").keys.at("currency"), R"("CHF")");  // else a string
  EXPECT_EQ(c.plugins.each.at("echo").keys.at("prefix"), R"("> ")");
  const std::string described = c.describe();
  EXPECT_NE(described.find("plugins.echo.prefix = \"> \"  # environment FRAMEX_PLUGINS__ECHO__PREFIX"), std::string::npos)
      << described;
  EXPECT_NE(described.find("plugins.billing.deploy = workers  # file "), std::string::npos) << described;
  EXPECT_NE(described.find("plugins.billing.currency = \"CHF\"  # command line --plugins.billing.currency"),
            std::string::npos)
      << described;
  EXPECT_NE(described.find("load_builtin_plugins = echo,proxy  # command line --load_builtin_plugins"), std::string::npos)
      << described;
  std::filesystem::remove(path);
}

TEST(Config, BadPluginSettingsAreErrorsNamingTheKey) {
  framex::config c;
  EXPECT_EQ(error_of([&] { c.apply_toml("[plugins.billing]\ndeploy = \"moon\"", "test"); }),
            "test: plugins.billing.deploy = \"moon\": expected \"workers\" or \"local\"");
  EXPECT_NE(error_of([&] { c.apply_toml("[plugins.billing]\nmax_ongoing_requests = \"x\"", "test"); })
                .find("plugins.billing.max_ongoing_requests"),
            std::string::npos);
  EXPECT_EQ(error_of([&] { c.apply_toml("load_builtin_plugins = [\"telnet\"]", "test"); }),
            "test: load_builtin_plugins = \"telnet\": no built-in plugin \"telnet\" (there are echo and proxy)");
  EXPECT_EQ(error_of([&] { c.apply_toml("load_plugins = \"echo\"", "test"); }),
            "test: load_plugins: expected an array of strings, got a TOML string");
  EXPECT_EQ(error_of([&] { c.apply_toml("colour = \"blue\"", "test"); }), "test: unknown key \"colour\"");
}

}  // namespace config_test

namespace config_test {

// The README's configuration table is the key table's: a key added to one
// and not to the other fails here. The expected text is printed on failure.
TEST(Config, TheReadmeListsEveryKeyWithItsDefaultAsTheKeyTableDoes) {
  std::ifstream in(std::string(FRAMEX_SOURCE_DIR) + "/README.md");
  ASSERT_TRUE(in) << "README.md not found";
  const std::string readme((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string begin = "<!-- keys: generated from src/config/keys.cpp by detail::reference_table() -->\n";
  const std::string end = "<!-- end of keys -->";
  const auto a = readme.find(begin);
  const auto b = readme.find(end);
  ASSERT_NE(a, std::string::npos) << "README.md has no generated key table";
  ASSERT_NE(b, std::string::npos);
  const std::string expected = framex::detail::reference_table();
  EXPECT_EQ(readme.substr(a + begin.size(), b - a - begin.size()), expected) << "the README's table should read:\n" << expected;
  for (const auto& k : framex::detail::config_keys()) {
    EXPECT_NE(expected.find(std::string("| `") + k.name + "` |"), std::string::npos) << k.name;
    EXPECT_NE(std::string_view(k.doc), "") << k.name;
  }
}

TEST(Config, SecretKeysShowOnlyTheirSource) {
  framex::config c;
  c.apply("auth.dashboard_key", "hunter2-hunter2-hunter2", "test");
  c.apply("auth.rules", "/api/*=env:FRAMEX_TEST_KEY", "test");
  const std::string described = c.describe();
  EXPECT_EQ(described.find("hunter2"), std::string::npos) << described;
  EXPECT_NE(described.find("env:FRAMEX_TEST_KEY"), std::string::npos) << described;
  // A plugin's keys that name a secret, however they were set.
  c.apply_toml("[plugins.proxy]\nauth_key = \"upstream-sekrit\"\nApiToken = \"tok-sekrit\"\nkey_file = \"file:/etc/k\"\nretries = 2", "test");
  const std::string with_plugins = c.describe();
  EXPECT_EQ(with_plugins.find("sekrit"), std::string::npos) << with_plugins;
  EXPECT_NE(with_plugins.find("plugins.proxy.auth_key = (secret)  # test"), std::string::npos) << with_plugins;
  EXPECT_NE(with_plugins.find("plugins.proxy.key_file = \"file:/etc/k\""), std::string::npos) << with_plugins;
  EXPECT_NE(with_plugins.find("plugins.proxy.retries = 2"), std::string::npos) << with_plugins;
  for (const auto& k : framex::detail::config_keys()) {
    const bool holds_keys = std::string_view(k.name).starts_with("auth.");
    EXPECT_EQ(k.secret, holds_keys) << k.name;
  }
}

}  // namespace config_test
