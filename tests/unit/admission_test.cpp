#include "worker/admission.hpp"

#include <gtest/gtest.h>

namespace admission_test {

using framex::detail::admission;
using verdict = admission::verdict;

TEST(Admission, AdmitsWithinEveryBudget) {
  admission a({.max_calls = 3, .max_calls_per_connection = 2, .max_held_bytes = 100});
  EXPECT_EQ(a.check(1, 0, 10), verdict::admit);
  a.admitted(1, 10);
  EXPECT_EQ(a.held(), 1u);
  EXPECT_EQ(a.held_bytes(), 10u);
}

TEST(Admission, RefusesPastTheWorkersCallsAndGivesBackWhatAFinishedCallHeld) {
  admission a({.max_calls = 2});
  a.admitted(1, 1);
  a.admitted(1, 1);
  EXPECT_EQ(a.check(1, 0, 1), verdict::worker_full);
  EXPECT_NE(a.why(verdict::worker_full).find("holds 2 calls"), std::string::npos);
  a.finished(1, 1);
  EXPECT_EQ(a.check(1, 0, 1), verdict::admit);
}

TEST(Admission, RefusesPastAConnectionsCalls) {
  admission a({.max_calls_per_connection = 4});
  EXPECT_EQ(a.check(1, 3, 1), verdict::admit);
  EXPECT_EQ(a.check(1, 4, 1), verdict::connection_full);
  EXPECT_NE(a.why(verdict::connection_full).find("this connection has 4 calls"), std::string::npos);
}

TEST(Admission, RefusesARequestThatWouldTakeHeldBytesPastTheBudget) {
  admission a({.max_held_bytes = 100});
  a.admitted(1, 60);
  EXPECT_EQ(a.check(2, 0, 40), verdict::admit);
  EXPECT_EQ(a.check(2, 0, 41), verdict::bytes_full);
  EXPECT_EQ(a.check(1, 0, 40), verdict::peer_bytes_full);  // a lone peer keeps a quarter free for others
  a.finished(1, 60);
  EXPECT_EQ(a.check(1, 0, 100), verdict::admit);
}

TEST(Admission, ZeroMeansNoLimit) {
  admission a({});
  for (int i = 0; i < 100000; ++i) a.admitted(1, 1 << 20);
  EXPECT_EQ(a.check(2, 100000, std::size_t{1} << 40), verdict::admit);
}

TEST(Admission, DrainingRefusesAsOverloadedAndStoppingAsCancelledFirst) {
  admission a({.max_calls = 1});
  a.admitted(1, 1);
  a.drain();
  EXPECT_EQ(a.check(1, 0, 1), verdict::draining);
  a.stop();
  EXPECT_EQ(a.check(1, 0, 1), verdict::stopping);
  EXPECT_EQ(a.why(verdict::stopping), "the worker is shutting down");
}

TEST(Admission, OnePeerFloodingFromManyConnectionsLeavesRoomForAnother) {
  admission a({.max_calls = 10000, .max_calls_per_connection = 1024});
  constexpr admission::peer_id flood = 7, good = 8;
  // 16 connections of one peer, each trying to keep 1,024 calls.
  std::size_t admitted = 0;
  for (int connection = 0; connection < 16; ++connection) {
    for (std::size_t held_here = 0; held_here < 1024; ++held_here) {
      if (a.check(flood, held_here, 100) != verdict::admit) break;
      a.admitted(flood, 100);
      ++admitted;
    }
  }
  EXPECT_EQ(admitted, 7500u);  // three quarters: the rest is kept for others
  EXPECT_EQ(a.check(flood, 0, 100), verdict::peer_full);
  EXPECT_NE(a.why(verdict::peer_full).find("its share"), std::string::npos);
  // Another caller, and a brand-new connection of it, are served up to the whole budget.
  for (int i = 0; i < 2500; ++i) {
    ASSERT_EQ(a.check(good, 0, 100), verdict::admit) << i;
    a.admitted(good, 100);
  }
  EXPECT_EQ(a.check(good, 0, 100), verdict::worker_full);
  EXPECT_EQ(a.peers(), 2u);
}

TEST(Admission, APeersShareShrinksAsOthersArriveAndComesBackWhenTheyLeave) {
  admission a({.max_calls = 100});
  for (int i = 0; i < 75; ++i) a.admitted(1, 1);
  EXPECT_EQ(a.check(1, 0, 1), verdict::peer_full);  // crowded, and holds more than 100 / 2
  EXPECT_EQ(a.check(2, 0, 1), verdict::admit);
  a.admitted(2, 1);
  for (int i = 0; i < 75; ++i) a.finished(1, 1);
  EXPECT_EQ(a.peers(), 1u);
  EXPECT_EQ(a.check(1, 0, 1), verdict::admit);
}

TEST(Admission, BytesAreSharedFairlyToo) {
  admission a({.max_held_bytes = 1000});
  a.admitted(1, 700);
  EXPECT_EQ(a.check(1, 0, 100), verdict::peer_bytes_full);  // 800 > 750, and over 1000 / 2
  EXPECT_EQ(a.check(2, 0, 100), verdict::admit);
  EXPECT_EQ(a.check(2, 0, 301), verdict::bytes_full);
}

TEST(Admission, AnUncrowdedWorkerGivesOnePeerEverything) {
  admission a({.max_calls = 100, .max_held_bytes = 1000});
  for (int i = 0; i < 74; ++i) a.admitted(1, 10);
  EXPECT_EQ(a.check(1, 0, 10), verdict::admit);
}

}  // namespace admission_test
