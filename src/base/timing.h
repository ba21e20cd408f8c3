// Wall-clock stopwatch for statistics (tok/s) and timestamps for provenance; benchmarks live in bench/.
#pragma once

#include <chrono>
#include <ctime>
#include <string>

namespace mtplx {

class Stopwatch {
 public:
  Stopwatch() : start_(Clock::now()) {}
  void restart() { start_ = Clock::now(); }
  double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  using Clock = std::chrono::steady_clock;
  Clock::time_point start_;
};

// Local time as ISO 8601 with the UTC offset ("2026-05-04T06:17:00+0100"), for provenance records.
inline std::string iso8601_now() {
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char text[40];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S%z", &local);
  return text;
}

}  // namespace mtplx
