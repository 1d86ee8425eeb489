#!/usr/bin/env bash
# Runs a fuzz target for a bounded time: scripts/fuzz.sh [seconds] [target] (default 30 s of
# batch_parse; targets: batch_parse, kafka_request).
#
# cargo-fuzz needs nightly-only sanitizer flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# accept them, so no nightly install is required. New inputs go to fuzz/corpus/<target>
# (ignored by git); the committed seeds in fuzz/seeds/<target> are read but never modified.
# Crashes land in fuzz/artifacts/<target>/ and make this script exit non-zero.
set -euo pipefail

seconds="${1:-30}"
target="${2:-batch_parse}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: $0 [seconds] [target]   (a positive whole number of seconds, default 30)" >&2
    exit 2
fi
case "$target" in
    batch_parse | kafka_request) ;;
    *) echo "unknown fuzz target $target (batch_parse, kafka_request)" >&2; exit 2 ;;
esac

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz not found; installing it (cargo install cargo-fuzz --locked)" >&2
    cargo install cargo-fuzz --locked
fi

corpus_dir="fuzz/corpus/$target"
seeds_dir="fuzz/seeds/$target"
mkdir -p "$corpus_dir"

# -rss_limit_mb leaves room for one DECOMPRESSED_BYTES_MAX (64 MiB) decompression under ASan.
RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "$corpus_dir" "$seeds_dir" -- \
    -max_total_time="$seconds" \
    -rss_limit_mb=2048 \
    -timeout=10 \
    -print_final_stats=1
