#!/usr/bin/env bash
# The open measurements of issue 6 on the reference CPU class (Intel Xeon with AMX), in one device call.
#
# Here (Node): write the real-size UNet and VAE-decode skeletons (a few MB each; bench/cache/ is gitignored), and
# copy diffusers 0.23.0's src for the PyTorch side (a folder ignored through .git/info/exclude):
#   bash bench/device_xeon.sh export            # needs bench/cache/x4-random (npm run bench builds it)
#   cp -r /tmp/diffusers-0.23/src .dsrc/         # optional: without it the PyTorch rows are skipped
# On the device machine (no Node there; Python onnxruntime + numpy + torch): carry both and time them,
#   run(command="bash bench/device_xeon.sh time", carry=["bench/cache/export", ".dsrc"], timeout_s=540)
# which prints one JSON line per measurement (bench/run_exported.py, bench/torch_side_by_side.py) and copies them
# to $OUT/xeon.jsonl.
#
# What it answers (README "Performance"): float32 Winograd (the default) vs direct convolutions for the UNet and
# the VAE decode; the int8 paths (per-token scales with guidance pairs, and the experimental guidance halves fused
# into DynamicQuantizeMatMul; u8s8) with and without int8 convolutions,
# against float32 on the same weights (rel. RMS / PSNR of the UNet output); PyTorch float32 + diffusers on the same
# two cores. About 8 minutes on 2 pinned cores (first call of stop 12: 6.8 minutes with fewer int8 graphs).
set -euo pipefail
X=bench/cache/export
UNET=bench/cache/x4-random/unet
VAE=bench/cache/x4-random/vae

out=${OUT:-/tmp}/xeon.jsonl
pin=""
command -v taskset >/dev/null && pin="taskset -c 0,1"
torch() { # component size runs
  [ -d .dsrc/src ] || return 0
  DIFFUSERS_SRC=$PWD/.dsrc/src RUNS=$3 THREADS=2 OPENBLAS_NUM_THREADS=1 $pin python3 bench/torch_side_by_side.py "$1" "$2"
}

case "${1:-}" in
export)
  for v in "f32-auto --conv-algorithm auto" "f32-direct --conv-algorithm direct" \
    "i8-linear --precision int8 --int8-kernel u8s8 --int8-convolutions no" \
    "i8-convs --precision int8 --int8-kernel u8s8 --int8-convolutions yes" \
    "i8h-linear --precision int8 --int8-kernel u8s8 --int8-convolutions no --int8-activations half" \
    "i8h-convs --precision int8 --int8-kernel u8s8 --int8-convolutions yes --int8-activations half"; do
    set -- $v
    name=$1
    shift
    npx tsx bench/export_graph.ts --model "$UNET" --out "$X/$name" --skeleton "$@"
  done
  for v in auto direct; do
    npx tsx bench/export_graph.ts --component vae --model "$VAE" --out "$X/vae-$v" --skeleton --conv-algorithm $v
  done
  du -sh "$X"/*
  ;;
pair)
  # The shorter side-by-side at 128² only (about 5 minutes): PyTorch and sdx4's default float32 and int8 graphs
  # on the same machine, for a session with little device time left.
  {
    set +e
    lscpu | grep -E "Model name" || true
    torch unet 128 3
    $pin python3 bench/run_exported.py --f32 "$X/f32-auto" --variant "int8-linear=$X/i8-linear" \
      --variant "int8-convs=$X/i8-convs" --variant "int8-half-linear=$X/i8h-linear" \
      --variant "int8-half-convs=$X/i8h-convs" --sizes 128 --runs 3
    torch vae 128 2
    $pin python3 bench/run_exported.py --f32 "$X/vae-auto" --sizes 128 --runs 2
  } 2>&1 | tee "$out"
  ;;
time)
  {
    set +e # one failed measurement does not stop the others
    lscpu | grep -E "Model name|^CPU\(s\)" || true
    grep -o -w -E "amx_int8|amx_bf16|avx512_vnni|avx512f" /proc/cpuinfo | sort -u | tr "\n" " " || true
    echo
    # UNet, batch 2: float32 Winograd (the default) against direct convolutions, int8 Linear-only (the >= 40 dB
    # configuration) and int8 with convolutions, each compared with the Winograd float32 output.
    $pin python3 bench/run_exported.py --f32 "$X/f32-auto" --variant "float32-direct=$X/f32-direct" \
      --variant "int8-linear=$X/i8-linear" --variant "int8-convs=$X/i8-convs" \
      --variant "int8-half-linear=$X/i8h-linear" --variant "int8-half-convs=$X/i8h-convs" --sizes 64,128 --runs 3 \
      --profile 128 --profile-only float32
    torch unet 128 3
    # VAE decode, batch 1: Winograd (the default below 128² latents) against direct convolutions.
    $pin python3 bench/run_exported.py --f32 "$X/vae-auto" --variant "float32-direct=$X/vae-direct" \
      --sizes 64,128 --runs 3
    torch vae 128 2
    torch unet 64 3
    torch vae 64 3
  } 2>&1 | tee "$out"
  ;;
*)
  echo "usage: bash bench/device_xeon.sh export|time|pair" >&2
  exit 2
  ;;
esac
