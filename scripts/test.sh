#!/usr/bin/env bash
# Builds mtplx from this checkout and runs every test: a Release build, then an ASan/UBSan build.
# Usage: scripts/test.sh   (after scripts/install-deps.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$jobs"
npm ci --prefix tools/oracles --no-audit --no-fund   # Node oracles for the text tests (HF tokenizers, @huggingface/jinja)
ctest --test-dir build --output-on-failure -j "$jobs"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMTPLX_SANITIZE=address,undefined
cmake --build build-asan -j "$jobs"
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -j "$jobs" -LE slow
