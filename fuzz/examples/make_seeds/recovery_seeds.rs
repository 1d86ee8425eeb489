//! Seeds of the `recovery` fuzz target (`sluice_storage::fuzz_recovery`): byte 0 the run
//! (bit 0 keeps the clean-shutdown marker, bit 1 the recovery-point checkpoint, bit 2 refuses a
//! damaged tail instead of truncating it, bit 3 opens in direct mode), then five bytes per
//! damage operation: file index, kind (0 flip, 1 truncate, 2 zero-fill from, 3 append garbage,
//! 4 delete), position (two bytes, big-endian) and value.
//!
//! File indexes count the base log's files in name order after the run's removals. The base
//! log has five segments (base offsets 0, 9, 18, 27 and 36, each an `.index`, a `.log` and a
//! `.timeindex`), the leader-epoch checkpoint, the recovery-point checkpoint and the
//! clean-shutdown marker (first in name order). So with neither kept, file 1 is the first
//! segment's log and 13 the last's; with both kept, 1 is the first index and 16 the
//! leader-epoch checkpoint.

/// Keeps the clean-shutdown marker.
const KEEP_MARKER: u8 = 1;
/// Keeps the recovery-point checkpoint.
const KEEP_RECOVERY_POINT: u8 = 2;
/// Refuses a damaged tail.
const REFUSE: u8 = 4;
/// Opens in direct mode.
const DIRECT: u8 = 8;

/// Operation kinds.
const FLIP: u8 = 0;
const TRUNCATE: u8 = 1;
const ZERO_FILL: u8 = 2;
const APPEND: u8 = 3;
const DELETE: u8 = 4;

fn seed(flags: u8, operations: &[[u8; 5]]) -> Vec<u8> {
    let mut out = vec![flags];
    for operation in operations {
        out.extend_from_slice(operation);
    }
    out
}

fn operation(file: u8, kind: u8, position: u16, value: u8) -> [u8; 5] {
    let [high, low] = position.to_be_bytes();
    [file, kind, high, low, value]
}

/// Seeds of `recovery`.
pub fn recovery() -> Vec<(&'static str, Vec<u8>)> {
    let both = KEEP_MARKER | KEEP_RECOVERY_POINT;
    vec![
        ("recovered-clean.bin", seed(both, &[])),
        ("recovered-clean-direct.bin", seed(both | DIRECT, &[])),
        (
            "recovered-garbled-index.bin",
            seed(
                both,
                &[operation(1, FLIP, 3, 0xff), operation(3, FLIP, 9, 0x10)],
            ),
        ),
        (
            "recovered-garbage-after-timeindex.bin",
            seed(both, &[operation(3, APPEND, 0, 0x41)]),
        ),
        (
            "recovered-no-epoch-checkpoint.bin",
            seed(0, &[operation(15, DELETE, 0, 0)]),
        ),
        (
            "recovered-flipped-epoch-checkpoint.bin",
            seed(both, &[operation(16, FLIP, 1, 0x20)]),
        ),
        (
            "recovered-flipped-recovery-point.bin",
            seed(KEEP_RECOVERY_POINT, &[operation(16, FLIP, 2, 0x04)]),
        ),
        (
            "scanned-torn-tail.bin",
            seed(0, &[operation(13, TRUNCATE, 100, 0)]),
        ),
        (
            "scanned-zero-filled-tail.bin",
            seed(DIRECT, &[operation(13, ZERO_FILL, 120, 0)]),
        ),
        (
            "scanned-flipped-middle-segment.bin",
            seed(0, &[operation(7, FLIP, 70, 0x80)]),
        ),
        (
            "refused-torn-tail.bin",
            seed(REFUSE, &[operation(13, TRUNCATE, 100, 0)]),
        ),
        (
            "refused-flipped-closed-segment.bin",
            seed(REFUSE, &[operation(4, FLIP, 70, 0x80)]),
        ),
    ]
}
