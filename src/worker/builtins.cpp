// framex's own requests on a worker: the challenge and the hello (who may
// call, and what this worker serves), and the actor table's lookup, kill and
// release. See src/protocol/ for their layouts.
#include "worker/worker_impl.hpp"

namespace framex {

using detail::function_entry;
using detail::message_buffer;

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
       "no request " + std::string(request.method) + " with these arguments");
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
  // The caller's id as an actor holder: it is back (see src/worker/actor_table.hpp).
  if (theirs.caller != 0) actors_.seen(&to, theirs.caller);
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
  answer.version = protocol::version;
  for (const auto* f : detail::registered_functions()) {
    if (detail::serves(cfg_.serve, f->name)) answer.functions.emplace_back(f->name, f->signature);
  }
  answer.max_message_size = max_message_;
  answer.resources = cfg_.resources;
  message_buffer body(detail::invocation::response_headroom);
  protocol::pack(body, answer);
  to.reply(msgid, std::move(body));
}

}  // namespace framex
