//! Kafka's primitive encodings, for the parts of the protocol this crate reads and writes
//! itself (the request header, Produce requests, Fetch responses): big-endian integers,
//! unsigned varints, classic and compact (flexible-version) strings, bytes and arrays, and
//! tagged-field sections. Every read is bounds-checked and every length is checked against
//! the bytes left before anything is allocated for it.

use bytes::{BufMut, BytesMut};

/// Why a read failed. Static strings: the caller adds the API and version.
pub type WireResult<T> = Result<T, &'static str>;

/// Longest unsigned varint of a u32, in bytes.
const UNSIGNED_VARINT_BYTES_MAX: usize = 5;

/// A cursor over request bytes.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    /// A cursor at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, position: 0 }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    /// The next `count` bytes.
    pub fn take(&mut self, count: usize, what: &'static str) -> WireResult<&'a [u8]> {
        if count > self.remaining() {
            return Err(what);
        }
        let taken = &self.bytes[self.position..self.position + count];
        self.position += count;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> WireResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    /// A big-endian i16.
    pub fn i16(&mut self, what: &'static str) -> WireResult<i16> {
        self.array(what).map(i16::from_be_bytes)
    }

    /// A big-endian i32.
    pub fn i32(&mut self, what: &'static str) -> WireResult<i32> {
        self.array(what).map(i32::from_be_bytes)
    }

    /// An unsigned varint (at most 5 bytes, fitting a u32).
    pub fn unsigned_varint(&mut self, what: &'static str) -> WireResult<u32> {
        let mut value: u64 = 0;
        for index in 0..UNSIGNED_VARINT_BYTES_MAX {
            let byte = self.take(1, what)?[0];
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                return u32::try_from(value).map_err(|_| "unsigned varint exceeds 32 bits");
            }
        }
        Err("unsigned varint longer than 5 bytes")
    }

    /// A nullable length: an i16 (classic) or an unsigned varint holding length + 1
    /// (compact). `None` is null.
    pub fn string_length(
        &mut self,
        compact: bool,
        what: &'static str,
    ) -> WireResult<Option<usize>> {
        let length = if compact {
            i64::from(self.unsigned_varint(what)?) - 1
        } else {
            i64::from(self.i16(what)?)
        };
        self.checked_length(length, what)
    }

    /// A nullable byte-string length: an i32 (classic) or an unsigned varint holding
    /// length + 1 (compact). `None` is null.
    pub fn bytes_length(&mut self, compact: bool, what: &'static str) -> WireResult<Option<usize>> {
        let length = if compact {
            i64::from(self.unsigned_varint(what)?) - 1
        } else {
            i64::from(self.i32(what)?)
        };
        self.checked_length(length, what)
    }

    /// An array's element count, classic (i32) or compact (varint + 1). A count larger than the
    /// bytes left is refused: every element takes at least one byte.
    pub fn array_length(&mut self, compact: bool, what: &'static str) -> WireResult<Option<usize>> {
        self.bytes_length(compact, what)
    }

    fn checked_length(&self, length: i64, what: &'static str) -> WireResult<Option<usize>> {
        match length {
            -1 => Ok(None),
            length if length < -1 => Err("negative length"),
            length => {
                let length = usize::try_from(length).map_err(|_| what)?;
                if length > self.remaining() {
                    return Err(what);
                }
                Ok(Some(length))
            }
        }
    }

    /// A nullable UTF-8 string, classic or compact.
    pub fn nullable_string(
        &mut self,
        compact: bool,
        what: &'static str,
    ) -> WireResult<Option<&'a str>> {
        match self.string_length(compact, what)? {
            None => Ok(None),
            Some(length) => std::str::from_utf8(self.take(length, what)?)
                .map(Some)
                .map_err(|_| "string is not UTF-8"),
        }
    }

    /// A non-null UTF-8 string, classic or compact.
    pub fn string(&mut self, compact: bool, what: &'static str) -> WireResult<&'a str> {
        self.nullable_string(compact, what)?.ok_or("string is null")
    }

    /// Skips a tagged-field section (flexible versions): a count, then per field a tag, a size
    /// and that many bytes. Unknown tags are ignored, as the protocol asks.
    pub fn skip_tagged_fields(&mut self) -> WireResult<()> {
        let count = self.unsigned_varint("tagged field count is truncated")?;
        for _ in 0..count {
            self.unsigned_varint("tagged field tag is truncated")?;
            let size = self.unsigned_varint("tagged field size is truncated")?;
            self.take(size as usize, "tagged field is truncated")?;
        }
        Ok(())
    }
}

/// Appends an unsigned varint.
pub fn put_unsigned_varint(out: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// Bytes an unsigned varint of `value` takes.
pub fn unsigned_varint_len(mut value: u32) -> usize {
    let mut length = 1;
    while value >= 0x80 {
        value >>= 7;
        length += 1;
    }
    length
}

/// Appends an array length: classic i32 (-1 for null), or compact unsigned varint of
/// length + 1 (0 for null).
pub fn put_array_length(out: &mut BytesMut, compact: bool, length: Option<usize>) {
    match (compact, length) {
        (true, None) => put_unsigned_varint(out, 0),
        (true, Some(length)) => {
            put_unsigned_varint(out, u32::try_from(length + 1).unwrap_or(u32::MAX))
        }
        (false, None) => out.put_i32(-1),
        (false, Some(length)) => out.put_i32(i32::try_from(length).unwrap_or(i32::MAX)),
    }
}

/// Appends a non-null string, classic (i16 length) or compact.
pub fn put_string(out: &mut BytesMut, compact: bool, value: &str) {
    if compact {
        put_unsigned_varint(out, u32::try_from(value.len() + 1).unwrap_or(u32::MAX));
    } else {
        out.put_i16(i16::try_from(value.len()).unwrap_or(i16::MAX));
    }
    out.put_slice(value.as_bytes());
}

/// Appends an empty tagged-field section.
pub fn put_no_tagged_fields(out: &mut BytesMut) {
    put_unsigned_varint(out, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves unsigned varints round-trip at their size boundaries and over-long or oversized
    // encodings are refused.
    #[test]
    fn unsigned_varints_round_trip_and_refuse_garbage() {
        for value in [0u32, 1, 127, 128, 16_383, 16_384, u32::MAX] {
            let mut out = BytesMut::new();
            put_unsigned_varint(&mut out, value);
            assert_eq!(out.len(), unsigned_varint_len(value));
            assert_eq!(Reader::new(&out).unsigned_varint("x").unwrap(), value);
        }
        assert!(Reader::new(&[0xff; 6]).unsigned_varint("x").is_err());
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x7f])
            .unsigned_varint("x")
            .is_err());
        assert!(Reader::new(&[0x80]).unsigned_varint("x").is_err());
    }

    // Proves lengths beyond the bytes left are refused before they are used, and null lengths
    // read as None in both encodings.
    #[test]
    fn lengths_are_bounded_by_the_bytes_left() {
        let mut reader = Reader::new(&[0x7f, 0xff, 0xff, 0xff, 1, 2]);
        assert!(reader.array_length(false, "array").is_err());
        assert_eq!(
            Reader::new(&[0xff, 0xff])
                .string_length(false, "s")
                .unwrap(),
            None
        );
        assert_eq!(Reader::new(&[0]).string_length(true, "s").unwrap(), None);
        assert_eq!(Reader::new(&[2, b'a']).string(true, "s").unwrap(), "a");
        assert!(Reader::new(&[0xfe, 0xff])
            .string_length(false, "s")
            .is_err());
    }
}
