// MLX affine quantization: parameters as MLX chooses them, round-trip error bounds, the exact packed layout
// (checked with an unpacker written here from the format description, bit by bit), and agreement with the
// reader path (WeightMatrix + cpu::dequantize_row / cpu::matmul).
#include "model/quantize.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "backend/cpu/matmul.h"
#include "base/dtype.h"
#include "base/error.h"

namespace mtplx {
namespace {

// Code `index` of a row: bits [index*bits, (index+1)*bits) of the row's little-endian bit stream, where bit
// k of the stream is bit (k % 32) of word k / 32. Read one bit at a time, independent of pack_codes.
uint32_t unpack(std::span<const uint32_t> row_words, int64_t index, int bits) {
  uint32_t code = 0;
  for (int b = 0; b < bits; ++b) {
    const int64_t k = index * bits + b;
    code |= ((row_words[static_cast<size_t>(k / 32)] >> (k % 32)) & 1u) << b;
  }
  return code;
}

float dequant(const QuantizedMatrix& q, int64_t r, int64_t c) {
  const int64_t wpr = q.cols * q.bits / 32;
  const int64_t groups = q.cols / q.group_size;
  const auto row = std::span(q.words).subspan(static_cast<size_t>(r * wpr), static_cast<size_t>(wpr));
  const size_t g = static_cast<size_t>(r * groups + c / q.group_size);
  return bf16_to_float(q.scales[g]) * static_cast<float>(unpack(row, c, q.bits)) + bf16_to_float(q.biases[g]);
}

std::vector<float> random_values(int64_t n, uint32_t seed, float spread) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, spread);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = normal(gen);
  return v;
}

TEST(Quantize, PackFourBitsLsbFirst) {
  const std::vector<uint8_t> codes = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  std::vector<uint32_t> words(2);
  pack_codes(codes, 4, words);
  EXPECT_EQ(words[0], 0x76543210u);
  EXPECT_EQ(words[1], 0xfedcba98u);
}

TEST(Quantize, PackEightAndTwoBits) {
  std::vector<uint32_t> words(1);
  pack_codes(std::vector<uint8_t>{0x11, 0x22, 0x33, 0x44}, 8, words);
  EXPECT_EQ(words[0], 0x44332211u);
  std::vector<uint8_t> two(16, 0);
  two[0] = 3;
  two[15] = 2;
  pack_codes(two, 2, words);
  EXPECT_EQ(words[0], 0x80000003u);
}

TEST(Quantize, PackThreeBitsStraddlesWords) {
  // 11 codes of 7 = 33 one bits: the 11th code's top bit is bit 0 of the second word.
  std::vector<uint32_t> words(3, 0xdeadbeef);
  pack_codes(std::vector<uint8_t>(11, 7), 3, words);
  EXPECT_EQ(words[0], 0xffffffffu);
  EXPECT_EQ(words[1], 0x1u);
  EXPECT_EQ(words[2], 0x0u);
  // Code 10 of a 3-bit row sits at bits 30..32: low two bits in word 0, high bit in word 1.
  std::vector<uint8_t> codes(32, 0);
  codes[10] = 5;  // 0b101
  std::vector<uint32_t> row(3);
  pack_codes(codes, 3, row);
  EXPECT_EQ(row[0], 1u << 30);
  EXPECT_EQ(row[1], 1u);
}

TEST(Quantize, PackedLayoutMatchesBitStreamForAllWidths) {
  std::mt19937 gen(7);
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    std::vector<uint8_t> codes(128);
    for (auto& c : codes) c = static_cast<uint8_t>(gen() & ((1u << bits) - 1));
    std::vector<uint32_t> words(static_cast<size_t>(packed_words_per_row(128, bits)));
    pack_codes(codes, bits, words);
    for (size_t i = 0; i < codes.size(); ++i)
      ASSERT_EQ(unpack(words, static_cast<int64_t>(i), bits), codes[i]) << bits;
  }
}

