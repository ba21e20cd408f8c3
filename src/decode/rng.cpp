#include "decode/rng.h"

#include <cmath>

#include "base/error.h"

namespace mtplx {
namespace {

std::uint64_t splitmix64(std::uint64_t& x) {
  std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

constexpr std::uint64_t rotl(std::uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

}  // namespace

Rng::Rng(std::uint64_t seed) {
  // SplitMix64 never yields four zero words in a row, so the xoshiro state is never all-zero.
  for (auto& word : state_) word = splitmix64(seed);
}

std::uint64_t Rng::next_u64() {
  auto& s = state_;
  const std::uint64_t result = rotl(s[1] * 5, 7) * 9;
  const std::uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

float Rng::uniform() {
  return static_cast<float>(next_u64() >> 40) * 0x1.0p-24f;
}

int Rng::categorical(std::span<const float> probs) {
  // Accumulate in double: with a dense 248k-entry vector a float running sum would drift by ~1e-4.
  double total = 0;
  for (float p : probs) total += p;
  require(std::isfinite(total) && total > 0, "categorical draw from a vector without positive finite mass",
          "Rng::categorical", "pass non-negative finite probabilities with a positive sum");
  const double target = static_cast<double>(uniform()) * total;  // < total because uniform() < 1
  double acc = 0;
  for (std::size_t i = 0; i < probs.size(); ++i) {
    acc += probs[i];
    if (target < acc) return static_cast<int>(i);  // a zero entry cannot pass: acc did not grow
  }
  // Unreachable in exact arithmetic; the same summation order makes acc == total above.
  for (std::size_t i = probs.size(); i-- > 0;)
    if (probs[i] > 0) return static_cast<int>(i);
  return 0;
}

}  // namespace mtplx
