#include "framex/error.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace error_test {

TEST(Errc, CodesBelongToTheFramexCategoryAndCompareWithTheEnum) {
  const std::error_code ec = framex::errc::timeout;
  EXPECT_EQ(ec.category().name(), std::string("framex"));
  EXPECT_EQ(ec, framex::errc::timeout);
  EXPECT_NE(ec, framex::errc::cancelled);
  EXPECT_EQ(ec.message(), "the call timed out");
}

TEST(Errc, ValuesAreStableBecauseTheyTravelOnTheWire) {
  EXPECT_EQ(static_cast<int>(framex::errc::worker_lost), 1);
  EXPECT_EQ(static_cast<int>(framex::errc::cancelled), 3);
  EXPECT_EQ(static_cast<int>(framex::errc::unauthorized), 9);
  EXPECT_EQ(static_cast<int>(framex::errc::exception), 10);
}

TEST(Errc, EveryValueHasItsOwnMessageAndWireType) {
  constexpr int last = static_cast<int>(framex::errc::object_unavailable);
  EXPECT_EQ(last, 13);
  std::set<std::string> messages, types;
  for (int v = 1; v <= last; ++v) {
    const auto e = static_cast<framex::errc>(v);
    const std::string message = framex::make_error_code(e).message();
    EXPECT_EQ(message.find("unknown framex error"), std::string::npos) << v;
    messages.insert(message);
    const std::string type = framex::detail::wire_type(e);
    EXPECT_TRUE(type.starts_with("framex.")) << v;
    EXPECT_NE(type, "framex.error") << v;
    types.insert(type);
  }
  EXPECT_EQ(messages.size(), static_cast<std::size_t>(last));
  EXPECT_EQ(types.size(), static_cast<std::size_t>(last));
  EXPECT_EQ(std::string(framex::detail::wire_type(framex::errc::no_worker)), "framex.no_worker");
  EXPECT_NE(framex::error_category().message(99).find("99"), std::string::npos);
}

TEST(RemoteError, CarriesTheRemoteTypeMessageAndCode) {
  const framex::remote_error e(framex::errc::bad_arguments, "std::invalid_argument", "x must be positive");
  EXPECT_EQ(e.code(), framex::errc::bad_arguments);
  EXPECT_EQ(e.remote_type(), "std::invalid_argument");
  EXPECT_EQ(e.remote_message(), "x must be positive");
  EXPECT_NE(std::string(e.what()).find("x must be positive"), std::string::npos);
  const std::system_error& base = e;  // catchable as the standard type
  EXPECT_EQ(base.code(), framex::errc::bad_arguments);
}

}  // namespace error_test
