// CUDA backend ops against the CPU backend (the numerical reference), on fresh random inputs: every op of
// backend.h, matmul over every weight format at T = 1..8 (fused GEMV widths) and T > 8 (tiled GEMM).
// Reported error: max |cuda - cpu| / max |cpu| over the output. Skipped when no GPU is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.h"
#include "backend/cuda/cuda_backend.h"
#include "base/error.h"
#include "support/greedy_rows.h"
#include "support/top_k_checks.h"

namespace mtplx {
namespace {

double rel_error(const std::vector<float>& ours, const std::vector<float>& ref) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    if (!std::isfinite(ours[i])) return INFINITY;
    diff = std::max(diff, std::fabs(double(ours[i]) - ref[i]));
    scale = std::max(scale, std::fabs(double(ref[i])));
  }
  return scale > 0 ? diff / scale : diff;
}

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7FFF + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

// Exact for the values used here (k / 1024, |k| <= 1024: normal halves with a short mantissa).
uint16_t to_f16(float f) {
  if (f == 0) return 0;
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const uint32_t exponent = ((u >> 23) & 0xFFu) - 127 + 15;
  return static_cast<uint16_t>(sign | (exponent << 10) | ((u >> 13) & 0x3FFu));
}

struct HostWeight;

// matmul_many's arguments for weights on both backends: each matrix's CPU product of x (yc), NaN-poisoned
// GPU outputs (yg) and the pointer lists the call takes (moving the struct keeps the pointers valid).
struct ManyMatmuls {
  std::vector<Tensor> yc, yg;
  std::vector<const WeightMatrix*> ws;
  std::vector<Tensor*> outs;
};

class CudaOps : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_device_present()) GTEST_SKIP() << cuda_device_description();
    gpu_ = std::make_unique<CudaBackend>(0);
    // The reference in fp32: the CPU's Auto path may multiply quantized codes with quantized activations.
    cpu_.set_matmul_isa(cpu::isa_supported(cpu::Isa::Avx512) ? cpu::Isa::Avx512
                        : cpu::isa_supported(cpu::Isa::Avx2) ? cpu::Isa::Avx2
                                                             : cpu::Isa::Portable);
  }
  std::vector<float> random(size_t n, float lo = -1, float hi = 1) {
    std::uniform_real_distribution<float> dist(lo, hi);
    std::vector<float> v(n);
    for (auto& x : v) x = dist(rng_);
    return v;
  }
  // The same values on both backends.
  std::pair<Tensor, Tensor> pair(const std::vector<float>& host, int64_t rows, int64_t cols) {
    return {cpu_.upload(host, rows, cols), gpu_->upload(host, rows, cols)};
  }
  std::pair<Tensor, Tensor> random_pair(int64_t rows, int64_t cols, float lo = -1, float hi = 1) {
    return pair(random(static_cast<size_t>(rows * cols), lo, hi), rows, cols);
  }
  std::vector<float> host(Backend& b, const Tensor& t) {
    std::vector<float> v(t.numel());
    b.download(t, v);
    return v;
  }
  double compare(const Tensor& cpu, const Tensor& gpu) {
    return rel_error(host(*gpu_, gpu), host(cpu_, cpu));
  }
  // Output tensors poisoned with NaN, so an element the kernel fails to write shows up.
  std::pair<Tensor, Tensor> outputs(int64_t rows, int64_t cols) {
    Tensor c = cpu_.alloc(rows, cols), g = gpu_->alloc(rows, cols);
    cpu_.fill(c, NAN);
    gpu_->fill(g, NAN);
    return {c, g};
  }

  // Gated DeltaNet inputs as the model makes them (q and k L2-normed, log-decays in [-1, -0.01], beta in
  // [0, 1]), on both backends.
  struct GdnInputs {
    Tensor qc, qg, kc, kg, vc, vg, gc, gg, bc, bg;
  };
  GdnInputs gdn_inputs(int64_t T, int Hk, int Hv, int Dk, int Dv) {
    GdnInputs in;
    std::tie(in.qc, in.qg) = random_pair(T, int64_t{Hk} * Dk);
    std::tie(in.kc, in.kg) = random_pair(T, int64_t{Hk} * Dk);
    cpu_.l2_norm(in.qc, Dk, 1.0f / std::sqrt(float(Dk)));
    gpu_->l2_norm(in.qg, Dk, 1.0f / std::sqrt(float(Dk)));
    cpu_.l2_norm(in.kc, Dk, 1.0f);
    gpu_->l2_norm(in.kg, Dk, 1.0f);
    std::tie(in.vc, in.vg) = random_pair(T, int64_t{Hv} * Dv);
    std::tie(in.gc, in.gg) = random_pair(T, Hv, -1.0f, -0.01f);
    std::tie(in.bc, in.bg) = random_pair(T, Hv, 0.0f, 1.0f);
    return in;
  }

  ManyMatmuls many_matmuls(const std::vector<HostWeight>& hosts, const std::vector<WeightMatrix>& devs,
                           const Tensor& xc);

  std::mt19937 rng_{20261126};
  CpuBackend cpu_{2};
  std::unique_ptr<CudaBackend> gpu_;
};

// A host weight matrix and the storage it points into.
struct HostWeight {
  std::vector<uint32_t> words;
  std::vector<uint16_t> scales, biases, dense16;
  std::vector<float> dense32, scales32, biases32;
  WeightMatrix w;
};

ManyMatmuls CudaOps::many_matmuls(const std::vector<HostWeight>& hosts, const std::vector<WeightMatrix>& devs,
                                  const Tensor& xc) {
  ManyMatmuls m;
  for (size_t i = 0; i < hosts.size(); ++i) {
    auto [c, g] = outputs(xc.rows, hosts[i].w.rows);
    cpu_.matmul(hosts[i].w, xc, c);
    m.yc.push_back(c);
    m.yg.push_back(g);
  }
  for (size_t i = 0; i < devs.size(); ++i) {
    m.ws.push_back(&devs[i]);
    m.outs.push_back(&m.yg[i]);
  }
  return m;
}

HostWeight make_weight(std::mt19937& rng, int64_t rows, int64_t cols, int bits, int group, DType dense) {
  HostWeight h;
  h.w.rows = rows;
  h.w.cols = cols;
  std::uniform_real_distribution<float> u(-1, 1);
  if (bits > 0) {
    h.w.bits = bits;
    h.w.group_size = group;
    h.w.dtype = DType::U32;
    h.w.scale_dtype = DType::BF16;
    h.words.resize(static_cast<size_t>(rows * cols * bits / 32));
    for (auto& x : h.words) x = static_cast<uint32_t>(rng());
    const size_t groups = static_cast<size_t>(rows * (cols / group));
    for (size_t i = 0; i < groups; ++i) {
      h.scales.push_back(to_bf16(u(rng) * 0.05f));
      h.biases.push_back(to_bf16(u(rng) * 0.2f));
    }
    h.w.data = h.words.data();
    h.w.scales = h.scales.data();
    h.w.biases = h.biases.data();
  } else if (dense == DType::F32) {
    h.w.dtype = DType::F32;
    for (int64_t i = 0; i < rows * cols; ++i) h.dense32.push_back(u(rng));
    h.w.data = h.dense32.data();
  } else {
    h.w.dtype = dense;
    for (int64_t i = 0; i < rows * cols; ++i) {
      const float f = static_cast<float>(static_cast<int>(rng() % 2049) - 1024) / 1024.0f;
      h.dense16.push_back(dense == DType::BF16 ? to_bf16(u(rng)) : to_f16(f));
    }
    h.w.data = h.dense16.data();
  }
  return h;
}

struct Format {
  int bits, group;
  DType dense;
};

// The formats the fused GEMV kernels serve: 8- and 4-bit codes with groups of 32, 64 and 128, and BF16.
const Format kFusedGemvFormats[] = {
    {8, 64, DType::U32}, {4, 64, DType::U32}, {4, 32, DType::U32}, {8, 128, DType::U32}, {0, 0, DType::BF16}};

