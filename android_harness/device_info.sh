#!/usr/bin/env bash
# Print what matters for benchmarking an Android phone: model, ABI, each CPU
# core's maximum frequency (to find the big cores for --cpus), governors and
# temperatures.
#
# Usage: android_harness/device_info.sh [SERIAL]
set -euo pipefail
adb_cmd=(adb)
[ $# -ge 1 ] && adb_cmd+=(-s "$1")

if ! command -v adb >/dev/null; then
  echo "adb is not installed: install Android platform-tools and put adb on PATH." >&2
  exit 2
fi
if [ "$("${adb_cmd[@]}" get-state 2>/dev/null)" != "device" ]; then
  echo "No device ready${1:+ with serial $1}; check \`adb devices\` (and USB debugging)." >&2
  exit 2
fi
"${adb_cmd[@]}" shell getprop | grep -E 'ro\.product\.(manufacturer|model|cpu\.abi)\]|ro\.build\.version\.release\]|ro\.soc\.model\]'
"${adb_cmd[@]}" shell 'for d in /sys/devices/system/cpu/cpu[0-9]*; do
  echo "${d##*/} max_khz=$(cat $d/cpufreq/cpuinfo_max_freq 2>/dev/null) governor=$(cat $d/cpufreq/scaling_governor 2>/dev/null)";
done; for z in /sys/class/thermal/thermal_zone*; do
  echo "${z##*/} $(cat $z/type 2>/dev/null) $(cat $z/temp 2>/dev/null)"; done'
echo "Pin benchmarks to the fastest cores with --cpus (the cores with the highest max_khz)."
