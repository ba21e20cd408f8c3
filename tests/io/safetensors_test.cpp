// The safetensors reader against hand-made files: valid ones round-trip, malformed ones give clear errors.
#include "io/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "base/error.h"
#include "io/safetensors_writer.h"
#include "support/temp_dir.h"

namespace mtplx {
namespace {

using ::testing::HasSubstr;
using testing::TempDir;

// Writes 8-byte length + header text + data, exactly as given (so tests can lie in every field).
void write_raw(const std::filesystem::path& path, const std::string& header, const std::string& data,
               uint64_t declared_length) {
  std::ofstream out(path, std::ios::binary);
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((declared_length >> (8 * i)) & 0xff));
  out << header << data;
}

void write_raw(const std::filesystem::path& path, const std::string& header, const std::string& data) {
  write_raw(path, header, data, header.size());
}

std::string error_of(const std::filesystem::path& path) {
  try {
    SafetensorsFile file(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(Safetensors, WriterOutputReadsBack) {
  TempDir dir;
  SafetensorsWriter writer;
  const std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -8.5f};
  const std::vector<uint16_t> b = {float_to_bf16(1.0f), float_to_bf16(-0.5f)};
  writer.add("layer.a", DType::F32, {2, 3}, a);
  writer.add("b", DType::BF16, {2}, b);
  writer.set_metadata("format", "pt");
  writer.write(dir / "x.safetensors");

  SafetensorsFile file(dir / "x.safetensors");
  ASSERT_EQ(file.tensors().size(), 2u);
  EXPECT_EQ(file.metadata().at("format"), "pt");
  TensorStore store;
  store.add_file(dir / "x.safetensors");
  const TensorView& ta = store.get("layer.a");
  EXPECT_EQ(ta.dtype, DType::F32);
  EXPECT_EQ(ta.shape, (std::vector<int64_t>{2, 3}));
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(load_float(ta.data(), ta.dtype, i), a[i]);
  const TensorView& tb = store.get("b");
  EXPECT_EQ(load_float(tb.data(), tb.dtype, 1), -0.5f);
}

TEST(Safetensors, FileShorterThanLengthField) {
  TempDir dir;
  std::ofstream(dir / "short.safetensors") << "abc";
  EXPECT_THAT(error_of(dir / "short.safetensors"), HasSubstr("too short"));
}

TEST(Safetensors, HeaderLongerThanFile) {
  TempDir dir;
  write_raw(dir / "h.safetensors", "{}", "", 4096);
  EXPECT_THAT(error_of(dir / "h.safetensors"), HasSubstr("runs past the end of the file"));
}

TEST(Safetensors, HugeHeaderLength) {
  TempDir dir;
  write_raw(dir / "h.safetensors", "{}", "", ~0ull);
  EXPECT_THAT(error_of(dir / "h.safetensors"), HasSubstr("implausibly large"));
}

TEST(Safetensors, HeaderNotJson) {
  TempDir dir;
  write_raw(dir / "j.safetensors", "{\"a\": [", "");
  EXPECT_THAT(error_of(dir / "j.safetensors"), HasSubstr("not valid JSON"));
}

TEST(Safetensors, TruncatedData) {
  TempDir dir;
  write_raw(dir / "t.safetensors", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
            std::string(10, '\0'));
  const auto message = error_of(dir / "t.safetensors");
  EXPECT_THAT(message, HasSubstr("run past the data section"));
  EXPECT_THAT(message, HasSubstr("tensor w"));
}

TEST(Safetensors, OverlappingRanges) {
  TempDir dir;
  write_raw(
      dir / "o.safetensors",
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
      std::string(12, '\0'));
  EXPECT_THAT(error_of(dir / "o.safetensors"), HasSubstr("overlap"));
}

TEST(Safetensors, ReversedOffsets) {
  TempDir dir;
  write_raw(dir / "r.safetensors", R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})",
            std::string(8, '\0'));
  EXPECT_THAT(error_of(dir / "r.safetensors"), HasSubstr("reversed"));
}

TEST(Safetensors, UnknownDtype) {
  TempDir dir;
  write_raw(dir / "d.safetensors", R"({"a":{"dtype":"F8_E9M0","shape":[2],"data_offsets":[0,2]}})",
            std::string(2, '\0'));
  EXPECT_THAT(error_of(dir / "d.safetensors"), HasSubstr("unknown dtype \"F8_E9M0\""));
}

TEST(Safetensors, ShapeDoesNotMatchBytes) {
  TempDir dir;
  write_raw(dir / "s.safetensors", R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})",
            std::string(8, '\0'));
  EXPECT_THAT(error_of(dir / "s.safetensors"), HasSubstr("does not match shape"));
}

TEST(Safetensors, OverflowingShape) {
  TempDir dir;
  write_raw(dir / "s.safetensors",
            R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})",
            std::string(8, '\0'));
  EXPECT_THAT(error_of(dir / "s.safetensors"), HasSubstr("overflows"));
}

TEST(Safetensors, NegativeDimension) {
  TempDir dir;
  write_raw(dir / "n.safetensors", R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})",
            std::string(8, '\0'));
  EXPECT_THAT(error_of(dir / "n.safetensors"), HasSubstr("negative"));
}

TEST(Safetensors, MissingFile) {
  TempDir dir;
  EXPECT_THAT(error_of(dir / "absent.safetensors"), HasSubstr("cannot open file"));
}

TEST(Safetensors, MissingTensorNamesIt) {
  TempDir dir;
  SafetensorsWriter writer;
  writer.add("present", DType::F32, {1}, std::vector<float>{1.0f});
  writer.write(dir / "m.safetensors");
  TensorStore store;
  store.add_file(dir / "m.safetensors");
  try {
    store.get("model.layers.0.mlp.up_proj.weight");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("missing tensor model.layers.0.mlp.up_proj.weight"));
  }
}

TEST(Safetensors, DuplicateTensorAcrossFiles) {
  TempDir dir;
  SafetensorsWriter writer;
  writer.add("same", DType::F32, {1}, std::vector<float>{1.0f});
  writer.write(dir / "a.safetensors");
  writer.write(dir / "b.safetensors");
  TensorStore store;
  store.add_file(dir / "a.safetensors");
  EXPECT_THROW(store.add_file(dir / "b.safetensors"), Error);
}

}  // namespace
}  // namespace mtplx