// Scales and biases of a quantized HostWeight as `type`: F32 widens the bf16 values, F16 draws halves of
// short mantissa (to_f16 is exact for them).
void set_scale_dtype(HostWeight& h, DType type, std::mt19937& rng) {
  if (type == DType::BF16) return;
  h.w.scale_dtype = type;
  for (size_t i = 0; i < h.scales.size(); ++i) {
    if (type == DType::F32) {
      h.scales32.push_back(std::bit_cast<float>(uint32_t{h.scales[i]} << 16));
      h.biases32.push_back(std::bit_cast<float>(uint32_t{h.biases[i]} << 16));
    } else {
      h.scales[i] = to_f16(static_cast<float>(1 + rng() % 64) / 1024.0f);
      h.biases[i] = to_f16(static_cast<float>(static_cast<int>(rng() % 401) - 200) / 1024.0f);
    }
  }
  if (type == DType::F32) {
    h.w.scales = h.scales32.data();
    h.w.biases = h.biases32.data();
  }
}

TEST_F(CudaOps, MatmulEveryFormatAndWidth) {
  const Format formats[] = {{8, 64, DType::U32},  {4, 64, DType::U32}, {4, 32, DType::U32},
                            {8, 128, DType::U32}, {2, 64, DType::U32}, {3, 64, DType::U32},
                            {6, 64, DType::U32},  {5, 32, DType::U32}, {0, 0, DType::BF16},
                            {0, 0, DType::F16},   {0, 0, DType::F32}};
  const int64_t shapes[][2] = {{301, 512}, {64, 128}, {1030, 2560}};
  const int64_t widths[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 17, 64, 100};
  for (const Format& f : formats) {
    for (const auto& shape : shapes) {
      if (f.bits > 0 && shape[1] % f.group != 0) continue;
      HostWeight h = make_weight(rng_, shape[0], shape[1], f.bits, f.group, f.dense);
      const WeightMatrix dev = gpu_->prepare_weight(h.w);
      for (int64_t T : widths) {
        auto [xc, xg] = random_pair(T, shape[1]);
        auto [yc, yg] = outputs(T, shape[0]);
        cpu_.matmul(h.w, xc, yc);
        gpu_->matmul(dev, xg, yg);
        const double err = compare(yc, yg);
        EXPECT_LT(err, 1e-5) << "bits " << f.bits << " group " << f.group << " dense " << int(f.dense) << " ["
                             << shape[0] << "x" << shape[1] << "] T " << T;
      }
    }
  }
}

// Matmuls of more than 8 rows on the tensor-core GEMMs (matmul_mma.cu: exact codes or BF16 weights times
// activations split into two fp16 halves; 64 and 128 T rows a block; matmul_wgmma.cu: the same on warpgroup
// MMAs, codes only, on devices of compute capability 9.0) and on the fp32 tiled GEMM
// (CudaBackend::set_mma_gemm(false)),
// both against the CPU backend: 8-bit and 4-bit codes with groups of 64 and 128 and BF16, F16 or F32
// scales, dense BF16; partial row and T tiles, K of one to 144 slices. Prints the worst error of each path.
TEST_F(CudaOps, MatmulTensorCoreGemm) {
  struct Case {
    Format format;
    DType scales;
  };
  const Case cases[] = {{{8, 64, DType::U32}, DType::BF16},  {{4, 64, DType::U32}, DType::BF16},
                        {{8, 128, DType::U32}, DType::BF16}, {{4, 128, DType::U32}, DType::BF16},
                        {{8, 64, DType::U32}, DType::F32},   {{4, 64, DType::U32}, DType::F16},
                        {{8, 64, DType::U32}, DType::F16},   {{4, 64, DType::U32}, DType::F32},
                        {{0, 0, DType::BF16}, DType::BF16}};
  const int64_t shapes[][2] = {{301, 512}, {1030, 2560}, {64, 192}, {130, 9216}, {7, 64}};
  double worst[3] = {0, 0, 0};
  for (const Case& k : cases) {
    const Format& f = k.format;
    for (const auto& shape : shapes) {
      if (f.bits > 0 && shape[1] % f.group != 0) continue;
      HostWeight h = make_weight(rng_, shape[0], shape[1], f.bits, f.group, f.dense);
      if (f.bits > 0) set_scale_dtype(h, k.scales, rng_);
      const WeightMatrix dev = gpu_->prepare_weight(h.w);
      for (int64_t T : {9, 64, 129, 300}) {
        auto [xc, xg] = random_pair(T, shape[1]);
        auto [yc, yg] = outputs(T, shape[0]);
        cpu_.matmul(h.w, xc, yc);
        // fp32 tiles, mma.sync with 64 and 128 T rows a block, warpgroup MMAs (where they run)
        for (int path = 0; path < 4; ++path) {
          const int kind = path == 0 ? 0 : path < 3 ? 1 : 2;
          if (kind == 2 && !gpu_->runs_wgmma_gemm(dev, T)) continue;
          gpu_->set_mma_gemm(kind > 0, path == 2 ? 128 : 64);
          gpu_->set_wgmma_gemm(kind == 2);
          gpu_->fill(yg, NAN);
          gpu_->matmul(dev, xg, yg);
          const double err = compare(yc, yg);
          worst[kind] = std::max(worst[kind], err);
          EXPECT_LT(err, 1e-5) << "bits " << f.bits << " group " << f.group << " scales "
                               << dtype_name(k.scales) << " [" << shape[0] << "x" << shape[1] << "] T " << T
                               << " path " << path;
        }
      }
    }
  }
  gpu_->set_mma_gemm(true);
  gpu_->set_wgmma_gemm(true);
  std::printf("[cuda gemm] worst error vs CPU: tensor cores %.2e, warpgroup MMAs %.2e, fp32 tiles %.2e\n",
              worst[1], worst[2], worst[0]);
}

// Matmuls of 1..8 rows on the tensor-core GEMV (matmul_imma.cu, CudaBackend::set_gemv_mma_from: u8 codes
// times three s8 pieces of each activation slice, staged in shared memory or read from global memory)
// against the CPU backend: 8-bit and 4-bit codes, groups of 64 and 128, BF16 / F16 / F32 scales, partial
// row blocks, one to 144 slices, activations of ordinary, large (1e4) and small (1e-6) magnitude, and rows
// whose slices alternate between 1e-6 and 1e4 with one slice of zeros. Prints the worst error of each form.
TEST_F(CudaOps, MatmulTensorCoreGemv) {
  struct Case {
    Format format;
    DType scales;
  };
  const Case cases[] = {{{8, 64, DType::U32}, DType::BF16},  {{4, 64, DType::U32}, DType::BF16},
                        {{8, 128, DType::U32}, DType::BF16}, {{4, 128, DType::U32}, DType::BF16},
                        {{8, 64, DType::U32}, DType::F32},   {{4, 64, DType::U32}, DType::F16}};
  const int64_t shapes[][2] = {{301, 512}, {1030, 2560}, {64, 192},   {130, 9216},
                               {7, 64},    {33, 128},    {8500, 320}, {4100, 4096}};
  double worst[2] = {};
  gpu_->set_gemv_mma_from(1);
  for (const int kind : {0, 1}) {  // pieces in shared memory; from global memory (forced: words = 1)
    gpu_->set_gemv(false, 0, 0, kind == 1 ? 1 : 0);
    for (const Case& k : cases)
      for (const auto& shape : shapes) {
        if (shape[1] % k.format.group != 0) continue;
        HostWeight h = make_weight(rng_, shape[0], shape[1], k.format.bits, k.format.group, k.format.dense);
        set_scale_dtype(h, k.scales, rng_);
        const WeightMatrix dev = gpu_->prepare_weight(h.w);
        for (int64_t T = 1; T <= 8; ++T)
          for (const float magnitude : {1.0f, 1e4f, 1e-6f, 0.0f}) {  // 0: slices of mixed magnitude
            std::vector<float> x = random(static_cast<size_t>(T * shape[1]), -1, 1);
            for (size_t i = 0; i < x.size(); ++i) {
              const int64_t slice = static_cast<int64_t>(i) % shape[1] / 64;
              x[i] *= magnitude > 0 ? magnitude : slice == 1 ? 0.0f : slice % 2 ? 1e4f : 1e-6f;
            }
            auto [xc, xg] = pair(x, T, shape[1]);
            auto [yc, yg] = outputs(T, shape[0]);
            cpu_.matmul(h.w, xc, yc);
            gpu_->matmul(dev, xg, yg);
            const double err = compare(yc, yg);
            worst[kind] = std::max(worst[kind], err);
            EXPECT_LT(err, 1e-5) << "kind " << kind << " bits " << k.format.bits << " group "
                                 << k.format.group << " scales " << dtype_name(k.scales) << " [" << shape[0]
                                 << "x" << shape[1] << "] T " << T << " |x| <= " << magnitude;
          }
      }
  }
  gpu_->set_gemv_mma_from(0);
  gpu_->set_gemv(false);
  // By default only large matrices take it, from 3 rows on.
  HostWeight h = make_weight(rng_, 5200, 5120, 4, 64, DType::U32);
  const WeightMatrix dev = gpu_->prepare_weight(h.w);
  auto [xc, xg] = random_pair(3, 5120);
  auto [yc, yg] = outputs(3, 5200);
  cpu_.matmul(h.w, xc, yc);
  gpu_->matmul(dev, xg, yg);
  EXPECT_LT(compare(yc, yg), 1e-5) << "a large matrix at 3 rows, default options";
  std::printf("[cuda gemv] worst error vs CPU on tensor cores: shared %.2e, global %.2e\n", worst[0],
              worst[1]);
}

