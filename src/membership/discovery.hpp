// Where the workers are found: `distributed.discovery` read once, for the
// configuration, the caller and the worker alike.
//
//   static                                  the list in `distributed.workers`
//   dns://NAME:PORT[?refresh_ms=N]           every A/AAAA record of NAME, looked up every N ms
//   etcd://HOST:PORT[,HOST:PORT...]/PREFIX   the registrations under PREFIX, watched
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace framex::detail {

/// An etcd cluster and the prefix the workers register under.
struct etcd_target {
  std::vector<std::pair<std::string, std::string>> endpoints;  // host, port
  std::string prefix;                                          // "/PREFIX", no trailing '/'
};

struct discovery {
  enum class kind { static_list, dns, etcd };
  kind how = kind::static_list;
  // dns://
  std::string dns_host;
  std::string dns_port;
  std::chrono::milliseconds dns_refresh{5000};
  // etcd://
  etcd_target etcd;
};

/// Parses a `distributed.discovery` value; throws `std::invalid_argument`
/// saying what is wrong (without the key's name: the caller adds it).
[[nodiscard]] discovery parse_discovery(std::string_view text);

/// The same for a configured value: throws `config_error` naming the key.
[[nodiscard]] discovery discovery_of(const std::string& configured);

}  // namespace framex::detail
