// A worker's life: made, serving, draining, stopped; and `worker_main`. The
// whole picture is at the top of worker_impl.hpp.
#include "worker/worker_impl.hpp"

#include <malloc.h>
#include <sys/resource.h>

#include <string>

namespace framex {

using detail::function_entry;
using detail::message_buffer;

namespace {
std::size_t threads_or_hardware(std::size_t n) { return n != 0 ? n : std::max(1u, std::thread::hardware_concurrency()); }

// A worker reachable from other hosts must say who may call it (a token, or
// client certificates), or say that the network is trusted.
void check_exposure(const config& cfg) {
  const auto at = net::parse_address(cfg.worker.listen);
  const bool checks_callers = !cfg.worker.token_file.empty() || (cfg.worker.tls.enabled && cfg.worker.tls.require_client_cert);
  // A unix socket is reached through the file system, whose permissions say who may.
  if (at.is_unix() || detail::is_loopback(at.host) || checks_callers || cfg.worker.insecure) return;
  throw config_error("worker.listen = " + cfg.worker.listen +
                     " is reachable from other hosts, and the worker authenticates no caller: set worker.token_file "
                     "or worker.require_client_cert (with worker.tls), or worker.insecure = true if every host that "
                     "can reach it may call every function it serves");
}

// Warnings about peers, at most one line a second of each kind, so a flood of
// bad peers cannot flood the log: the line says how many went unlogged.
class rate_limited_log {
 public:
  void warn(const std::string& line) {
    using clock = std::chrono::steady_clock;
    const auto now = clock::now().time_since_epoch().count();
    auto seen = last_.load(std::memory_order_relaxed);
    if (now - seen < std::chrono::duration_cast<clock::duration>(std::chrono::seconds(1)).count() ||
        !last_.compare_exchange_strong(seen, now, std::memory_order_relaxed)) {
      unlogged_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    const auto more = unlogged_.exchange(0, std::memory_order_relaxed);
    spdlog::warn("{}{}", line, more == 0 ? std::string() : " (and " + std::to_string(more) + " more since the last such line)");
  }

 private:
  std::atomic<std::chrono::steady_clock::rep> last_{0};
  std::atomic<std::uint64_t> unlogged_{0};
};

// A failed TLS handshake, with the reason only this side knows (the peer
// learns no more than an alert); and a connection the worker closed for a
// limit or a timeout, with the limit.
// True when it closed for a limit.
bool log_closed(const net::session& s, const std::error_code& why) {
  static rate_limited_log tls_failures, limits;
  if (net::is_tls_error(why)) {
    tls_failures.warn("framex worker: TLS with " + s.peer() + " failed: " + why.message());
    return false;
  }
  auto detail = s.close_detail();
  if (!detail.empty()) limits.warn("framex worker: closed the connection from " + s.peer() + ": " + detail);
  return !detail.empty();
}

net::connection_limits limits_of(const config& cfg) {
  net::connection_limits l;
  l.read.max_bytes = cfg.distributed.max_message_size;
  l.read.max_elements = cfg.distributed.max_message_elements;
  l.write_high_water = std::max<std::size_t>(cfg.worker.max_output_bytes / 4, 1024);
  l.write_cap = cfg.worker.max_output_bytes;
  l.queued_total = std::make_shared<std::atomic<std::size_t>>(0);
  l.max_queued_total = cfg.worker.max_output_total_bytes;
  l.message_timeout = cfg.distributed.message_timeout;
  l.idle_timeout = cfg.worker.idle_timeout;
  l.partial_bytes = std::make_shared<std::atomic<std::size_t>>(0);
  l.max_partial_bytes = cfg.worker.max_held_bytes;
  if (!cfg.worker.token_file.empty()) {
    l.greeting_timeout = std::max(cfg.worker.auth_timeout, std::chrono::milliseconds(1));
    // The challenge and the hello (which lists the caller's functions) fit in far less.
    l.max_bytes_before_greeting = std::size_t{1} << 20;
  }
  if (cfg.worker.tls.enabled) l.handshake_timeout = std::max(cfg.worker.auth_timeout, std::chrono::milliseconds(1));
  return l;
}

// What a worker serves, as 16 hex digits of SHA-256 over each served
// function's name and signature: workers that serve the same have the same.
std::string functions_digest(const std::vector<std::string>& serve) {
  std::string all;
  for (const auto* f : detail::registered_functions()) {
    if (detail::serves(serve, f->name)) all += f->name + '\0' + f->signature + '\n';
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (EVP_Digest(all.data(), all.size(), md, &n, EVP_sha256(), nullptr) != 1) return {};
  std::string hex;
  for (unsigned i = 0; i < 8 && i < n; ++i) {
    hex += "0123456789abcdef"[md[i] >> 4];
    hex += "0123456789abcdef"[md[i] & 15];
  }
  return hex;
}

// The address callers should dial: `worker.advertise`, else the listening
// host (which must then be one callers can dial) and port.
std::string advertised(const config::worker_section& w, std::uint16_t port) {
  if (!w.advertise.empty()) return w.advertise;
  if (w.listen.starts_with("unix:")) return w.listen;
  const auto host = parse_endpoint(w.listen).first;
  const auto ip = asio::ip::make_address(host);
  if (ip.is_unspecified()) {
    throw config_error("worker.listen = " + w.listen + " is no address a caller can dial: set worker.advertise for etcd");
  }
  return (ip.is_v6() ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

// Descriptors a worker keeps for itself beyond its connections: its listener,
// logs, storage, etcd, the pool's wake-ups.
constexpr rlim_t spare_descriptors = 64;

// The soft limit on open files raised to the hard one, and as many
// connections as fit below it: the rule that the longest-silent connection
// makes room for a new one must fire before descriptors run out.
std::size_t connections_that_fit(std::size_t wanted) {
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) != 0) return wanted;
  if (files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &files);
    (void)::getrlimit(RLIMIT_NOFILE, &files);
  }
  if (files.rlim_cur == RLIM_INFINITY || files.rlim_cur > wanted + spare_descriptors) return wanted;
  const std::size_t fit = files.rlim_cur > 2 * spare_descriptors ? static_cast<std::size_t>(files.rlim_cur - spare_descriptors)
                                                                 : static_cast<std::size_t>(files.rlim_cur / 2);
  if (wanted == 0 || fit < wanted) {
    spdlog::warn("framex worker: {} open files allowed (ulimit -n): at most {} connections, not {}", files.rlim_cur, fit,
                 wanted == 0 ? std::string("unlimited") : std::to_string(wanted));
    return fit;
  }
  return wanted;
}
}  // namespace

worker::impl::impl(const config& cfg)
    : cfg_(cfg.worker),
      max_message_(cfg.distributed.max_message_size),
      max_elements_(cfg.distributed.max_message_elements),
      token_(cfg.worker.token_file.empty() ? std::string() : detail::read_token_file(cfg.worker.token_file, "worker.token_file")),
      admission_({cfg.worker.max_queued, cfg.worker.max_calls_per_connection, cfg.worker.max_held_bytes}),
      pool_(threads_or_hardware(cfg.worker.threads), cfg.worker.spin),
      work_(asio::make_work_guard(io_)) {
  check_exposure(cfg);
  detail::check_unambiguous();
  detail::configure_storage(cfg.storage);
  listener_.emplace(io_, net::parse_address(cfg.worker.listen), limits_of(cfg), connections_that_fit(cfg.worker.max_connections), *this,
                    detail::tls_context_for(cfg.worker.tls, net::tls_context::role::server, "worker"));
  if (detail::discovery_of(cfg.distributed.discovery).how == detail::discovery::kind::etcd) register_in_etcd(cfg);
  for (std::size_t i = 0; i < std::max<std::size_t>(1, cfg.worker.io_threads); ++i) {
    threads_.emplace_back([this] { io_.run(); });
  }
  if (registration_) registration_->start();
}

void worker::impl::drain(std::optional<std::chrono::milliseconds> within) noexcept {
  const auto timeout = within.value_or(cfg_.drain_timeout);
  {
    std::lock_guard stop_lock(stop_mutex_);
    if (stopped_) return;
  }
  listener_->close();
  if (registration_) registration_->drain(etcd_timeout_);  // callers that watch etcd stop routing here
  // Every caller hears it before any refusal (a refusal that overtook the
  // notification would send the caller's retry back here), and every call
  // sent after the notification is refused: both are sent under the lock
  // admission takes, so a call admitted before saw no draining, and one
  // checked after is refused behind the notification on its connection.
  {
    std::lock_guard lock(mutex_);
    for (auto& s : listener_->sessions()) {
      s->send(net::notification_message(protocol::draining, static_cast<std::uint64_t>(timeout.count())));
    }
    admission_.drain();
  }
  {
    std::unique_lock lock(mutex_);
    held_changed_.wait_for(lock, timeout, [&] { return admission_.held() == 0; });
  }
  stop();
}

void worker::impl::stop() noexcept {
  std::lock_guard stop_lock(stop_mutex_);
  if (stopped_) return;
  stopped_ = true;
  listener_->close();
  if (registration_) registration_->stop(etcd_timeout_);  // callers stop routing here
  {
    std::lock_guard lock(mutex_);
    admission_.stop();
  }
  // Queued blocking calls are handed back and answer `cancelled` (before any
  // is marked cancelled, which would silence its answer); the pool's threads
  // are joined once the bodies running on them return.
  pool_.shutdown();
  std::unique_lock lock(mutex_);
  for (auto& [key, call] : calls_) call->cancel();  // async ones, on their strands
  held_changed_.wait_for(lock, std::chrono::seconds(5), [&] { return admission_.held() == 0; });
  lock.unlock();
  for (auto& s : listener_->sessions()) asio::post(s->executor(), [s] { s->close_when_drained(); });
  lock.lock();
  sessions_closed_.wait_for(lock, std::chrono::seconds(5), [&] { return listener_->sessions().empty(); });
  lock.unlock();
  for (auto& s : listener_->sessions()) s->close(make_error_code(errc::cancelled));
  work_.reset();
  io_.stop();
  for (auto& t : threads_) t.join();
  actors_.clear();
}

void worker::impl::on_session_closed(net::session& s, std::error_code why) {
  if (log_closed(s, why)) give_memory_back_soon();
  std::lock_guard lock(mutex_);
  actors_.session_closed(&s);
  lanes_.erase(&s);  // calls still queued keep the lane alive
  if (const auto it = ordered_.find(&s); it != ordered_.end()) it->second.held.clear();  // no one to answer
  for (auto it = calls_.lower_bound({&s, 0}); it != calls_.end() && it->first.first == &s; ++it) it->second->cancel();
  sessions_closed_.notify_all();
}

void worker::impl::give_memory_back_soon() {
  if (trim_pending_.exchange(true)) return;
  trim_timer_.expires_after(std::chrono::seconds(1));
  trim_timer_.async_wait([this](const boost::system::error_code& ec) {
    trim_pending_ = false;
    // Large answers are freed in the middle of the allocator's heaps, which
    // it keeps unless asked.
    if (!ec) ::malloc_trim(0);
  });
}

void worker::impl::finished(served_call& call) {
  bool release = false;
  {
    std::lock_guard lock(mutex_);
    if (!call.notification()) {
      const auto it = calls_.find(call.key());
      if (it != calls_.end() && it->second == &call) calls_.erase(it);
    } else if (const auto it = ordered_.find(&call.session()); it != ordered_.end() && --it->second.running == 0) {
      if (it->second.held.empty()) {
        ordered_.erase(it);
      } else {
        release = true;  // what came after it may start now, on its connection's strand
      }
    }
    admission_.finished(call.peer(), call.cost());
  }
  if (release) asio::post(call.session().executor(), [this, s = call.session_ptr()] { serve_held(s); });
  held_changed_.notify_all();
  call.session().call_finished();
}

void worker::impl::register_in_etcd(const config& cfg) {
  auto where = detail::discovery_of(cfg.distributed.discovery).etcd;
  detail::etcd::registered_worker me;
  me.address = advertised(cfg.worker, listener_->port());
  me.functions = functions_digest(cfg.worker.serve);
  me.resources = cfg.worker.resources;
  const std::string key = where.prefix + "/" + me.address;
  etcd_timeout_ = cfg.etcd.timeout;
  registration_ = std::make_shared<detail::etcd::registration>(
      std::make_unique<detail::etcd::client>(std::move(where), cfg.etcd), key, std::move(me),
      std::chrono::duration_cast<std::chrono::seconds>(cfg.etcd.lease_ttl), asio::make_strand(io_));
}
worker::worker(const config& cfg) : impl_(std::make_unique<impl>(cfg)) {}
worker::~worker() = default;
std::uint16_t worker::port() const noexcept { return impl_->port(); }
void worker::stop() noexcept { impl_->stop(); }
void worker::drain(std::optional<std::chrono::milliseconds> timeout) noexcept { impl_->drain(timeout); }

int serve_worker(const config& cfg) {
  // Output whose reader went away (a supervisor that read the first line and
  // closed the pipe) must fail a log write, not end the worker.
  std::signal(SIGPIPE, SIG_IGN);
  // Standard output carries the address line below and nothing else; the log
  // goes to standard error.
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("framex", std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
  spdlog::set_level(spdlog::level::from_str(cfg.log.level));
  // The plugins deployed to the workers (`[plugins.NAME] deploy = "workers"`),
  // started before the first call can come.
  detail::plugin_host plugins(cfg, true);
  {
    asio::io_context start_io;
    auto started = asio::co_spawn(start_io, plugins.start(), asio::use_future);
    start_io.run();
    started.get();
  }
  plugins.log_summary();
  worker w(cfg);
  asio::io_context signals_io;
  asio::signal_set signals(signals_io, SIGINT, SIGTERM);
  signals.async_wait([](const boost::system::error_code&, int) {});
  const auto at = net::parse_address(cfg.worker.listen);
  if (at.is_unix()) {
    std::printf("framex worker listening on %s\n", at.text().c_str());
  } else {
    std::printf("framex worker listening on %s:%u\n", at.host.c_str(), static_cast<unsigned>(w.port()));
  }
  std::fflush(stdout);
  signals_io.run();
  spdlog::info("framex worker: draining (at most {} ms)", cfg.worker.drain_timeout.count());
  w.drain();
  return 0;
}

std::optional<int> worker_main(int argc, char** argv) {
  if (std::none_of(argv + 1, argv + argc, [](const char* a) { return std::string_view(a) == "--framex-worker"; })) {
    return std::nullopt;
  }
  try {
    const config cfg = detail::load_command_line(argc, argv, true);
    if (cfg.print_only) {
      std::fputs(cfg.describe().c_str(), stdout);
      return 0;
    }
    return serve_worker(cfg);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "framex worker: %s\n", e.what());
    return 2;
  }
}

}  // namespace framex
