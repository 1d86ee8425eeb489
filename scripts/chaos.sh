#!/usr/bin/env bash
# Runs the randomized fault suite (broker/tests/chaos.rs) for a long time on one seed:
#   scripts/chaos.sh [--minutes N] [--seed S] [--log FILE]
# (defaults: 20 minutes, a seed from the clock, the log in target/chaos-<seed>.log).
#
# Builds the test, runs it with CHAOS_SECONDS=N*60 and CHAOS_SEED=S (etcd and three brokers as
# real processes; root gets network partitions through a network namespace, others get pauses
# instead), and prints the fault-by-fault log and the final report (seed, faults by kind, lost,
# duplicates, diverged, availability). Exits non-zero when the checker found anything. The same
# seed replays the same fault schedule. Set SLUICE_CLUSTER_TEST_KEEP=1 to keep the cluster's
# directory (logs, data) for a post-mortem.
set -euo pipefail

minutes=20
seed="$(date +%s)"
log=""
while [ $# -gt 0 ]; do
    case "$1" in
        --minutes) minutes="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        --log) log="$2"; shift 2 ;;
        *)
            echo "usage: $0 [--minutes N] [--seed S] [--log FILE]" >&2
            exit 2
            ;;
    esac
done
if ! [[ "$minutes" =~ ^[0-9]+$ ]] || [ "$minutes" -eq 0 ] || ! [[ "$seed" =~ ^[0-9]+$ ]]; then
    echo "--minutes must be a positive whole number and --seed a whole number" >&2
    exit 2
fi
root="$(cd "$(dirname "$0")/.." && pwd)"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
log="${log:-$target_dir/chaos-$seed.log}"
mkdir -p "$(dirname "$log")"
cd "$root"
cargo test -p sluice-broker --test chaos --no-run
echo "chaos: seed $seed, $minutes minutes; log in $log"
CHAOS_SEED="$seed" CHAOS_SECONDS=$((minutes * 60)) \
    cargo test -p sluice-broker --test chaos -- --nocapture 2>&1 | tee "$log"
