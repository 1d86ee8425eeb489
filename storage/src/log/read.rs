//! The read path: offsets to file ranges (or tail-cache memory), copying reads, and timestamp
//! lookups.

use std::{fs::File, os::unix::fs::FileExt, path::PathBuf, rc::Rc};

use bytes::Bytes;

use super::{blocking, FileSlice, LogInner, ReadSlice};
use crate::{error::StorageError, segment::HeaderReader, tail_cache::ReadLimits};

impl LogInner {
    /// See [`super::PartitionLog::read`].
    pub(super) fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
    ) -> Result<ReadSlice, StorageError> {
        self.check_open()?;
        let (start, end) = (self.log_start.get(), self.log_end.get());
        if offset < start || offset > end {
            return Err(StorageError::OffsetOutOfRange { offset, start, end });
        }
        let limit_offset = max_offset.min(end);
        if offset >= limit_offset {
            return Ok(ReadSlice::Empty);
        }
        let limits = ReadLimits {
            offset,
            max_bytes,
            limit_offset,
        };
        let mut state = self.state.borrow_mut();
        let state = &mut *state;
        if let Some(pieces) = state.tail.read(limits) {
            return Ok(if pieces.is_empty() {
                ReadSlice::Empty
            } else {
                ReadSlice::Memory(pieces)
            });
        }
        let at = state
            .segments
            .partition_point(|segment| segment.base_offset <= offset)
            .saturating_sub(1);
        let segment = &state.segments[at];
        let file = if at + 1 == state.segments.len() {
            state.active_read.clone()
        } else {
            state.handles.get(segment.base_offset, &segment.path)?
        };
        let mut reader = HeaderReader::new(&file, &segment.path, segment.size)
            .allowing_gaps(self.gaps_allowed());
        let (position, first) = segment.locate(&mut reader, offset)?;
        let read_end = segment.read_end(&mut reader, position, &first, max_bytes, limit_offset)?;
        if read_end == position {
            return Ok(ReadSlice::Empty);
        }
        Ok(ReadSlice::File(FileSlice {
            file,
            position,
            len: (read_end - position) as usize,
        }))
    }

    /// See [`super::PartitionLog::read_bytes`].
    pub(super) async fn read_bytes(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
    ) -> Result<Bytes, StorageError> {
        match self.read(offset, max_bytes, max_offset)? {
            ReadSlice::Empty => Ok(Bytes::new()),
            ReadSlice::Memory(mut pieces) if pieces.len() == 1 => Ok(pieces.swap_remove(0)),
            ReadSlice::Memory(pieces) => Ok(Bytes::from(pieces.concat())),
            ReadSlice::File(slice) => {
                let path = self.segment_path_of(offset);
                let file = slice.file.try_clone().map_err(|source| {
                    StorageError::io("duplicate read descriptor", &path, source)
                })?;
                let (position, len) = (slice.position, slice.len);
                let bytes = blocking(move || {
                    let mut buffer = vec![0u8; len];
                    file.read_exact_at(&mut buffer, position).map(|()| buffer)
                })
                .await
                .map_err(|source| StorageError::io("read segment", &path, source))?;
                Ok(Bytes::from(bytes))
            }
        }
    }

    fn segment_path_of(&self, offset: i64) -> PathBuf {
        let state = self.state.borrow();
        let at = state
            .segments
            .partition_point(|segment| segment.base_offset <= offset)
            .saturating_sub(1);
        state.segments[at].path.clone()
    }

    /// See [`super::PartitionLog::offset_for_timestamp`]. The first segment whose newest
    /// timestamp reaches `timestamp_ms` holds the answer; its time index says where a walk of
    /// batch headers may start.
    pub(super) async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<i64>, StorageError> {
        self.check_open()?;
        let search = {
            let mut state = self.state.borrow_mut();
            let state = &mut *state;
            let found = state.segments.iter().position(|segment| {
                segment
                    .index
                    .max_timestamp
                    .is_some_and(|newest| newest >= timestamp_ms)
            });
            let Some(at) = found else {
                return Ok(None);
            };
            let segment = &state.segments[at];
            let from_offset = segment
                .index
                .times
                .last_below(timestamp_ms)
                .map_or(segment.base_offset, |entry| {
                    segment.base_offset + i64::from(entry.relative_offset)
                });
            let (position, expected) = match segment
                .index
                .offsets
                .floor_offset(segment.relative(from_offset))
            {
                Some(entry) => (
                    u64::from(entry.position),
                    segment.base_offset + i64::from(entry.relative_offset),
                ),
                None => (0, segment.base_offset),
            };
            let file = if at + 1 == state.segments.len() {
                state.active_read.clone()
            } else {
                state.handles.get(segment.base_offset, &segment.path)?
            };
            TimestampSearch {
                file,
                path: segment.path.clone(),
                size: segment.size,
                position,
                expected,
                gaps_allowed: self.gaps_allowed(),
            }
        };
        let found = search.run(timestamp_ms).await?;
        Ok(found.map(|offset| offset.max(self.log_start.get())))
    }
}

/// A header walk looking for the first batch with a max timestamp at or past a target.
struct TimestampSearch {
    file: Rc<File>,
    path: PathBuf,
    size: u64,
    position: u64,
    expected: i64,
    gaps_allowed: bool,
}

impl TimestampSearch {
    async fn run(self, timestamp_ms: i64) -> Result<Option<i64>, StorageError> {
        let file = self
            .file
            .try_clone()
            .map_err(|source| StorageError::io("duplicate read descriptor", &self.path, source))?;
        let TimestampSearch {
            path,
            size,
            mut position,
            mut expected,
            gaps_allowed,
            ..
        } = self;
        blocking(move || {
            let mut reader = HeaderReader::new(&file, &path, size).allowing_gaps(gaps_allowed);
            while position < size {
                let header = reader.header_at(position, expected)?;
                if header.max_timestamp >= timestamp_ms {
                    return Ok(Some(header.base_offset));
                }
                position += header.total_bytes() as u64;
                expected = header.last_offset() + 1;
            }
            Ok(None)
        })
        .await
    }
}
