// Where the caller learns which workers there are: one interface in front of
// DNS and etcd (a static list needs none: the runtime reads it once).
//
// A source reports every time it knows the whole set again (`found`, with
// every worker by the address callers dial), or that it cannot say
// (`failed`; the workers known stay). Both run on the source's strand, never
// at once, and never after `stop` has returned on that strand. The runtime
// hands callbacks that hold it weakly, so a source outliving it is harmless.
#pragma once

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "framex/config.hpp"
#include "framex/resources.hpp"
#include "membership/discovery.hpp"
#include "net/address.hpp"

namespace framex::detail {

/// One worker a source found: where to dial it, the name its TLS certificate
/// must carry, and its resources when the source says (etcd).
struct member {
  net::address where;
  std::string verify_host;
  std::optional<resource_map> resources;
};
using members = std::map<std::string, member>;  // by the address callers dial

class membership_source {
 public:
  using found_fn = std::function<void(const members&)>;
  using failed_fn = std::function<void(const std::string& why)>;

  virtual ~membership_source() = default;
  /// Begins finding workers; the first report comes soon after.
  virtual void start() = 0;
  /// Ends it; returns at once. Any thread.
  virtual void stop() = 0;
  /// A connection to a worker was lost: look again soon, if this source looks (DNS).
  virtual void look_again() {}
  /// How soon a worker that is not there now may appear (a call waiting for
  /// one looks again after this long).
  [[nodiscard]] virtual std::chrono::milliseconds patience() const = 0;
  /// "dns" or "etcd", for the dashboard.
  [[nodiscard]] virtual const char* kind() const noexcept = 0;
};

/// The source `d` names (null for a static list), reporting on `strand`.
std::shared_ptr<membership_source> make_membership_source(const discovery& d, const config& cfg,
                                                          boost::asio::any_io_executor strand, membership_source::found_fn found,
                                                          membership_source::failed_fn failed);

}  // namespace framex::detail
