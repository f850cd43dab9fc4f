#!/usr/bin/env bash
# The open measurements of issue 6 on the reference CPU class (Intel Xeon with AMX), in one device call.
#
# Here (Node): write the four real-size UNet skeletons (a few MB each; bench/cache/ is gitignored):
#   bash bench/device_xeon.sh export            # needs bench/cache/x4-random (npm run bench builds it)
# On the device machine (no Node there; Python onnxruntime + numpy): carry the folder and time them,
#   run(command="bash bench/device_xeon.sh time", carry=["bench/cache/export"], timeout_s=540)
# which prints one JSON line per measurement (bench/run_exported.py) and copies them to $OUT/xeon.jsonl.
#
# What it answers (README "Performance"): float32 Winograd vs direct convolutions (the Xeon table predates
# Winograd), and the int8 path of stop 10 (per-token scales, guidance pairs, u8s8) with and without int8
# convolutions, against float32 on the same weights (rel. RMS / PSNR of the UNet output). About 5 minutes on
# 2 pinned cores.
set -euo pipefail
X=bench/cache/export
UNET=bench/cache/x4-random/unet

case "${1:-}" in
export)
  for v in "f32-auto --conv-algorithm auto" "f32-direct --conv-algorithm direct" \
    "i8-linear --precision int8 --int8-kernel u8s8 --int8-convolutions no" \
    "i8-convs --precision int8 --int8-kernel u8s8 --int8-convolutions yes"; do
    set -- $v
    name=$1
    shift
    npx tsx bench/export_graph.ts --model "$UNET" --out "$X/$name" --skeleton "$@"
  done
  du -sh "$X"/*
  ;;
time)
  out=${OUT:-/tmp}/xeon.jsonl
  pin=""
  command -v taskset >/dev/null && pin="taskset -c 0,1"
  {
    lscpu | grep -E "Model name|^Flags" | sed 's/^Flags:.*\(amx_int8\).*/flags: amx_int8 present/' || true
    # float32: Winograd (the default) against direct convolutions, 128² (the issue's ≥1.4x row).
    $pin python3 bench/run_exported.py --f32 "$X/f32-direct" --i8 "$X/f32-auto" --b-label float32-winograd \
      --sizes 128 --runs 3
    # int8, Linear layers only (the >= 40 dB configuration) and with int8 convolutions, against Winograd float32.
    $pin python3 bench/run_exported.py --f32 "$X/f32-auto" --i8 "$X/i8-linear" --b-label int8-linear \
      --sizes 64,128 --runs 3
    $pin python3 bench/run_exported.py --f32 "$X/f32-auto" --i8 "$X/i8-convs" --b-label int8-convs \
      --sizes 128 --runs 3
  } 2>&1 | tee "$out"
  ;;
*)
  echo "usage: bash bench/device_xeon.sh export|time" >&2
  exit 2
  ;;
esac
