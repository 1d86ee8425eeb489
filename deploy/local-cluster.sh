#!/usr/bin/env bash
# A three-broker Sluice cluster on this machine, for development and demos.
#
#   deploy/local-cluster.sh up       starts etcd (Debian's etcd-server, via scripts/etcd.sh) and
#                                    brokers 1..N on 127.0.0.1, each with its own data directory
#   deploy/local-cluster.sh down     stops the brokers (SIGTERM, then SIGKILL) and etcd
#   deploy/local-cluster.sh status   shows etcd, each broker's process, and the cluster as etcd
#                                    records it (registered brokers and the controller)
#   deploy/local-cluster.sh clean    down, then deletes everything under the state directory
#
# Everything lives under target/local-cluster/: etcd/ (data, log, pid, endpoint) and
# broker-N/ (data/, broker.log, broker.pid). Ports: broker N's native port is
# LOCAL_CLUSTER_PORT_BASE + N, its admin port LOCAL_CLUSTER_PORT_BASE + 100 + N (N <= 99, so
# the two ranges never meet); each shard's own port is picked by the OS, so no number of shards
# can overlap another broker's port. Clients learn the shard ports from metadata; each broker
# prints its ports at the top of its start in broker.log.
#
# Environment: LOCAL_CLUSTER_BROKERS (3), LOCAL_CLUSTER_SHARDS (1 per broker),
# LOCAL_CLUSTER_PORT_BASE (19100), LOCAL_CLUSTER_NAME (local), SLUICE_BIN
# (target/release/sluice; built with cargo when missing), LOCAL_CLUSTER_WAIT_S (30),
# LOCAL_CLUSTER_BROKER_FLAGS (extra `sluice broker` flags for every broker, space-separated).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

BROKERS="${LOCAL_CLUSTER_BROKERS:-3}"
SHARDS="${LOCAL_CLUSTER_SHARDS:-1}"
PORT_BASE="${LOCAL_CLUSTER_PORT_BASE:-19100}"
CLUSTER="${LOCAL_CLUSTER_NAME:-local}"
SLUICE_BIN="${SLUICE_BIN:-target/release/sluice}"
WAIT_S="${LOCAL_CLUSTER_WAIT_S:-30}"
read -r -a EXTRA_FLAGS <<<"${LOCAL_CLUSTER_BROKER_FLAGS:-}"
STATE="$PWD/target/local-cluster"
# How long `down` waits for a broker's graceful shutdown before SIGKILL, in tenths of a second.
STOP_WAIT_TENTHS=300

usage() {
  sed -n '2,20p' "$0" >&2
  exit 2
}

# Native ports take PORT_BASE+1..PORT_BASE+99 and admin ports PORT_BASE+101..PORT_BASE+199.
BROKERS_MAX=99
native_port() { echo $((PORT_BASE + $1)); }
admin_port() { echo $((PORT_BASE + 100 + $1)); }
kafka_port() { echo $((PORT_BASE + 200 + $1)); }

