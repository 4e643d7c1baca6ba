#include "client.hpp"

#include <spdlog/spdlog.h>

#include <cstdint>
#include <string>
#include <vector>

namespace framex::net {

std::uint32_t client::call(std::string_view method, message_buffer body, pending_call& call) {
  std::uint32_t id = 0;
  {
    std::lock_guard lock(calls_mutex_);
    if (lost_) return 0;
    do {
      id = ++next_id_;
    } while (id == 0 || calls_.contains(id));
    calls_.emplace(id, &call);
    outstanding_.fetch_add(1, std::memory_order_relaxed);
  }
  prepend_request_header(body, id, method);
  if (!send(std::move(body)) && forget(id)) return 0;
  return id;
}

bool client::forget(std::uint32_t msgid) {
  std::lock_guard lock(calls_mutex_);
  if (calls_.erase(msgid) == 0) return false;
  outstanding_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

void client::notify(std::string_view method, std::uint64_t argument) { send(notification_message(method, argument)); }

void client::tell_cancelled(std::uint32_t msgid) {
  if (!cancel_notice_.empty()) notify(cancel_notice_, msgid);
}

void client::on_message(received_message message, std::size_t) {
  const msgpack::object& m = message.get();
  incoming_request r;
  switch (parse_incoming(m, r)) {
    case incoming_shape::ok:
      if (r.notification && !drain_notice_.empty() && r.method == drain_notice_) {
        draining_.store(true, std::memory_order_relaxed);
      } else if (on_incoming_) {
        r.message = std::move(message);
        on_incoming_(std::static_pointer_cast<client>(shared_from_this()), std::move(r));
      } else if (!r.notification) {
        reply_error(r.msgid, errc::unknown_function,
                    "this caller serves no method " + std::string(r.method));
      }
      return;
    case incoming_shape::method_not_string:
      return reply_error(r.msgid, errc::unknown_function, "the method name is not a string");
    case incoming_shape::not_request: break;
  }
  if (m.type != msgpack::type::ARRAY || m.via.array.size != 4 || m.via.array.ptr[0].type != msgpack::type::POSITIVE_INTEGER ||
      m.via.array.ptr[0].via.u64 != response) {
    return close(std::make_error_code(std::errc::protocol_error));
  }
  const msgpack::object& id = m.via.array.ptr[1];
  if (id.type != msgpack::type::POSITIVE_INTEGER || id.via.u64 > UINT32_MAX) {
    // No call of this connection has such an id (they are 32-bit, from 1):
    // the peer's mistake costs the other calls nothing.
    spdlog::warn("framex: a response with msgid {} answers no call made on this connection; ignored",
                 id.type == msgpack::type::NEGATIVE_INTEGER   ? std::to_string(id.via.i64)
                 : id.type == msgpack::type::POSITIVE_INTEGER ? std::to_string(id.via.u64)
                                                              : std::string("of another type than an integer"));
    return;
  }
  pending_call* call = nullptr;
  {
    std::lock_guard lock(calls_mutex_);
    const auto it = calls_.find(static_cast<std::uint32_t>(id.via.u64));
    if (it == calls_.end()) return;  // a call the caller gave up on
    call = it->second;
    calls_.erase(it);
    outstanding_.fetch_sub(1, std::memory_order_relaxed);
  }
  call->on_response(std::move(message));
}

void client::on_close(std::error_code why) {
  std::vector<pending_call*> lost;
  {
    std::lock_guard lock(calls_mutex_);
    lost_ = true;
    for (auto& [id, call] : calls_) lost.push_back(call);
    calls_.clear();
    outstanding_.store(0, std::memory_order_relaxed);
  }
  for (auto* call : lost) call->on_lost(why);
}

}  // namespace framex::net
