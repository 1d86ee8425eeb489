#!/usr/bin/env bash
# Compares the ways to make a small O_DIRECT write durable on the disk holding DIR (default
# /tmp): write + fdatasync vs O_DSYNC, into fallocated (unwritten) vs zero-filled (written)
# blocks, 64 KiB writes at 50 MB/s, queue depth 1. ARCHITECTURE.md records why the durable
# mode uses write + fdatasync into zero-filled blocks. Run all variants in one go: the disk of a
# shared VM varies from hour to hour.
set -euo pipefail
dir=${DIR:-/tmp}/sluice-fsync-modes
runtime=${RUNTIME_S:-10}
mkdir -p "$dir"
trap 'rm -rf "$dir"' EXIT
common=(--rw=write --ioengine=io_uring --direct=1 --bs=64k --iodepth=1 --rate=50m
        --runtime="$runtime" --time_based --size=1G --output-format=json)
dd if=/dev/zero of="$dir/zeroed" bs=1M count=1024 oflag=direct status=none
summary() {
  python3 -c '
import json, sys
job = json.load(sys.stdin)["jobs"][0]
def pct(lat):
    p = lat.get("percentile", {})
    return "p50 %.2f p99 %.2f p99.9 %.2f ms" % tuple(p.get(k, 0) / 1e6 for k in ("50.000000", "99.000000", "99.900000"))
sync = job["sync"]["lat_ns"]
print("%-28s %6.1f MB/s  write %s  fdatasync %s" % (sys.argv[1], job["write"]["bw_bytes"] / 1e6,
      pct(job["write"]["clat_ns"]), pct(sync) if sync.get("percentile") else "-"))' "$1"
}
rm -f "$dir/fallocated"
fio --name=a --filename="$dir/fallocated" --fallocate=native "${common[@]}" --fdatasync=1 | summary fallocated+fdatasync
rm -f "$dir/fallocated"
fio --name=b --filename="$dir/fallocated" --fallocate=native "${common[@]}" --sync=dsync | summary fallocated+O_DSYNC
fio --name=c --filename="$dir/zeroed" --fallocate=none "${common[@]}" --fdatasync=1 | summary zeroed+fdatasync
fio --name=d --filename="$dir/zeroed" --fallocate=none "${common[@]}" --sync=dsync | summary zeroed+O_DSYNC
fio --name=e --filename="$dir/zeroed" --fallocate=none "${common[@]}" | summary zeroed,no-sync
