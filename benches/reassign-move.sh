#!/usr/bin/env bash
# Moving a big partition (issue 14): etcd and two brokers on this machine
# (deploy/local-cluster.sh, release build). A one-partition topic `move` (replication factor 1)
# is filled with MOVE_MIB MiB by the load generator (backlog mode, acks=1), then moved to the
# other broker with `sluice topic reassign --wait`, which is timed. All along, a second load
# generator produces FIXED_RATE msg/s of 1 KiB with acks=all to a topic `live` (replication
# factor 2, both brokers) and prints a progress line every second; the script reports that
# producer's publish p99 over the seconds before the move and over the seconds of the move.
# One case per value of THROTTLES (bytes per second per broker; 0 = unthrottled), each on a fresh
# cluster. Prints one markdown table row per case and keeps every log.
#
#   benches/reassign-move.sh
#
# Environment: MOVE_MIB (5120), THROTTLES ("0 104857600"), FIXED_RATE (5000), BEFORE_S (20: seconds
# of the live producer measured before the move), THROTTLE_FLAG
# (--reassignment-throttle-bytes-per-second), LOCAL_CLUSTER_PORT_BASE (19300), REPORT_DIR
# (target/bench-move/<UTC time>), CARGO_TARGET_DIR (target).
set -euo pipefail
cd "$(dirname "$0")/.."

MOVE_MIB="${MOVE_MIB:-5120}"
THROTTLES="${THROTTLES:-0 104857600}"
FIXED_RATE="${FIXED_RATE:-5000}"
BEFORE_S="${BEFORE_S:-20}"
THROTTLE_FLAG="${THROTTLE_FLAG:---reassignment-throttle-bytes-per-second}"
PORT_BASE="${LOCAL_CLUSTER_PORT_BASE:-19300}"
REPORT_DIR="${REPORT_DIR:-target/bench-move/$(date -u +%Y%m%dT%H%M%SZ)}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
SLUICE="$TARGET_DIR/release/sluice"
LOADGEN="$TARGET_DIR/release/sluice-loadgen"
BOOTSTRAP="127.0.0.1:$((PORT_BASE + 1))"
# Longest the move may take, seconds (the reassign CLI gives up after it).
MOVE_TIMEOUT_S=3600
# Longest the live producer runs; it is stopped once the move is done.
LIVE_MAX_S=7200

export LOCAL_CLUSTER_PORT_BASE="$PORT_BASE"
export LOCAL_CLUSTER_NAME="move-$$"
export LOCAL_CLUSTER_BROKERS=2
export SLUICE_BIN="$SLUICE"

teardown() {
  [ -n "${LIVE_PID:-}" ] && kill "$LIVE_PID" 2>/dev/null || true
  deploy/local-cluster.sh clean >/dev/null 2>&1 || true
}
trap teardown EXIT

# replica_of TOPIC: the broker holding partition 0 of the single-replica TOPIC.
replica_of() {
  "$SLUICE" topic describe "$1" --bootstrap "$BOOTSTRAP" | awk '$1 == "0" { print $4 }'
}

# p99_between FROM TO FILE: the median and the largest of the per-second publish p99s in FILE
# (lines "epoch-seconds<TAB>p99-ms") between epoch seconds FROM and TO, as "median / max".
p99_between() {
  awk -v from="$1" -v to="$2" -F'\t' '$1 >= from && $1 <= to { print $2 }' "$3" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) { print "-"; exit } printf "%.2f / %.2f", v[int((NR + 1) / 2)], v[NR] }'
}

# p99s LOG: the live producer's per-second publish p99 from its timestamped progress lines.
p99s() {
  sed -n 's/^\([0-9]*\)\t.*Pub Latency (ms) avg: *[0-9.]* - 50%: *[0-9.]* - 99%: *\([0-9.]*\).*/\1\t\2/p' "$1"
}

# live_producer LOG: the fixed-rate acks=all producer on `live`, one timestamped progress line
# per second (epoch seconds, then the load generator's line).
live_producer() {
  "$LOADGEN" --bootstrap "$BOOTSTRAP" --workload workloads/1-topic-1-partition-1kb.toml \
    --topic live --partitions-per-topic 2 --producer-rate "$FIXED_RATE" --warmup-s 0 \
    --duration-s "$LIVE_MAX_S" --progress-interval-s 1 --keep-topic 2>&1 |
    while IFS= read -r line; do printf '%s\t%s\n' "$(date +%s)" "$line"; done >"$1"
}

run_case() {
  local throttle="$1" dir="$REPORT_DIR/throttle-$1" from to started moved_s size
  mkdir -p "$dir"
  teardown
  if [ "$throttle" -gt 0 ]; then
    export LOCAL_CLUSTER_BROKER_FLAGS="$THROTTLE_FLAG $throttle"
  else
    export LOCAL_CLUSTER_BROKER_FLAGS=""
  fi
  deploy/local-cluster.sh up >"$dir/cluster.log" 2>&1
  "$SLUICE" topic create move --partitions 1 --replication-factor 1 --bootstrap "$BOOTSTRAP" >/dev/null
  "$SLUICE" topic create live --partitions 2 --replication-factor 2 \
    --config min.insync.replicas=2 --bootstrap "$BOOTSTRAP" >/dev/null
  "$LOADGEN" --bootstrap "$BOOTSTRAP" --workload workloads/max-rate.toml --topic move \
    --partitions-per-topic 1 --acks 1 --backlog-bytes "$((MOVE_MIB << 20))" --keep-topic \
    --quiet >"$dir/fill.log" 2>&1
  from=$(replica_of move)
  to=$((3 - from))
  size=$(du -sb "target/local-cluster/broker-$from/data/move-0" | cut -f1)
  live_producer "$dir/live.log" &
  LIVE_PID=$!
  sleep "$BEFORE_S"
  started=$(date +%s)
  "$SLUICE" topic reassign move --partition 0 --replicas "$to" --wait \
    --timeout-s "$MOVE_TIMEOUT_S" --bootstrap "$BOOTSTRAP" >"$dir/move.log" 2>&1
  moved_s=$(($(date +%s) - started))
  sleep 2
  kill "$LIVE_PID" 2>/dev/null || true
  pkill -f "sluice-loadgen --bootstrap $BOOTSTRAP" 2>/dev/null || true
  wait "$LIVE_PID" 2>/dev/null || true
  LIVE_PID=""
  p99s "$dir/live.log" >"$dir/live.p99"
  printf '| %s | %s | %.2f GB | %s s | %.0f MB/s | %s ms | %s ms |\n' \
    "$throttle" "$from -> $to" "$(echo "$size / 1000000000" | bc -l)" "$moved_s" \
    "$(echo "$size / 1000000 / ($moved_s + 0.001)" | bc -l)" \
    "$(p99_between "$((started - BEFORE_S + 3))" "$started" "$dir/live.p99")" \
    "$(p99_between "$started" "$((started + moved_s))" "$dir/live.p99")"
}

mkdir -p "$REPORT_DIR"
echo "| throttle (B/s) | move | partition on disk | move time | move rate | live publish p99 before (median / max of 1-s windows) | during |"
echo "|---|---|---|---|---|---|---|"
for throttle in $THROTTLES; do
  run_case "$throttle"
done
echo "logs: $REPORT_DIR"
