#!/usr/bin/env bash
# Same-run baselines for benches/RESULTS.md: sequential writes with fio (buffered and O_DIRECT,
# at each batch size the storage benchmark uses) and loopback TCP with iperf3 (server pinned to
# core 0, client to core 1, as the broker and the load generator are).
#   benches/baseline.sh [disk|net|all] [DIR]     (DIR: where fio writes; default ./target/baseline)
# Prints one markdown table row per measurement.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
what=${1:-all}
dir=${2:-target/baseline}
size=${BASELINE_BYTES:-8G}
ensure_apt fio iperf3 jq
mkdir -p "$dir"

fio_row() { # mode bs direct iodepth
  local out
  out=$(fio --name="$1-$2" --filename="$dir/fio.dat" --rw=write --bs="$2" --size="$size" \
    --direct="$3" --ioengine=io_uring --iodepth="$4" --end_fsync=1 --output-format=json)
  rm -f "$dir/fio.dat"
  local bw
  bw=$(echo "$out" | jq '.jobs[0].write.bw_bytes / 1e9')
  printf '| fio %s write, bs=%s, iodepth=%s, %s incl. final fsync | %.2f GB/s |\n' "$1" "$2" "$4" "$size" "$bw"
}

if [ "$what" = disk ] || [ "$what" = all ]; then
  for bs in 16k 256k 1m; do
    fio_row buffered "$bs" 0 1
    fio_row O_DIRECT "$bs" 1 1
    fio_row O_DIRECT "$bs" 1 4
  done
fi

if [ "$what" = net ] || [ "$what" = all ]; then
  port=$((20000 + RANDOM % 20000))
  iperf3 -s -1 -A 0 -p "$port" >/dev/null 2>&1 &
  server=$!
  sleep 0.5
  bps=$(iperf3 -c 127.0.0.1 -p "$port" -A 1 -t 10 -J | jq '.end.sum_received.bits_per_second / 8e9')
  wait "$server" || true
  printf '| iperf3 loopback, 1 stream, server core 0, client core 1, 10 s | %.2f GB/s |\n' "$bps"
fi
