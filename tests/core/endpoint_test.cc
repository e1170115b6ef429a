#include "sluice/core/endpoint.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

Endpoint Ep(std::string address, uint32_t weight = Endpoint::kDefaultWeight) {
  Endpoint e;
  e.address = std::move(address);
  e.weight = weight;
  return e;
}

TEST(EndpointSetTest, SortsAndKeepsTheLastDuplicate) {
  EndpointSet set({Ep("127.0.0.13:1"), Ep("127.0.0.11:1", 5), Ep("127.0.0.12:1"),
                   Ep("127.0.0.11:1", 7)});
  EXPECT_EQ(set.Addresses(),
            (std::vector<std::string>{"127.0.0.11:1", "127.0.0.12:1", "127.0.0.13:1"}));
  ASSERT_NE(set.Find("127.0.0.11:1"), nullptr);
  EXPECT_EQ(set.Find("127.0.0.11:1")->weight, 7u);
  EXPECT_EQ(set.Find("127.0.0.14:1"), nullptr);
}

TEST(EndpointSetTest, DiffReportsAddedRemovedAndUpdated) {
  EndpointSet before({Ep("a:1"), Ep("b:1"), Ep("c:1", 3)});
  EndpointSet after({Ep("b:1"), Ep("c:1", 4), Ep("d:1")});
  EndpointSetDiff diff = DiffEndpointSets(before, after);
  ASSERT_EQ(diff.removed.size(), 1u);
  EXPECT_EQ(diff.removed[0].address, "a:1");
  ASSERT_EQ(diff.added.size(), 1u);
  EXPECT_EQ(diff.added[0].address, "d:1");
  ASSERT_EQ(diff.updated.size(), 1u);
  EXPECT_EQ(diff.updated[0].address, "c:1");
  EXPECT_EQ(diff.updated[0].weight, 4u);
  EXPECT_FALSE(diff.empty());
  EXPECT_TRUE(DiffEndpointSets(after, after).empty());
}

TEST(EndpointSetTest, DiffFromEmptyAddsEverything) {
  EndpointSet after({Ep("a:1"), Ep("b:1")});
  EndpointSetDiff diff = DiffEndpointSets(EndpointSet(), after);
  EXPECT_EQ(diff.added.size(), 2u);
  EXPECT_TRUE(diff.removed.empty());
  diff = DiffEndpointSets(after, EndpointSet());
  EXPECT_EQ(diff.removed.size(), 2u);
}

}  // namespace
}  // namespace sluice
