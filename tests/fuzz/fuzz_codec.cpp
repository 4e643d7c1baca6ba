// libFuzzer harness: framex::codec on hostile msgpack. A described struct with
// nested containers, optionals, a variant and an enum is decoded from whatever
// msgpack the bytes hold; decoding either succeeds or throws `decode_error`,
// and what decoded packs and decodes again to the same value.
#include "framex/codec.hpp"

#include <boost/describe.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace {

enum class tone { low, high };
BOOST_DESCRIBE_ENUM(tone, low, high)

struct leaf {
  std::string name;
  std::vector<std::int32_t> values;
  bool operator==(const leaf&) const = default;
};
BOOST_DESCRIBE_STRUCT(leaf, (), (name, values))

struct tree {
  std::uint16_t id = 0;
  double weight = 0;
  float ratio = 0;
  tone pitch = tone::low;
  std::optional<leaf> first;
  std::vector<leaf> leaves;
  std::map<std::string, std::vector<std::optional<std::int64_t>>> index;
  std::variant<std::monostate, std::string, leaf> choice;
  std::vector<std::byte> blob;
  bool operator==(const tree& o) const {
    // NaN is not equal to itself: compare bit patterns of the floats
    return id == o.id && std::memcmp(&weight, &o.weight, sizeof weight) == 0 &&
           std::memcmp(&ratio, &o.ratio, sizeof ratio) == 0 && pitch == o.pitch && first == o.first &&
           leaves == o.leaves && index == o.index && choice == o.choice && blob == o.blob;
  }
};
BOOST_DESCRIBE_STRUCT(tree, (), (id, weight, ratio, pitch, first, leaves, index, choice, blob))

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  msgpack::object_handle handle;
  try {
    handle = msgpack::unpack(reinterpret_cast<const char*>(data), size, nullptr, nullptr,
                             msgpack::unpack_limit(4096, 4096, 1 << 16, 1 << 16, 1 << 16, 32));
  } catch (const std::exception&) {
    return 0;  // not msgpack: the reader refuses it before any codec runs
  }
  tree value;
  try {
    framex::codec<tree>::unpack(handle.get(), value);
  } catch (const framex::decode_error&) {
    return 0;
  }
  msgpack::sbuffer packed;
  msgpack::packer<msgpack::sbuffer> p(packed);
  framex::codec<tree>::pack(p, value);
  const auto again = msgpack::unpack(packed.data(), packed.size());
  tree back;
  framex::codec<tree>::unpack(again.get(), back);  // must not throw
  if (!(back == value)) std::abort();
  return 0;
}
