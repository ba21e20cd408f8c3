// Streaming safetensors writer and shard planning: files read back through the reader, chunks may cut
// tensors anywhere, nothing appears under the final name until finish(), and sizes parse as documented.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>

#include "base/error.h"
#include "io/safetensors.h"
#include "io/safetensors_writer.h"
#include "support/temp_dir.h"

namespace mtplx {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

TEST(SafetensorsStream, ChunksOfAnySizeReadBack) {
  TempDir dir;
  std::vector<float> a(1000);
  std::iota(a.begin(), a.end(), -500.0f);
  std::vector<uint32_t> b(77);
  std::iota(b.begin(), b.end(), 0xabc00000u);
  std::vector<uint16_t> c = {float_to_bf16(1.5f), float_to_bf16(-2.0f), float_to_bf16(0.25f)};
  // Declared in an order that is not sorted by name; the data follows the declaration.
  const std::vector<TensorSpec> specs = {
      {"z.a", DType::F32, {10, 100}}, {"m.b", DType::U32, {7, 11}}, {"a.c", DType::BF16, {3}}};
  std::vector<std::byte> all;
  for (auto bytes : {std::as_bytes(std::span(a)), std::as_bytes(std::span(b)), std::as_bytes(std::span(c))}) {
    all.insert(all.end(), bytes.begin(), bytes.end());
  }
  const fs::path path = dir / "s.safetensors";
  {
    SafetensorsStreamWriter out(path, specs, {{"format", "mlx"}});
    EXPECT_EQ(out.data_bytes(), all.size());
    for (size_t at = 0; at < all.size(); at += 333) {
      out.write(std::span(all).subspan(at, std::min<size_t>(333, all.size() - at)));
      EXPECT_FALSE(fs::exists(path));  // only the temporary name exists until finish()
    }
    out.finish();
  }
  EXPECT_FALSE(fs::exists(path.string() + ".partial"));
  TensorStore store;
  store.add_file(path);
  EXPECT_EQ(store.get("z.a").shape, (std::vector<int64_t>{10, 100}));
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(load_float(store.get("z.a").data(), DType::F32, i), a[i]);
  const TensorView& vb = store.get("m.b");
  EXPECT_EQ(vb.dtype, DType::U32);
  EXPECT_EQ(std::memcmp(vb.data(), b.data(), b.size() * 4), 0);
  EXPECT_EQ(load_float(store.get("a.c").data(), DType::BF16, 2), 0.25f);
  EXPECT_EQ(store.files().front()->metadata().at("format"), "mlx");
}

TEST(SafetensorsStream, UnfinishedWriteLeavesNothing) {
  TempDir dir;
  const fs::path path = dir / "x.safetensors";
  {
    SafetensorsStreamWriter out(path, {{"t", DType::F32, {4}}});
    const std::vector<float> half = {1, 2};
    out.write(std::as_bytes(std::span(half)));
    EXPECT_THROW(out.finish(), Error);  // two of four values missing
  }
  EXPECT_FALSE(fs::exists(path));
  EXPECT_FALSE(fs::exists(path.string() + ".partial"));
}

TEST(SafetensorsStream, RejectsOverflowAndDuplicates) {
  TempDir dir;
  SafetensorsStreamWriter out(dir / "y.safetensors", {{"t", DType::U8, {3}}});
  const std::vector<uint8_t> four = {1, 2, 3, 4};
  EXPECT_THROW(out.write(std::as_bytes(std::span(four))), Error);
  EXPECT_THROW(
      (SafetensorsStreamWriter(dir / "d.safetensors", {{"t", DType::U8, {1}}, {"t", DType::U8, {1}}})),
      Error);
}

TEST(SafetensorsStream, UnwritableFolderIsAClearError) {
  TempDir dir;
  std::ofstream(dir / "file") << "x";
  EXPECT_THROW((SafetensorsStreamWriter(dir / "file" / "z.safetensors", {{"t", DType::U8, {1}}})), Error);
}

TEST(SafetensorsStream, InMemoryWriterStillSortsByName) {
  TempDir dir;
  SafetensorsWriter writer;
  writer.add("b", DType::F32, {1}, std::vector<float>{2.0f});
  writer.add("a", DType::F32, {1}, std::vector<float>{1.0f});
  writer.write(dir / "w.safetensors");
  SafetensorsFile file(dir / "w.safetensors");
  EXPECT_EQ(file.tensors().size(), 2u);
  const auto bytes = writer.serialize();
  EXPECT_EQ(bytes.size(), fs::file_size(dir / "w.safetensors"));
}

TEST(ShardPlan, SplitsInOrderAndNamesLikeHuggingFace) {
  const std::vector<TensorSpec> specs = {{"a", DType::U8, {40}},
                                         {"b", DType::U8, {40}},
                                         {"c", DType::U8, {150}},  // larger than a shard: alone
                                         {"d", DType::U8, {10}},
                                         {"e", DType::U8, {10}}};
  const auto shards = plan_shards(specs, 100);
  ASSERT_EQ(shards.size(), 3u);
  EXPECT_EQ(shards[0].file, "model-00001-of-00003.safetensors");
  EXPECT_EQ(shards[2].file, "model-00003-of-00003.safetensors");
  EXPECT_EQ(shards[0].tensors.size(), 2u);
  EXPECT_EQ(shards[1].tensors.front().name, "c");
  EXPECT_EQ(shards[1].data_bytes, 150u);
  EXPECT_EQ(shards[2].tensors.size(), 2u);
  EXPECT_EQ(plan_shards(specs, 1000).front().file, "model.safetensors");

  TempDir dir;
  write_shard_index(dir.path(), shards);
  std::ifstream in(dir / "model.safetensors.index.json");
  const auto index = nlohmann::json::parse(in);
  EXPECT_EQ(index["metadata"]["total_size"], 250);
  EXPECT_EQ(index["weight_map"]["c"], "model-00002-of-00003.safetensors");
  EXPECT_EQ(index["weight_map"].size(), 5u);
}

TEST(ShardPlan, ParsesSizes) {
  EXPECT_EQ(parse_byte_size("5GB", "x"), 5'000'000'000u);
  EXPECT_EQ(parse_byte_size("5gb", "x"), 5'000'000'000u);
  EXPECT_EQ(parse_byte_size("2GiB", "x"), 2ull << 30);
  EXPECT_EQ(parse_byte_size("500MB", "x"), 500'000'000u);
  EXPECT_EQ(parse_byte_size("1.5G", "x"), 1'500'000'000u);
  EXPECT_EQ(parse_byte_size("4096", "x"), 4096u);
  EXPECT_THROW(parse_byte_size("", "x"), Error);
  EXPECT_THROW(parse_byte_size("GB", "x"), Error);
  EXPECT_THROW(parse_byte_size("5 parsecs", "x"), Error);
  EXPECT_THROW(parse_byte_size("0", "x"), Error);
}

}  // namespace
}  // namespace mtplx
