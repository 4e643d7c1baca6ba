// framex's own methods on the msgpack-RPC wire, named once.
//
// Every message framex adds to msgpack-RPC lives under "framex.". The caller
// (src/caller), the worker (src/worker), rpc_client and the actor handles all
// take the names and the protocol version from here; the layouts of the
// hello, the challenge and the actor messages are read and written in
// hello.hpp and actor_layout.hpp beside this file, once for both sides.
//
//   caller → worker  framex.challenge [caller_nonce]          → {"nonce": worker_nonce}   (with a token)
//   caller → worker  framex.hello [version, {name: signature}, max_message_size, {"proof"?, "caller"?}]
//                                                             → {"protocol", "functions", "max_message_size",
//                                                                "resources", "proof"?}
//   caller → worker  framex.ping []                           → nil   (heartbeat, answered on the I/O thread)
//   caller → worker  framex.cancel [msgid]                    notification: stop that call
//   worker → caller  framex.draining [ms]                     notification: route new calls elsewhere
//   caller → worker  framex.actor.lookup [class, caller, name] → id
//   caller → worker  framex.actor.kill [id]                   → nil
//   caller → worker  framex.actor.release [id, caller]        notification: one handle is gone
//   ingress → worker framex.plugin_call [name, json]          → json   (a deployed plugin)
#pragma once

#include <cstdint>
#include <string_view>

namespace framex::protocol {

/// The version both sides announce in the hello; a worker that answers with
/// another is refused by the caller.
inline constexpr std::uint64_t version = 1;

inline constexpr const char* hello = "framex.hello";
inline constexpr const char* challenge = "framex.challenge";
inline constexpr const char* ping = "framex.ping";
inline constexpr const char* cancel = "framex.cancel";
inline constexpr const char* draining = "framex.draining";
inline constexpr const char* plugin_call = "framex.plugin_call";

/// Every actor-management method starts with this.
inline constexpr std::string_view actor_prefix = "framex.actor.";
inline constexpr const char* actor_lookup = "framex.actor.lookup";
inline constexpr const char* actor_kill = "framex.actor.kill";
inline constexpr const char* actor_release = "framex.actor.release";

/// The error `type` a worker gives a request whose msgid is already in
/// flight on its connection (code `bad_arguments`).
inline constexpr const char* duplicate_msgid = "framex.duplicate_msgid";

}  // namespace framex::protocol