// matmul_many on the tensor-core GEMV: the input is converted once per code width before the matrices fork
// onto parallel streams (one width, then 4 and 8 bits mixed). Every output equals its CPU matmul.
TEST_F(CudaOps, MatmulManyTensorCoreGemv) {
  const Format formats[] = {
      {8, 64, DType::U32}, {8, 64, DType::U32}, {4, 64, DType::U32}, {8, 128, DType::U32}};
  const int64_t rows[] = {1030, 32, 301, 517};
  std::vector<HostWeight> hosts;
  std::vector<WeightMatrix> devs;
  for (size_t i = 0; i < std::size(formats); ++i)
    hosts.push_back(make_weight(rng_, rows[i], 640, formats[i].bits, formats[i].group, formats[i].dense));
  for (const auto& h : hosts) devs.push_back(gpu_->prepare_weight(h.w));
  gpu_->set_gemv_mma_from(1);
  for (const bool staged : {true, false})
    for (int64_t T : {1, 3, 8}) {
      gpu_->set_gemv(false, 0, 0, staged ? 0 : 1);
      auto [xc, xg] = random_pair(T, 640);
      auto [yc, yg, ws, outs] = many_matmuls(hosts, devs, xc);
      gpu_->matmul_many(std::span(ws).first(2), xg, std::span(outs).first(2));  // one width: shared pieces
      gpu_->matmul_many(std::span(ws).subspan(2), xg, std::span(outs).subspan(2));  // 4 and 8 bits
      for (size_t i = 0; i < devs.size(); ++i)
        EXPECT_LT(compare(yc[i], yg[i]), 1e-5) << "T " << T << " matrix " << i << " staged " << staged;
    }
  gpu_->set_gemv_mma_from(0);
  gpu_->set_gemv(false);
}

// download() through the chunked page-locked staging buffer and straight into pageable memory: every
// value comes back bit for bit, at sizes below, at and across the chunk and staging sizes (the buffer grows
// and is reused).
TEST_F(CudaOps, DownloadPinnedAndPageable) {
  for (bool pinned : {true, false}) {
    gpu_->set_pinned_downloads(pinned);
    for (int64_t n : {1, 1000, 16384, 16385, 300000, 262144 * 3 + 7, 1000}) {
      const std::vector<float> values = random(static_cast<size_t>(n));
      const Tensor t = gpu_->upload(values, 1, n);
      std::vector<float> back(static_cast<size_t>(n), NAN);
      gpu_->download(t, back);
      EXPECT_EQ(0, std::memcmp(back.data(), values.data(), sizeof(float) * values.size()))
          << "n " << n << " pinned " << pinned;
    }
  }
  gpu_->set_pinned_downloads(true);
}

// greedy_tokens on the device against an independent host loop (tests/support/greedy_rows.h): ties, -inf,
// NaN, +inf and +0 / -0 planted per row, at sizes below, at and across the kernel's 2048-value chunk, the
// Qwen3.5 vocabulary (248,320) and several rows; a row of NaN alone throws.
TEST_F(CudaOps, GreedyTokensMatchOracle) {
  for (const int64_t rows : {1, 3, 9, 16}) {
    for (const int64_t cols : {1, 7, 255, 2047, 2048, 2049, 4100, 248320}) {
      const std::vector<float> x = test::greedy_rows(rows, cols, static_cast<uint32_t>(rows * 1000 + cols));
      const std::vector<int32_t> ids = gpu_->greedy_tokens(gpu_->upload(x, rows, cols));
      ASSERT_EQ(ids.size(), static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r)
        EXPECT_EQ(ids[r], test::oracle_greedy(std::span(x).subspan(r * cols, cols)))
            << "row " << r << " of " << rows << " x " << cols;
    }
  }
  std::vector<float> nan_row(3 * 5000, 0.5f);
  for (int c = 5000; c < 10000; ++c) nan_row[c] = NAN;
  EXPECT_THROW(gpu_->greedy_tokens(gpu_->upload(nan_row, 3, 5000)), Error);
}

// greedy_pick writes greedy_tokens' picks into device token slots at any offset, through the slots' id map
// when asked, and read() brings them back; ranges outside the slots, a map of another width, another
// backend's slots and a row without comparable values are errors.
TEST_F(CudaOps, GreedyPickIntoTokenSlots) {
  const int64_t cols = 4100;
  std::vector<int32_t> map(static_cast<size_t>(cols));
  for (size_t i = 0; i < map.size(); ++i) map[i] = static_cast<int32_t>((i * 13 + 5) % 9000);
  const auto slots = gpu_->token_slots(12, map);
  ASSERT_EQ(slots->size(), 12);
  for (const int64_t rows : {1, 3}) {
    for (const int first : {0, 4, 9}) {
      for (const bool mapped : {true, false}) {
        const auto x = test::greedy_rows(rows, cols, static_cast<uint32_t>(rows * 100 + first));
        gpu_->greedy_pick(gpu_->upload(x, rows, cols), *slots, first, mapped);
        const auto ids = slots->read(first, static_cast<int>(rows));
        for (int64_t r = 0; r < rows; ++r) {
          const int32_t pick = test::oracle_greedy(std::span(x).subspan(r * cols, cols));
          EXPECT_EQ(ids[r], mapped ? map[static_cast<size_t>(pick)] : pick)
              << "row " << r << " of " << rows << " at " << first << " mapped " << mapped;
        }
      }
    }
  }
  const auto three = gpu_->upload(test::greedy_rows(3, cols, 7), 3, cols);
  EXPECT_THROW(gpu_->greedy_pick(three, *slots, 10, false), Error);
  EXPECT_THROW(slots->read(11, 2), Error);
  EXPECT_THROW(gpu_->greedy_pick(gpu_->upload(test::greedy_rows(1, 100, 3), 1, 100), *slots, 0, true), Error);
  CpuBackend cpu(1);
  const auto host_slots = cpu.token_slots(4, {});
  EXPECT_THROW(gpu_->greedy_pick(three, *host_slots, 0, false), Error);
  std::vector<float> nan_row(static_cast<size_t>(cols), NAN);
  gpu_->greedy_pick(gpu_->upload(nan_row, 1, cols), *slots, 2, true);
  EXPECT_THROW(slots->read(2, 1), Error);
}

