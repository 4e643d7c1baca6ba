// The DNS source (every A/AAAA record of a name, looked up every
// `refresh_ms` and when a connection is lost) and the etcd one (the
// registrations under a prefix, watched; membership/etcd.hpp).
#include "membership/source.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <spdlog/spdlog.h>

#include <atomic>

#include "membership/etcd.hpp"

namespace framex::detail {

namespace {

namespace asio = boost::asio;

class dns_source final : public membership_source, public std::enable_shared_from_this<dns_source> {
 public:
  dns_source(const discovery& d, asio::any_io_executor strand, found_fn found, failed_fn failed)
      : host_(d.dns_host),
        port_(d.dns_port),
        refresh_(d.dns_refresh),
        strand_(std::move(strand)),
        resolver_(strand_),
        timer_(strand_),
        found_(std::move(found)),
        failed_(std::move(failed)) {}

  void start() override { look_again(); }

  void stop() override {
    stopped_.store(true, std::memory_order_relaxed);
    asio::post(strand_, [self = shared_from_this()] {
      self->timer_.cancel();
      self->resolver_.cancel();
    });
  }

  void look_again() override {
    asio::post(strand_, [self = shared_from_this()] { self->look_up(); });
  }

  std::chrono::milliseconds patience() const override { return refresh_; }
  const char* kind() const noexcept override { return "dns"; }

 private:
  // On the strand: looks the name up; the answer schedules the next lookup.
  void look_up() {
    if (stopped_.load(std::memory_order_relaxed)) return;
    resolver_.async_resolve(
        host_, port_,
        [self = shared_from_this()](const boost::system::error_code& ec, const asio::ip::tcp::resolver::results_type& found) {
          self->answered(ec, found);
        });
  }

  // What a lookup found; a failed lookup changes nothing.
  void answered(const boost::system::error_code& ec, const asio::ip::tcp::resolver::results_type& found) {
    if (stopped_.load(std::memory_order_relaxed)) return;  // no next lookup
    if (ec) {
      failed_("looking up " + host_ + ": " + ec.message());
    } else {
      members addresses;
      for (const auto& r : found) {
        const auto ip = r.endpoint().address();
        const std::string text = ip.to_string();
        addresses.emplace((ip.is_v6() ? "[" + text + "]" : text) + ":" + port_, member{net::address{text, port_, {}}, host_, {}});
      }
      found_(addresses);
    }
    timer_.expires_after(refresh_);
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& e) {
      if (!e) self->look_up();
    });
  }

  const std::string host_, port_;
  const std::chrono::milliseconds refresh_;
  asio::any_io_executor strand_;
  asio::ip::tcp::resolver resolver_;
  asio::steady_timer timer_;
  found_fn found_;
  failed_fn failed_;
  std::atomic<bool> stopped_{false};
};

class etcd_source final : public membership_source {
 public:
  etcd_source(const discovery& d, const config& cfg, asio::any_io_executor strand, found_fn found, failed_fn failed)
      : watcher_(std::make_shared<etcd::watcher>(
            std::make_unique<etcd::client>(d.etcd, cfg.etcd), std::move(strand),
            [found = std::move(found)](const etcd::watcher::members& registered) { found(members_of(registered)); },
            [failed = std::move(failed)](const std::string& why) { failed(why); })) {}

  void start() override { watcher_->start(); }
  void stop() override { watcher_->stop(); }
  // A worker may register any moment.
  std::chrono::milliseconds patience() const override { return std::chrono::milliseconds(50); }
  const char* kind() const noexcept override { return "etcd"; }

 private:
  // The registered workers that take calls: those that drain are left out.
  static members members_of(const etcd::watcher::members& registered) {
    members found;
    for (const auto& [key, w] : registered) {
      if (w.draining) continue;
      try {
        const net::address at = net::parse_address(w.address);
        found.emplace(w.address, member{at, at.host, w.resources});
      } catch (const std::invalid_argument& e) {
        spdlog::warn("framex: etcd: a worker registered as {}: {}", w.address, e.what());
      }
    }
    return found;
  }

  std::shared_ptr<etcd::watcher> watcher_;
};

}  // namespace

std::shared_ptr<membership_source> make_membership_source(const discovery& d, const config& cfg, asio::any_io_executor strand,
                                                          membership_source::found_fn found,
                                                          membership_source::failed_fn failed) {
  switch (d.how) {
    case discovery::kind::dns:
      return std::make_shared<dns_source>(d, std::move(strand), std::move(found), std::move(failed));
    case discovery::kind::etcd:
      return std::make_shared<etcd_source>(d, cfg, std::move(strand), std::move(found), std::move(failed));
    case discovery::kind::static_list:
      break;
  }
  return nullptr;
}

}  // namespace framex::detail
