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

TEST(Errc, EveryValueHasItsOwnMessage) {
  std::set<std::string> messages;
  for (int v = 1; v <= 10; ++v) messages.insert(framex::make_error_code(static_cast<framex::errc>(v)).message());
  EXPECT_EQ(messages.size(), 10u);
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
