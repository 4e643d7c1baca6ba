// What framex keeps in etcd, over the client (etcd.hpp): a worker's
// registration under a lease, kept alive and marked draining, and a caller's
// watch of every registration under a prefix.
#include "membership/etcd.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <future>
#include <set>

#include <spdlog/spdlog.h>

#include "core/backoff.hpp"

namespace framex::detail::etcd {

namespace asio = boost::asio;
namespace json = boost::json;
using asio::use_awaitable;

namespace {

// Waits for `f` (set on a strand) at most `limit`.
void wait_for(std::future<void> f, std::chrono::milliseconds limit) { (void)f.wait_for(limit); }

// etcd retries: 100 ms doubling up to 5 s.
backoff etcd_backoff() { return backoff(std::chrono::milliseconds(100), std::chrono::seconds(5)); }

}  // namespace

struct registration::state {
  std::unique_ptr<client> etcd;
  std::string key;
  registered_worker value;
  std::chrono::seconds ttl;
  boost::asio::any_io_executor strand;
  asio::steady_timer timer;
  std::int64_t lease = 0;
  bool registered = false;  // the key holds `value`
  bool stopping = false;
  std::vector<std::promise<void>> drain_waiters;  // until `draining` is written
  std::promise<void> stopped;

  state(std::unique_ptr<client> e, std::string k, registered_worker v, std::chrono::seconds t, boost::asio::any_io_executor s)
      : etcd(std::move(e)), key(std::move(k)), value(std::move(v)), ttl(t), strand(s), timer(s) {}
};

registration::registration(std::unique_ptr<client> etcd, std::string key, registered_worker value, std::chrono::seconds ttl,
                           boost::asio::any_io_executor strand)
    : state_(std::make_shared<state>(std::move(etcd), std::move(key), std::move(value), ttl, std::move(strand))) {}

void registration::start() {
  asio::co_spawn(
      state_->strand, [self = shared_from_this()] { return self->keep(); }, asio::detached);
}

asio::awaitable<void> registration::keep() {
  auto& s = *state_;
  const auto refresh = std::chrono::duration_cast<std::chrono::milliseconds>(s.ttl) / 3;
  std::string last_error;
  auto retry = etcd_backoff();
  while (!s.stopping) {
    std::string failure;
    try {
      if (s.lease == 0) {
        s.lease = co_await s.etcd->grant(s.ttl);
        s.registered = false;
      }
      if (!s.registered) {
        co_await s.etcd->put(s.key, s.value.to_json(), s.lease);
        s.registered = true;
        spdlog::info("framex worker: registered as {} in etcd ({} s lease, {})", s.key, s.ttl.count(),
                     s.value.draining ? "draining" : "ready");
      }
      if (s.value.draining) {
        for (auto& w : s.drain_waiters) w.set_value();
        s.drain_waiters.clear();
      }
      s.timer.expires_after(refresh);
      boost::system::error_code ec;
      co_await s.timer.async_wait(asio::redirect_error(use_awaitable, ec));
      if (s.stopping || !s.registered) continue;  // woken to stop, or to write a new state
      if (!co_await s.etcd->keep_alive(s.lease)) {
        spdlog::warn("framex worker: the etcd lease of {} expired; registering again", s.key);
        s.lease = 0;
      }
      if (!last_error.empty()) spdlog::info("framex worker: etcd answers again");
      last_error.clear();
      retry.reset();
    } catch (const std::exception& e) {
      failure = e.what();
    }
    if (failure.empty() || s.stopping) continue;
    if (last_error != failure) spdlog::warn("framex worker: cannot keep {} registered: {}", s.key, failure);
    last_error = failure;
    boost::system::error_code ec;
    s.timer.expires_after(std::min<std::chrono::steady_clock::duration>(retry.next(), refresh));
    co_await s.timer.async_wait(asio::redirect_error(use_awaitable, ec));
  }
}

void registration::drain(std::chrono::milliseconds limit) {
  std::promise<void> written;
  auto f = written.get_future();
  asio::post(state_->strand, [s = state_, w = std::move(written)]() mutable {
    s->drain_waiters.push_back(std::move(w));
    s->value.draining = true;
    s->registered = false;
    s->timer.cancel();
  });
  wait_for(std::move(f), limit);
}

void registration::stop(std::chrono::milliseconds limit) {
  auto f = state_->stopped.get_future();
  asio::co_spawn(
      state_->strand,
      [s = state_]() -> asio::awaitable<void> {
        s->stopping = true;
        s->timer.cancel();
        try {
          if (s->lease != 0) co_await s->etcd->revoke(s->lease);
        } catch (const std::exception& e) {
          spdlog::warn("framex worker: could not revoke the etcd lease of {} (it expires in {} s): {}", s->key, s->ttl.count(),
                       e.what());
        }
        s->etcd->stop();
        s->stopped.set_value();
      },
      asio::detached);
  wait_for(std::move(f), limit);
  asio::post(state_->strand, [s = state_] { s->etcd->stop(); });
}

struct watcher::state {
  std::unique_ptr<client> etcd;
  boost::asio::any_io_executor strand;
  std::function<void(const members&)> on_change;
  std::function<void(const std::string&)> on_error;
  asio::steady_timer timer;
  bool stopping = false;

  state(std::unique_ptr<client> e, boost::asio::any_io_executor s, std::function<void(const members&)> c,
        std::function<void(const std::string&)> err)
      : etcd(std::move(e)), strand(s), on_change(std::move(c)), on_error(std::move(err)), timer(s) {}
};

watcher::watcher(std::unique_ptr<client> etcd, boost::asio::any_io_executor strand, std::function<void(const members&)> on_change,
                 std::function<void(const std::string&)> on_error)
    : state_(std::make_shared<state>(std::move(etcd), std::move(strand), std::move(on_change), std::move(on_error))) {}

void watcher::start() {
  asio::co_spawn(
      state_->strand, [self = shared_from_this()] { return self->follow(); }, asio::detached);
}

void watcher::stop() {
  asio::post(state_->strand, [s = state_] {
    s->stopping = true;
    s->timer.cancel();
    s->etcd->stop();
  });
}

asio::awaitable<void> watcher::follow() {
  auto& s = *state_;
  members found;
  std::set<std::string> refused;  // keys whose value is not a registration, logged once
  const auto note = [&](const key_value& kv, bool deleted) {
    if (deleted) {
      found.erase(kv.key);
      refused.erase(kv.key);
      return;
    }
    try {
      found[kv.key] = registered_worker::from_json(kv.value);
      refused.erase(kv.key);
    } catch (const etcd_error& e) {
      found.erase(kv.key);
      if (refused.insert(kv.key).second) spdlog::warn("framex: etcd key {} is not a worker's registration: {}", kv.key, e.what());
    }
  };
  auto retry = etcd_backoff();
  while (!s.stopping) {
    std::string failure;
    try {
      auto [kvs, revision] = co_await s.etcd->read_prefix();
      found.clear();
      for (const auto& kv : kvs) note(kv, false);
      s.on_change(found);
      retry.reset();
      co_await s.etcd->watch(revision + 1, [&](const std::vector<event>& events) {
        for (const auto& e : events) note(e.kv, e.deleted);
        s.on_change(found);
      });
    } catch (const std::exception& e) {
      failure = e.what();
    }
    if (failure.empty() || s.stopping) continue;
    s.on_error(failure);
    boost::system::error_code ec;
    s.timer.expires_after(retry.next());
    co_await s.timer.async_wait(asio::redirect_error(use_awaitable, ec));
  }
}

}  // namespace framex::detail::etcd
