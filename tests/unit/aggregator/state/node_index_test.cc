#include "aggregator/state/node_index.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace meshprobe::aggregator
