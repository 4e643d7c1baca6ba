// Distributed mode, caller's side: the state the runtime keeps.
//
// Each configured worker gets `connections_per_worker` slots; a slot is one
// multiplexed connection (net::client) and its state: down, connecting (TCP
// connect, then the `framex.hello` exchange, preceded with a token by
// `framex.challenge`: see src/security/auth.hpp) or ready. The first call connects
// every slot; a slot whose connection is lost is reconnected when a call needs
// it, after a jittered backoff while its worker stays unreachable.
//
// Discovery. Workers come from `workers`, from a name (`dns://NAME:PORT`)
// looked up every `refresh_ms` and after a connection is lost, or from etcd
// (`etcd://HOST:PORT/PREFIX`: the registrations under the prefix, watched; see
// membership/etcd.hpp): addresses that appear get slots; slots whose address vanished (or
// whose worker registered as draining) are retired (routed nothing, closed
// once idle) and kept, so a call or a connect that holds one stays valid.
//
// Health. Every half `heartbeat`, a ready connection on which no byte moved,
// either way, for a heartbeat gets a `framex.ping` (answered on the worker's
// I/O thread, whatever its pool is doing); if that too goes unanswered while
// nothing moves for a heartbeat (a large request still leaving is life), the
// worker is taken for hung or unreachable and the connection closes: its
// calls fail with `worker_lost` (a retry picks another worker) and the slot is
// reconnected like any lost one.
//
// Resources. A call that needs resources (its function's, `framex::require`,
// and its own) goes only to a slot whose worker has them free: what calls in
// flight hold is counted per worker address and given back when each call
// completes. Workers' amounts come from their hello, or from etcd before any
// connection; when every worker's are known and none has the amounts, the
// call fails at once with `no_worker`.
//
// Routing. A call goes to the ready slot with the fewest calls in flight
// (ties go to another worker than last time; caller/router.hpp), skipping connections whose worker said it is
// draining (`framex.draining`) and connections whose unsent output is above
// the high-water mark (a stalled worker); else it waits on a slot being
// connected; else it waits, unrouted, until a slot may be tried again or a
// stalled connection drains. A call that never reached a worker (its connect
// or hello failed) is routed again, to another worker if one is up. An unrouted
// call gives up with `worker_lost` when no worker can be tried again before its
// deadline (or, without one, within `connect_timeout`), unless a live but
// stalled connection may still take it; when every worker has refused this
// caller's credentials, it gives up at once with `unauthorized`.
//
// Where each part lives: a call in flight and its connection's slot in
// remote_call.hpp; which slot a call goes to in router.hpp; the hello in
// greeting.hpp; connecting, the heartbeat and a connect's outcome in
// connect.cpp; discovery, routing, resources, unrouted calls, stats and
// shutdown in distributed.cpp. The workers' discovery is membership/source.hpp.
//
// Lifetimes. The impl is shared: every timer wait, posted function, connect
// coroutine and resource release holds it (strongly, or weakly where it must
// not keep it alive: a discovery source's callbacks, a connection's drained
// hook, a call's release). `shutdown` stops what it owns and joins its own I/O
// threads; with a caller's io_context it cannot wait for that context (it may
// run on its thread), so what is still queued there keeps the impl alive until
// it has run or the context is destroyed.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "caller/distributed.hpp"
#include "caller/greeting.hpp"
#include "caller/remote_call.hpp"
#include "caller/router.hpp"
#include "membership/source.hpp"
#include "net/tls.hpp"

namespace framex::detail {

struct distributed_runtime::impl : std::enable_shared_from_this<impl> {
  impl(const config& cfg, asio::io_context* caller_io, incoming_fn in);

  // Once the runtime is shared: follows the workers its discovery finds
  // (membership/source.hpp). The source holds the runtime weakly.
  void start_discovery(const config& cfg);

  // Under the mutex (or before any thread runs): `connections_per_worker` slots for one worker.
  void add_worker(const std::string& address, const net::address& where, const std::string& verify_host);

  // The workers discovery found now, by address: new ones get slots; those
  // gone are retired (no new call; closed once idle) and come back if found again.
  void follow(const members& found);

  // Discovery cannot say which workers there are: those known stay.
  void discovery_failed(std::string why);

  void start(const function_entry& fn, message_buffer params, clock::duration timeout, const resource_needs& extra_needs,
             const asio::any_io_executor& caller, reply_handler handler, bool notification);

  void start(const function_entry& fn, message_buffer params, clock::duration timeout, placement where,
             const asio::any_io_executor& caller, reply_handler handler, bool notification);

  std::vector<std::string> worker_addresses();

