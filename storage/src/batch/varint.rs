//! Zig-zag variable-length integers as Kafka records use them (protobuf style): `varint` for
//! i32 (at most 5 bytes) and `varlong` for i64 (at most 10 bytes).

use bytes::BufMut;

/// Longest encoding of a 32-bit varint.
pub(crate) const VARINT_BYTES_MAX: usize = 5;
/// Longest encoding of a 64-bit varlong.
pub(crate) const VARLONG_BYTES_MAX: usize = 10;

/// Appends `value` as a zig-zag varint.
pub(crate) fn put_varint(out: &mut impl BufMut, value: i32) {
    let zigzag = ((value << 1) ^ (value >> 31)) as u32;
    put_unsigned(out, u64::from(zigzag));
}

/// Appends `value` as a zig-zag varlong.
pub(crate) fn put_varlong(out: &mut impl BufMut, value: i64) {
    let zigzag = ((value << 1) ^ (value >> 63)) as u64;
    put_unsigned(out, zigzag);
}

fn put_unsigned(out: &mut impl BufMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// Number of bytes `put_varint(value)` writes.
pub(crate) fn varint_len(value: i32) -> usize {
    let zigzag = ((value << 1) ^ (value >> 31)) as u32;
    unsigned_len(u64::from(zigzag))
}

/// Number of bytes `put_varlong(value)` writes.
pub(crate) fn varlong_len(value: i64) -> usize {
    unsigned_len(((value << 1) ^ (value >> 63)) as u64)
}

fn unsigned_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// The input ended inside the varint.
    Truncated,
    /// More continuation bytes than the type allows.
    TooLong,
}

/// Reads a zig-zag varint from the start of `buf`; returns the value and the bytes consumed.
/// Like Kafka, bits beyond 32 in the fifth byte are dropped rather than rejected.
pub(crate) fn get_varint(buf: &[u8]) -> Result<(i32, usize), VarintError> {
    let (raw, used) = get_unsigned(buf, VARINT_BYTES_MAX)?;
    let raw = raw as u32;
    Ok((((raw >> 1) as i32) ^ -((raw & 1) as i32), used))
}

/// Reads a zig-zag varlong from the start of `buf`; returns the value and the bytes consumed.
pub(crate) fn get_varlong(buf: &[u8]) -> Result<(i64, usize), VarintError> {
    let (raw, used) = get_unsigned(buf, VARLONG_BYTES_MAX)?;
    Ok((((raw >> 1) as i64) ^ -((raw & 1) as i64), used))
}

fn get_unsigned(buf: &[u8], bytes_max: usize) -> Result<(u64, usize), VarintError> {
    let mut value: u64 = 0;
    for (index, &byte) in buf.iter().take(bytes_max).enumerate() {
        // A shift of 63 keeps one bit of the tenth byte, which is all a u64 has room for.
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return Ok((value, index + 1));
        }
    }
    if buf.len() < bytes_max {
        Err(VarintError::Truncated)
    } else {
        Err(VarintError::TooLong)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves encode/decode round-trips at the edges and that lengths match what is written.
    #[test]
    fn varints_round_trip_at_edges() {
        for value in [0, 1, -1, 63, -64, 64, -65, i32::MAX, i32::MIN] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value));
            assert_eq!(get_varint(&out), Ok((value, out.len())));
        }
        for value in [0, 1, -1, i64::from(i32::MAX) + 1, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            put_varlong(&mut out, value);
            assert_eq!(out.len(), varlong_len(value));
            assert_eq!(get_varlong(&out), Ok((value, out.len())));
        }
    }

    // Proves the zig-zag encoding matches the protobuf/Kafka byte values for known inputs.
    #[test]
    fn varint_bytes_match_protobuf_zigzag() {
        let cases: [(i32, &[u8]); 5] = [
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
        ];
        for (value, bytes) in cases {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out, bytes);
        }
    }

    // Proves truncated and over-long encodings are reported, never misread.
    #[test]
    fn malformed_varints_are_rejected() {
        assert_eq!(get_varint(&[]), Err(VarintError::Truncated));
        assert_eq!(get_varint(&[0x80, 0x80]), Err(VarintError::Truncated));
        assert_eq!(get_varint(&[0xff; 5]), Err(VarintError::TooLong));
        assert_eq!(get_varlong(&[0xff; 10]), Err(VarintError::TooLong));
        assert_eq!(get_varlong(&[0xff; 9]), Err(VarintError::Truncated));
    }
}
