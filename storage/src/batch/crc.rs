//! Joining CRC-32Cs: the CRC of A followed by B from the CRCs of A and B and the length of B,
//! in about a microsecond. The `crc32c` crate's `crc32c_combine` squares 32x32 bit matrices
//! instead, about 40 us for a 1 MiB B on this project's machine: more than a hardware CRC pass
//! over 100 KiB. Builders use the join to checksum a batch's records while they are still in the
//! cache and add the header's CRC once the header is final.
//!
//! The arithmetic is polynomial multiplication modulo CRC-32C's polynomial, in the bit-reflected
//! order the CRC uses (bit 31 holds the coefficient of x^0), as in zlib's `crc32_combine_op`.

/// Inputs at least this long are checksummed by `crc-fast` (folding with carry-less
/// multiplication, AVX-512 VPCLMULQDQ where the CPU has it), shorter ones by the `crc32c` crate
/// (SSE 4.2 `crc32`, no setup). On this project's VM: 123 against 29 GB/s at 32 KiB, 22 against
/// 19 GB/s at 1 KiB, 6 against 9 GB/s at 64 bytes (a batch header).
const FOLDING_BYTES_MIN: usize = 1024;

/// The CRC-32C of `crc`'s input followed by `data` (`crc32c::crc32c_append`'s contract), by
/// whichever implementation is faster for `data`'s length.
pub(crate) fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    if data.len() < FOLDING_BYTES_MIN {
        return crc32c::crc32c_append(crc, data);
    }
    // crc-fast's state is the register before the final inversion.
    let mut digest =
        crc_fast::Digest::new_with_init_state(crc_fast::CrcAlgorithm::Crc32Iscsi, u64::from(!crc));
    digest.update(data);
    // A CRC-32's digest fits its low 32 bits.
    (digest.finalize() & u64::from(u32::MAX)) as u32
}

/// The CRC-32C of `data`.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    crc32c_append(0, data)
}

/// CRC-32C's polynomial (Castagnoli), bit-reflected.
const POLY_REFLECTED: u32 = 0x82F6_3B78;
/// The polynomial 1 (x^0), reflected.
const ONE: u32 = 1 << 31;
/// Entries of [`X_POW_2K`]: enough for any length below 2^61 bytes.
const X_POW_2K_ENTRIES: usize = 64;
/// x^(2^k) modulo the polynomial, for k in 0..64.
const X_POW_2K: [u32; X_POW_2K_ENTRIES] = x_pow_2k_table();

/// a * b modulo the polynomial.
const fn mul_mod(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut bit = ONE;
    while bit != 0 {
        if a & bit != 0 {
            product ^= b;
        }
        b = if b & 1 != 0 {
            (b >> 1) ^ POLY_REFLECTED
        } else {
            b >> 1
        };
        bit >>= 1;
    }
    product
}

const fn x_pow_2k_table() -> [u32; X_POW_2K_ENTRIES] {
    let mut table = [0; X_POW_2K_ENTRIES];
    // x^1.
    let mut power = ONE >> 1;
    let mut k = 0;
    while k < X_POW_2K_ENTRIES {
        table[k] = power;
        power = mul_mod(power, power);
        k += 1;
    }
    table
}

/// x^(8 * len) modulo the polynomial: what appending `len` zero bytes multiplies a CRC's
/// register by.
fn x_pow_8n(len: usize) -> u32 {
    let mut power = ONE;
    let mut rest = len;
    // Bit k of len stands for x^(8 * 2^k) = x^(2^(k + 3)).
    let mut k = 3;
    while rest != 0 && k < X_POW_2K_ENTRIES {
        if rest & 1 != 0 {
            power = mul_mod(X_POW_2K[k], power);
        }
        rest >>= 1;
        k += 1;
    }
    power
}

/// The CRC-32C of A followed by B, given `crc_a` = crc32c(A), `crc_b` = crc32c(B) and
/// `len_b` = B's length in bytes.
pub(crate) fn crc32c_join(crc_a: u32, crc_b: u32, len_b: usize) -> u32 {
    mul_mod(x_pow_8n(len_b), crc_a) ^ crc_b
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Proves the join equals a CRC of the concatenation, whatever the split.
    proptest! {
        #[test]
        fn join_equals_the_crc_of_the_concatenation(
            data in proptest::collection::vec(any::<u8>(), 0..4096),
            split in any::<prop::sample::Index>(),
        ) {
            let at = split.index(data.len() + 1);
            let (a, b) = data.split_at(at);
            let joined = crc32c_join(crc32c::crc32c(a), crc32c::crc32c(b), b.len());
            prop_assert_eq!(joined, crc32c::crc32c(&data));
        }

        // Proves the append that picks an implementation by length gives the crc32c crate's
        // CRC on both sides of the threshold, from any CRC before.
        #[test]
        fn append_agrees_with_the_crc32c_crate(
            data in proptest::collection::vec(any::<u8>(), 0..3 * FOLDING_BYTES_MIN),
            before in any::<u32>(),
        ) {
            prop_assert_eq!(crc32c_append(before, &data), crc32c::crc32c_append(before, &data));
            prop_assert_eq!(crc32c(&data), crc32c::crc32c(&data));
        }
    }

    // Proves the folding path on long inputs (a whole batch, a socket read) from a CRC before.
    #[test]
    fn append_agrees_with_the_crc32c_crate_on_long_inputs() {
        let data: Vec<u8> = (0..(1usize << 20) + 13)
            .map(|i| (i * 131 + 17) as u8)
            .collect();
        for (len, before) in [
            (1 << 20, 0),
            ((1 << 20) + 13, 0xDEAD_BEEF),
            (32 * 1024 + 1, 7),
        ] {
            assert_eq!(
                crc32c_append(before, &data[..len]),
                crc32c::crc32c_append(before, &data[..len])
            );
        }
    }

    // Proves the join agrees with the crate's combine on lengths far past what proptest builds
    // (the powers of x for the high bits of the length).
    #[test]
    fn join_agrees_with_the_crates_combine_on_long_pieces() {
        for len in [
            1usize,
            61,
            4096,
            1 << 20,
            (1 << 20) + 7,
            1 << 30,
            (1 << 31) - 1,
        ] {
            let (crc_a, crc_b) = (0x1234_5678, 0x9abc_def0);
            assert_eq!(
                crc32c_join(crc_a, crc_b, len),
                crc32c::crc32c_combine(crc_a, crc_b, len),
                "length {len}"
            );
        }
    }
}