  void send_off(const call_ref& call, clock::duration timeout);

  // Under the mutex (released here): sends `call` on the best slot, files it
  // with a slot being connected, or keeps it unrouted.
  void route(const call_ref& call, std::unique_lock<std::mutex>& lock);

  // Under the mutex: a slot whose connection was lost is down, to be
  // reconnected on demand; one that is down and due starts connecting, so
  // load can spread.
  void revive(slot& s, clock::time_point now);

  // Under the mutex: the slot the router picks for a call that needs `needs`
  // (see caller/router.hpp), or null.
  slot* pick(const resource_map& needs);

  // Under the mutex: the first ready slot of the worker at `address` (always
  // the same one while it lives, so calls pinned there arrive in the order
  // they were made), else one being connected (connecting one that is due);
  // null when its slots are all down, or it is gone.
  slot* pick_pinned(const std::string& address);

  // Under the mutex: why no worker will ever take a call that needs `needs`
  // (every worker's resources are known and none has them); empty when one
  // has them or may have them.
  std::string lacking(const resource_map& needs) const;

  // Under the mutex: takes `call`'s needs from `s`'s worker until it completes.
  bool reserve(slot& s, remote_call& call);

  // Gives back what a call held on `address`; calls waiting for it may go.
  void release(const std::string& address, const resource_map& needs);

  // Under the mutex (released here): no slot can take `call` now. It waits
  // for the next slot due for a retry, or for a stalled connection to drain,
  // unless it would give up before either.
  void keep_unrouted(const call_ref& call, std::unique_lock<std::mutex>& lock);

  // A slot may be tried again, or a connection drained: the unrouted calls
  // look for a slot anew.
  void reroute();

  // Under the mutex: starts connecting `s`. Posted: co_spawn may run the
  // coroutine at once on an I/O thread, which would take the mutex we hold.
  void connect(slot& s);
  // On `strand`; the same deadline covers the connect and the hello.
  static asio::awaitable<void> connect_and_greet(std::shared_ptr<impl> self, slot* s,
                                                 asio::strand<asio::io_context::executor_type> strand);

  net::connection_limits limits() const;

  // On the heartbeat timer's strand, every half heartbeat: a ready connection
  // still (no byte moved) for a heartbeat gets a `framex.ping`; one whose
  // ping has gone unanswered, still, for a heartbeat is taken for dead and
  // closed.
  void beat();
  // Under the lock, while routing: true when `s` has been quiet (nothing
  // heard) since a ping went out several of its round trips ago; sends that
  // ping when it has been quiet that long with calls outstanding and none in
  // flight. The router sends new calls elsewhere while anything else fits.
  bool suspect(slot& s, clock::time_point now);

  // The outcome of connecting `s`: ready with `conn`, or failed with `error`.
  // The calls that waited for it are sent on it, or routed again.
  void connected(slot& s, std::shared_ptr<net::client> conn, const greeting_failure& failed);

  // Some time after a connection became ready: the calls still waiting for
  // another worker's connection, made no faster than four times as slowly
  // (a hello that never comes), go where a connection is ready.
  void unstick(std::string ready_address);

  void fill(stats_snapshot& out);

  void shutdown() noexcept;

  config::distributed_section settings;
  incoming_fn incoming;                      // null: requests from workers are refused
  std::string token;                         // empty: none
  std::shared_ptr<net::tls_context> tls;     // null: plaintext
  std::unique_ptr<asio::io_context> own_io;  // null: the caller's serves the connections
  asio::io_context& io;
  // Keeps the own io_context's threads running until shutdown; a caller's
  // io_context is kept running by the connections and calls alone.
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  std::mutex mutex;
  std::vector<std::unique_ptr<slot>> slots;
  std::vector<call_ref> unrouted;              // calls no slot could take yet
  std::map<std::string, resource_map> in_use;  // resources held by calls, by worker address
  std::atomic<bool> has_unrouted{false};
  asio::steady_timer retry_timer;             // wakes the unrouted calls; on its strand
  asio::steady_timer heartbeat_timer;         // see beat(); on its strand
  bool discovering = false;                   // under the mutex: the first lookup (or etcd read) has not answered
  std::string discovery_error;                // under the mutex: why the last lookup (or etcd read) failed
  // null: a static list; set by start_discovery before any call can start, read-only after
  std::shared_ptr<membership_source> source;
  asio::strand<asio::io_context::executor_type> discovery_strand = asio::make_strand(io);
  clock::time_point retry_at = clock::time_point::max();  // when it is set to fire
  router routes;
  std::vector<route_candidate> candidates;  // pick's, reused
  bool stopping = false;
};

}  // namespace framex::detail
