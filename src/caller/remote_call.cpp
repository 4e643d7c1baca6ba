#include "caller/remote_call.hpp"

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/require.hpp>
#include <boost/asio/strand.hpp>

#include <ostream>
#include <streambuf>

#include "net/message.hpp"
#include "protocol/protocol.hpp"

namespace framex::detail {

namespace {

// One argument of a request, as the worker frames it.
struct argument_size {
  std::size_t bytes = 0;
  std::size_t objects = 0;
};

// Each argument's bytes and objects, read with the worker's framing
// (net/message.hpp); empty when the parameters are no array.
std::vector<argument_size> arguments_of(const message_buffer& params) {
  const message_buffer flat = params.contiguous() ? message_buffer() : params.clone();
  const message_buffer& whole = params.contiguous() ? params : flat;
  const auto* p = reinterpret_cast<const unsigned char*>(whole.data());
  const std::size_t size = whole.size();
  if (size == 0) return {};
  std::size_t count = 0, at = 0;
  if (p[0] >= 0x90 && p[0] <= 0x9f) {
    count = p[0] & 0x0f;
    at = 1;
  } else if (p[0] == 0xdc && size >= 3) {
    count = std::size_t{p[1]} << 8 | p[2];
    at = 3;
  } else if (p[0] == 0xdd && size >= 5) {
    count = std::size_t{p[1]} << 24 | std::size_t{p[2]} << 16 | std::size_t{p[3]} << 8 | p[4];
    at = 5;
  } else {
    return {};
  }
  net::read_limits unlimited;
  unlimited.max_bytes = unlimited.max_elements = static_cast<std::size_t>(-1);
  std::vector<argument_size> out;
  try {
    for (std::size_t i = 0; i < count && at < size; ++i) {
      net::frame_scanner scan(unlimited);
      const std::size_t n = scan.scan(whole.data() + at, size - at);
      if (n == 0) return {};
      out.push_back({n, scan.elements()});
      at += n;
    }
  } catch (const std::exception&) {
    return {};
  }
  return out;
}

// The argument that weighs most by `weight`, as words for an error.
template <class Weight>
std::string heaviest(const std::vector<argument_size>& args, Weight weight, const char* unit) {
  if (args.empty()) return "its arguments are too large";
  std::size_t best = 0;
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (weight(args[i]) > weight(args[best])) best = i;
  }
  return "argument " + std::to_string(best) + " (from 0) alone has " + std::to_string(weight(args[best])) + unit;
}

constexpr const char* put_instead = ": pass it with framex::put and send the reference instead";

// Why a worker that announced `limits` cannot take this request; empty when it
// can. Objects are counted only when the request is large enough to pass a
// limit (each takes at least a byte), so a small call costs no scan.
std::string refused_by(const function_entry& fn, const message_buffer& params, const request_limits& limits) {
  const std::size_t size = params.size();
  if (limits.bytes != 0 && size > limits.bytes) {
    return fn.name + ": the request is " + std::to_string(size) + " bytes, and the worker takes at most " +
           std::to_string(limits.bytes) + " in a message (distributed.max_message_size); " +
           heaviest(arguments_of(params), [](const argument_size& a) { return a.bytes; }, " bytes") + put_instead;
  }
  constexpr std::size_t envelope = 5;  // [type, msgid, method, [arguments]]: the objects around the arguments
  const std::size_t most_objects = size + envelope;
  const bool may_pass_elements = limits.elements != 0 && most_objects > limits.elements;
  const bool may_pass_held = limits.held_bytes != 0 && size + most_objects * net::decoded_object_bytes > limits.held_bytes;
  if (!may_pass_elements && !may_pass_held) return {};
  const auto args = arguments_of(params);
  std::size_t objects = envelope;
  for (const auto& a : args) objects += a.objects;
  if (limits.elements != 0 && objects > limits.elements) {
    return fn.name + ": the request has " + std::to_string(objects) + " objects, and the worker takes at most " +
           std::to_string(limits.elements) + " in a message (distributed.max_message_elements); " +
           heaviest(args, [](const argument_size& a) { return a.objects; }, " objects") + put_instead;
  }
  const std::size_t cost = size + fn.name.size() + objects * net::decoded_object_bytes;
  if (limits.held_bytes != 0 && cost > limits.held_bytes) {
    return fn.name + ": the request takes " + std::to_string(cost) + " bytes in the worker once decoded (its " +
           std::to_string(size) + " bytes and " + std::to_string(net::decoded_object_bytes) + " for each of its " +
           std::to_string(objects) + " objects), more than the worker holds for all its calls (worker.max_held_bytes, " +
           std::to_string(limits.held_bytes) + "); " +
           heaviest(args, [](const argument_size& a) { return a.bytes + a.objects * net::decoded_object_bytes; },
                    " bytes decoded") +
           put_instead;
  }
  return {};
}

// `o` as text (msgpack-c's rendering), cut at `limit` bytes as it is written:
// a large object costs no more memory than that.
std::string shown(const msgpack::object& o, std::size_t limit) {
  struct bounded : std::streambuf {
    std::string text;
    std::size_t limit;
    int_type overflow(int_type c) override {
      if (c == traits_type::eof() || text.size() >= limit) return traits_type::eof();
      text.push_back(static_cast<char>(c));
      return c;
    }
  } out;
  out.limit = limit;
  std::ostream os(&out);
  os << o;
  return std::move(out.text);
}

}  // namespace

