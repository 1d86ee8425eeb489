#!/usr/bin/env bash
# Installs the real Kafka clients the compatibility tests (broker/tests/kafka_clients.rs) drive,
# into git-ignored folders of the repository, so nothing outside it changes:
#
#   scripts/kafka-clients.sh install   kcat (Debian), confluent-kafka and kafka-python with its
#                                      codecs (PyPI, in .kafka-clients/venv), kafkajs with its
#                                      snappy codec (npm, in .kafka-clients/node)
#   scripts/kafka-clients.sh check     exits non-zero naming what is missing
#
# The tests fail (never skip) when a client is missing; they look in .kafka-clients/ unless
# SLUICE_KAFKA_CLIENTS_DIR names another folder.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

CLIENTS_DIR="${SLUICE_KAFKA_CLIENTS_DIR:-$PWD/.kafka-clients}"
VENV="$CLIENTS_DIR/venv"
NODE_DIR="$CLIENTS_DIR/node"

# Versions the tests were written against; pip and npm take the newest release in each range.
PYTHON_PACKAGES=("confluent-kafka>=2.3,<3" "kafka-python[crc32c,lz4,snappy,zstd]>=2.0.2,<4")
NODE_PACKAGES=("kafkajs@^2.2.4" "kafkajs-snappy@^1.1.0")

usage() {
  sed -n '2,11p' "$0" >&2
  exit 2
}

install_python() {
  if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    ensure_apt python3-venv
  fi
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet "${PYTHON_PACKAGES[@]}"
}

install_node() {
  command -v npm >/dev/null 2>&1 || ensure_apt nodejs npm
  mkdir -p "$NODE_DIR"
  [ -f "$NODE_DIR/package.json" ] || echo '{"name":"sluice-kafka-clients","private":true}' >"$NODE_DIR/package.json"
  npm install --silent --no-audit --no-fund --prefix "$NODE_DIR" "${NODE_PACKAGES[@]}"
}

check() {
  local missing=()
  command -v kcat >/dev/null 2>&1 || missing+=("kcat")
  "$VENV/bin/python" -c 'import confluent_kafka' >/dev/null 2>&1 || missing+=("confluent-kafka")
  "$VENV/bin/python" -c 'import kafka' >/dev/null 2>&1 || missing+=("kafka-python")
  [ -d "$NODE_DIR/node_modules/kafkajs" ] || missing+=("kafkajs")
  if [ ${#missing[@]} -gt 0 ]; then
    echo "missing Kafka clients: ${missing[*]} (run scripts/kafka-clients.sh install)" >&2
    return 1
  fi
}

case "${1:-}" in
  install)
    command -v kcat >/dev/null 2>&1 || ensure_apt kcat
    install_python
    install_node
    check
    ;;
  check) check ;;
  *) usage ;;
esac
