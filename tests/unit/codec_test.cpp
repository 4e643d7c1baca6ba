#include "framex/codec.hpp"

#include <gtest/gtest.h>

#include <boost/describe.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace {

enum class mood { calm, busy };
BOOST_DESCRIBE_ENUM(mood, calm, busy)

struct point {
  double x = 0, y = 0;
  bool operator==(const point&) const = default;
};
BOOST_DESCRIBE_STRUCT(point, (), (x, y))

struct shape {
  std::string name;
  std::vector<point> corners;
  mood state = mood::calm;
  bool operator==(const shape&) const = default;
};
BOOST_DESCRIBE_STRUCT(shape, (), (name, corners, state))

struct opaque {
  int fd;
};

template <class T>
msgpack::sbuffer pack(const T& v) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> p(buf);
  framex::codec<T>::pack(p, v);
  return buf;
}

template <class T, class U>
T decode_as(const U& v) {
  const auto buf = pack(v);
  const auto handle = msgpack::unpack(buf.data(), buf.size());
  T out{};
  framex::codec<T>::unpack(handle.get(), out);
  return out;
}

template <class T>
T round_trip(const T& v) {
  return decode_as<T>(v);
}

TEST(Codec, FloatsTravelAsFloatsEvenWhenIntegralAndKeepTheSignOfZero) {
  const auto one = pack(1.0);
  ASSERT_EQ(one.size(), 9u);
  EXPECT_EQ(static_cast<unsigned char>(one.data()[0]), 0xcb);  // float64, not the integer 1
  const auto half = pack(0.5F);
  ASSERT_EQ(half.size(), 5u);
  EXPECT_EQ(static_cast<unsigned char>(half.data()[0]), 0xca);
  EXPECT_TRUE(std::signbit(round_trip(-0.0)));
  EXPECT_TRUE(std::signbit(round_trip(-0.0F)));
  EXPECT_EQ(round_trip(-2.25), -2.25);
}

TEST(Codec, ADoubleBeyondTheRangeOfFloatIsRejectedNotNarrowed) {
  EXPECT_THROW(decode_as<float>(1e300), framex::decode_error);
  EXPECT_THROW(decode_as<float>(-1e39), framex::decode_error);
  EXPECT_EQ(decode_as<float>(1.5), 1.5F);
  EXPECT_TRUE(std::isinf(decode_as<float>(std::numeric_limits<double>::infinity())));
}

TEST(Codec, ADescribedStructIsAMapKeyedByMemberName) {
  const auto buf = pack(point{1.5, -2});
  const auto handle = msgpack::unpack(buf.data(), buf.size());
  ASSERT_EQ(handle.get().type, msgpack::type::MAP);
  std::map<std::string, double> as_map;
  handle.get().convert(as_map);
  EXPECT_EQ(as_map, (std::map<std::string, double>{{"x", 1.5}, {"y", -2}}));
}

TEST(Codec, NestedStructsEnumsAndContainersRoundTrip) {
  const shape s{"square", {{0, 0}, {1, 0}, {1, 1}, {0, 1}}, mood::busy};
  EXPECT_EQ(round_trip(s), s);
  const std::variant<int, std::string, point> v = point{3, 4};
  EXPECT_EQ(round_trip(v), v);
  const std::optional<std::vector<std::uint8_t>> o = std::vector<std::uint8_t>{1, 2};
  EXPECT_EQ(round_trip(o), o);
}

TEST(Codec, ADescribedEnumTravelsByName) {
  const auto buf = pack(mood::busy);
  EXPECT_EQ(std::string(buf.data(), buf.size()), "\xa4"
                                                 "busy");
}

TEST(Codec, AnIntegerOutOfRangeIsRejectedWithWhatWasExpected) {
  try {
    decode_as<std::int8_t>(300);
    FAIL() << "no error";
  } catch (const framex::decode_error& e) {
    EXPECT_STREQ(e.what(), "expected i8, got 300");
  }
  EXPECT_THROW(decode_as<std::uint32_t>(-1), framex::decode_error);
}

TEST(Codec, AWrongTypeDeepInsideNamesThePath) {
  struct wrong_corner {
    std::string name;
    std::vector<std::map<std::string, std::string>> corners;
  };
  std::vector<std::map<std::string, std::string>> corners{{{"x", "1"}, {"y", "2"}}};
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> p(buf);
  p.pack_map(3);
  p.pack(std::string("name"));
  p.pack(std::string("s"));
  p.pack(std::string("corners"));
  p.pack(corners);
  p.pack(std::string("state"));
  p.pack(std::string("calm"));
  const auto handle = msgpack::unpack(buf.data(), buf.size());
  shape out;
  try {
    framex::codec<shape>::unpack(handle.get(), out);
    FAIL() << "no error";
  } catch (const framex::decode_error& e) {
    EXPECT_STREQ(e.what(), "expected f64, got str at .corners[0].x");
  }
}

TEST(Codec, AnUnknownEnumeratorAndAMissingMemberAreRejected) {
  EXPECT_THROW(decode_as<mood>(std::string("sleepy")), framex::decode_error);
  EXPECT_THROW(decode_as<point>(std::map<std::string, double>{{"x", 1}}), framex::decode_error);
}

TEST(Codec, SchemasDescribeTheWireShapeNotTheCompiler) {
  EXPECT_EQ(framex::codec<shape>::schema(), "{.name:str,.corners:[{.x:f64,.y:f64}],.state:enum{calm,busy}}");
  EXPECT_EQ((framex::codec<std::map<std::string, std::optional<std::int16_t>>>::schema()), "{str:i16?}");
  EXPECT_EQ((framex::codec<std::variant<int, std::vector<std::byte>>>::schema()), "<i32|bin>");
}

TEST(Codec, OnlySerializableTypesAreSerializable) {
  static_assert(framex::serializable<shape>);
  static_assert(framex::serializable<std::vector<std::map<int, point>>>);
  static_assert(!framex::serializable<opaque>);
  static_assert(!framex::serializable<std::vector<opaque>>);
  static_assert(!framex::serializable<int*>);
}

}  // namespace