errc decode_error_object(const msgpack::object& error, reply& r) {
  errc code = errc::exception;
  const auto text = [](const msgpack::object& o) { return std::string(o.via.str.ptr, o.via.str.size); };
  bool framex_map = false;
  if (error.type == msgpack::type::MAP) {
    for (std::uint32_t i = 0; i < error.via.map.size; ++i) {
      const auto& kv = error.via.map.ptr[i];
      if (kv.key.type != msgpack::type::STR) continue;
      const std::string_view key(kv.key.via.str.ptr, kv.key.via.str.size);
      if (key == "code" && kv.val.type == msgpack::type::POSITIVE_INTEGER && kv.val.via.u64 >= 1 &&
          kv.val.via.u64 <= static_cast<std::uint64_t>(errc::object_unavailable)) {  // the last errc
        code = static_cast<errc>(kv.val.via.u64);
        framex_map = true;
      } else if (key == "type" && kv.val.type == msgpack::type::STR) {
        r.error_type = text(kv.val);
      } else if (key == "message" && kv.val.type == msgpack::type::STR) {
        r.error_message = text(kv.val);
      }
    }
  } else if (error.type == msgpack::type::STR) {
    r.error_message = text(error);
  } else if (error.type == msgpack::type::ARRAY) {
    for (std::uint32_t i = 0; i < error.via.array.size && r.error_message.empty(); ++i) {
      if (error.via.array.ptr[i].type == msgpack::type::STR) r.error_message = text(error.via.array.ptr[i]);
    }
  }
  if (r.error_message.empty()) r.error_message = shown(error, 1024);
  if (r.error_type.empty()) r.error_type = framex_map ? "unknown" : "msgpack_rpc.error";
  r.foreign_error = !framex_map;
  return code;
}

