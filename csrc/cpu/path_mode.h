// The switches of CPU paths that tests and benchmarks force on or off (the
// sparse forward, the sign rule's fast tile, by rows, the filter gradient
// by matmuls): by their thresholds (auto), always, or never.
#pragma once
#include <c10/util/Exception.h>

#include <atomic>
#include <string>

namespace adder_det {

enum PathMode : int { kModeAuto = 0, kModeAlways, kModeNever };
inline const char* const kModeNames[] = {"auto", "always", "never"};

// Sets `mode` to the one called `name` (an error naming `setter` if none
// is); returns the previous one's name.
inline std::string exchange_mode(std::atomic<int>& mode,
                                 const std::string& name,
                                 const char* setter) {
  for (int i = kModeAuto; i <= kModeNever; ++i)
    if (name == kModeNames[i]) return kModeNames[mode.exchange(i)];
  TORCH_CHECK(false, setter, ": '", name,
              "' is not one of auto, always, never");
  return {};
}

}  // namespace adder_det
