#!/usr/bin/env bash
# Runs every benchmark recorded in benches/RESULTS.md, in one go, with the same-run baselines:
#   benches/run-all.sh [OUT_DIR]        (default target/bench-out; one log per benchmark)
# Needs a quiet machine: anything else running skews the figures. The broker is pinned to core 0
# and the load generator to core 1 (this is a 2-core machine).
# Environment: BENCH_BYTES (storage bench bytes per case, default 8GiB), LOADGEN_DURATION_S
# (default 60), BACKLOG_BYTES (default 5000000000).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/bench-out}
mkdir -p "$out"
loadgen_s=${LOADGEN_DURATION_S:-60}
backlog=${BACKLOG_BYTES:-5000000000}
cargo build --release -p sluice-loadgen -p sluice-broker
loadgen="${CARGO_TARGET_DIR:-target}/release/sluice-loadgen"
log() { echo "== $*" >&2; }

log "machine"; { nproc; uname -r; lscpu | grep -i 'model name'; } > "$out/machine.txt"
log "baselines (fio, iperf3)"; benches/baseline.sh all target/baseline > "$out/baseline.md"
log "storage append/read"
SLUICE_BENCH_BYTES=${BENCH_BYTES:-8GiB} SLUICE_BENCH_DIR=target/baseline \
  cargo bench -p sluice-storage --bench append > "$out/storage.txt" 2>&1
log "net splice vs copy"
taskset -c 0,1 cargo bench -p sluice-net --bench send > "$out/net.txt" 2>&1

run_loadgen() { # name, args...
  local name=$1; shift
  log "loadgen $name"
  "$loadgen" --embedded --shards 1 --broker-cpus 0 --cpus 1 --report "$out/$name.json" \
    --plot "$out/$name.svg" "$@" > "$out/$name.txt" 2>&1 || echo "loadgen $name exited $?" >&2
}
run_loadgen max-rate --workload workloads/max-rate.toml --warmup-s 10 --duration-s "$loadgen_s"
run_loadgen fixed-50k --workload workloads/1-topic-16-partitions-1kb.toml --warmup-s 10 \
  --duration-s "$loadgen_s"
run_loadgen backlog-5gb --workload workloads/backlog-1-topic-100-partitions-1kb.toml \
  --backlog-bytes "$backlog" --duration-s 600
log "done: $out"
