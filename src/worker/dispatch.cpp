// A request on a worker: read, admitted or refused, and run where its kind
// runs (the pool, the connection's strand, an actor's strand); the call's
// answer or error. See worker_impl.hpp.
#include "worker/worker_impl.hpp"

#include "core/shown.hpp"
#include "protocol/actor_layout.hpp"

namespace framex {

using detail::function_entry;
using detail::message_buffer;

void worker::impl::snapshot_if_due(detail::hosted_actor& a) noexcept {
  const auto& plan = a.snapshot;
  if (plan.every == 0 || a.gone.load(std::memory_order_acquire) || ++a.calls % plan.every != 0) return;
  try {
    detail::write_snapshot(plan.owner, plan.key, plan.save(a.object.get()));
  } catch (const std::exception& e) {
    spdlog::warn("framex worker: {} actor {}: no snapshot: {}", a.class_name, a.id, e.what());
  }
}

void worker::impl::refuse(net::session& from, const net::incoming_request& request, errc code, const char* type,
                          const std::string& message) {
  if (request.notification) return spdlog::debug("framex worker: notification {}: {}", request.method, message);
  from.reply_error(request.msgid, static_cast<int>(code), type, message);
}

void worker::impl::on_request(const std::shared_ptr<net::session>& from, net::incoming_request request) {
  const auto& m = request.method;
  const bool control = m == protocol::cancel || m == protocol::ping || m == protocol::hello || m == protocol::challenge ||
                       m.starts_with(protocol::actor_prefix);
  if (!control) {
    std::lock_guard lock(mutex_);
    if (const auto it = ordered_.find(from.get()); it != ordered_.end()) {
      auto& held = it->second.held;
      if (cfg_.max_calls_per_connection != 0 && held.size() >= cfg_.max_calls_per_connection) {
        return refuse(*from, request, errc::overloaded, detail::wire_type(errc::overloaded),
                      "this connection has " + std::to_string(held.size()) + " messages waiting for a notification already");
      }
      held.push_back(std::move(request));
      return;
    }
  }
  serve(from, std::move(request));
}

void worker::impl::serve_held(const std::shared_ptr<net::session>& from) {
  for (;;) {
    net::incoming_request next;
    {
      std::lock_guard lock(mutex_);
      const auto it = ordered_.find(from.get());
      if (it == ordered_.end() || it->second.running != 0) return;
      if (it->second.held.empty()) return void(ordered_.erase(it));
      next = std::move(it->second.held.front());
      it->second.held.pop_front();
    }
    serve(from, std::move(next));
  }
}

void worker::impl::serve(const std::shared_ptr<net::session>& from, net::incoming_request request) {
  if (serve_builtin(from, request)) return;
  const function_entry* fn = served_function(*from, request);
  if (fn == nullptr) return;
  call_layout layout;
  if (!read_layout(*from, request, *fn, layout)) return;
  std::unique_ptr<served_call> call = admit(from, std::move(request), *fn);
  if (call == nullptr) return;
  if (layout.ref) {
    call->set_arguments(layout.ref->arguments);
    call->ref_owner = layout.ref->owner;
  } else if (layout.spawn) {
    call->caller = layout.spawn->caller;
    call->snapshot_every = layout.spawn->snapshot_every;
    call->snapshot_key = layout.spawn->snapshot_key;
    call->actor_name.assign(layout.spawn->name);
    call->set_arguments(layout.spawn->arguments);
  } else if (layout.actor != nullptr) {
    call->set_arguments(layout.method->arguments);
    call->actor = std::move(layout.actor);
    if (!(fn->is_async && fn->interleaves)) return take_turn_then_dispatch(std::move(call));
  }
  dispatch(std::move(call));
}

const detail::function_entry* worker::impl::served_function(net::session& from, const net::incoming_request& request) {
  // What is not served is answered as if it did not exist.
  const function_entry* fn = detail::serves(cfg_.serve, request.method) ? detail::find_function(request.method) : nullptr;
  if (fn != nullptr && (fn->run_blocking != nullptr || fn->run_async != nullptr || fn->construct != nullptr ||
                        fn->run_on != nullptr || fn->run_async_on != nullptr)) {
    return fn;
  }
  const std::string name = detail::shown(request.method);
  refuse(from, request, errc::unknown_function, detail::wire_type(errc::unknown_function),
         fn == nullptr ? "no function named \"" + name + "\" is served here"
                       : "\"" + name + "\" names several functions; give each a framex::wire_name");
  return nullptr;
}

bool worker::impl::read_layout(net::session& from, const net::incoming_request& request, const function_entry& fn,
                               call_layout& out) {
  const msgpack::object& params = *request.params;
  const auto bad = [&](const std::string& why) {
    refuse(from, request, errc::bad_arguments, detail::wire_type(errc::bad_arguments), std::string(request.method) + why);
    return false;
  };
  if (fn.actor_class.empty()) {
    out.ref = protocol::read_result_as_ref(params, detail::as_ref_ext_type);
    if (out.ref && out.ref->owner == 0) return bad(": a malformed result-as-reference marker");
    // A result is written only into the directory of the caller this
    // connection's hello named: a marker naming another owner is refused.
    if (out.ref && out.ref->owner != from.credentials.caller) {
      return bad(": the result-as-reference marker names another owner than this connection's caller");
    }
    return true;
  }
  if (fn.construct != nullptr) {
    out.spawn = protocol::read_actor_spawn(params);
    if (!out.spawn) return bad(": expected [caller, name, [arguments...], ([snapshot_every, key])]");
    actors_.seen(&from, out.spawn->caller);
    return true;
  }
  out.method = protocol::read_actor_call(params);
  if (!out.method) return bad(": expected [actor, caller, arguments...]");
  actors_.seen(&from, out.method->caller);
  out.actor = actors_.find(out.method->actor);
  if (out.actor == nullptr || out.actor->class_name != fn.actor_class) {
    refuse(from, request, errc::actor_lost, detail::wire_type(errc::actor_lost),
           "no " + fn.actor_class + " actor " + std::to_string(out.method->actor) +
               " here: killed, released, or the worker restarted");
    return false;
  }
  return true;
}

detail::admission::peer_id worker::impl::peer_of(const net::session& from) noexcept {
  // A caller's id, from its hello (proved, with a token); else the host its
  // connection comes from ("unix:PATH" for every peer on a unix socket).
  if (from.credentials.caller != 0) return from.credentials.caller & ~(std::uint64_t{1} << 63);
  std::string_view host = from.peer();
  if (!host.starts_with("unix:")) host = host.substr(0, std::min(host.size(), host.rfind(':')));
  return std::hash<std::string_view>{}(host) | (std::uint64_t{1} << 63);
}

std::unique_ptr<worker::impl::served_call> worker::impl::admit(const std::shared_ptr<net::session>& from,
                                                               net::incoming_request request, const function_entry& fn) {
  const auto peer = peer_of(*from);
  std::lock_guard lock(mutex_);
  using verdict = detail::admission::verdict;
  const verdict v = admission_.check(peer, from->calls(), request.cost);
  if (v == verdict::stopping)
    return refuse(*from, request, errc::cancelled, detail::wire_type(errc::cancelled), admission_.why(v)), nullptr;
  if (v == verdict::draining)
    return refuse(*from, request, errc::overloaded, detail::wire_type(errc::overloaded), admission_.why(v)), nullptr;
  if (!request.notification && calls_.contains({from.get(), request.msgid})) {
    refuse(*from, request, errc::bad_arguments, protocol::duplicate_msgid,
           "msgid " + std::to_string(request.msgid) + " is already in flight on this connection");
    return nullptr;
  }
  if (v != verdict::admit)
    return refuse(*from, request, errc::overloaded, detail::wire_type(errc::overloaded), admission_.why(v)), nullptr;
  auto& l = lanes_[from.get()];
  if (!l) l = std::make_shared<lane>();
  auto call = std::make_unique<served_call>(*this, from, std::move(request), fn, l, peer);
  if (call->notification()) {
    ++ordered_[from.get()].running;  // what comes after it waits for it
  } else {
    calls_[call->key()] = call.get();
  }
  admission_.admitted(peer, call->cost());
  from->call_started();
  return call;
}

void worker::impl::take_turn_then_dispatch(std::unique_ptr<served_call> call) {
  // The turn passes on the thread of the call before (a pool thread, for a
  // blocking one): the next is handed to the pool from there, without a hop
  // through the I/O thread.
  auto& turn = call->actor->turn;
  if (!turn.try_enter()) {
    return turn.wait({}, [this, c = std::move(call)](std::error_code) mutable {
      c->holds_turn = true;
      dispatch(std::move(c));
    });
  }
  call->holds_turn = true;
  dispatch(std::move(call));
}

void worker::impl::dispatch(std::unique_ptr<served_call> call) {
  const function_entry& fn = call->fn();
  if (call->actor != nullptr && fn.is_async) {
    if (call->actor_lost()) return;
    auto signal = call->signal;
    void* object = call->actor->object.get();
    const auto strand = call->actor->strand;
    asio::co_spawn(strand, fn.run_async_on(std::move(call), object),
                   asio::bind_cancellation_slot(signal->slot(), [signal](std::exception_ptr) {}));
  } else if (fn.is_async) {
    auto signal = call->signal;
    const auto ex = call->session().executor();
    asio::co_spawn(ex, fn.run_async(std::move(call)),
                   asio::bind_cancellation_slot(signal->slot(), [signal](std::exception_ptr) {}));
  } else if (fn.run_inline) {
    call.release()->run(false);  // marked cheap (`framex::inline_ok`): here, on the I/O thread
  } else {
    auto& l = call->queue();
    pool_.submit(*call.release(), l);
  }
}

void worker::impl::cancel(net::session& from, const msgpack::object& params) {
  if (params.type != msgpack::type::ARRAY || params.via.array.size != 1 ||
      params.via.array.ptr[0].type != msgpack::type::POSITIVE_INTEGER || params.via.array.ptr[0].via.u64 > UINT32_MAX) {
    return;
  }
  std::lock_guard lock(mutex_);
  const auto it = calls_.find({&from, static_cast<std::uint32_t>(params.via.array.ptr[0].via.u64)});
  if (it != calls_.end()) it->second->cancel();
}

void worker::impl::served_call::succeed(message_buffer body) noexcept {
  if (notification() || cancelled_.load(std::memory_order_acquire)) return;
  if (ref_owner != 0 && body.size() >= detail::inline_threshold()) {
    // Asked for a reference (`remote_ref`): a large result goes to storage
    // and the caller gets its name.
    try {
      body.flatten();
      const auto object = detail::spill(std::string_view(body.data(), body.size()), ref_owner);
      message_buffer named(response_headroom);
      msgpack::packer<message_buffer> p(named);
      detail::pack_object_id(p, object->id());
      body = std::move(named);
    } catch (const std::exception& e) {
      return fail(errc::object_unavailable, detail::wire_type(errc::object_unavailable), fn_.name + ": the result: " + e.what());
    }
  }
  session_->reply(request_.msgid, std::move(body), batch_reply());
}

void worker::impl::served_call::fail(errc code, std::string type, std::string message) noexcept {
  if (code == errc::exception && !owner_.cfg_.expose_errors) {
    static std::atomic<std::uint64_t> next_error_id{0};
    const auto id = ++next_error_id;
    spdlog::warn("framex worker: error {}: {} threw {}: {}", id, fn_.name, type, message);
    type = detail::wire_type(errc::exception);
    message = "the function failed; the worker logged it as error " + std::to_string(id);
  }
  if (notification()) {
    spdlog::warn("framex worker: notification {} failed: {}: {}", request_.method, type, message);
  } else if (!cancelled_.load(std::memory_order_acquire)) {
    session_->reply_error(request_.msgid, static_cast<int>(code), type, message);
  }
}

void worker::impl::served_call::run(bool stopping) noexcept {
  const std::unique_ptr<served_call> self(this);
  if (stopping) {
    fail(errc::cancelled, detail::wire_type(errc::cancelled), "the worker is shutting down");
  } else if (cancelled_.load(std::memory_order_acquire)) {
    return;
  } else if (fn_.construct != nullptr) {
    construct();
  } else if (actor != nullptr) {
    if (!actor_lost()) fn_.run_on(*this, actor->object.get());
  } else {
    fn_.run_blocking(*this);
  }
}

bool worker::impl::served_call::actor_lost() noexcept {
  if (!actor->gone.load(std::memory_order_acquire)) return false;
  fail(errc::actor_lost, detail::wire_type(errc::actor_lost),
       actor->class_name + " actor " + std::to_string(actor->id) + " was killed or released");
  return true;
}

void worker::impl::served_call::construct() noexcept {
  std::shared_ptr<void> object = fn_.construct(*this);
  if (object == nullptr || cancelled_.load(std::memory_order_acquire)) return;
  detail::snapshot_plan plan;
  if (snapshot_key != 0 && fn_.save != nullptr) {
    plan = {snapshot_every, snapshot_key, caller, fn_.save};
    try {  // re-created after a loss: begins from the last snapshot
      if (const auto saved = detail::read_snapshot(caller, snapshot_key)) {
        const auto state = msgpack::unpack(saved->data(), saved->size());
        fn_.load(object.get(), state.get());
      }
    } catch (const std::exception& e) {
      return fail(errc::object_unavailable, detail::wire_type(errc::object_unavailable),
                  fn_.actor_class + ": its snapshot does not load: " + e.what());
    }
  }
  if (owner_.actors_.size() >= owner_.cfg_.max_actors) {
    return fail(errc::overloaded, detail::wire_type(errc::overloaded),
                "the worker hosts " + std::to_string(owner_.cfg_.max_actors) + " actors already");
  }
  try {
    const std::uint64_t id = owner_.actors_.add(std::move(object), fn_.actor_class, actor_name, caller, plan);
    if (id == 0)
      return fail(errc::bad_arguments, detail::wire_type(errc::bad_arguments),
                  "an actor named \"" + actor_name + "\" exists already");
    message_buffer body(detail::invocation::response_headroom);
    msgpack::packer<message_buffer>(body).pack(id);
    succeed(std::move(body));
  } catch (...) {
    fail(errc::exception, detail::current_exception_type(), "the worker could not host the actor");
  }
}

void worker::impl::served_call::cancel() noexcept {
  cancelled_.store(true, std::memory_order_release);
  if (fn_.is_async) {
    asio::post(actor != nullptr ? asio::any_io_executor(actor->strand) : session_->executor(),
               [s = signal] { s->emit(asio::cancellation_type::terminal); });
  }
}
// ---- framex's own requests: the challenge and the hello (who may call, and
// what this worker serves), and the actor table's lookup, kill and release ----
bool worker::impl::serve_builtin(const std::shared_ptr<net::session>& from, const net::incoming_request& request) {
  const bool notification = request.notification;
  if (!notification && request.method == protocol::challenge) return challenge(*from, request.msgid, *request.params), true;
  if (!notification && request.method == protocol::hello) return hello(*from, request.msgid, *request.params), true;
  if (!token_.empty() && !from->credentials.trusted) {
    refuse(
        *from, request, errc::unauthorized, detail::wire_type(errc::unauthorized),
        std::string("the worker requires a token: prove it with ") + protocol::challenge + " and " + protocol::hello + " first");
    return true;
  }
  if (notification && request.method == protocol::cancel) return cancel(*from, *request.params), true;
  if (!notification && request.method == protocol::ping) {  // a caller's heartbeat: answered here, on the I/O thread
    message_buffer body(detail::invocation::response_headroom);
    msgpack::packer<message_buffer>(body).pack_nil();
    from->reply(request.msgid, std::move(body));
    return true;
  }
  if (request.method.starts_with(protocol::actor_prefix)) return manage_actor(from, request), true;
  return false;
}

void worker::impl::manage_actor(const std::shared_ptr<net::session>& from, const net::incoming_request& request) {
  const msgpack::object& params = *request.params;
  const auto arg = [&](std::uint32_t i, msgpack::type::object_type type) -> const msgpack::object* {
    return params.type == msgpack::type::ARRAY && params.via.array.size > i && params.via.array.ptr[i].type == type
               ? &params.via.array.ptr[i]
               : nullptr;
  };
  const auto text = [](const msgpack::object* o) { return std::string_view(o->via.str.ptr, o->via.str.size); };
  const auto answer = [&](std::optional<std::uint64_t> id) {
    if (request.notification) return;
    message_buffer body(detail::invocation::response_headroom);
    msgpack::packer<message_buffer> p(body);
    if (id) {
      p.pack(*id);
    } else {
      p.pack_nil();
    }
    from->reply(request.msgid, std::move(body));
  };
  const auto fail = [&](errc code, const char* type, const std::string& message) {
    if (!request.notification) from->reply_error(request.msgid, static_cast<int>(code), type, message);
  };
  const auto* first = arg(0, msgpack::type::POSITIVE_INTEGER);
  if (request.method == protocol::actor_lookup) {
    const auto *cls = arg(0, msgpack::type::STR), *caller = arg(1, msgpack::type::POSITIVE_INTEGER),
               *name = arg(2, msgpack::type::STR);
    if (cls == nullptr || caller == nullptr || name == nullptr)
      return fail(errc::bad_arguments, detail::wire_type(errc::bad_arguments),
                  std::string(protocol::actor_lookup) + ": expected [class, caller, name]");
    actors_.seen(from.get(), caller->via.u64);
    const std::uint64_t id = actors_.lookup(text(cls), text(name), caller->via.u64);
    if (id == 0)
      return fail(errc::actor_lost, detail::wire_type(errc::actor_lost),
                  "no " + std::string(text(cls)) + " actor named \"" + std::string(text(name)) + "\" here");
    return answer(id);
  }
  if (request.method == protocol::actor_kill && first != nullptr) {
    if (!actors_.kill(first->via.u64))
      return fail(errc::actor_lost, detail::wire_type(errc::actor_lost), "no actor " + std::to_string(first->via.u64) + " here");
    return answer(std::nullopt);
  }
  if (request.method == protocol::actor_release && first != nullptr && arg(1, msgpack::type::POSITIVE_INTEGER) != nullptr) {
    actors_.release(first->via.u64, params.via.array.ptr[1].via.u64);
    return answer(std::nullopt);
  }
  fail(errc::unknown_function, detail::wire_type(errc::unknown_function),
       "no request " + detail::shown(request.method) + " with these arguments");
}

void worker::impl::challenge(net::session& from, std::uint32_t msgid, const msgpack::object& params) {
  if (token_.empty()) {
    return from.reply_error(msgid, errc::unknown_function,
                            std::string("this worker has no token: it takes no ") + protocol::challenge);
  }
  auto& c = from.credentials;
  const auto theirs = protocol::read_challenge(params);
  if (c.challenged || !theirs) {
    return deny(from, msgid, std::string("a ") + protocol::challenge + " must come once, with 32 bytes of the caller's nonce");
  }
  c.peer_nonce = *theirs;
  c.own_nonce = detail::random_nonce();
  c.challenged = true;
  message_buffer body(detail::invocation::response_headroom);
  protocol::pack_challenge_answer(body, c.own_nonce);
  from.reply(msgid, std::move(body));
}

void worker::impl::deny(net::session& from, std::uint32_t msgid, const std::string& why) {
  spdlog::warn("framex worker: refused a caller: {}", why);
  from.reply_error(msgid, errc::unauthorized, why + " (refused by the worker)");
  from.close_when_drained();
}

void worker::impl::hello(net::session& to, std::uint32_t msgid, const msgpack::object& params) {
  auto& c = to.credentials;
  const protocol::hello_request theirs = protocol::read_hello_request(params);
  protocol::hello_answer answer;
  detail::proof ours;
  if (!token_.empty()) {
    if (!c.challenged) {
      return deny(to, msgid,
                  std::string("the worker requires a token: send ") + protocol::challenge + " before " + protocol::hello);
    }
    if (theirs.proof.empty()) return deny(to, msgid, "the worker requires a token, and the hello carries no proof");
    if (!detail::proof_matches(theirs.proof, detail::caller_proof(token_, c.own_nonce, c.peer_nonce))) {
      return deny(to, msgid, "the caller's token does not match the worker's");
    }
    ours = detail::worker_proof(token_, c.peer_nonce, c.own_nonce);
    answer.proof = std::string_view(reinterpret_cast<const char*>(ours.data()), ours.size());
    c.challenged = false;  // a nonce proves one hello
  }
  c.trusted = true;
  to.greeted();
  // Proved (or no token asked): the caller's id as an actor holder is back
  // (see src/worker/actor_table.hpp). Believed no earlier.
  c.caller = theirs.caller;
  if (theirs.caller != 0) actors_.seen(&to, theirs.caller);
  answer.version = protocol::version;
  for (const auto* f : detail::registered_functions()) {
    if (detail::serves(cfg_.serve, f->name)) answer.functions.emplace_back(f->name, f->signature);
  }
  answer.max_message_size = max_message_;
  answer.max_message_elements = max_elements_;
  answer.max_held_bytes = cfg_.max_held_bytes;
  answer.resources = cfg_.resources;
  message_buffer body(detail::invocation::response_headroom);
  protocol::pack(body, answer);
  to.reply(msgid, std::move(body));
}

}  // namespace framex