// top_k on the device against the stable-sort oracle (tests/support/greedy_rows.h): the planted rows of the
// greedy test and rows of few distinct values (most of a top-k in ties), at sizes around both chunk widths
// (2,048 and 8,192 values), the trimmed draft head (31,040) and the Qwen3.5 vocabulary, k from 1 to past
// the device limit (the host fallback) and past the row (padding).
TEST_F(CudaOps, TopKMatchesOracle) {
  std::vector<ScoredToken> got;
  const auto check = [&](const std::vector<float>& x, int64_t rows, int64_t cols, int k) {
    gpu_->top_k(gpu_->upload(x, rows, cols), k, got);
    test::expect_top_k_oracle(x, rows, cols, k, got);
  };
  for (const int64_t rows : {1, 3, 9}) {
    for (const int64_t cols : {1, 7, 300, 2047, 2049, 8193, 31040, 248320}) {
      for (const int k : {1, 2, 20, 33, 64, 132, 300}) {
        const auto seed = static_cast<uint32_t>(rows * 1000 + cols + k);
        check(test::greedy_rows(rows, cols, seed), rows, cols, k);
        check(test::tied_rows(rows, cols, seed), rows, cols, k);
      }
    }
  }
  check(test::greedy_rows(2, 5, 1), 2, 5, 9);
  gpu_->top_k(gpu_->alloc(0, 100), 4, got);
  EXPECT_TRUE(got.empty());
}

// The fused GEMV's variants (CudaBackend::set_gemv): the classic kernel and the word-interleaved kernel with
// every forced unit width, batch and warp count, with weights loaded before or after the PDL wait
// (set_gemv_early), the classic kernel with one or two chunks in flight (set_gemv_pipelined), 4-bit codes
// at one row on either kernel (set_gemv_wide4_from), and the interleaved kernels under each register bound
// (set_gemv_register_bound), on shapes with several batches per lane and a partial row group.
TEST_F(CudaOps, MatmulGemvVariants) {
  const auto& formats = kFusedGemvFormats;
  const int64_t shapes[][2] = {{37, 9216}, {1030, 2560}, {4100, 512}};
  struct Variant {
    bool classic;
    int batch, warps, words;
    int early = 0;          // set_gemv_early
    int wide8_from = 2;     // set_gemv_wide8_from
    bool pipelined = true;  // set_gemv_pipelined
    int wide4_from = 1;     // set_gemv_wide4_from
    int bound = 1;          // set_gemv_register_bound
  };
  std::vector<Variant> variants = {{true, 0, 0, 0},
                                   {false, 0, 0, 0},
                                   {true, 0, 0, 0, 1},
                                   {false, 0, 0, 0, -1},
                                   {false, 2, 0, 2, -1},
                                   {false, 4, 1, 2, 1},
                                   {true, 0, 1, 0},
                                   {true, 0, 2, 0, 1},
                                   {true, 0, 4, 0, -1},
                                   {false, 0, 0, 0, 0, 5},
                                   {true, 0, 0, 0, 0, 2, false},
                                   {true, 0, 2, 0, -1, 2, false},
                                   {false, 0, 0, 0, 0, 2, true, 2},
                                   {false, 0, 0, 0, 0, 2, true, 1, 0},
                                   {false, 0, 0, 0, 0, 2, true, 1, 2},
                                   {false, 2, 2, 2, 0, 2, true, 1, 0},
                                   {false, 2, 2, 2, 0, 2, true, 1, 2}};
  for (int words : {2, 4})
    for (int batch : {1, 2, 4, 8})
      for (int warps : {1, 2, 4}) variants.push_back({false, batch, warps, words});
  for (const Format& f : formats) {
    for (const auto& shape : shapes) {
      HostWeight h = make_weight(rng_, shape[0], shape[1], f.bits, f.group, f.dense);
      const WeightMatrix dev = gpu_->prepare_weight(h.w);
      for (int64_t T = 1; T <= 8; ++T) {
        auto [xc, xg] = random_pair(T, shape[1]);
        auto [yc, yg] = outputs(T, shape[0]);
        cpu_.matmul(h.w, xc, yc);
        for (const Variant& v : variants) {
          gpu_->set_gemv(v.classic, v.batch, v.warps, v.words);
          gpu_->set_gemv_early(v.early);
          gpu_->set_gemv_wide8_from(v.wide8_from);
          gpu_->set_gemv_pipelined(v.pipelined);
          gpu_->set_gemv_wide4_from(v.wide4_from);
          gpu_->set_gemv_register_bound(v.bound);
          gpu_->fill(yg, NAN);
          gpu_->matmul(dev, xg, yg);
          EXPECT_LT(compare(yc, yg), 1e-5)
              << "bits " << f.bits << " group " << f.group << " [" << shape[0] << "x" << shape[1] << "] T "
              << T << " classic " << v.classic << " batch " << v.batch << " warps " << v.warps << " words "
              << v.words << " early " << v.early << " wide8_from " << v.wide8_from << " pipelined "
              << v.pipelined << " wide4_from " << v.wide4_from << " register bound " << v.bound;
        }
      }
    }
  }
  gpu_->set_gemv(false);
  gpu_->set_gemv_early(0);
  gpu_->set_gemv_wide8_from(2);
  gpu_->set_gemv_pipelined(true);
  gpu_->set_gemv_wide4_from(1);
  gpu_->set_gemv_register_bound(1);
}

// The MLP's first half, silu(x gate^T) * (x up^T): at one row the paired GEMV (gate and up rows in one
// row group, CudaBackend::set_paired_mlp) with every warp split, else matmul_many + silu_mul; both against
// the CPU backend's matmuls and silu_mul. 8- and 4-bit codes with BF16/F16/F32 scales, BF16 weights, a
// partial last row group (odd rows), and gate and up of different formats (never paired).
TEST_F(CudaOps, MatmulSiluMulPairedAndFallback) {
  const auto& formats = kFusedGemvFormats;
  const int64_t shapes[][2] = {{301, 512}, {1030, 2560}, {37, 9216}, {9216, 256}};
  for (const Format& f : formats) {
    for (const DType scales : {DType::BF16, DType::F16, DType::F32}) {
      if (f.bits == 0 && scales != DType::BF16) continue;
      for (const auto& shape : shapes) {
        HostWeight gate = make_weight(rng_, shape[0], shape[1], f.bits, f.group, f.dense);
        HostWeight up = make_weight(rng_, shape[0], shape[1], f.bits, f.group, f.dense);
        if (f.bits > 0) {
          set_scale_dtype(gate, scales, rng_);
          set_scale_dtype(up, scales, rng_);
        }
        const WeightMatrix gate_dev = gpu_->prepare_weight(gate.w), up_dev = gpu_->prepare_weight(up.w);
        for (int64_t T : {1, 2, 3}) {
          auto [xc, xg] = random_pair(T, shape[1]);
          auto [yc, yg] = outputs(T, shape[0]);
          cpu_.matmul_silu_mul(gate.w, up.w, xc, yc);
          for (const int warps : {0, 1, 2, 4}) {
            for (const bool paired : {true, false}) {
              gpu_->set_gemv(warps > 0, 0, warps);
              gpu_->set_paired_mlp(paired);
              gpu_->fill(yg, NAN);
              gpu_->matmul_silu_mul(gate_dev, up_dev, xg, yg);
              EXPECT_LT(compare(yc, yg), 1e-5)
                  << "bits " << f.bits << " group " << f.group << " scales " << dtype_name(scales) << " ["
                  << shape[0] << "x" << shape[1] << "] T " << T << " warps " << warps << " paired " << paired;
            }
          }
        }
      }
    }
  }
  gpu_->set_gemv(false);
  gpu_->set_paired_mlp(true);
  // Different formats: the fallback.
  HostWeight gate = make_weight(rng_, 300, 512, 8, 64, DType::U32),
             up = make_weight(rng_, 300, 512, 4, 64, DType::U32);
  const WeightMatrix gate_dev = gpu_->prepare_weight(gate.w), up_dev = gpu_->prepare_weight(up.w);
  auto [xc, xg] = random_pair(1, 512);
  auto [yc, yg] = outputs(1, 300);
  cpu_.matmul_silu_mul(gate.w, up.w, xc, yc);
  gpu_->matmul_silu_mul(gate_dev, up_dev, xg, yg);
  EXPECT_LT(compare(yc, yg), 1e-5);
}

