#!/usr/bin/env bash
# The main job: builds Sluice in release mode and runs the load generator against an embedded
# single-node broker with the short quickstart workload, printing the report.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
ensure_build_tools
cargo build --release -p sluice-loadgen -p sluice-broker
exec "${CARGO_TARGET_DIR:-target}/release/sluice-loadgen" --embedded --workload workloads/quickstart.toml "$@"
