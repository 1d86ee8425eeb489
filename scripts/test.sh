#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, crash, corruption, end-to-end, real Kafka
# clients against the Kafka port, and the fuzz corpus replays. Installs what it needs on a fresh
# Debian machine with only the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_build_tools
# The cluster tests start a real etcd (Debian's etcd-server) and cut links with network namespaces.
scripts/etcd.sh install
command -v ip >/dev/null 2>&1 || ensure_apt iproute2
# The storage power-loss test mounts a FUSE filesystem (as root, no helper binary needed); a
# container may lack the device node even when the kernel has FUSE.
[ -e /dev/fuse ] || mknod -m 666 /dev/fuse c 10 229
# The Kafka compatibility tests drive real clients: kcat (Debian), confluent-kafka and
# kafka-python (PyPI, in a virtualenv), kafkajs (npm), all in git-ignored .kafka-clients/.
scripts/kafka-clients.sh install
cargo test --workspace --all-targets "$@"