// matmul_many at one row with matrices of one format: one classic-GEMV grid over all of them (grouped; 4-bit
// codes only with the classic kernel forced, as alone they take the interleaved one), or, switched off or
// for 4-bit codes by default, parallel streams. Row counts not a multiple of a block's rows put segment
// boundaries inside the grid's last blocks of each matrix.
TEST_F(CudaOps, MatmulManyGroupedOneRow) {
  const int64_t rows[] = {1030, 32, 301, 4};
  for (const Format& f : kFusedGemvFormats) {
    for (const DType scales : {DType::BF16, DType::F16, DType::F32}) {
      if (f.bits == 0 && scales != DType::BF16) continue;
      std::vector<HostWeight> hosts;
      std::vector<WeightMatrix> devs;
      for (const int64_t r : rows) {
        hosts.push_back(make_weight(rng_, r, 768, f.bits, f.group, f.dense));
        if (f.bits > 0) set_scale_dtype(hosts.back(), scales, rng_);
      }
      for (const auto& h : hosts) devs.push_back(gpu_->prepare_weight(h.w));
      auto [xc, xg] = random_pair(1, 768);
      auto [yc, yg, ws, outs] = many_matmuls(hosts, devs, xc);
      for (const size_t count : {size_t{2}, size_t{3}, size_t{4}}) {
        for (const int warps : {0, 1, 2, 4}) {
          for (const bool grouped : {true, false}) {
            gpu_->set_gemv(warps > 0, 0, warps);
            gpu_->set_grouped_matmuls(grouped);
            for (auto& y : yg) gpu_->fill(y, NAN);
            gpu_->matmul_many(std::span(ws).first(count), xg, std::span(outs).first(count));
            for (size_t i = 0; i < count; ++i)
              EXPECT_LT(compare(yc[i], yg[i]), 1e-5)
                  << "bits " << f.bits << " group " << f.group << " scales " << dtype_name(scales) << " of "
                  << count << " matrices, matrix " << i << " warps " << warps << " grouped " << grouped;
          }
        }
      }
    }
  }
  gpu_->set_gemv(false);
  gpu_->set_grouped_matmuls(true);
}

// Merged projections (mixed formats): every output must equal its own matmul on the CPU.
TEST_F(CudaOps, MatmulManyMixedFormats) {
  const Format formats[] = {{8, 64, DType::U32}, {8, 64, DType::U32}, {4, 64, DType::U32},
                            {4, 64, DType::U32}, {0, 0, DType::BF16}, {8, 64, DType::U32}};
  const int64_t rows[] = {1030, 32, 301, 4, 64, 517};
  std::vector<HostWeight> hosts;
  std::vector<WeightMatrix> devs;
  for (size_t i = 0; i < std::size(formats); ++i)
    hosts.push_back(make_weight(rng_, rows[i], 512, formats[i].bits, formats[i].group, formats[i].dense));
  for (const auto& h : hosts) devs.push_back(gpu_->prepare_weight(h.w));
  for (int64_t T : {1, 3, 8, 12}) {
    auto [xc, xg] = random_pair(T, 512);
    auto [yc, yg, ws, outs] = many_matmuls(hosts, devs, xc);
    // Four, then two at a time (widths the model uses: they run on parallel streams).
    gpu_->matmul_many(std::span(ws).first(4), xg, std::span(outs).first(4));
    gpu_->matmul_many(std::span(ws).subspan(4), xg, std::span(outs).subspan(4));
    for (size_t i = 0; i < devs.size(); ++i)
      EXPECT_LT(compare(yc[i], yg[i]), 1e-5) << "T " << T << " part " << i;
  }
}

// Widths that take the float4 kernel (2560, 5120, 16384, 100) and the loop kernel (not a multiple of 4,
// wider than 4 float4 per thread of 1024); rms_norm at the same widths.
TEST_F(CudaOps, AddRmsNorm) {
  for (int64_t width : {2560, 5120, 16384, 100, 2562, 16388})
    for (int64_t T : {1, 5}) {
      auto [ac, ag] = random_pair(T, width, -3, 3);
      auto [bc, bg] = random_pair(T, width, -3, 3);
      auto [gc, gg] = random_pair(1, width, 0.5, 1.5);
      auto [sc, sg] = outputs(T, width);
      auto [nc, ng] = outputs(T, width);
      cpu_.add_rms_norm(ac, bc, gc, 1e-6f, sc, nc);
      gpu_->add_rms_norm(ag, bg, gg, 1e-6f, sg, ng);
      EXPECT_EQ(compare(sc, sg), 0.0) << "width " << width << " T " << T;
      EXPECT_LT(compare(nc, ng), 1e-6) << "width " << width << " T " << T;
      cpu_.rms_norm(ac, gc, 1e-6f, nc);
      gpu_->rms_norm(ag, gg, 1e-6f, ng);
      EXPECT_LT(compare(nc, ng), 1e-6) << "rms_norm width " << width << " T " << T;
    }
}

// A recorded step replays with other token ids and base positions: embed, RoPE, the KV write and
// attention follow the replay's values, and the result equals running the ops directly.
TEST_F(CudaOps, StepGraphReplaysAtNewPositionsAndTokens) {
  const int heads = 4, kv_heads = 2, D = 64, cap = 40;
  HostWeight table = make_weight(rng_, 300, heads * D, 0, 0, DType::F32);
  const WeightMatrix dev_table = gpu_->prepare_weight(table.w);
  auto cache_k = gpu_->upload(random(static_cast<size_t>(cap * kv_heads * D)), cap, kv_heads * D);
  auto cache_v = gpu_->upload(random(static_cast<size_t>(cap * kv_heads * D)), cap, kv_heads * D);
  // The step: q = embed(tokens); rope(q); k = first kv columns of q; write k/v at pos; attention.
  const auto step = [&](std::span<const int32_t> tokens, int64_t pos, Tensor& k_cache, Tensor& v_cache) {
    const auto T = static_cast<int64_t>(tokens.size());
    Tensor q = gpu_->alloc(T, heads * D);
    gpu_->embed(dev_table, tokens, q);
    gpu_->rope(q, heads, D, D / 2, 10000.0, pos);
    Tensor k = gpu_->alloc(T, kv_heads * D);
    gpu_->copy_columns(q, 0, 0, k, 0, 0, kv_heads * D, 1);
    gpu_->write_cache(k, k_cache, pos);
    gpu_->write_cache(k, v_cache, pos);
    Tensor o = gpu_->alloc(T, heads * D);
    AttentionArgs args{&q, &k_cache, &v_cache, &o, pos, heads, kv_heads, D, 0.125f};
    gpu_->attention(args);
    return o;
  };
  std::vector<int32_t> tokens = {5, 17, 250};
  gpu_->begin_capture(tokens, 10);
  const Tensor graph_out = step(tokens, 10, cache_k, cache_v);
  auto graph = gpu_->end_capture();
  for (int64_t pos : {3, 20, 36}) {
    for (auto& t : tokens) t = static_cast<int32_t>(rng_() % 300);
    // The same cache contents for both runs.
    const auto k0 = host(*gpu_, cache_k), v0 = host(*gpu_, cache_v);
    gpu_->replay(*graph, tokens, pos, nullptr, nullptr);
    const auto replayed = host(*gpu_, graph_out);
    const auto k_after = host(*gpu_, cache_k);
    Tensor k2 = gpu_->upload(k0, cap, kv_heads * D), v2 = gpu_->upload(v0, cap, kv_heads * D);
    const auto direct = host(*gpu_, step(tokens, pos, k2, v2));
    EXPECT_EQ(rel_error(replayed, direct), 0.0) << "pos " << pos;
    EXPECT_EQ(rel_error(k_after, host(*gpu_, k2)), 0.0) << "pos " << pos;
  }
  // Rows 1 and 2 from token slots (placeholders in the host span): the ids picked there, not the span's.
  const auto slots = gpu_->token_slots(4, {});
  const std::vector<int32_t> picked = {123, 7, 299};
  std::vector<float> one_hot(3 * 300, 0.0f);
  for (size_t r = 0; r < picked.size(); ++r) one_hot[r * 300 + static_cast<size_t>(picked[r])] = 1.0f;
  gpu_->greedy_pick(gpu_->upload(one_hot, 3, 300), *slots, 1, false);
  const SlotRows from_slots{slots.get(), 2, 1, 2};
  const std::vector<int32_t> placeholders = {42, 0, 0};
  const auto k0 = host(*gpu_, cache_k), v0 = host(*gpu_, cache_v);
  gpu_->replay(*graph, placeholders, 17, nullptr, nullptr, &from_slots);
  const auto replayed = host(*gpu_, graph_out);
  Tensor k2 = gpu_->upload(k0, cap, kv_heads * D), v2 = gpu_->upload(v0, cap, kv_heads * D);
  const std::vector<int32_t> want = {42, picked[1], picked[2]};
  EXPECT_EQ(rel_error(replayed, host(*gpu_, step(want, 17, k2, v2))), 0.0);
  const SlotRows past_the_step{slots.get(), 0, 2, 2};
  EXPECT_THROW(gpu_->replay(*graph, placeholders, 17, nullptr, nullptr, &past_the_step), Error);
}

