// framex/framex.hpp — everything a user includes.
//
// @code
// #include <framex/framex.hpp>
// int heavy_job(int x) { return x * 2; }
// inline constexpr auto heavy = framex::remote<&heavy_job>;
// boost::asio::awaitable<void> handler() { int a = co_await heavy.remote(21); }
// @endcode
#pragma once

#include "framex/actor.hpp"
#include "framex/as_error_code.hpp"
#include "framex/app.hpp"
#include "framex/codec.hpp"
#include "framex/config.hpp"
#include "framex/error.hpp"
#include "framex/msgpack_value.hpp"
#include "framex/object_ref.hpp"
#include "framex/remote.hpp"
#include "framex/resources.hpp"
#include "framex/rpc_client.hpp"
#include "framex/runtime.hpp"
#include "framex/stats.hpp"
#include "framex/worker.hpp"