TEST(Quantize, AnchorsTheLargerMagnitudeEdgeAsMlxDoes) {
  // min -1, max 0.5 (2 bits): step 0.5, the minimum is the bias, codes -1 -> 0, 0 -> 2, 0.5 -> 3.
  std::vector<float> row(32, 0.5f);
  row[0] = -1.0f;
  row[1] = 0.0f;
  std::vector<uint32_t> words(2);
  std::vector<uint16_t> scales(1), biases(1);
  quantize_row(row, 2, 32, words, scales, biases);
  EXPECT_EQ(bf16_to_float(scales[0]), 0.5f);
  EXPECT_EQ(bf16_to_float(biases[0]), -1.0f);
  EXPECT_EQ(unpack(words, 0, 2), 0u);
  EXPECT_EQ(unpack(words, 1, 2), 2u);
  EXPECT_EQ(unpack(words, 2, 2), 3u);
  // Mirrored: max 1 has the larger magnitude, so it is the bias and the step is negative.
  for (auto& v : row) v = -v;
  quantize_row(row, 2, 32, words, scales, biases);
  EXPECT_EQ(bf16_to_float(scales[0]), -0.5f);
  EXPECT_EQ(bf16_to_float(biases[0]), 1.0f);
  EXPECT_EQ(unpack(words, 0, 2), 0u);
  EXPECT_EQ(unpack(words, 2, 2), 3u);
}

TEST(Quantize, ZeroIsRepresentable) {
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    auto group = random_values(64, 11u + static_cast<uint32_t>(bits), 1.0f);
    group[5] = 0.0f;
    const GroupParams p = affine_group_params(group, bits);
    const float back = p.scale * static_cast<float>(affine_code(0.0f, p, bits)) + p.bias;
    EXPECT_NEAR(back, 0.0f, 1e-6f * std::abs(p.bias)) << bits;
  }
}

TEST(Quantize, ConstantGroupRoundTrips) {
  std::vector<float> row(64, 0.25f);
  const auto q = quantize_matrix(row, 1, 64, 4, 64);
  for (int64_t c = 0; c < 64; ++c) EXPECT_FLOAT_EQ(dequant(q, 0, c), 0.25f);
  std::vector<float> zeros(64, 0.0f);
  const auto z = quantize_matrix(zeros, 1, 64, 8, 64);
  for (int64_t c = 0; c < 64; ++c) EXPECT_EQ(dequant(z, 0, c), 0.0f);
}

// MLX stretches the step so that 0.0 is exact (scale = edge / rint(edge / step)). Values inside the grid
// [bias, bias + n * scale] are then within half a step; the edge opposite the anchored one can fall up to one
// step outside the grid and is clamped, so the overall bound is one step. Plus the BF16 rounding of scale and
// bias (relative 2^-9 each).
TEST(Quantize, RoundTripErrorWithinHalfStepPlusBf16Rounding) {
  const int64_t rows = 7;
  const int64_t cols = 256;
  const auto values = random_values(rows * cols, 3, 0.05f);
  ThreadPool pool(2);
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    for (int group : {32, 64, 128}) {
      const auto q = quantize_matrix(values, rows, cols, bits, group, &pool);
      ASSERT_EQ(q.words.size(), static_cast<size_t>(rows * cols * bits / 32));
      ASSERT_EQ(q.scales.size(), static_cast<size_t>(rows * cols / group));
      const float n_bins = static_cast<float>((1 << bits) - 1);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
          const size_t g = static_cast<size_t>(r * (cols / group) + c / group);
          const float scale = bf16_to_float(q.scales[g]);
          const float bias = bf16_to_float(q.biases[g]);
          const float s = std::abs(scale);
          const float rounding = (n_bins * s + std::abs(bias)) * (1.0f / 256) + 1e-7f;
          const float w = values[static_cast<size_t>(r * cols + c)];
          const float lo = std::min(bias, bias + n_bins * scale) - rounding;
          const float hi = std::max(bias, bias + n_bins * scale) + rounding;
          const float bound = (w >= lo && w <= hi ? s / 2 : s) + rounding;
          ASSERT_LE(std::abs(w - dequant(q, r, c)), bound)
              << bits << " bits, group " << group << " at " << r << "," << c << " (grid " << lo << ".." << hi
              << ")";
        }
      }
    }
  }
}

