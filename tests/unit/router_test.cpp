#include "caller/router.hpp"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace router_test {

using framex::detail::route_candidate;
using framex::detail::router;
using state = route_candidate::state;

route_candidate ready(std::string_view worker, std::size_t load = 0) {
  route_candidate c;
  c.worker = worker;
  c.status = state::ready;
  c.load = load;
  return c;
}

TEST(Router, PicksTheReadyConnectionWithTheFewestCallsInFlight) {
  router r;
  const std::vector<route_candidate> c{ready("a:1", 3), ready("b:1", 1), ready("c:1", 2)};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(r.pick(c, {}), 1u);
}

TEST(Router, SequentialCallsAlternateBetweenTwoIdleWorkers) {
  router r;
  const std::vector<route_candidate> c{ready("a:1"), ready("b:1")};
  std::vector<std::size_t> picked;
  for (int i = 0; i < 8; ++i) picked.push_back(r.pick(c, {}));
  for (std::size_t i = 1; i < picked.size(); ++i) EXPECT_NE(picked[i], picked[i - 1]) << "call " << i;
}

TEST(Router, SequentialCallsAlternateBetweenWorkersWithTwoConnectionsEach) {
  router r;
  // Two connections per worker, listed worker by worker as the runtime does.
  const std::vector<route_candidate> c{ready("a:1"), ready("a:1"), ready("b:1"), ready("b:1")};
  std::string_view last;
  for (int i = 0; i < 12; ++i) {
    const auto at = r.pick(c, {});
    ASSERT_NE(at, router::none);
    EXPECT_NE(c[at].worker, last) << "call " << i << " went to the same worker as the one before";
    last = c[at].worker;
  }
}

TEST(Router, NeverPicksARetiredDrainingOrStalledConnection) {
  router r;
  std::vector<route_candidate> c{ready("a:1"), ready("b:1"), ready("c:1"), ready("d:1", 50)};
  c[0].retired = true;
  c[1].draining = true;
  c[2].stalled = true;
  for (int i = 0; i < 4; ++i) EXPECT_EQ(r.pick(c, {}), 3u);
  c[3].draining = true;
  EXPECT_EQ(r.pick(c, {}), router::none);
}

TEST(Router, ASuspectConnectionIsPickedOnlyWhenNoOtherReadyOneFits) {
  router r;
  std::vector<route_candidate> c{ready("a:1", 0), ready("b:1", 40)};
  c[0].suspect = true;  // idle, yet gone quiet: the busier worker gets the calls
  for (int i = 0; i < 4; ++i) EXPECT_EQ(r.pick(c, {}), 1u);
  c[1].stalled = true;  // nothing else fits: better a suspect than waiting
  EXPECT_EQ(r.pick(c, {}), 0u);
  c[1].stalled = false;
  c[1].suspect = true;  // both suspect: the fewest calls in flight again
  EXPECT_EQ(r.pick(c, {}), 0u);
}

TEST(Router, AConnectionBeingMadeIsPickedOnlyWhenNoneIsReady) {
  router r;
  route_candidate connecting;
  connecting.worker = "b:1";
  connecting.status = state::connecting;
  connecting.load = 5;
  route_candidate down;
  down.worker = "c:1";
  std::vector<route_candidate> c{ready("a:1", 100), connecting, down};
  EXPECT_EQ(r.pick(c, {}), 0u);
  c[0].stalled = true;
  EXPECT_EQ(r.pick(c, {}), 1u);
  c[1].retired = true;
  EXPECT_EQ(r.pick(c, {}), router::none);
}

TEST(Router, ACallThatNeedsResourcesGoesOnlyWhereTheyAreFree) {
  router r;
  const framex::resource_map has_gpu{{"gpu", 2}};
  const framex::resource_map none_held;
  const framex::resource_map both_held{{"gpu", 2}};
  std::vector<route_candidate> c{ready("cpu:1"), ready("gpu:1", 9)};
  c[1].has = &has_gpu;
  c[1].held = &none_held;
  const framex::resource_map needs{{"gpu", 1}};
  EXPECT_EQ(r.pick(c, needs), 1u);
  EXPECT_EQ(r.pick(c, {}), 0u);  // no needs: the least loaded
  c[1].held = &both_held;
  EXPECT_EQ(r.pick(c, needs), router::none);
  // A worker whose resources are unknown takes no call that needs some.
  c[1].has = nullptr;
  EXPECT_EQ(r.pick(c, needs), router::none);
}

TEST(Router, AConnectionBeingMadeIsPickedForResourcesItsWorkerMayHave) {
  router r;
  const framex::resource_map cpu_only{{"cpu", 8}};
  route_candidate unknown;
  unknown.worker = "a:1";
  unknown.status = state::connecting;
  unknown.load = 3;
  route_candidate lacking = unknown;
  lacking.worker = "b:1";
  lacking.load = 0;
  lacking.has = &cpu_only;
  const std::vector<route_candidate> c{unknown, lacking};
  EXPECT_EQ(r.pick(c, {{"gpu", 1}}), 0u);
  EXPECT_EQ(r.pick(c, {}), 1u);
}

TEST(Router, NoCandidatesIsNone) {
  router r;
  EXPECT_EQ(r.pick({}, {}), router::none);
}

}  // namespace router_test