namespace {

// The two forms a caller's io_context executor takes inside an any_io_executor.
using tracked_io_executor = asio::io_context::basic_executor_type<std::allocator<void>, 4>;
using untracked_io_executor = asio::io_context::basic_executor_type<std::allocator<void>, 0>;

// Posts `f` to `ex`. A completion is posted from an I/O thread and run (and
// freed) on the caller's, so Asio's per-thread recycling of the operation's
// memory never gets it back: when `ex` is an io_context's, the operation's
// memory comes from the pool, which passes blocks between threads.
template <class F>
void post_pooled(const asio::any_io_executor& ex, F f) {
  const auto post_on = [&](const auto& io_ex) {
    asio::require(io_ex, asio::execution::blocking.never, asio::execution::allocator(pool_allocator<void>()))
        .execute(std::move(f));
  };
  if (const auto* t = ex.target<tracked_io_executor>()) return post_on(*t);
  if (const auto* u = ex.target<untracked_io_executor>()) return post_on(*u);
  asio::post(ex, std::move(f));
}

// True when `ex` is an io_context's executor and this thread runs that io_context.
bool running_in_this_thread(const asio::any_io_executor& ex) {
  if (const auto* t = ex.target<tracked_io_executor>()) return t->running_in_this_thread();
  if (const auto* u = ex.target<untracked_io_executor>()) return u->running_in_this_thread();
  return false;
}

}  // namespace

void remote_call::arm(asio::io_context& io, clock::duration timeout, clock::duration patience) {
  give_up_at_ = clock::now() + (timeout > clock::duration::zero() ? timeout : patience);
  intrusive_ptr_add_ref(this);
  bind_completion(asio::query(*work_, asio::execution::context), *this);
  if (cancel_slot_.is_connected()) {
    cancel_slot_.assign([self = call_ref(this)](asio::cancellation_type type) {
      if (type != asio::cancellation_type::none) self->finish(code_of(errc::cancelled), self->fn_.name);
    });
  }
  if (timeout > clock::duration::zero()) {
    timer_.emplace(asio::make_strand(io), timeout);
    timer_->async_wait([self = call_ref(this)](const boost::system::error_code& ec) {
      if (ec) return;
      std::string why = self->fn_.name + ": no answer within the call's timeout";
      {
        std::lock_guard lock(self->conn_mutex_);
        if (self->conn_ == nullptr && !self->unsent_because_.empty())
          why += " (it was never sent: " + self->unsent_because_ + ")";
      }
      self->finish(code_of(errc::timeout), why);
    });
  }
}

void remote_call::send(slot& s, const std::shared_ptr<net::client>& conn, const request_limits& limits) {
  if (done()) return;
  if (auto why = refused_by(fn_, params_, limits); !why.empty()) return finish(code_of(errc::too_large), std::move(why));
  if (notification_) {  // no answer to wait for: done once it is handed to the connection
    slot_.store(&s, std::memory_order_release);
    net::prepend_notification_header(params_, fn_.name);
    if (conn->send(std::move(params_))) return finish({}, reply{});
    return finish(code_of(errc::worker_lost), fn_.name + ": the connection to the worker closed");
  }
  std::unique_lock lock(conn_mutex_);
  intrusive_ptr_add_ref(this);  // the connection's table's
  slot_.store(&s, std::memory_order_release);
  const std::uint32_t id = conn->call(fn_.name, std::move(params_), *this);
  if (id == 0) {
    intrusive_ptr_release(this);
    lock.unlock();
    return finish(code_of(errc::worker_lost), fn_.name + ": the connection to the worker closed");
  }
  conn_ = conn;
  msgid_ = id;
  if (done()) forget_on_worker();  // timed out or cancelled while being sent
}

void remote_call::on_response(net::received_message message) noexcept {
  const call_ref self(this, false);  // the table's reference, adopted
  const msgpack::object& error = message.get().via.array.ptr[2];
  reply r;
  if (const slot* s = slot_.load(std::memory_order_acquire)) r.worker = &s->address;
  if (error.type == msgpack::type::NIL) {
    r.result = &message.get().via.array.ptr[3];
    r.message = std::move(message);
    finish({}, std::move(r), true);
  } else {
    const errc code = decode_error_object(error, r);
    r.error = &error;
    r.message = std::move(message);
    finish(code_of(code), std::move(r), true);
  }
  close_if_retired();
}

