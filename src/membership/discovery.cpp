#include "membership/discovery.hpp"

#include <charconv>
#include <stdexcept>

#include "framex/config.hpp"
#include "net/address.hpp"

namespace framex::detail {

namespace {

etcd_target parse_etcd(std::string_view url) {
  const auto slash = url.find('/');
  if (slash == std::string_view::npos || slash + 1 == url.size()) {
    throw std::invalid_argument("etcd://HOST:PORT/PREFIX needs a prefix (the workers' keys live under it)");
  }
  etcd_target t;
  std::string_view hosts = url.substr(0, slash);
  while (!hosts.empty()) {
    const auto comma = hosts.find(',');
    const auto [host, port] = net::parse_endpoint(hosts.substr(0, comma));
    t.endpoints.emplace_back(host, std::to_string(port));
    hosts = comma == std::string_view::npos ? std::string_view() : hosts.substr(comma + 1);
  }
  if (t.endpoints.empty()) throw std::invalid_argument("etcd:// names no HOST:PORT");
  t.prefix = std::string(url.substr(slash));
  while (t.prefix.size() > 1 && t.prefix.back() == '/') t.prefix.pop_back();
  if (t.prefix.find('?') != std::string::npos) throw std::invalid_argument("etcd:// takes no options");
  return t;
}

discovery parse_dns(std::string_view rest) {
  discovery d;
  d.how = discovery::kind::dns;
  const std::size_t query = rest.find('?');
  if (query != std::string_view::npos) {
    const std::string_view option = rest.substr(query + 1);
    constexpr std::string_view name = "refresh_ms=";
    unsigned ms = 0;
    const std::string_view digits = option.substr(std::min(option.size(), name.size()));
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), ms);
    if (!option.starts_with(name) || ec != std::errc{} || end != digits.data() + digits.size() || ms == 0) {
      throw std::invalid_argument("the only option of dns:// is refresh_ms=N (N > 0)");
    }
    d.dns_refresh = std::chrono::milliseconds(ms);
    rest = rest.substr(0, query);
  }
  auto [host, port] = net::parse_endpoint(rest);
  d.dns_host = std::move(host);
  d.dns_port = std::to_string(port);
  return d;
}

}  // namespace

discovery parse_discovery(std::string_view text) {
  if (text == "static") return {};
  if (text.starts_with("dns://")) return parse_dns(text.substr(6));
  if (text.starts_with("etcd://")) {
    discovery d;
    d.how = discovery::kind::etcd;
    d.etcd = parse_etcd(text.substr(7));
    return d;
  }
  throw std::invalid_argument("expected \"static\", dns://NAME:PORT[?refresh_ms=N] or etcd://HOST:PORT/PREFIX");
}

discovery discovery_of(const std::string& configured) {
  try {
    return parse_discovery(configured);
  } catch (const std::invalid_argument& e) {
    throw config_error("distributed.discovery = " + configured + ": " + e.what());
  }
}

}  // namespace framex::detail
