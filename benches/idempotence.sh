#!/usr/bin/env bash
# Idempotence on vs off (issue 11), native driver, one shard: broker on core 0, load generator on
# core 1, the same embedded broker build, alternating so drift hits both modes alike:
#   benches/idempotence.sh [OUT_DIR]      (default target/bench-idempotence; one log per run)
# For each workload (max rate, fixed 50k msg/s): idempotent, --no-idempotence, twice. Starts
# with the same-run loopback baseline (iperf3). Needs a quiet machine.
# Environment: DURATION_S (default 30), WARMUP_S (default 5), PAIRS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/bench-idempotence}
mkdir -p "$out"
duration=${DURATION_S:-30}
warmup=${WARMUP_S:-5}
pairs=${PAIRS:-2}
loadgen="${CARGO_TARGET_DIR:-target}/release/sluice-loadgen"
[ -x "$loadgen" ] || cargo build --release -p sluice-loadgen
log() { echo "== $*" >&2; }

log "baseline"
benches/baseline.sh net > "$out/baseline-net.md"
run() { # name args...
  local name=$1; shift
  log "$name"
  "$loadgen" --embedded --shards 1 --broker-cpus 0 --cpus 1 --quiet \
    --warmup-s "$warmup" --duration-s "$duration" --report "$out/$name.json" "$@" \
    > "$out/$name.txt" 2>&1 || echo "$name exited $?" >&2
}
for workload in max-rate 1-topic-16-partitions-1kb; do
  for pair in $(seq "$pairs"); do
    run "$workload-idem-$pair" --workload "workloads/$workload.toml"
    run "$workload-noidem-$pair" --workload "workloads/$workload.toml" --no-idempotence
  done
done
log "done: $out"
