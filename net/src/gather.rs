//! Gathered socket writes: a frame's header and its memory parts leave in one `sendmsg` instead
//! of being copied into one buffer first (a fetch's tail-cache pieces are sent from the cache's
//! own buffers).

use std::io;
use std::os::fd::RawFd;

/// Most buffers one `sendmsg` call is handed (well under the kernel's `UIO_MAXIOV` of 1024).
pub(crate) const GATHER_BUFFERS_MAX: usize = 64;

/// Sends what the socket takes now of `pieces`, starting `skip` bytes in, without waiting.
/// `Ok(None)`: the socket's buffer is full (or the call was interrupted); nothing was sent.
pub(crate) fn send_available(
    fd: RawFd,
    pieces: &[&[u8]],
    skip: usize,
) -> io::Result<Option<usize>> {
    let (first, within) = locate(pieces, skip);
    let empty = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut vectors = [empty; GATHER_BUFFERS_MAX];
    let mut count = 0;
    for (index, piece) in pieces.iter().enumerate().skip(first) {
        if count == GATHER_BUFFERS_MAX {
            break;
        }
        let piece = if index == first {
            &piece[within..]
        } else {
            piece
        };
        if !piece.is_empty() {
            vectors[count] = libc::iovec {
                iov_base: piece.as_ptr().cast_mut().cast(),
                iov_len: piece.len(),
            };
            count += 1;
        }
    }
    if count == 0 {
        return Ok(Some(0));
    }
    // SAFETY: a zeroed msghdr is valid (no name, no control data); its iovecs point into
    // `pieces`, which outlive the call, and the kernel only reads them.
    let sent = unsafe {
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = vectors.as_mut_ptr();
        message.msg_iovlen = count;
        libc::sendmsg(fd, &message, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if sent < 0 {
        let error = io::Error::last_os_error();
        return match error.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(error),
        };
    }
    Ok(Some(sent as usize))
}

/// The piece holding byte `skip` of `pieces` together, and where in it: `(pieces.len(), 0)`
/// when `skip` is at or past the end.
pub(crate) fn locate(pieces: &[&[u8]], mut skip: usize) -> (usize, usize) {
    for (index, piece) in pieces.iter().enumerate() {
        if skip < piece.len() {
            return (index, skip);
        }
        skip -= piece.len();
    }
    (pieces.len(), 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves positions map to the right piece, skipping empty pieces, and the end is past all.
    #[test]
    fn locate_walks_pieces() {
        let pieces: [&[u8]; 3] = [b"abc", b"", b"de"];
        assert_eq!(locate(&pieces, 0), (0, 0));
        assert_eq!(locate(&pieces, 2), (0, 2));
        assert_eq!(locate(&pieces, 3), (2, 0));
        assert_eq!(locate(&pieces, 4), (2, 1));
        assert_eq!(locate(&pieces, 5), (3, 0));
    }

    // Proves a gathered send delivers every piece in order across more pieces than one call
    // takes, resuming from partial sends, over a real socket pair.
    #[test]
    fn gathered_send_delivers_every_piece_in_order() {
        use std::io::Read;
        use std::os::fd::AsRawFd;
        let (sender, mut receiver) = std::os::unix::net::UnixStream::pair().unwrap();
        let owned: Vec<Vec<u8>> = (0..GATHER_BUFFERS_MAX * 2 + 3)
            .map(|i| vec![i as u8; 1 + i % 7])
            .collect();
        let pieces: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        let total: usize = pieces.iter().map(|piece| piece.len()).sum();
        let mut sent = 0;
        while sent < total {
            sent += send_available(sender.as_raw_fd(), &pieces, sent)
                .unwrap()
                .expect("a socket pair takes a few hundred bytes");
        }
        drop(sender);
        let mut received = Vec::new();
        receiver.read_to_end(&mut received).unwrap();
        assert_eq!(received, owned.concat());
    }
}
