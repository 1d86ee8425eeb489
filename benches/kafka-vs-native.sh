#!/usr/bin/env bash
# Kafka port vs native port, and idempotence on vs off, on the same embedded broker build, same
# run (issues 10 and 11):
#   benches/kafka-vs-native.sh [OUT_DIR]      (default target/bench-kafka; one log per run)
# For each workload (max rate, fixed 50k msg/s) it runs, in this order:
#   1 shard:  native driver | native --no-idempotence | Kafka driver (librdkafka on the Kafka
#             port) | Kafka driver --no-idempotence
#   2 shards: native driver (shard-aware: straight to each partition's core) |
#             native --no-shard-aware (everything via the shared port, forwarded between cores)
#             | Kafka driver (the Kafka port forwards the same way)
# With 2 shards the broker is not pinned (the embedded broker pins one shard per CPU, and the load
# generator keeps core 1): compare the 2-shard rows with each other, by throughput, latency and
# broker CPU-seconds per GB, for what a forwarding hop costs. Needs a quiet machine.
# Environment: DURATION_S (default 30), WARMUP_S (default 5), ONLY_SHARDS=2 (the 2-shard rows).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/bench-kafka}
mkdir -p "$out"
duration=${DURATION_S:-30}
warmup=${WARMUP_S:-5}
loadgen="${CARGO_TARGET_DIR:-target}/release/sluice-loadgen"
[ -x "$loadgen" ] || cargo build --release -p sluice-loadgen
log() { echo "== $*" >&2; }

log "baselines"
benches/baseline.sh net > "$out/baseline-net.md"
run() { # name shards args...
  local name=$1 shards=$2; shift 2
  local pin=(--broker-cpus 0)
  [ "$shards" = 1 ] || pin=()
  log "$name"
  "$loadgen" --embedded --shards "$shards" "${pin[@]}" --cpus 1 --quiet \
    --warmup-s "$warmup" --duration-s "$duration" --report "$out/$name.json" "$@" \
    > "$out/$name.txt" 2>&1 || echo "$name exited $?" >&2
}
only=${ONLY_SHARDS:-}
for workload in max-rate 1-topic-16-partitions-1kb; do
  file="workloads/$workload.toml"
  if [ "$only" != 2 ]; then
  run "$workload-1shard-native" 1 --workload "$file"
  run "$workload-1shard-native-noidem" 1 --workload "$file" --no-idempotence
  run "$workload-1shard-kafka" 1 --workload "$file" --driver kafka
  run "$workload-1shard-kafka-noidem" 1 --workload "$file" --driver kafka --no-idempotence
  fi
  run "$workload-2shards-native" 2 --workload "$file"
  run "$workload-2shards-forwarded" 2 --workload "$file" --no-shard-aware
  run "$workload-2shards-kafka" 2 --workload "$file" --driver kafka
done
log "done: $out"