void remote_call::on_lost(std::error_code why) noexcept {
  const call_ref self(this, false);  // the table's reference, adopted
  // This side closed it, shutting down (`rpc_client::close`, the runtime's end): the call is cancelled.
  if (why == errc::cancelled) return finish(code_of(errc::cancelled), fn_.name + ": the runtime is shutting down");
  finish(code_of(errc::worker_lost), fn_.name + ": the connection to the worker was lost (" + why.message() + ")");
}

void remote_call::finish(std::error_code ec, std::string message) {
  reply r;
  r.error_message = std::move(message);
  finish(ec, std::move(r));
}

void remote_call::finish(std::error_code ec, reply r, bool read_here) {
  if (done_.exchange(true, std::memory_order_acq_rel)) return;
  count(ec, r);
  if (!needs_.empty()) {
    std::function<void()> release;
    {
      std::lock_guard lock(conn_mutex_);
      release = std::move(release_);
    }
    if (release) release();
  }
  if (ec == errc::timeout || ec == errc::cancelled) {
    std::lock_guard lock(conn_mutex_);
    forget_on_worker();
  }
  if (timer_) {
    // Cancels the wait; a finished call holds nothing of the runtime's io_context.
    asio::post(timer_->get_executor(), [self = call_ref(this)] { self->timer_.reset(); });
  }
  std::optional<asio::any_io_executor> here;  // the caller's executor, when it runs on this thread
  const bool unbound = unbind_completion(*this, [&] {
    // The completion takes the caller's work with it: whoever still holds
    // the call (a connection's table, the unrouted list) may outlive the
    // caller's context, and must hold nothing of it.
    asio::any_io_executor ex = std::move(*work_);
    work_.reset();
    if (read_here && running_in_this_thread(ex)) {
      here.emplace(std::move(ex));  // held until the handler has run
      return;
    }
    post_pooled(ex, [self = call_ref(this), ec, r = std::move(r), work = ex]() mutable {
      (void)work;  // held until the handler has run
      self->complete(ec, std::move(r));
    });
  });
  if (here) complete(ec, std::move(r));
  if (unbound) intrusive_ptr_release(this);  // the binding's
}

void remote_call::complete(std::error_code ec, reply r) {
  if (cancel_slot_.is_connected()) cancel_slot_.clear();
  reply_handler handler = std::move(handler_);
  std::move(handler)(ec, std::move(r));
}

void remote_call::detach() noexcept {
  if (cancel_slot_.is_connected()) cancel_slot_.clear();
  { [[maybe_unused]] const reply_handler dropped = std::move(handler_); }
  work_.reset();
  intrusive_ptr_release(this);  // the binding's
}

void remote_call::forget_on_worker() {
  if (conn_ && msgid_ != 0 && conn_->forget(msgid_)) {
    conn_->tell_cancelled(msgid_);  // a framex worker only: it stops the call
    intrusive_ptr_release(this);  // the table's reference
  }
}

void remote_call::close_if_retired() {
  const slot* s = slot_.load(std::memory_order_acquire);
  if (s == nullptr || !s->retired.load(std::memory_order_relaxed)) return;
  std::shared_ptr<net::client> conn;
  {
    std::lock_guard lock(conn_mutex_);
    conn = conn_;
  }
  if (conn != nullptr && conn->outstanding() == 0) conn->close(code_of(errc::cancelled));
}

void remote_call::count(std::error_code ec, const reply& r) noexcept {
  const std::int64_t ns = std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now() - started_).count();
  std::string message;
  if (ec) {
    try {
      message = ec.message() + (r.error_message.empty() ? "" : ": " + r.error_message);
    } catch (...) {
    }
  }
  if (fn_.remote_stats != nullptr) record(*fn_.remote_stats, ns, ec ? &message : nullptr);
  if (slot* s = slot_.load(std::memory_order_acquire)) {
    s->completed.fetch_add(1, std::memory_order_relaxed);
    if (ec) s->errors.fetch_add(1, std::memory_order_relaxed);
    s->latency.add(ns);
  }
}

}  // namespace framex::detail
