//! CRC checks of concatenated batches while their bytes are still arriving.
//!
//! A reader that gathers a large response before looking at it checksums bytes that have left
//! the cache by then, so the check runs at memory speed. [`StreamCheck`] is fed the received
//! prefix after every socket read and checksums only what that read added, while it is still
//! cached. It never fails: at the first batch it cannot vouch for (a bad header, a batch past
//! the end, a CRC mismatch) it stops, and the batches from there on get the full check
//! ([`validate_batch`](super::validate_batch)), which reports the error.

use super::crc::crc32c_append;
use super::{check_fields, BatchHeader, BATCH_HEADER_BYTES, CRC_COVERED_START};

/// The batch whose bytes are being checksummed.
#[derive(Debug, Clone, Copy)]
struct InProgress {
    /// Stream position just past the batch.
    end: usize,
    /// Stream position up to which `crc` covers the batch.
    covered_to: usize,
    /// CRC-32C of the batch's covered region so far.
    crc: u32,
    /// The CRC the header claims.
    stored: u32,
}

/// Checks the CRCs of the whole batches at the start of a stream of `stream_bytes` bytes, as
/// that stream's prefix grows.
#[derive(Debug, Clone)]
pub struct StreamCheck {
    stream_bytes: usize,
    batch_bytes_max: usize,
    /// End of the last whole batch whose CRC matched.
    verified_bytes: usize,
    current: Option<InProgress>,
    stopped: bool,
}

impl StreamCheck {
    /// A check of a stream of `stream_bytes` bytes whose batches are at most `batch_bytes_max`
    /// bytes each.
    pub fn new(stream_bytes: usize, batch_bytes_max: usize) -> Self {
        StreamCheck {
            stream_bytes,
            batch_bytes_max,
            verified_bytes: 0,
            current: None,
            stopped: false,
        }
    }

    /// Length of the prefix made of whole batches whose headers are sound and whose CRCs
    /// matched. Batches past it still need the full check.
    pub fn verified_bytes(&self) -> usize {
        self.verified_bytes
    }

    /// Checksums what `received` (the stream's prefix so far, which may run past the stream's
    /// end) holds beyond what earlier calls saw.
    pub fn feed(&mut self, received: &[u8]) {
        let received = &received[..received.len().min(self.stream_bytes)];
        while !self.stopped {
            let Some(mut batch) = self.current.or_else(|| self.start_batch(received)) else {
                return;
            };
            let reach = received.len().min(batch.end);
            if reach > batch.covered_to {
                batch.crc = crc32c_append(batch.crc, &received[batch.covered_to..reach]);
                batch.covered_to = reach;
            }
            if batch.covered_to < batch.end {
                self.current = Some(batch);
                return;
            }
            self.current = None;
            if batch.crc != batch.stored {
                self.stopped = true;
                return;
            }
            self.verified_bytes = batch.end;
        }
    }

    /// The next batch's state once its header has arrived; stops the check at a header it
    /// cannot vouch for.
    fn start_batch(&mut self, received: &[u8]) -> Option<InProgress> {
        let rest = received.get(self.verified_bytes..)?;
        if rest.len() < BATCH_HEADER_BYTES {
            return None;
        }
        let sound = BatchHeader::parse(rest).and_then(|header| {
            check_fields(&header)?;
            Ok(header)
        });
        let header = match sound {
            Ok(header) if header.total_bytes() <= self.batch_bytes_max => header,
            _ => {
                self.stopped = true;
                return None;
            }
        };
        let end = self.verified_bytes + header.total_bytes();
        if end > self.stream_bytes {
            self.stopped = true;
            return None;
        }
        Some(InProgress {
            end,
            covered_to: self.verified_bytes + CRC_COVERED_START,
            crc: 0,
            stored: header.crc,
        })
    }
}

/// [`StreamCheck`]s of consecutive parts of one buffer that is still arriving, each part a
/// stream of batches: the payload of a frame that carries several partitions' records
/// back to back (a fetch response, a produce request). The layout is learnt from the buffer
/// itself once enough of it has arrived.
#[derive(Debug, Clone)]
pub struct PartsCheck {
    batch_bytes_max: usize,
    /// Per part, in order: where it starts in the buffer, and its check. `None` until the
    /// layout is known.
    parts: Option<Vec<(usize, StreamCheck)>>,
}

/// Where a buffer's first part starts, and each part's size in bytes.
pub type PartsLayout = (usize, Vec<usize>);

impl PartsCheck {
    /// Checks of buffers whose batches are at most `batch_bytes_max` bytes each.
    pub fn new(batch_bytes_max: usize) -> Self {
        PartsCheck {
            batch_bytes_max,
            parts: None,
        }
    }

    /// Checksums what `received` (the buffer's prefix so far) holds beyond what earlier calls
    /// saw. Until the layout is known `layout` is asked for it: `None` while it needs more
    /// bytes, no parts for a buffer that carries none (or whose layout cannot be read).
    pub fn feed(&mut self, received: &[u8], layout: impl FnOnce(&[u8]) -> Option<PartsLayout>) {
        if self.parts.is_none() {
            let Some((start, part_bytes)) = layout(received) else {
                return;
            };
            self.parts = Some(lay_out(start, part_bytes, self.batch_bytes_max));
        }
        for (start, check) in self.parts.iter_mut().flatten() {
            let Some(part) = received.get(*start..) else {
                return;
            };
            check.feed(part);
        }
    }

    /// Per part, in order, the length of its prefix of batches whose CRCs matched (no parts
    /// before the layout is known).
    pub fn verified_bytes(&self) -> Vec<usize> {
        self.parts
            .iter()
            .flatten()
            .map(|(_, check)| check.verified_bytes())
            .collect()
    }

    /// [`verified_bytes`](Self::verified_bytes) of the buffer just received whole; the check
    /// then starts over, for the next buffer.
    pub fn take_verified_bytes(&mut self) -> Vec<usize> {
        let verified = self.verified_bytes();
        self.parts = None;
        verified
    }
}

/// One check per part, the parts back to back from `start`.
fn lay_out(
    start: usize,
    part_bytes: Vec<usize>,
    batch_bytes_max: usize,
) -> Vec<(usize, StreamCheck)> {
    let mut next = start;
    part_bytes
        .into_iter()
        .map(|bytes| {
            let part = (next, StreamCheck::new(bytes, batch_bytes_max));
            next = next.saturating_add(bytes);
            part
        })
        .collect()
}
