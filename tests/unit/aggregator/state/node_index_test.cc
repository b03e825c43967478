#include "aggregator/state/node_index.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <string>
#include <vector>

namespace meshprobe::aggregator {
namespace {

using ::testing::ElementsAre;

std::vector<std::string> namesInOrder(const NodeIndex& idx) {
  std::vector<std::string> out;
  for (uint32_t slot : idx.sorted()) out.push_back(idx.name(slot));
  return out;
}

TEST(NodeIndexTest, SlotsAreStableAndTheOrderIsByName) {
  NodeIndex idx;
  bool added = false;
  EXPECT_EQ(idx.add("c", &added), 0u);
  EXPECT_TRUE(added);
  EXPECT_EQ(idx.add("a"), 1u);
  EXPECT_EQ(idx.add("b"), 2u);
  EXPECT_EQ(idx.add("a", &added), 1u);  // known: same slot
  EXPECT_FALSE(added);
  EXPECT_THAT(namesInOrder(idx), ElementsAre("a", "b", "c"));
  EXPECT_THAT(idx.sorted(), ElementsAre(1u, 2u, 0u));
  EXPECT_EQ(idx.find("b"), 2u);
  EXPECT_FALSE(idx.find("zz").has_value());
  EXPECT_EQ(idx.size(), 3u);
  EXPECT_EQ(idx.capacity(), 3u);
}

TEST(NodeIndexTest, ForgottenSlotsAreReusedLowestFirstAndOthersDoNotMove) {
  NodeIndex idx;
  for (const char* n : {"n0", "n1", "n2", "n3"}) idx.add(n);
  EXPECT_TRUE(idx.remove("n2"));
  EXPECT_TRUE(idx.remove("n1"));
  EXPECT_FALSE(idx.remove("n1"));
  EXPECT_FALSE(idx.occupied(1));
  EXPECT_EQ(idx.find("n3"), 3u);  // untouched
  EXPECT_THAT(namesInOrder(idx), ElementsAre("n0", "n3"));
  EXPECT_EQ(idx.add("x"), 1u);  // lowest free slot
  EXPECT_EQ(idx.add("y"), 2u);
  EXPECT_EQ(idx.add("z"), 4u);  // no free slot left: a new one
  EXPECT_EQ(idx.capacity(), 5u);
  EXPECT_THAT(namesInOrder(idx), ElementsAre("n0", "n3", "x", "y", "z"));
}

// The order is kept in place on every join and leave: after each step of a random sequence
// it is the members' names sorted, each name once, each slot its own.
TEST(NodeIndexTest, TheOrderStaysSortedThroughRandomJoinsAndLeaves) {
  std::mt19937 rng(7);
  NodeIndex idx;
  std::set<std::string> members;
  for (int step = 0; step < 2000; ++step) {
    const std::string name = "node-" + std::to_string(rng() % 300);  // long enough to leave SSO at times
    if (rng() % 3 == 0) {
      EXPECT_EQ(idx.remove(name), members.erase(name) == 1) << name;
    } else {
      bool added = false;
      const uint32_t slot = idx.add(name, &added);
      EXPECT_EQ(added, members.insert(name).second) << name;
      EXPECT_EQ(idx.name(slot), name);
    }
    ASSERT_EQ(namesInOrder(idx), std::vector<std::string>(members.begin(), members.end())) << "step " << step;
  }
  EXPECT_FALSE(idx.find(std::string_view("node-1\0", 7)).has_value());  // found by the whole view only
}

}  // namespace
}  // namespace meshprobe::aggregator