// A step graph that reads an input tensor (the MTP step's hidden row): replay copies each new input into
// it, in the kernel that sets the ids or with a copy before it, and the result equals the ops run directly
// on that input.
TEST_F(CudaOps, StepGraphReplayCopiesItsInput) {
  const int64_t rows = 2, width = 2560;
  auto [gain_host, gain] = random_pair(1, width, 0.5, 1.5);
  const auto step = [&](const Tensor& x) {
    Tensor y = gpu_->alloc(rows, width);
    gpu_->rms_norm(x, gain, 1e-6f, y);
    return y;
  };
  const std::vector<int32_t> tokens = {3};
  Tensor graph_input = gpu_->alloc(rows, width);
  gpu_->begin_capture(tokens, 0);
  const Tensor graph_out = step(graph_input);
  auto graph = gpu_->end_capture();
  for (const bool in_params : {true, false}) {
    gpu_->set_graph_input_in_params(in_params);
    for (int round = 0; round < 3; ++round) {
      auto [x_host, x] = random_pair(rows, width, -2, 2);
      gpu_->replay(*graph, tokens, 0, &x, &graph_input);
      EXPECT_EQ(rel_error(host(*gpu_, graph_out), host(*gpu_, step(x))), 0.0)
          << "input in the params kernel " << in_params << " round " << round;
    }
  }
  gpu_->set_graph_input_in_params(true);
  Tensor wrong = gpu_->alloc(1, width);
  EXPECT_THROW(gpu_->replay(*graph, tokens, 0, &wrong, &graph_input), Error);
}

TEST_F(CudaOps, EmbedDenseAndQuantized) {
  for (const Format f : {Format{0, 0, DType::BF16}, Format{4, 64, DType::U32}, Format{8, 64, DType::U32},
                         Format{0, 0, DType::F32}}) {
    HostWeight h = make_weight(rng_, 500, 256, f.bits, f.group, f.dense);
    const WeightMatrix dev = gpu_->prepare_weight(h.w);
    for (int n : {1, 7, 100}) {
      std::vector<int32_t> tokens;
      for (int i = 0; i < n; ++i) tokens.push_back(static_cast<int32_t>(rng_() % 500));
      auto [c, g] = outputs(n, 256);
      cpu_.embed(h.w, tokens, c);
      gpu_->embed(dev, tokens, g);
      EXPECT_EQ(compare(c, g), 0.0) << "bits " << f.bits << " n " << n;
    }
  }
}

TEST_F(CudaOps, ElementwiseAndNorms) {
  for (int64_t T : {1, 5, 33}) {
    auto [xc, xg] = random_pair(T, 2560, -3, 3);
    auto [zc, zg] = random_pair(T, 2560, -3, 3);
    auto [gc, gg] = random_pair(1, 2560);
    auto [hc, hg] = random_pair(1, 256);
    {
      auto [c, g] = outputs(T, 2560);
      cpu_.rms_norm(xc, gc, 1e-6f, c);
      gpu_->rms_norm(xg, gg, 1e-6f, g);
      EXPECT_LT(compare(c, g), 1e-6) << "rms_norm T " << T;
      cpu_.rms_norm(xc, hc, 1e-6f, c);  // per-head groups
      gpu_->rms_norm(xg, hg, 1e-6f, g);
      EXPECT_LT(compare(c, g), 1e-6) << "rms_norm heads T " << T;
      cpu_.add(xc, zc, c);
      gpu_->add(xg, zg, g);
      EXPECT_EQ(compare(c, g), 0.0);
      cpu_.silu_mul(xc, zc, c);
      gpu_->silu_mul(xg, zg, g);
      EXPECT_LT(compare(c, g), 1e-6);
      cpu_.gated_rms_norm(xc, zc, hc, 1e-6f, c);
      gpu_->gated_rms_norm(xg, zg, hg, 1e-6f, g);
      EXPECT_LT(compare(c, g), 1e-6) << "gated_rms_norm";
      cpu_.copy_rows(xc, c, 0);
      gpu_->copy_rows(xg, g, 0);
      cpu_.sigmoid_mul(c, zc);
      gpu_->sigmoid_mul(g, zg);
      EXPECT_LT(compare(c, g), 1e-6) << "sigmoid_mul";
      cpu_.l2_norm(c, 128, 0.25f);
      gpu_->l2_norm(g, 128, 0.25f);
      EXPECT_LT(compare(c, g), 1e-6) << "l2_norm";
    }
    {  // column blocks: per-head split and a concatenation at an offset
      auto [c, g] = outputs(T, 1280);
      cpu_.fill(c, 0.5f);
      gpu_->fill(g, 0.5f);
      cpu_.copy_columns(xc, 256, 512, c, 0, 256, 256, 5);
      gpu_->copy_columns(xg, 256, 512, g, 0, 256, 256, 5);
      EXPECT_EQ(compare(c, g), 0.0);
      cpu_.copy_columns(zc, 0, 0, c, 100, 0, 700, 1);
      gpu_->copy_columns(zg, 0, 0, g, 100, 0, 700, 1);
      EXPECT_EQ(compare(c, g), 0.0);
    }
    {
      auto [c, g] = outputs(T + 3, 2560);
      cpu_.fill(c, 1.0f);
      gpu_->fill(g, 1.0f);
      cpu_.copy_rows(xc, c, 2);
      gpu_->copy_rows(xg, g, 2);
      EXPECT_EQ(compare(c, g), 0.0);
    }
    {  // rope on [T, heads * 256] with 64 rotary dims at a large position
      auto [c, g] = pair(host(cpu_, xc), T, 2560);
      cpu_.rope(c, 10, 256, 64, 1e7, 4000);
      gpu_->rope(g, 10, 256, 64, 1e7, 4000);
      EXPECT_LT(compare(c, g), 1e-6) << "rope";
    }
    {
      auto [ac, ag] = random_pair(T, 32, -4, 4);
      auto [bc, bg] = random_pair(T, 32, -4, 4);
      auto [lc, lg] = random_pair(1, 32);
      auto [dc, dg] = random_pair(1, 32, -2, 2);
      auto [g1c, g1g] = outputs(T, 32);
      auto [b1c, b1g] = outputs(T, 32);
      cpu_.gdn_gates(ac, bc, lc, dc, g1c, b1c);
      gpu_->gdn_gates(ag, bg, lg, dg, g1g, b1g);
      EXPECT_LT(compare(g1c, g1g), 1e-6);
      EXPECT_LT(compare(b1c, b1g), 1e-6);
    }
  }
}

