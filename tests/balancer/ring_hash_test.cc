#include <algorithm>
#include <map>

#include "sluice/balancer/hash.h"
#include "test_util.h"

namespace sluice {
namespace {

using RingHashTest = testing::PolicyTest;

std::string Key(int i) { return absl::StrCat("user-", i); }

// The address each of `keys` maps to.
std::vector<std::string> MapKeys(const Picker& picker, const std::vector<PickerEndpoint>& endpoints,
                                 int keys) {
  std::vector<std::string> owners;
  PickArgs args;  // no Random: with a key, ring_hash must not need one
  for (int i = 0; i < keys; ++i) {
    args.hash_key = HashCallKey(Key(i));
    owners.push_back(endpoints[picker.Pick(args).index()].endpoint.address);
  }
  return owners;
}

TEST_F(RingHashTest, TheSameKeyAlwaysMapsToTheSameEndpoint) {
  auto endpoints = testing::MakeEndpoints(8);
  const auto first = MapKeys(*Build("ring_hash", endpoints), endpoints, 1000);
  EXPECT_EQ(MapKeys(*Build("ring_hash", endpoints), endpoints, 1000), first);
  // The mapping is by address, not by position: a shuffled vector maps the same.
  std::reverse(endpoints.begin(), endpoints.end());
  EXPECT_EQ(MapKeys(*Build("ring_hash", endpoints), endpoints, 1000), first);
}

TEST_F(RingHashTest, KeysSpreadAcrossEndpoints) {
  const auto endpoints = testing::MakeEndpoints(10);
  std::map<std::string, int> counts;
  for (const auto& owner : MapKeys(*Build("ring_hash", endpoints), endpoints, 10000)) {
    ++counts[owner];
  }
  ASSERT_EQ(counts.size(), 10u);
  for (const auto& [address, count] : counts) {
    EXPECT_GT(count, 700) << address;
    EXPECT_LT(count, 1300) << address;
  }
}

TEST_F(RingHashTest, RemovingOneOfTenEndpointsMovesOnlyItsKeys) {
  auto endpoints = testing::MakeEndpoints(10);
  const auto before = MapKeys(*Build("ring_hash", endpoints), endpoints, 10000);
  const std::string removed = endpoints[3].endpoint.address;
  endpoints.erase(endpoints.begin() + 3);
  const auto after = MapKeys(*Build("ring_hash", endpoints), endpoints, 10000);
  int moved = 0, on_removed = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    if (before[i] == removed) ++on_removed;
    if (before[i] != after[i]) {
      ++moved;
      EXPECT_EQ(before[i], removed) << "key " << Key(i) << " moved between survivors";
    }
  }
  EXPECT_EQ(moved, on_removed);
  EXPECT_LE(moved, 10000 / 10 + 300);
  EXPECT_GT(moved, 0);
}

TEST_F(RingHashTest, AddingAnEndpointTakesKeysOnlyForItself) {
  auto endpoints = testing::MakeEndpoints(9);
  const auto before = MapKeys(*Build("ring_hash", endpoints), endpoints, 10000);
  endpoints.push_back(testing::MakeEndpoints(10)[9]);
  const auto after = MapKeys(*Build("ring_hash", endpoints), endpoints, 10000);
  int moved = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    if (before[i] != after[i]) {
      ++moved;
      EXPECT_EQ(after[i], endpoints[9].endpoint.address);
    }
  }
  EXPECT_LE(moved, 10000 / 10 + 300);
  EXPECT_GT(moved, 0);
}

TEST_F(RingHashTest, SharesFollowWeights) {
  const auto endpoints = testing::MakeWeightedEndpoints({1, 2, 3});
  auto picker = Build("ring_hash", endpoints);
  // Random ring points (no key) measure each endpoint's arc of the ring.
  SeededRandom random(8);
  const std::vector<int> counts = CountPicks(*picker, 3, 60000, random);
  EXPECT_NEAR(counts[0], 10000, 1000);
  EXPECT_NEAR(counts[1], 20000, 1500);
  EXPECT_NEAR(counts[2], 30000, 1500);
}

TEST_F(RingHashTest, OnePointPerEndpointIsTheXxh64SuccessorOfTheKey) {
  // min_ring_size 1: each endpoint owns exactly the point "<address>_0", as in gRPC and Envoy.
  const auto endpoints = testing::MakeEndpoints(5);
  auto picker = Build("ring_hash", endpoints, {{"min_ring_size", 1}});
  std::vector<std::pair<uint64_t, size_t>> ring;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    ring.push_back({Xxh64(absl::StrCat(endpoints[i].endpoint.address, "_0")), i});
  }
  std::sort(ring.begin(), ring.end());
  SeededRandom random(9);
  PickArgs args;
  for (int i = 0; i < 2000; ++i) {
    const uint64_t key = random.Next();
    args.hash_key = key;
    auto it = std::lower_bound(ring.begin(), ring.end(), std::make_pair(key, size_t{0}));
    const size_t expected = it == ring.end() ? ring.front().second : it->second;
    ASSERT_EQ(picker->Pick(args).index(), expected) << "key " << key;
  }
  // Exactly on a point, and past the last one (wraps to the first).
  args.hash_key = ring[2].first;
  EXPECT_EQ(picker->Pick(args).index(), ring[2].second);
  args.hash_key = ring.back().first + 1;
  EXPECT_EQ(picker->Pick(args).index(), ring.front().second);
  args.hash_key = 0;
  EXPECT_EQ(picker->Pick(args).index(), ring.front().second);
}

TEST_F(RingHashTest, ALargeRingStillBalancesTenThousandEndpoints) {
  const auto endpoints = testing::MakeEndpoints(10000);
  auto picker = Build("ring_hash", endpoints, {{"min_ring_size", 1 << 20}});
  SeededRandom random(10);
  const std::vector<int> counts = CountPicks(*picker, 10000, 1000000, random);
  // 128 points each: every endpoint gets a share, none much more than twice the mean of 100.
  EXPECT_GT(*std::min_element(counts.begin(), counts.end()), 20);
  EXPECT_LT(*std::max_element(counts.begin(), counts.end()), 250);
}

}  // namespace
}  // namespace sluice