TEST(Quantize, AnchoredEdgeIsExactAndMostValuesWithinHalfStep) {
  const auto values = random_values(4 * 128, 21, 1.0f);
  const auto q = quantize_matrix(values, 4, 128, 4, 32);
  int within = 0;
  for (int64_t r = 0; r < 4; ++r) {
    for (int64_t g = 0; g < 4; ++g) {
      const auto group = std::span(values).subspan(static_cast<size_t>(r * 128 + g * 32), 32);
      const float lo = *std::min_element(group.begin(), group.end());
      const float hi = *std::max_element(group.begin(), group.end());
      const float edge = std::abs(lo) > std::abs(hi) ? lo : hi;
      EXPECT_EQ(q.biases[static_cast<size_t>(r * 4 + g)], float_to_bf16(edge));
      const float s = std::abs(bf16_to_float(q.scales[static_cast<size_t>(r * 4 + g)]));
      for (int64_t i = 0; i < 32; ++i) {
        within += std::abs(group[static_cast<size_t>(i)] - dequant(q, r, g * 32 + i)) <= s / 2 * 1.01f;
      }
    }
  }
  EXPECT_GE(within, 4 * 128 * 95 / 100);
}

TEST(Quantize, RejectsBadParameters) {
  std::vector<float> row(96, 1.0f);
  EXPECT_THROW(quantize_matrix(row, 1, 96, 4, 64), Error);  // 96 is not a multiple of 64
  EXPECT_THROW(quantize_matrix(row, 1, 96, 7, 32), Error);
  EXPECT_THROW(quantize_matrix(row, 1, 96, 4, 48), Error);
}

WeightMatrix as_weight(const QuantizedMatrix& q) {
  WeightMatrix w;
  w.rows = q.rows;
  w.cols = q.cols;
  w.dtype = DType::U32;
  w.data = q.words.data();
  w.bits = q.bits;
  w.group_size = q.group_size;
  w.scale_dtype = DType::BF16;
  w.scales = q.scales.data();
  w.biases = q.biases.data();
  return w;
}

TEST(Quantize, ReaderPathDequantizesTheSameValues) {
  const int64_t rows = 5;
  const int64_t cols = 384;
  const auto values = random_values(rows * cols, 5, 0.1f);
  for (int bits : {2, 3, 4, 5, 6, 8}) {
    for (int group : {32, 64, 128}) {
      const auto q = quantize_matrix(values, rows, cols, bits, group);
      const WeightMatrix w = as_weight(q);
      std::vector<float> out(static_cast<size_t>(cols));
      for (int64_t r = 0; r < rows; ++r) {
        cpu::dequantize_row(w, r, out.data());
        for (int64_t c = 0; c < cols; ++c) {
          const float want = dequant(q, r, c);
          ASSERT_NEAR(out[static_cast<size_t>(c)], want, 1e-6f * (1 + std::abs(want)))
              << bits << " bits, group " << group << " at " << r << "," << c;
        }
      }
    }
  }
}

TEST(Quantize, ReaderMatmulAgreesWithDequantizedProduct) {
  const int64_t rows = 9;
  const int64_t cols = 256;
  const auto values = random_values(rows * cols, 9, 0.1f);
  const auto x = random_values(2 * cols, 10, 1.0f);
  ThreadPool pool(2);
  for (int bits : {3, 4, 8}) {
    const auto q = quantize_matrix(values, rows, cols, bits, 64);
    std::vector<float> y(static_cast<size_t>(2 * rows));
    cpu::matmul(as_weight(q), x.data(), y.data(), 2, pool);
    for (int64_t t = 0; t < 2; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        double want = 0;
        for (int64_t c = 0; c < cols; ++c)
          want += double{dequant(q, r, c)} * x[static_cast<size_t>(t * cols + c)];
        EXPECT_NEAR(y[static_cast<size_t>(t * rows + r)], want, 1e-4 * (1 + std::abs(want))) << bits;
      }
    }
  }
}

}  // namespace
}  // namespace mtplx
