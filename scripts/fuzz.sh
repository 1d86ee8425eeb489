#!/usr/bin/env bash
# Runs fuzz targets for a bounded time each: scripts/fuzz.sh [seconds] [target...]
# (default 30 seconds; default targets: all of them).
#
# Targets (fuzz/fuzz_targets/):
#   batch_parse     Kafka RecordBatch v2 parsing, validation and decoding (sluice-storage)
#   frame_decoder   the native protocol's FrameDecoder fed a stream in pieces (sluice-net)
#   control_body    every rkyv request and response body a peer decodes (sluice-net)
#   recovery        opening a damaged log directory (sluice-storage)
#   kafka_request   Kafka request framing, headers and every served API's decoder (sluice-kafka)
#
# cargo-fuzz needs nightly-only sanitizer flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# accept them, so no nightly install is required. New inputs go to fuzz/corpus/<target>
# (ignored by git); the committed seeds in fuzz/seeds/<target> are read but never modified (the
# normal test suite replays them). Crashes land in fuzz/artifacts/<target>/ and make this script
# exit non-zero.
set -euo pipefail

targets_all=(batch_parse frame_decoder control_body recovery kafka_request)

seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "usage: $0 [seconds] [target...]   (seconds a positive whole number, default 30;" >&2
    echo "       targets: ${targets_all[*]}; default all)" >&2
    exit 2
fi
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=("${targets_all[@]}")
fi
for target in "${targets[@]}"; do
    if ! [[ " ${targets_all[*]} " == *" $target "* ]]; then
        echo "unknown fuzz target $target; known: ${targets_all[*]}" >&2
        exit 2
    fi
done

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz not found; installing it (cargo install cargo-fuzz --locked)" >&2
    cargo install cargo-fuzz --locked
fi

for target in "${targets[@]}"; do
    corpus_dir="fuzz/corpus/$target"
    seeds_dir="fuzz/seeds/$target"
    mkdir -p "$corpus_dir"
    echo "fuzzing $target for $seconds s" >&2
    # -rss_limit_mb leaves room for one DECOMPRESSED_BYTES_MAX (64 MiB) decompression under ASan.
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "$corpus_dir" "$seeds_dir" -- \
        -max_total_time="$seconds" \
        -rss_limit_mb=2048 \
        -timeout=10 \
        -print_final_stats=1
done
