//! Kafka's classic (non-flexible) binary encoding, big-endian: int16/int32/int64, strings as an
//! int16 length then UTF-8 (-1 for null), bytes as an int32 length (-1 for null), arrays as an
//! int32 count. Used by the `__consumer_offsets` records and the consumer protocol.

use crate::error::RecordError;

/// Appends values to a buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buffer: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_capacity(capacity: usize) -> Writer {
        Writer {
            buffer: Vec::with_capacity(capacity),
        }
    }

    pub(crate) fn i16(&mut self, value: i16) {
        self.buffer.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn i32(&mut self, value: i32) {
        self.buffer.extend_from_slice(&value.to_be_bytes());
    }

    pub(crate) fn i64(&mut self, value: i64) {
        self.buffer.extend_from_slice(&value.to_be_bytes());
    }

    /// A string; callers bound lengths well below i16::MAX, longer ones are cut (never
    /// reached: names and metadata are bounded by the coordinator's settings first).
    pub(crate) fn string(&mut self, value: &str) {
        let length = value.len().min(i16::MAX as usize);
        self.i16(i16::try_from(length).unwrap_or(i16::MAX));
        self.buffer.extend_from_slice(&value.as_bytes()[..length]);
    }

    pub(crate) fn nullable_string(&mut self, value: Option<&str>) {
        match value {
            Some(value) => self.string(value),
            None => self.i16(-1),
        }
    }

    pub(crate) fn bytes(&mut self, value: &[u8]) {
        self.i32(i32::try_from(value.len()).unwrap_or(i32::MAX));
        self.buffer.extend_from_slice(value);
    }

    pub(crate) fn nullable_bytes(&mut self, value: Option<&[u8]>) {
        match value {
            Some(value) => self.bytes(value),
            None => self.i32(-1),
        }
    }

    pub(crate) fn count(&mut self, count: usize) {
        self.i32(i32::try_from(count).unwrap_or(i32::MAX));
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buffer
    }
}

/// Reads values from a byte slice, never past its end.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    record: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], record: &'static str) -> Reader<'a> {
        Reader {
            bytes,
            at: 0,
            record,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.at >= self.bytes.len()
    }

    fn take(&mut self, count: usize, field: &'static str) -> Result<&'a [u8], RecordError> {
        let end = self
            .at
            .checked_add(count)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(RecordError::Truncated {
                record: self.record,
                field,
                at: self.at,
            })?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn invalid(&self, field: &'static str) -> RecordError {
        RecordError::Invalid {
            record: self.record,
            field,
            at: self.at,
        }
    }

    pub(crate) fn i16(&mut self, field: &'static str) -> Result<i16, RecordError> {
        let bytes = self.take(2, field)?;
        Ok(i16::from_be_bytes([bytes[0], bytes[1]]))
    }

    pub(crate) fn i32(&mut self, field: &'static str) -> Result<i32, RecordError> {
        let bytes = self.take(4, field)?;
        Ok(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, RecordError> {
        let bytes = self.take(8, field)?;
        let mut array = [0u8; 8];
        array.copy_from_slice(bytes);
        Ok(i64::from_be_bytes(array))
    }

    pub(crate) fn nullable_string(
        &mut self,
        field: &'static str,
    ) -> Result<Option<String>, RecordError> {
        let length = self.i16(field)?;
        if length < 0 {
            return if length == -1 {
                Ok(None)
            } else {
                Err(self.invalid(field))
            };
        }
        let bytes = self.take(length as usize, field)?;
        let text = std::str::from_utf8(bytes).map_err(|_| self.invalid(field))?;
        Ok(Some(text.to_string()))
    }

    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, RecordError> {
        self.nullable_string(field)?
            .ok_or_else(|| self.invalid(field))
    }

    pub(crate) fn nullable_bytes(
        &mut self,
        field: &'static str,
    ) -> Result<Option<Vec<u8>>, RecordError> {
        let length = self.i32(field)?;
        if length < 0 {
            return if length == -1 {
                Ok(None)
            } else {
                Err(self.invalid(field))
            };
        }
        Ok(Some(self.take(length as usize, field)?.to_vec()))
    }

    pub(crate) fn bytes(&mut self, field: &'static str) -> Result<Vec<u8>, RecordError> {
        self.nullable_bytes(field)?
            .ok_or_else(|| self.invalid(field))
    }

    /// An array count, checked against the bytes left (each element takes at least
    /// `element_bytes_min`), so a hostile count never makes a huge allocation.
    pub(crate) fn count(
        &mut self,
        field: &'static str,
        element_bytes_min: usize,
    ) -> Result<usize, RecordError> {
        let count = self.i32(field)?;
        let count = usize::try_from(count).map_err(|_| self.invalid(field))?;
        let left = self.bytes.len().saturating_sub(self.at);
        if count.saturating_mul(element_bytes_min.max(1)) > left {
            return Err(RecordError::Truncated {
                record: self.record,
                field,
                at: self.at,
            });
        }
        Ok(count)
    }
}
