#!/usr/bin/env bash
# Replicated benchmark: etcd and three brokers on this machine (deploy/local-cluster.sh, release
# build) driven by the load generator with 1 KiB messages and acks=all, for replication factor 3
# (min.insync.replicas 2) next to replication factor 1 in the same run, each at maximum rate and
# at a fixed 20,000 msg/s. Prints publish throughput and publish / end-to-end p50, p99 and p99.9
# per case as markdown table rows, keeps each case's JSON report, and tears everything down.
#
#   benches/cluster.sh
#
# Environment: DURATION_S (60) measured seconds per case, WARMUP_S (10), PARTITIONS (16),
# FIXED_RATE (20000) msg/s of the fixed-rate cases, MESSAGE_BYTES (1024), CASES ("3 1":
# replication factors to run), LOCAL_CLUSTER_PORT_BASE and LOCAL_CLUSTER_SHARDS (passed to
# deploy/local-cluster.sh), REPORT_DIR (target/bench-cluster/<UTC time>).
#
# The cluster's state directory (target/local-cluster) is wiped before the run, so brokers start
# from empty data directories; the script refuses to run while a local cluster is up.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

DURATION_S="${DURATION_S:-60}"
WARMUP_S="${WARMUP_S:-10}"
PARTITIONS="${PARTITIONS:-16}"
FIXED_RATE="${FIXED_RATE:-20000}"
MESSAGE_BYTES="${MESSAGE_BYTES:-1024}"
CASES="${CASES:-3 1}"
PORT_BASE="${LOCAL_CLUSTER_PORT_BASE:-19100}"
REPORT_DIR="${REPORT_DIR:-target/bench-cluster/$(date -u +%Y%m%dT%H%M%SZ)}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
SLUICE="$TARGET_DIR/release/sluice"
LOADGEN="$TARGET_DIR/release/sluice-loadgen"
# deploy/local-cluster.sh puts broker 1's native port at LOCAL_CLUSTER_PORT_BASE + 10.
BOOTSTRAP="127.0.0.1:$((PORT_BASE + 10))"
# Longest the consumers may take to drain after the producers stop, seconds.
DRAIN_TIMEOUT_S=120

export LOCAL_CLUSTER_PORT_BASE="$PORT_BASE"
export LOCAL_CLUSTER_NAME="bench-$$"
export SLUICE_BIN="$SLUICE"

cluster_running() {
  local pid_file
  for pid_file in target/local-cluster/broker-*/broker.pid target/local-cluster/etcd/etcd.pid; do
    [ -f "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null && return 0
  done
  return 1
}

teardown() {
  deploy/local-cluster.sh down >/dev/null 2>&1 || true
}

# run_case RF RATE LABEL WORKLOAD: one load generator run on a fresh topic; prints one row.
run_case() {
  local rf="$1" rate="$2" label="$3" workload="$4" topic report rc configs=()
  topic="bench-rf$rf-$label-$$"
  report="$REPORT_DIR/rf$rf-$label.json"
  [ "$rf" -gt 1 ] && configs=(--config min.insync.replicas=2)
  "$SLUICE" topic create "$topic" --partitions "$PARTITIONS" --replication-factor "$rf" \
    "${configs[@]}" --bootstrap "$BOOTSTRAP" >/dev/null
  rc=0
  "$LOADGEN" --bootstrap "$BOOTSTRAP" --workload "$workload" --topic "$topic" \
    --partitions "$PARTITIONS" --message-size "$MESSAGE_BYTES" --producer-rate "$rate" \
    --acks all --warmup-s "$WARMUP_S" --duration-s "$DURATION_S" \
    --drain-timeout-s "$DRAIN_TIMEOUT_S" --report "$report" --quiet \
    >"$REPORT_DIR/rf$rf-$label.log" 2>&1 || rc=$?
  "$SLUICE" topic delete "$topic" --bootstrap "$BOOTSTRAP" >/dev/null 2>&1 || true
  if [ ! -s "$report" ]; then
    echo "| $rf | $label | load generator failed (exit $rc), see $REPORT_DIR/rf$rf-$label.log | | | | | |"
    return
  fi
  jq -r --arg rf "$rf" --arg rate "$label" --arg rc "$rc" '
    def ms: . * 1000 | round / 1000;
    .aggregate as $a
    | "| \($rf) | \($rate) | \($a.publish_rate_msg_s | round) | \($a.publish_rate_mb_s * 10 | round / 10) | "
      + "\($a.publish_latency.p50_ms | ms) / \($a.publish_latency.p99_ms | ms) / \($a.publish_latency.p999_ms | ms) | "
      + "\($a.end_to_end_latency.p50_ms | ms) / \($a.end_to_end_latency.p99_ms | ms) / \($a.end_to_end_latency.p999_ms | ms) | "
      + "\(.counts.failed) | \(if .correctness.passed then "yes" else "NO: " + .correctness.message end) (exit \($rc)) |"
  ' "$report" || echo "| $rf | $label | unreadable report $report | | | | | |"
}

main() {
  ensure_apt jq
  ensure_build_tools
  if cluster_running; then
    echo "a local cluster is running (target/local-cluster); stop it with deploy/local-cluster.sh down" >&2
    exit 1
  fi
  echo "building release binaries (cargo build --release -p sluice-broker -p sluice-loadgen)" >&2
  cargo build --release -p sluice-broker -p sluice-loadgen >&2
  mkdir -p "$REPORT_DIR"
  deploy/local-cluster.sh clean >/dev/null 2>&1 || true
  trap teardown EXIT
  deploy/local-cluster.sh up >"$REPORT_DIR/cluster-up.log" 2>&1 || {
    cat "$REPORT_DIR/cluster-up.log" >&2
    exit 1
  }
  echo "Cluster: etcd + 3 brokers (deploy/local-cluster.sh), $(nproc) cores, $(uname -r)"
  echo "Each case: $PARTITIONS partitions, $MESSAGE_BYTES-byte messages, acks=all, ${WARMUP_S} s warmup, ${DURATION_S} s measured; reports in $REPORT_DIR"
  echo
  echo "| RF | rate | publish msg/s | publish MB/s | publish ms p50 / p99 / p99.9 | end-to-end ms p50 / p99 / p99.9 | failed sends | consumed every ack |"
  echo "|---|---|---|---|---|---|---|---|"
  local rf
  for rf in $CASES; do
    run_case "$rf" 0 max workloads/max-rate.toml
    run_case "$rf" "$FIXED_RATE" "$FIXED_RATE" workloads/1-topic-16-partitions-1kb.toml
  done
}

main "$@"
