//! Kafka request framing: a 4-byte big-endian size, then that many bytes of request (header
//! and body). The size is checked against `request_bytes_max` as soon as its 4 bytes arrive,
//! before a byte is reserved for the request, so a client announcing 2 GiB costs nothing.

use bytes::{Buf, BytesMut};

use crate::error::KafkaError;

/// Bytes of the size prefix in front of every request and response.
pub const SIZE_PREFIX_BYTES: usize = 4;

/// Reassembles requests from socket reads. Lives with one connection.
#[derive(Debug)]
pub struct RequestDecoder {
    buffer: BytesMut,
    request_bytes_max: usize,
    last_read_bytes: usize,
}

impl RequestDecoder {
    /// A decoder that refuses requests larger than `request_bytes_max` bytes (prefix
    /// excluded).
    pub fn new(request_bytes_max: usize) -> Self {
        RequestDecoder {
            buffer: BytesMut::new(),
            request_bytes_max,
            last_read_bytes: 0,
        }
    }

    /// The buffer socket reads append to.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buffer
    }

    /// Bytes received but not yet handed out as a request.
    pub fn buffered_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// Records how many bytes the last socket read brought, for [`Self::read_bytes_hint`].
    pub fn record_read(&mut self, bytes: usize) {
        self.last_read_bytes = bytes;
    }

    /// How many bytes the next read should ask for: what the request being received still
    /// needs when that is known, otherwise twice the last read, within `[min, max]`. Each read
    /// zero-fills its space first, so asking for far more than arrives costs time. The rest of a
    /// request whose room `next_request` reserved is asked for exactly, even below `min`: a
    /// read past its end would grow the buffer, reallocating it and copying the whole request.
    pub fn read_bytes_hint(&self, min: usize, max: usize) -> usize {
        let missing = self
            .announced_size()
            .map(|size| (SIZE_PREFIX_BYTES + size).saturating_sub(self.buffer.len()));
        let spare = self.buffer.capacity() - self.buffer.len();
        match missing {
            Some(missing) if missing > 0 && spare >= missing => missing.min(max),
            _ => missing
                .unwrap_or(self.last_read_bytes.saturating_mul(2))
                .clamp(min, max),
        }
    }

    /// The size the buffered prefix announces, if 4 bytes are there and it is acceptable.
    fn announced_size(&self) -> Option<usize> {
        let prefix = self.buffer.get(..SIZE_PREFIX_BYTES)?;
        let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        usize::try_from(size)
            .ok()
            .filter(|size| *size > 0 && *size <= self.request_bytes_max)
    }

    /// The next whole request (header and body, without the size prefix), `None` when more
    /// bytes are needed. The returned buffer is a writable view of the receive buffer (no
    /// copy), so produced record batches can be stamped in place.
    pub fn next_request(&mut self) -> Result<Option<BytesMut>, KafkaError> {
        let Some(prefix) = self.buffer.get(..SIZE_PREFIX_BYTES) else {
            return Ok(None);
        };
        let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if size <= 0 {
            return Err(KafkaError::BadSize { size });
        }
        let size = size as usize;
        if size > self.request_bytes_max {
            return Err(KafkaError::TooLarge {
                size: size as u64,
                max: self.request_bytes_max,
            });
        }
        let total = SIZE_PREFIX_BYTES + size;
        if self.buffer.len() < total {
            // Room for the rest of this request (already bounded above), so it arrives without
            // the buffer regrowing and moving.
            self.buffer.reserve(total - self.buffer.len());
            return Ok(None);
        }
        let mut request = self.buffer.split_to(total);
        request.advance(SIZE_PREFIX_BYTES);
        Ok(Some(request))
    }

    /// The error for a connection that ended now: `None` when it ended between requests.
    pub fn end_of_stream(&self) -> Option<KafkaError> {
        (!self.buffer.is_empty()).then(|| KafkaError::Truncated {
            buffered_bytes: self.buffer.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    // Proves requests split across reads and several requests in one read come out whole and
    // in order, without their prefixes.
    #[test]
    fn reassembles_split_and_coalesced_requests() {
        let mut decoder = RequestDecoder::new(1024);
        let mut wire = framed(b"first request");
        wire.extend(framed(b"second"));
        let (head, tail) = wire.split_at(7);
        decoder.buffer_mut().extend_from_slice(head);
        assert!(decoder.next_request().unwrap().is_none());
        decoder.buffer_mut().extend_from_slice(tail);
        assert_eq!(
            &decoder.next_request().unwrap().unwrap()[..],
            b"first request"
        );
        assert_eq!(&decoder.next_request().unwrap().unwrap()[..], b"second");
        assert!(decoder.next_request().unwrap().is_none());
        assert!(decoder.end_of_stream().is_none());
    }

    // Proves an oversized or non-positive prefix is refused from its 4 bytes alone, before any
    // room is reserved for the announced size.
    #[test]
    fn refuses_bad_sizes_before_allocating() {
        let mut decoder = RequestDecoder::new(1024);
        decoder
            .buffer_mut()
            .extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
        let capacity = decoder.buffer_mut().capacity();
        assert!(matches!(
            decoder.next_request(),
            Err(KafkaError::TooLarge {
                size: 0x7fff_ffff,
                max: 1024
            })
        ));
        assert_eq!(decoder.buffer_mut().capacity(), capacity);
        let mut decoder = RequestDecoder::new(1024);
        decoder
            .buffer_mut()
            .extend_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            decoder.next_request(),
            Err(KafkaError::BadSize { size: -5 })
        ));
    }

    // Proves the reads that finish a request ask for exactly its missing bytes once its room
    // is reserved, even below the read minimum, so they never grow (reallocate and copy) the
    // buffer holding it; before the room is reserved they ask for at least the minimum.
    #[test]
    fn reads_finishing_a_reserved_request_ask_for_its_rest() {
        const MIN: usize = 16 * 1024;
        const MAX: usize = 1024 * 1024;
        let mut decoder = RequestDecoder::new(MAX);
        let wire = framed(&vec![7; 40_000]);
        decoder.buffer_mut().extend_from_slice(&wire[..30_000]);
        assert_eq!(
            decoder.read_bytes_hint(MIN, MAX),
            MIN.max(wire.len() - 30_000)
        );
        assert!(decoder.next_request().unwrap().is_none());
        let reserved = decoder.buffer_mut().capacity();
        decoder
            .buffer_mut()
            .extend_from_slice(&wire[30_000..wire.len() - 100]);
        assert_eq!(decoder.read_bytes_hint(MIN, MAX), 100);
        decoder.buffer_mut().resize(wire.len(), 0);
        assert_eq!(decoder.buffer_mut().capacity(), reserved);
    }

    // Proves a connection ending inside a request is reported as truncated, with the bytes
    // that had arrived.
    #[test]
    fn truncation_is_reported() {
        let mut decoder = RequestDecoder::new(1024);
        decoder
            .buffer_mut()
            .extend_from_slice(&framed(b"abcdef")[..6]);
        assert!(decoder.next_request().unwrap().is_none());
        assert!(matches!(
            decoder.end_of_stream(),
            Some(KafkaError::Truncated { buffered_bytes: 6 })
        ));
    }
}