TEST_F(CudaOps, Conv1dWithRowStates) {
  const int64_t C = 1000, K = 4;
  for (int64_t T : {1, 2, 3, 6, 40}) {
    auto [xc, xg] = random_pair(T, C);
    auto [wc, wg] = random_pair(C, K);
    auto [sc, sg] = random_pair(K - 1, C);
    auto [oc, og] = outputs(T, C);
    auto [rc, rg] = outputs(T, (K - 1) * C);
    cpu_.conv1d_silu(xc, wc, sc, oc, &rc);
    gpu_->conv1d_silu(xg, wg, sg, og, &rg);
    EXPECT_LT(compare(oc, og), 1e-6) << "T " << T;
    EXPECT_EQ(compare(rc, rg), 0.0) << "T " << T;
    EXPECT_EQ(compare(sc, sg), 0.0) << "T " << T;
  }
}

// The fused GDN prepare (T <= 8) and its unfused fallback (T > 8) against the CPU's op-by-op version.
TEST_F(CudaOps, GdnPrepareFusedAndFallback) {
  const int64_t Dk = 128, key_dim = 2 * Dk, value_dim = 4 * Dk, C = 2 * key_dim + value_dim, K = 4, Hv = 4;
  for (int64_t T : {1, 3, 8, 12}) {
    for (bool rows : {false, true}) {
      auto [xc, xg] = random_pair(T, C, -2, 2);
      auto [wc, wg] = random_pair(C, K);
      auto [sc, sg] = random_pair(K - 1, C);
      auto [ac, ag] = random_pair(T, Hv, -3, 3);
      auto [bc, bg] = random_pair(T, Hv, -3, 3);
      auto [lc, lg] = random_pair(1, Hv);
      auto [dc, dg] = random_pair(1, Hv);
      auto [qc, qg] = outputs(T, key_dim);
      auto [kc, kg] = outputs(T, key_dim);
      auto [vc, vg] = outputs(T, value_dim);
      auto [gc, gg] = outputs(T, Hv);
      auto [ec, eg] = outputs(T, Hv);
      auto [rc, rg] = outputs(T, (K - 1) * C);
      GdnPrepareArgs cpu_args{&xc, &wc, &sc, rows ? &rc : nullptr, &ac, &bc, &lc, &dc, &qc, &kc,
                              &vc, &gc, &ec, static_cast<int>(Dk)};
      GdnPrepareArgs gpu_args{&xg, &wg, &sg, rows ? &rg : nullptr, &ag, &bg, &lg, &dg, &qg, &kg,
                              &vg, &gg, &eg, static_cast<int>(Dk)};
      cpu_.gdn_prepare(cpu_args);
      gpu_->gdn_prepare(gpu_args);
      const std::string where = "T " + std::to_string(T) + (rows ? " rows" : "");
      EXPECT_LT(compare(qc, qg), 1e-6) << where;
      EXPECT_LT(compare(kc, kg), 1e-6) << where;
      EXPECT_LT(compare(vc, vg), 1e-6) << where;
      EXPECT_LT(compare(gc, gg), 1e-6) << where;
      EXPECT_LT(compare(ec, eg), 1e-6) << where;
      EXPECT_EQ(compare(sc, sg), 0.0) << where;
      if (rows) {
        EXPECT_EQ(compare(rc, rg), 0.0) << where;
      }
    }
  }
}

// The fused attention prepare against the CPU's op-by-op version, partial rotary dims included.
TEST_F(CudaOps, AttentionPrepare) {
  const int heads = 8, kv_heads = 2;
  for (int D : {64, 256}) {
    for (auto [T, pos0] : {std::pair<int64_t, int64_t>{1, 0}, {3, 77}, {20, 5}}) {
      const int64_t cap = pos0 + T + 3, kv_cols = int64_t{kv_heads} * D, q_cols = int64_t{heads} * D;
      auto [qgc, qgg] = random_pair(T, 2 * q_cols, -2, 2);
      auto [kc, kg] = random_pair(T, kv_cols, -2, 2);
      auto [vc, vg] = random_pair(T, kv_cols);
      auto [qnc, qng] = random_pair(1, D, 0.5, 1.5);
      auto [knc, kng] = random_pair(1, D, 0.5, 1.5);
      auto [kcc, kcg] = random_pair(cap, kv_cols);
      auto [vcc, vcg] = pair(host(*gpu_, kcg), cap, kv_cols);
      auto [qc, qg] = outputs(T, q_cols);
      auto [gc, gg] = outputs(T, q_cols);
      const int rot = D / 4;
      AttentionPrepareArgs c{&qgc, &kc,   &vc,   &qnc,     &knc, &qc, &gc, &kcc,
                             &vcc, 1e-6f, heads, kv_heads, D,    rot, 1e7, pos0};
      AttentionPrepareArgs g{&qgg, &kg,   &vg,   &qng,     &kng, &qg, &gg, &kcg,
                             &vcg, 1e-6f, heads, kv_heads, D,    rot, 1e7, pos0};
      cpu_.attention_prepare(c);
      gpu_->attention_prepare(g);
      const std::string where = "D " + std::to_string(D) + " T " + std::to_string(T);
      EXPECT_LT(compare(qc, qg), 1e-6) << where;
      EXPECT_EQ(compare(gc, gg), 0.0) << where;
      EXPECT_LT(compare(kc, kg), 1e-6) << where;
      EXPECT_LT(compare(kcc, kcg), 1e-6) << where;
      EXPECT_EQ(compare(vcc, vcg), 0.0) << where;
    }
  }
}

TEST_F(CudaOps, AttentionGqaAtOffsets) {
  // Prefill rows on tensor cores (the default from 64 rows) and on the fp32 tiles; GQA groups of 4 and of 6
  // (which does not divide a block's 64 query vectors).
  for (auto [mma, heads, kv_heads] :
       {std::tuple{true, 8, 2}, std::tuple{false, 8, 2}, std::tuple{true, 12, 2}}) {
    gpu_->set_attention_mma(mma);
    for (int D : {64, 128, 256}) {
      // Capacities past 1024 take the split-K path at T <= 8 (a split per 512 positions of capacity).
      for (auto [T, pos0] : {std::pair<int64_t, int64_t>{1, 0},
                             {1, 37},
                             {3, 100},
                             {8, 500},
                             {50, 0},
                             {9, 1000},
                             {100, 37},
                             {300, 0},
                             {130, 2000},
                             {64, 0},
                             {96, 32},
                             {700, 0},
                             {1, 3000},
                             {3, 2000},
                             {8, 4000},
                             {1, 1030}}) {
        const int64_t capacity = pos0 + T + 5;
        auto [qc, qg] = random_pair(T, int64_t{heads} * D, -2, 2);
        auto [kc, kg] = random_pair(capacity, int64_t{kv_heads} * D, -2, 2);
        auto [vc, vg] = random_pair(capacity, int64_t{kv_heads} * D);
        auto [oc, og] = outputs(T, int64_t{heads} * D);
        const float scale = 1.0f / std::sqrt(float(D));
        cpu_.attention({&qc, &kc, &vc, &oc, pos0, heads, kv_heads, D, scale});
        gpu_->attention({&qg, &kg, &vg, &og, pos0, heads, kv_heads, D, scale});
        EXPECT_LT(compare(oc, og), 1e-5)
            << "D " << D << " T " << T << " pos0 " << pos0 << " mma " << mma << " heads " << heads;
        // With the output gate applied by the op (each path's own write: decode, split merge, prefill).
        auto [gc, gg] = random_pair(T, int64_t{heads} * D, -4, 4);
        gpu_->fill(og, NAN);
        cpu_.attention({&qc, &kc, &vc, &oc, pos0, heads, kv_heads, D, scale, &gc});
        gpu_->attention({&qg, &kg, &vg, &og, pos0, heads, kv_heads, D, scale, &gg});
        EXPECT_LT(compare(oc, og), 1e-5)
            << "gated D " << D << " T " << T << " pos0 " << pos0 << " mma " << mma << " heads " << heads;
      }
    }
  }
  gpu_->set_attention_mma(true);
}

