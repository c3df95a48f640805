#!/usr/bin/env bash
# Benchmark a search run's models on an Android phone with benchmark_model.
#
# Usage: android_harness/bench_phone.sh RUN_DIR BENCHMARK_MODEL [SERIAL] [-- mpath-tf bench options]
#   RUN_DIR          a directory written by `mpath-tf search`
#   BENCHMARK_MODEL  the benchmark_model binary for the phone's ABI (see README.md)
#   SERIAL           the phone's serial from `adb devices` (optional with one phone)
# Example:
#   android_harness/bench_phone.sh runs/mnist-mpath-4-500-seed0 ./android_aarch64_benchmark_model \
#       R58M123 -- --cpus 4,5,6,7 --threads 1
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,10p' "$0" >&2
  exit 2
fi
run=$1 binary=$2
shift 2
target=adb
if [ $# -ge 1 ] && [ "$1" != "--" ]; then
  target="adb:$1"
  shift
fi
[ "${1:-}" = "--" ] && shift
if [ ! -f "$binary" ]; then
  echo "benchmark_model binary '$binary' not found; see android_harness/README.md to get one." >&2
  exit 2
fi
serial=${target#adb}; serial=${serial#:}
"$(dirname "$0")/device_info.sh" $serial
exec mpath-tf bench "$run" --target "$target" --benchmark-model "$binary" "$@"