port_is_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pid_alive() {
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

etcdctl_local() {
  ETCDCTL_API=3 etcdctl --endpoints="$(cat "$STATE/etcd/endpoint")" --dial-timeout=2s "$@"
}

ensure_binary() {
  if [ ! -x "$SLUICE_BIN" ]; then
    echo "building $SLUICE_BIN (cargo build --release -p sluice-broker)" >&2
    ensure_build_tools
    cargo build --release -p sluice-broker
  fi
}

# wait_registered N: waits until broker N's registration is in etcd, or its process exits.
wait_registered() {
  local id="$1" dir="$STATE/broker-$1" tenths=0
  while [ "$tenths" -lt "$((WAIT_S * 10))" ]; do
    if etcdctl_local get "/sluice/$CLUSTER/brokers/$id" --print-value-only 2>/dev/null | grep -q .; then
      return 0
    fi
    if ! pid_alive "$dir/broker.pid"; then
      echo "broker $id exited; last lines of $dir/broker.log:" >&2
      tail -n 20 "$dir/broker.log" >&2
      return 1
    fi
    sleep 0.1
    tenths=$((tenths + 1))
  done
  echo "broker $id did not register within $WAIT_S s; see $dir/broker.log" >&2
  return 1
}

start_broker() {
  local id="$1" endpoint="$2" dir="$STATE/broker-$1" native admin kafka
  native=$(native_port "$id")
  admin=$(admin_port "$id")
  kafka=$(kafka_port "$id")
  if pid_alive "$dir/broker.pid"; then
    echo "broker $id already running (pid $(cat "$dir/broker.pid"))"
    return 0
  fi
  for port in "$native" "$admin" "$kafka"; do
    port_is_free "$port" || { echo "port $port is in use; set LOCAL_CLUSTER_PORT_BASE" >&2; return 1; }
  done
  mkdir -p "$dir/data"
  nohup "$SLUICE_BIN" broker \
    --etcd "$endpoint" --cluster "$CLUSTER" --node-id "$id" \
    --native-addr "127.0.0.1:$native" --admin-addr "127.0.0.1:$admin" \
    --kafka-addr "127.0.0.1:$kafka" \
    --data-dir "$dir/data" --shards "$SHARDS" --pin false ${EXTRA_FLAGS[@]+"${EXTRA_FLAGS[@]}"} \
    >>"$dir/broker.log" 2>&1 </dev/null &
  echo $! >"$dir/broker.pid"
  wait_registered "$id"
  echo "broker $id: native 127.0.0.1:$native, kafka 127.0.0.1:$kafka, admin http://127.0.0.1:$admin, pid $(cat "$dir/broker.pid")"
}

up() {
  if ! [[ "$BROKERS" =~ ^[0-9]+$ ]] || [ "$BROKERS" -lt 1 ] || [ "$BROKERS" -gt "$BROKERS_MAX" ]; then
    echo "LOCAL_CLUSTER_BROKERS must be a number from 1 to $BROKERS_MAX" >&2
    return 1
  fi
  ensure_binary
  local endpoint
  endpoint=$(scripts/etcd.sh start "$STATE/etcd")
  echo "etcd: $endpoint"
  for id in $(seq 1 "$BROKERS"); do
    start_broker "$id" "$endpoint"
  done
  status
}

stop_broker() {
  local dir="$1" pid tenths=0
  pid_alive "$dir/broker.pid" || { rm -f "$dir/broker.pid"; return 0; }
  pid=$(cat "$dir/broker.pid")
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null && [ "$tenths" -lt "$STOP_WAIT_TENTHS" ]; do
    sleep 0.1
    tenths=$((tenths + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$(basename "$dir") did not stop in time; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/broker.pid"
  echo "stopped $(basename "$dir")"
}

down() {
  local dir
  for dir in "$STATE"/broker-*; do
    [ -d "$dir" ] && stop_broker "$dir"
  done
  scripts/etcd.sh stop "$STATE/etcd"
  echo "stopped etcd"
}

status() {
  local dir id
  if ! scripts/etcd.sh status "$STATE/etcd" >/dev/null 2>&1; then
    echo "etcd: not running"
  else
    echo "etcd: $(cat "$STATE/etcd/endpoint")"
  fi
  for dir in "$STATE"/broker-*; do
    [ -d "$dir" ] || continue
    id="${dir##*-}"
    if pid_alive "$dir/broker.pid"; then
      echo "broker $id: running (pid $(cat "$dir/broker.pid")), log $dir/broker.log"
    else
      echo "broker $id: not running, log $dir/broker.log"
    fi
  done
  scripts/etcd.sh status "$STATE/etcd" >/dev/null 2>&1 || return 0
  echo "registered brokers (etcd /sluice/$CLUSTER/brokers/):"
  etcdctl_local get --prefix "/sluice/$CLUSTER/brokers/" --print-value-only | sed 's/^/  /'
  echo "controller: $(etcdctl_local get "/sluice/$CLUSTER/controller" --print-value-only || true)"
  echo "topics: $(etcdctl_local get --prefix "/sluice/$CLUSTER/topics/" --keys-only | grep -c . || true)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  clean) down; rm -rf "$STATE" ;;
  *) usage ;;
esac