// A verify captures T - 1 rows: conv1d_silu, the fused gdn_prepare and gdn_recurrent given a row buffer
// view of fewer rows than T write exactly those rows (as the CPU's) and nothing after them.
TEST_F(CudaOps, CapturesOnlyTheRowsAsked) {
  const int64_t T = 3, Dk = 128, key_dim = 2 * Dk, value_dim = 4 * Dk, C = 2 * key_dim + value_dim, K = 4;
  const int Hk = 2, Hv = 4;
  // The first `rows` rows of c and g are equal, and the rest of g is still NaN (never written).
  auto check = [&](const Tensor& c, const Tensor& g, int64_t rows, const char* what) {
    EXPECT_EQ(compare(c.row_view(0, rows), g.row_view(0, rows)), 0.0) << what;
    const std::vector<float> rest = host(*gpu_, g.row_view(rows, g.rows - rows));
    EXPECT_TRUE(std::all_of(rest.begin(), rest.end(), [](float x) { return std::isnan(x); })) << what;
  };
  {
    auto [xc, xg] = random_pair(T, C);
    auto [wc, wg] = random_pair(C, K);
    auto [sc, sg] = random_pair(K - 1, C);
    auto [oc, og] = outputs(T, C);
    auto [rc, rg] = outputs(T, (K - 1) * C);
    Tensor rc2 = rc.row_view(0, T - 1), rg2 = rg.row_view(0, T - 1);
    cpu_.conv1d_silu(xc, wc, sc, oc, &rc2);
    gpu_->conv1d_silu(xg, wg, sg, og, &rg2);
    check(rc, rg, T - 1, "conv1d_silu");
  }
  {
    auto [xc, xg] = random_pair(T, C, -2, 2);
    auto [wc, wg] = random_pair(C, K);
    auto [sc, sg] = random_pair(K - 1, C);
    auto [ac, ag] = random_pair(T, Hv, -3, 3);
    auto [bc, bg] = random_pair(T, Hv, -3, 3);
    auto [lc, lg] = random_pair(1, Hv);
    auto [dc, dg] = random_pair(1, Hv);
    auto [qc, qg] = outputs(T, key_dim);
    auto [kc, kg] = outputs(T, key_dim);
    auto [vc, vg] = outputs(T, value_dim);
    auto [gc, gg] = outputs(T, Hv);
    auto [ec, eg] = outputs(T, Hv);
    auto [rc, rg] = outputs(T, (K - 1) * C);
    Tensor rc2 = rc.row_view(0, T - 1), rg2 = rg.row_view(0, T - 1);
    cpu_.gdn_prepare(
        {&xc, &wc, &sc, &rc2, &ac, &bc, &lc, &dc, &qc, &kc, &vc, &gc, &ec, static_cast<int>(Dk)});
    gpu_->gdn_prepare(
        {&xg, &wg, &sg, &rg2, &ag, &bg, &lg, &dg, &qg, &kg, &vg, &gg, &eg, static_cast<int>(Dk)});
    check(rc, rg, T - 1, "gdn_prepare");
  }
  {
    const int D = static_cast<int>(Dk);
    const GdnInputs in = gdn_inputs(T, Hk, Hv, D, D);
    auto [sc, sg] = random_pair(Hv, Dk * Dk, -0.5f, 0.5f);
    auto [oc, og] = outputs(T, int64_t{Hv} * Dk);
    auto [rc, rg] = outputs(T, sc.numel());
    Tensor rc2 = rc.row_view(0, T - 1), rg2 = rg.row_view(0, T - 1);
    cpu_.gdn_recurrent({&in.qc, &in.kc, &in.vc, &in.gc, &in.bc, &sc, &oc, &rc2, Hk, Hv, D, D});
    gpu_->gdn_recurrent({&in.qg, &in.kg, &in.vg, &in.gg, &in.bg, &sg, &og, &rg2, Hk, Hv, D, D});
    EXPECT_LT(compare(rc.row_view(0, T - 1), rg.row_view(0, T - 1)), 1e-5);
    const std::vector<float> rest = host(*gpu_, rg.row_view(T - 1, 1));
    EXPECT_TRUE(std::all_of(rest.begin(), rest.end(), [](float x) { return std::isnan(x); }));
    EXPECT_LT(compare(sc, sg), 1e-5);
  }
}

// copy_blocks: 70 blocks (two launches) of mixed sizes, aligned ones (float4 copies) and a batch with an
// odd offset (float copies); nothing outside the blocks written.
TEST_F(CudaOps, CopyBlocks) {
  for (int64_t skew : {0, 1}) {
    std::vector<int64_t> sizes;
    for (int i = 0; i < 70; ++i) sizes.push_back(i % 7 == 0 ? 0 : 4 * (1 + (i * 37) % 300));
    sizes[5] = 1 << 20;
    int64_t total = skew;
    for (int64_t n : sizes) total += n + 4;
    const std::vector<float> values = random(static_cast<size_t>(total));
    const Tensor src = gpu_->upload(values, 1, total);
    Tensor dst = gpu_->alloc(1, total);
    gpu_->fill(dst, NAN);
    std::vector<BlockCopy> blocks;
    std::vector<float> expected(static_cast<size_t>(total), NAN);
    int64_t at = skew;
    for (int64_t n : sizes) {
      const int64_t to = total - at - n - 4 + skew;  // destinations in reverse order
      blocks.push_back({src.data + at, dst.data + to, n});
      std::copy_n(values.begin() + at, n, expected.begin() + to);
      at += n + 4;
    }
    gpu_->copy_blocks(blocks);
    const std::vector<float> got = host(*gpu_, dst);
    int64_t wrong = 0;
    for (size_t i = 0; i < got.size(); ++i)
      wrong += !(got[i] == expected[i] || (std::isnan(got[i]) && std::isnan(expected[i])));
    EXPECT_EQ(wrong, 0) << "skew " << skew;
  }
}

TEST_F(CudaOps, GdnRecurrentAndChunked) {
  // gdn_chunked in chunks of 64 (here from 64 rows; 2,049 rows take two windows, the second of one row) and
  // token by token.
  for (bool chunks : {true, false}) {
    gpu_->set_gdn_chunks(chunks, 64);
    for (auto [Hk, Hv, Dk, Dv] : {std::tuple{2, 4, 128, 128}, std::tuple{16, 32, 128, 128},
                                  std::tuple{1, 3, 64, 96}, std::tuple{2, 4, 128, 64}}) {
      for (int64_t T : {1, 3, 8, 64, 100, 1000, 2049}) {
        const GdnInputs in = gdn_inputs(T, Hk, Hv, Dk, Dv);
        for (bool chunked : {false, true}) {
          auto [sc, sg] = random_pair(Hv, int64_t{Dk} * Dv, -0.5f, 0.5f);
          auto [oc, og] = outputs(T, int64_t{Hv} * Dv);
          const bool rows = !chunked && T <= 8;
          Tensor rc, rg;
          if (rows) std::tie(rc, rg) = outputs(T, sc.numel());
          GdnArgs ac{&in.qc, &in.kc, &in.vc, &in.gc, &in.bc, &sc, &oc, rows ? &rc : nullptr, Hk, Hv, Dk, Dv};
          GdnArgs ag{&in.qg, &in.kg, &in.vg, &in.gg, &in.bg, &sg, &og, rows ? &rg : nullptr, Hk, Hv, Dk, Dv};
          if (chunked) {
            cpu_.gdn_chunked(ac);
            gpu_->gdn_chunked(ag);
          } else {
            cpu_.gdn_recurrent(ac);
            gpu_->gdn_recurrent(ag);
          }
          EXPECT_LT(compare(oc, og), 1e-5)
              << "T " << T << " chunked " << chunked << " Dv " << Dv << " chunks " << chunks;
          EXPECT_LT(compare(sc, sg), 1e-5) << "T " << T << " chunked " << chunked << " chunks " << chunks;
          if (rows) {
            EXPECT_LT(compare(rc, rg), 1e-5) << "T " << T;
          }
        }
      }
    }
  }
  gpu_->set_gdn_chunks(true);
}

}  // namespace
}  // namespace mtplx
