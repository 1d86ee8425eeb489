#!/usr/bin/env bash
# A throwaway etcd for tests and local clusters, from Debian's etcd-server package (etcd 3.4).
#
#   scripts/etcd.sh install          installs etcd-server and etcd-client (etcdctl) if missing
#   scripts/etcd.sh start DIR        starts one etcd member with its data, log and pid file in DIR
#                                    on free 127.0.0.1 ports; prints the client URL, which is also
#                                    written to DIR/endpoint
#   scripts/etcd.sh stop DIR         stops the etcd started in DIR (SIGTERM, then SIGKILL)
#   scripts/etcd.sh status DIR       exits 0 and prints the endpoint when that etcd answers
#
# Environment: ETCD_START_WAIT_S (default 20) bounds how long `start` waits for etcd to answer.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

ETCD_START_WAIT_S="${ETCD_START_WAIT_S:-20}"
# How many port pairs `start` tries before giving up, in case another process takes a free port
# between the check and etcd's bind.
ETCD_START_ATTEMPTS_MAX=5

usage() {
  sed -n '2,11p' "$0" >&2
  exit 2
}

ensure_etcd() {
  # Installing the package may try to start Debian's own etcd service; where systemd is absent
  # (containers, CI) that step is skipped, and where it is present the service listens on the
  # default ports, which this script never uses.
  if [ ! -x /usr/bin/etcd ] || ! command -v etcdctl >/dev/null 2>&1; then
    ensure_apt etcd-server etcd-client
  fi
}

# port_is_free PORT: nothing accepts connections on 127.0.0.1:PORT.
port_is_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# free_port: a random port in the unprivileged, non-ephemeral range that nothing listens on.
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 12000))
    if port_is_free "$port"; then
      echo "$port"
      return
    fi
  done
}

etcd_answers() {
  ETCDCTL_API=3 etcdctl --endpoints="$1" --dial-timeout=1s --command-timeout=2s \
    endpoint health >/dev/null 2>&1
}

pid_alive() {
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# start_once DIR: one attempt on fresh ports; returns non-zero when etcd did not come up.
start_once() {
  local dir="$1" client_port peer_port endpoint waited=0
  client_port=$(free_port)
  peer_port=$(free_port)
  [ "$client_port" != "$peer_port" ] || return 1
  endpoint="http://127.0.0.1:$client_port"
  /usr/bin/etcd --name sluice-test --data-dir "$dir/data" \
    --listen-client-urls "$endpoint" --advertise-client-urls "$endpoint" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "sluice-test=http://127.0.0.1:$peer_port" \
    --initial-cluster-state new >>"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"
  while [ "$waited" -lt "$((ETCD_START_WAIT_S * 10))" ]; do
    if etcd_answers "$endpoint"; then
      echo "$endpoint" >"$dir/endpoint"
      echo "$endpoint"
      return 0
    fi
    pid_alive "$dir/etcd.pid" || break
    sleep 0.1
    waited=$((waited + 1))
  done
  stop_etcd "$dir"
  return 1
}

start_etcd() {
  local dir="$1" attempt
  ensure_etcd
  mkdir -p "$dir"
  if pid_alive "$dir/etcd.pid"; then
    echo "etcd already running in $dir (pid $(cat "$dir/etcd.pid"))" >&2
    cat "$dir/endpoint"
    return 0
  fi
  for attempt in $(seq 1 "$ETCD_START_ATTEMPTS_MAX"); do
    rm -rf "$dir/data"
    if start_once "$dir"; then
      return 0
    fi
    echo "etcd did not start (attempt $attempt); see $dir/etcd.log" >&2
  done
  echo "giving up on etcd after $ETCD_START_ATTEMPTS_MAX attempts; log: $dir/etcd.log" >&2
  return 1
}

stop_etcd() {
  local dir="$1" pid waited=0
  [ -f "$dir/etcd.pid" ] || return 0
  pid=$(cat "$dir/etcd.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 100 ]; do
      sleep 0.1
      waited=$((waited + 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/etcd.pid"
}

status_etcd() {
  local dir="$1"
  [ -f "$dir/endpoint" ] || { echo "no etcd started in $dir" >&2; return 1; }
  if pid_alive "$dir/etcd.pid" && etcd_answers "$(cat "$dir/endpoint")"; then
    cat "$dir/endpoint"
  else
    echo "etcd in $dir is not answering" >&2
    return 1
  fi
}

case "${1:-}" in
  install) ensure_etcd ;;
  start) [ $# -eq 2 ] || usage; start_etcd "$(realpath -m "$2")" ;;
  stop) [ $# -eq 2 ] || usage; stop_etcd "$(realpath -m "$2")" ;;
  status) [ $# -eq 2 ] || usage; status_etcd "$(realpath -m "$2")" ;;
  *) usage ;;
esac
