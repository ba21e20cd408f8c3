// Seeded, reproducible random numbers for sampling and speculative acceptance.
//
// xoshiro256** (Blackman & Vigna, https://prng.di.unimi.it/) seeded through SplitMix64, as the authors
// recommend. Only fixed-width integer arithmetic is used, so a seed gives the same stream on every platform
// and compiler (std::mt19937 would too, but std::uniform_real_distribution and std::discrete_distribution are
// implementation-defined, which is why the float and categorical draws are written out here).
#pragma once

#include <array>
#include <cstdint>
#include <span>

namespace mtplx {

class Rng {
 public:
  explicit Rng(std::uint64_t seed = 0);

  // Next raw 64-bit output of xoshiro256**.
  std::uint64_t next_u64();

  // Uniform float in [0, 1) on a grid of 2^-24: the top 24 bits of one output, so every value is exactly
  // representable in fp32 and 1.0f is never returned.
  float uniform();

  // Index i drawn with probability probs[i] / sum(probs), using exactly one uniform(). Entries must be finite
  // and >= 0 with a positive sum (need not be normalised); a zero entry is never returned.
  int categorical(std::span<const float> probs);  // probs: [n]

 private:
  std::array<std::uint64_t, 4> state_;
};

}  // namespace mtplx
