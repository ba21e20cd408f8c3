#!/usr/bin/env bash
# GPU checks and benchmark of the CUDA backend in one go, for a machine that has a GPU but no build tools
# or libraries beyond the driver.
#
#   tools/gpu/test.sh pack            here: build the CUDA targets in build-cuda/ and copy the binaries and the
#                                     shared libraries they need (not on the GPU image) to build-cuda/gpu/
#   tools/gpu/test.sh run [--no-bench] there (carry build-cuda/gpu.tar.xz): the CUDA tests (every op vs the CPU
#                                     backend, every fixture vs its reference), then bench_cuda on synthetic
#                                     Qwen3.5-4B checkpoints (mtplx-q8 and mtplx-q4) written to /tmp.
#   tools/gpu/test.sh e2e             there: the default model AR vs MTP end to end (mtplx generate --json,
#                                     one prompt, 256 tokens, depth 0..3: greedy, temp 0.6, and temp 0.6 with
#                                     --host-sampling), one line each.
# Logs go to $OUT when it is set (the device tool brings that folder back), else to build-cuda/gpu/logs.
set -euo pipefail
cd "$(dirname "$0")/../.."
dist=build-cuda/gpu

pack() {
  cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DMTPLX_CUDA=ON \
    -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache >/dev/null
  cmake --build build-cuda --target mtplx mtplx_test_cuda bench_cuda
  rm -rf "$dist" && mkdir -p "$dist/lib"
  cp build-cuda/mtplx build-cuda/bench_cuda build-cuda/tests/mtplx_test_cuda "$dist/"
  strip "$dist/mtplx" "$dist/bench_cuda" "$dist/mtplx_test_cuda"
  # Shared libraries outside glibc/libstdc++ (the GPU image has newer ones of those).
  for lib in $(ldd "$dist/mtplx" "$dist/mtplx_test_cuda" | awk '/=>/ {print $3}' | sort -u); do
    case "$(basename "$lib")" in
      libc.so* | libm.so* | libstdc++.so* | libgcc_s.so* | ld-linux*) ;;
      *) cp -L "$lib" "$dist/lib/" ;;
    esac
  done
  du -sh "$dist"
  # The tree travels to the GPU machine within a size limit: the binaries go as one compressed archive
  # (carry build-cuda/gpu.tar.xz; `tools/gpu/test.sh unpack` there).
  tar -C build-cuda -cJf build-cuda/gpu.tar.xz gpu
  du -sh build-cuda/gpu.tar.xz
}

run() {
  local bench=1
  [[ "${1:-}" == "--no-bench" ]] && bench=0
  local logs="${OUT:-$dist/logs}"
  mkdir -p "$logs"
  export LD_LIBRARY_PATH="$PWD/$dist/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export MTPLX_SOURCE_DIR="$PWD"
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.mem --format=csv | tee "$logs/gpu.txt"
  local status=0
  "$dist/mtplx_test_cuda" >"$logs/test.log" 2>&1 || status=1
  grep -E "^\[cuda (fixture|gemm)|^\[  FAILED|^\[  PASSED|Failure|rror|Expected|Which is|bits " "$logs/test.log" | head -80 || true
  if [[ $bench == 1 ]]; then
    for layout in mtplx-q8 mtplx-q4; do
      "$dist/mtplx" synth --preset qwen3.5-4b --layout "$layout" --out "/tmp/m4-$layout" --threads 0 --force \
        >"$logs/synth-$layout.log" 2>&1 || { tail "$logs/synth-$layout.log"; status=1; }
    done
    "$dist/bench_cuda" --model /tmp/m4-mtplx-q8 --model /tmp/m4-mtplx-q4 2>&1 | tee "$logs/bench.log" || status=1
  fi
  return $status
}

unpack() {
  [[ -d "$dist" ]] || tar -C build-cuda -xJf build-cuda/gpu.tar.xz
}

e2e() {
  local logs="${OUT:-$dist/logs}"
  mkdir -p "$logs"
  export LD_LIBRARY_PATH="$PWD/$dist/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # "0.6h": temperature 0.6 with draws and acceptance on the host (--host-sampling), beside the device's.
  for temp in 0 0.6 0.6h; do
    for depth in 0 1 2 3; do
      local flags=(--temp "${temp%h}")
      [[ $temp == *h ]] && flags+=(--host-sampling)
      "$dist/mtplx" generate --model models/qwen3.5-tiny-mtplx --prompt 'def main():' --max-tokens 256 \
        "${flags[@]}" --mtp-depth "$depth" --json --device cuda --seed 1 >"$logs/e2e.json" 2>&1 || true
      python3 -c "import json,sys; d=json.loads(open(sys.argv[1]).read().splitlines()[-1]); s=d['stats']; \
print('e2e temp', sys.argv[2], 'depth', sys.argv[3], 'tok/s %.1f' % s['decode_tok_s'], 'first ids', d['ids'][:8], \
{k: v for k, v in s.items() if 'accept' in k or 'cycle' in k})" "$logs/e2e.json" "$temp" "$depth" | tee -a "$logs/e2e.txt"
    done
  done
}

case "${1:-}" in
  pack) pack ;;
  run) shift; unpack; run "$@" ;;
  e2e) unpack; e2e ;;
  unpack) unpack ;;
  *) echo "usage: tools/gpu/test.sh pack | run [--no-bench] | e2e" >&2; exit 2 ;;
esac
