// Distributed mode, caller's side: discovery, routing, resources, unrouted
// calls, stats and shutdown. The whole picture is at the top of
// distributed_impl.hpp.
#include "caller/distributed_impl.hpp"

#include "framex/detail/actor.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/smart_ptr/intrusive_ptr.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <functional>
#include <map>
#include <cstring>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <unordered_map>
#include <vector>

#include "net/address.hpp"
#include "net/client.hpp"
#include "net/tls.hpp"
#include "security/auth.hpp"
#include "membership/discovery.hpp"
#include "membership/source.hpp"
#include "framex/detail/bound_completion.hpp"
#include "framex/detail/pool.hpp"
#include "core/backoff.hpp"
#include "caller/remote_call.hpp"
#include "caller/greeting.hpp"
#include "caller/router.hpp"
#include "core/registry.hpp"
#include "core/resources.hpp"
#include "core/stats.hpp"
#include "protocol/hello.hpp"
#include "protocol/protocol.hpp"

namespace framex::detail {

namespace asio = boost::asio;
using clock = std::chrono::steady_clock;

distributed_runtime::impl::impl(const config& cfg, asio::io_context* caller_io, incoming_fn in)
    : settings(cfg.distributed),
      incoming(std::move(in)),
      token(cfg.distributed.token_file.empty() ? std::string()
                                               : read_token_file(cfg.distributed.token_file, "distributed.token_file")),
      tls(tls_context_for(cfg.distributed.tls, net::tls_context::role::client, "distributed")),
      own_io(caller_io == nullptr ? std::make_unique<asio::io_context>() : nullptr),
      io(caller_io == nullptr ? *own_io : *caller_io),
      retry_timer(asio::make_strand(io)),
      heartbeat_timer(asio::make_strand(io)) {
  check_unambiguous();
  const auto& s = settings;
  if (!token.empty() && s.hello == hello_mode::off) {
    throw config_error(
        "distributed.token_file needs the hello, which carries the proof: distributed.hello = \"off\" cannot be used with it");
  }
  const discovery found = discovery_of(s.discovery);
  if (found.how != discovery::kind::static_list && !s.workers.empty()) {
    throw config_error("set distributed.workers or a dns:// or etcd:// distributed.discovery, not both");
  }
  if (found.how != discovery::kind::static_list) {
    discovering = true;
    return;  // see start_discovery
  }
  if (s.workers.empty()) {
    throw config_error("distributed mode needs at least one worker: set distributed.workers");
  }
  for (const auto& w : s.workers) {
    const net::address at = net::parse_address(w);
    add_worker(w, at, at.host);
  }
}

void distributed_runtime::impl::start_discovery(const config& cfg) {
  const discovery found = discovery_of(settings.discovery);
  std::weak_ptr<impl> weak = weak_from_this();
  source = make_membership_source(
      found, cfg, discovery_strand,
      [weak](const members& m) {
        if (const auto self = weak.lock()) self->follow(m);
      },
      [weak](const std::string& why) {
        if (const auto self = weak.lock()) self->discovery_failed(why);
      });
  if (source) source->start();
}

void distributed_runtime::impl::add_worker(const std::string& address, const net::address& where,
                                           const std::string& verify_host) {
  for (std::size_t i = 0; i < settings.connections_per_worker; ++i) {
    auto sl = std::make_unique<slot>();
    sl->address = address;
    sl->where = where;
    sl->verify_host = verify_host;
    sl->limits = {settings.max_message_size};
    slots.push_back(std::move(sl));
  }
}

void distributed_runtime::impl::follow(const members& found) {
  std::vector<std::shared_ptr<net::client>> idle;
  {
    std::lock_guard lock(mutex);
    if (stopping) return;
    discovering = false;
    discovery_error.clear();
    for (auto& s : slots) {
      const auto it = found.find(s->address);
      s->retired = it == found.end();
      if (!s->retired && it->second.resources && s->status != slot::state::ready) s->resources = it->second.resources;
    }
    for (const auto& one : found) {
      if (std::none_of(slots.begin(), slots.end(), [&](const auto& s) { return s->address == one.first; })) {
        add_worker(one.first, one.second.where, one.second.verify_host);
        for (auto& s : slots) {
          if (s->address == one.first) s->resources = one.second.resources;
        }
      }
    }
    for (auto& s : slots) {
      if (s->retired && s->conn && s->conn->is_open() && s->conn->outstanding() == 0) idle.push_back(s->conn);
    }
  }
  for (auto& c : idle) c->close(code_of(errc::cancelled));
  reroute();  // waiting calls may have a worker now, or learn there is none
}

void distributed_runtime::impl::discovery_failed(std::string why) {
  {
    std::lock_guard lock(mutex);
    if (stopping) return;
    discovering = false;
    if (why != discovery_error) spdlog::warn("framex: discovery failed: {}", why);
    discovery_error = std::move(why);
  }
  reroute();  // calls waiting for the first answer learn why there is none
}

void distributed_runtime::impl::start(const function_entry& fn, message_buffer params, clock::duration timeout,
                                      const resource_needs& extra_needs, const asio::any_io_executor& caller,
                                      reply_handler handler, bool notification) {
  const call_ref call(new remote_call(fn, std::move(params), caller, std::move(handler), notification));
  if (!fn.needs.empty() || !extra_needs.empty()) {
    resource_map needs = fn.needs;
    for (const auto& extra : extra_needs) {
      auto& amount = needs[std::string(extra.name)];
      amount = std::max(amount, extra.amount);
    }
    call->set_needs(std::move(needs));
  }
  send_off(call, timeout);
}

void distributed_runtime::impl::start(const function_entry& fn, message_buffer params, clock::duration timeout, placement where,
                                      const asio::any_io_executor& caller, reply_handler handler, bool notification) {
  const call_ref call(new remote_call(fn, std::move(params), caller, std::move(handler), notification));
  resource_map needs = fn.needs;
  for (auto& [name, amount] : where.needs) needs[name] = std::max(needs[name], amount);
  call->set_needs(std::move(needs));
  call->pin(std::move(where.pin));
  send_off(call, timeout);
}

std::vector<std::string> distributed_runtime::impl::worker_addresses() {
  std::lock_guard lock(mutex);
  std::vector<std::string> out;
  for (const auto& s : slots) {
    if (!s->retired && std::find(out.begin(), out.end(), s->address) == out.end()) out.push_back(s->address);
  }
  return out;
}

void distributed_runtime::impl::send_off(const call_ref& call, clock::duration timeout) {
  const function_entry& fn = call->fn();
  if (timeout <= clock::duration::zero()) timeout = settings.call_timeout;
  call->arm(io, timeout, settings.connect_timeout);
  if (call->size() > settings.max_message_size) {
    return call->finish(code_of(errc::too_large), fn.name + ": the request is " + std::to_string(call->size()) +
                                                      " bytes; the limit is " + std::to_string(settings.max_message_size));
  }
  std::unique_lock lock(mutex);
  route(call, lock);
}

void distributed_runtime::impl::route(const call_ref& call, std::unique_lock<std::mutex>& lock) {
  if (call->done()) return;
  if (stopping) {
    lock.unlock();
    return call->finish(code_of(errc::cancelled), call->fn().name + ": the runtime is shutting down");
  }
  slot* chosen = call->pinned().empty() ? pick(call->needs()) : pick_pinned(call->pinned());
  if (chosen == nullptr && !call->pinned().empty()) {
    std::string why = call->fn().name + ": the worker at " + call->pinned() + " is unreachable";
    for (const auto& s : slots) {
      if (s->address == call->pinned() && !s->last_error.empty()) {
        why += " (" + s->last_error + ")";
        break;
      }
    }
    lock.unlock();
    return call->finish(code_of(errc::worker_lost), std::move(why));
  }
  if (chosen == nullptr) return keep_unrouted(call, lock);
  if (chosen->status == slot::state::connecting) {
    chosen->waiting.push_back(call);
    return;
  }
  const auto mismatch = chosen->mismatched.find(call->fn().name);
  if (mismatch != chosen->mismatched.end()) {
    std::string why = call->fn().name + ": this program has signature " + call->fn().signature + ", the worker at " +
                      chosen->address + " has " + mismatch->second;
    lock.unlock();
    return call->finish(code_of(errc::signature_mismatch), std::move(why));
  }
  if (!call->needs().empty() && !reserve(*chosen, *call)) return;  // it completed meanwhile
  auto conn = chosen->conn;
  const request_limits limits = chosen->limits;
  lock.unlock();
  call->send(*chosen, conn, limits);
}

void distributed_runtime::impl::revive(slot& s, clock::time_point now) {
  if (s.status == slot::state::ready && !s.conn->is_open()) {
    s.status = slot::state::down;
    s.conn.reset();
    s.last_error = "the connection was lost";
    s.last_code = errc::worker_lost;
    s.retry_at = {};
    if (source) source->look_again();  // has it moved?
  }
  if (s.status == slot::state::down && s.retry_at <= now) connect(s);
}

slot* distributed_runtime::impl::pick(const resource_map& needs) {
  const auto now = clock::now();
  candidates.clear();
  for (const auto& sp : slots) {
    slot& s = *sp;
    if (!s.retired) revive(s, now);
    route_candidate c;
    c.worker = s.address;
    c.retired = s.retired;
    c.has = s.resources ? &*s.resources : nullptr;
    if (s.status == slot::state::ready) {
      c.status = route_candidate::state::ready;
      c.draining = s.conn->draining();
      c.stalled = s.conn->queued_bytes() > stalled_bytes;
      c.suspect = suspect(s, now);
      c.load = s.conn->outstanding();
      if (const auto held = in_use.find(s.address); held != in_use.end()) c.held = &held->second;
    } else if (s.status == slot::state::connecting) {
      c.status = route_candidate::state::connecting;
      c.load = s.waiting.size();
    }
    candidates.push_back(c);
  }
  const std::size_t chosen = routes.pick(candidates, needs);
  return chosen == router::none ? nullptr : slots[chosen].get();
}

slot* distributed_runtime::impl::pick_pinned(const std::string& address) {
  const auto now = clock::now();
  slot* best = nullptr;
  slot* connecting = nullptr;
  for (const auto& sp : slots) {
    slot& s = *sp;
    if (s.retired || s.address != address) continue;
    revive(s, now);
    if (s.status == slot::state::ready && best == nullptr) best = &s;
    if (s.status == slot::state::connecting && connecting == nullptr) connecting = &s;
  }
  return best != nullptr ? best : connecting;
}

std::string distributed_runtime::impl::lacking(const resource_map& needs) const {
  constexpr std::size_t named = 4;  // workers named in the message; the rest are counted
  std::string said;
  std::size_t lacking = 0;
  for (const auto& s : slots) {
    if (s->retired) continue;
    if (!s->resources) return {};
    std::string lack = missing(*s->resources, needs);
    if (lack.empty()) return {};
    if (lacking++ < named) said += (said.empty() ? "" : "; ") + s->address + " lacks " + lack;
  }
  if (lacking > named) said += "; and " + std::to_string(lacking - named) + " more workers";
  return said;  // empty: no worker at all, and the call waits like any call
}

bool distributed_runtime::impl::reserve(slot& s, remote_call& call) {
  auto& held = in_use[s.address];
  for (const auto& [name, amount] : call.needs()) held[name] += amount;
  const bool holding = call.hold([self = weak_from_this(), address = s.address, needs = call.needs()] {
    if (const auto me = self.lock()) asio::post(me->io, [me, address, needs] { me->release(address, needs); });
  });
  if (!holding) {
    for (const auto& [name, amount] : call.needs()) held[name] -= amount;
  }
  return holding;
}

void distributed_runtime::impl::release(const std::string& address, const resource_map& needs) {
  {
    std::lock_guard lock(mutex);
    auto& held = in_use[address];
    for (const auto& [name, amount] : needs) held[name] = std::max(0.0, held[name] - amount);
  }
  reroute();
}

void distributed_runtime::impl::keep_unrouted(const call_ref& call, std::unique_lock<std::mutex>& lock) {
  if (discovering) {  // the first lookup reroutes it
    unrouted.push_back(call);
    has_unrouted.store(true, std::memory_order_relaxed);
    return;
  }
  if (!call->needs().empty()) {
    if (std::string lack = lacking(call->needs()); !lack.empty()) {
      lock.unlock();
      return call->finish(code_of(errc::no_worker), call->fn().name + ": " + lack);
    }
  }
  bool live = false, all_refused = true, by_credentials = true, any = false;
  clock::time_point next = clock::time_point::max();
  const slot* example = nullptr;  // for the message
  for (const auto& s : slots) {
    if (s->retired) continue;
    any = true;
    if (example == nullptr || (example->last_error.empty() && !s->last_error.empty())) example = s.get();
    live = live || (s->status == slot::state::ready && s->conn->is_open() && !s->conn->draining());
    all_refused = all_refused && s->status == slot::state::down && (s->last_code == errc::unauthorized || s->hello_refused);
    by_credentials = by_credentials && s->last_code == errc::unauthorized;
    if (s->status == slot::state::down) next = std::min(next, s->retry_at);
  }
  all_refused = all_refused && any;
  if (source) next = std::min<clock::time_point>(next, clock::now() + source->patience());  // one may appear
  // Credentials (or the hello) refused everywhere will be refused again: no use waiting.
  if (!live && (all_refused || next > call->give_up_at())) {
    std::string where = example != nullptr ? example->address + ": " + example->last_error
                                           : settings.discovery + (source && std::string_view(source->kind()) == "etcd"
                                                                       ? " has no ready worker registered"
                                                                       : " names no worker");
    if (example == nullptr && !discovery_error.empty()) where = discovery_error;
    const std::string why =
        call->fn().name + ": no worker " + (all_refused ? "accepts this caller" : "is reachable") + " (" + where + ")";
    const errc code = all_refused && by_credentials ? errc::unauthorized : errc::worker_lost;
    lock.unlock();
    return call->finish(code_of(code), why);
  }
  for (const auto& s : slots) {
    if (s->status == slot::state::down && !s->last_error.empty()) {
      call->note_unsent(s->address + ": " + s->last_error);
      break;
    }
  }
  std::erase_if(unrouted, [](const call_ref& c) { return c->done(); });
  unrouted.push_back(call);
  has_unrouted.store(true, std::memory_order_relaxed);
  if (next != clock::time_point::max() && next < retry_at) {
    retry_at = next;
    asio::post(retry_timer.get_executor(), [self = shared_from_this(), next] {
      self->retry_timer.expires_at(next);
      self->retry_timer.async_wait([self](const boost::system::error_code& ec) {
        if (!ec) self->reroute();
      });
    });
  }
}

void distributed_runtime::impl::reroute() {
  std::unique_lock lock(mutex);
  retry_at = clock::time_point::max();
  auto calls = std::move(unrouted);
  unrouted.clear();
  has_unrouted.store(false, std::memory_order_relaxed);
  for (auto& call : calls) {
    route(call, lock);
    if (!lock.owns_lock()) lock.lock();
  }
}

void distributed_runtime::impl::fill(stats_snapshot& out) {
  std::lock_guard lock(mutex);
  for (const auto& s : slots) {
    if (s->retired && !(s->conn && s->conn->is_open())) continue;  // gone
    worker_stats w;
    w.address = s->address;
    w.source = source ? source->kind() : "static";
    const bool live = s->status == slot::state::ready && s->conn->is_open();
    w.state = live                                   ? (s->conn->draining() ? "draining" : "ready")
              : s->status == slot::state::connecting ? "connecting"
              : s->unhealthy                         ? "unhealthy"
                                                     : "down";
    if (live) w.last_heard_ms = std::chrono::duration<double, std::milli>(clock::now() - s->conn->last_heard()).count();
    w.in_flight = s->conn ? s->conn->outstanding() : 0;
    w.bytes_sent = s->conn ? s->conn->bytes_sent() : 0;
    w.completed = s->completed.load();
    w.errors = s->errors.load();
    w.p50_ms = s->latency.quantile_ms(0.5);
    w.p99_ms = s->latency.quantile_ms(0.99);
    out.workers.push_back(std::move(w));
  }
}

void distributed_runtime::impl::shutdown() noexcept {
  std::vector<call_ref> waiting;
  std::vector<std::shared_ptr<net::client>> conns;
  {
    std::lock_guard lock(mutex);
    if (stopping) return;
    stopping = true;
    waiting = std::move(unrouted);
    unrouted.clear();
    for (auto& s : slots) {
      waiting.insert(waiting.end(), s->waiting.begin(), s->waiting.end());
      s->waiting.clear();
      if (auto d = s->deadline.lock()) asio::post(d->get_executor(), [d] { d->expires_at(clock::time_point::min()); });
      if (s->conn) conns.push_back(s->conn);
    }
  }
  for (auto& call : waiting) call->finish(code_of(errc::cancelled), call->fn().name + ": the runtime is shutting down");
  for (auto& c : conns) c->close(code_of(errc::cancelled));
  asio::post(retry_timer.get_executor(), [self = shared_from_this()] { self->retry_timer.cancel(); });
  asio::post(heartbeat_timer.get_executor(), [self = shared_from_this()] { self->heartbeat_timer.cancel(); });
  if (source) source->stop();
  work.reset();
  // A caller's io_context is not waited for: this may run on its thread.
  for (auto& t : threads) t.join();
  threads.clear();
}

distributed_runtime::distributed_runtime(const config& cfg, asio::io_context* io, incoming_fn incoming)
    : impl_(std::make_shared<impl>(cfg, io, std::move(incoming))) {
  const auto& settings = cfg.distributed;
  if (impl_->own_io) {
    impl_->work.emplace(impl_->io.get_executor());
    for (std::size_t i = 0; i < std::max<std::size_t>(1, settings.io_threads); ++i) {
      impl_->threads.emplace_back([io = &impl_->io] { io->run(); });
    }
  }
  if (settings.heartbeat.count() > 0) asio::post(impl_->heartbeat_timer.get_executor(), [self = impl_] { self->beat(); });
  impl_->start_discovery(cfg);
}

distributed_runtime::~distributed_runtime() { shutdown(); }

void distributed_runtime::start(const function_entry& fn, message_buffer params, clock::duration timeout,
                                const resource_needs& needs, const asio::any_io_executor& caller, reply_handler handler,
                                bool notification) {
  impl_->start(fn, std::move(params), timeout, needs, caller, std::move(handler), notification);
}

void distributed_runtime::start(const function_entry& fn, message_buffer params, clock::duration timeout, placement where,
                                const asio::any_io_executor& caller, reply_handler handler, bool notification) {
  impl_->start(fn, std::move(params), timeout, std::move(where), caller, std::move(handler), notification);
}

void distributed_runtime::notify(const function_entry& fn, message_buffer params, std::string pin) {
  reply_handler ignore = asio::bind_executor(impl_->io.get_executor(), [](std::error_code, reply) {});
  impl_->start(fn, std::move(params), {}, placement{{}, std::move(pin)}, impl_->io.get_executor(), std::move(ignore), true);
}

std::vector<std::string> distributed_runtime::worker_addresses() const { return impl_->worker_addresses(); }

void distributed_runtime::shutdown() noexcept { impl_->shutdown(); }

void distributed_runtime::fill(stats_snapshot& out) const { impl_->fill(out); }

}  // namespace framex::detail
