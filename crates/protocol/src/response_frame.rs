//! Encoded response frames whose record data is not copied.
//!
//! A Fetch response's record data is read from the log into one buffer per partition. Encoding
//! the response into one contiguous frame would copy every byte of it a second time; instead,
//! [`FrameBuf`] keeps each large record buffer as a part of its own, between the encoded parts,
//! and the connection writes the parts one after the other (vectored where the stream
//! supports it). Every other response is one part.
//!
//! `FrameBuf` implements `bytes::BufMut`, an unsafe trait, so that kafka-protocol's encoders can
//! write into it: every method that touches uninitialised memory is delegated unchanged to a
//! `BytesMut`, and the one method with its own behaviour (`put_slice`) is safe code.
#![allow(unsafe_code)]

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Record buffers smaller than this are copied into the frame: a part of its own costs more
/// than copying a few kilobytes.
pub const SHARE_MIN: usize = 4096;

/// A response frame (length prefix included) as the parts that are written in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseFrame {
    parts: Vec<Bytes>,
    len: usize,
}

impl ResponseFrame {
    /// Bytes of the whole frame.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// The frame in one buffer (copies when there are several parts).
    pub fn to_bytes(&self) -> Bytes {
        match self.parts.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            parts => {
                let mut b = BytesMut::with_capacity(self.len);
                for p in parts {
                    b.extend_from_slice(p);
                }
                b.freeze()
            }
        }
    }
}

impl From<Bytes> for ResponseFrame {
    fn from(b: Bytes) -> ResponseFrame {
        let len = b.len();
        ResponseFrame {
            parts: if b.is_empty() { Vec::new() } else { vec![b] },
            len,
        }
    }
}

/// An encoding target that copies small writes into its current part and keeps a write of one
/// of the `shared` buffers (the very same bytes, compared by address and length) as a part of
/// its own.
pub struct FrameBuf {
    parts: Vec<Bytes>,
    cur: BytesMut,
    /// Bytes in `parts`.
    flushed: usize,
    shared: Vec<Bytes>,
    /// Where in `shared` the next write is expected (responses are encoded in order).
    next: usize,
}

impl FrameBuf {
    /// `shared`: the buffers to keep rather than copy, in the order they will be written.
    pub fn new(shared: Vec<Bytes>, capacity: usize) -> FrameBuf {
        FrameBuf {
            parts: Vec::with_capacity(1 + 2 * shared.len()),
            cur: BytesMut::with_capacity(capacity),
            flushed: 0,
            shared: shared
                .into_iter()
                .filter(|b| b.len() >= SHARE_MIN)
                .collect(),
            next: 0,
        }
    }

    fn find_shared(&mut self, src: &[u8]) -> Option<Bytes> {
        let same = |b: &Bytes| b.as_ptr() == src.as_ptr() && b.len() == src.len();
        if self.shared.get(self.next).is_some_and(same) {
            self.next += 1;
            return Some(self.shared[self.next - 1].clone());
        }
        let i = self.shared.iter().position(same)?;
        self.next = i + 1;
        Some(self.shared[i].clone())
    }

    pub fn finish(mut self) -> ResponseFrame {
        if !self.cur.is_empty() {
            self.flushed += self.cur.len();
            self.parts.push(self.cur.freeze());
        }
        ResponseFrame {
            parts: self.parts,
            len: self.flushed,
        }
    }
}

// SAFETY: every method that touches uninitialised memory is delegated unchanged to the
// current `BytesMut`; `put_slice` only adds whole, initialised parts besides it.
unsafe impl BufMut for FrameBuf {
    fn remaining_mut(&self) -> usize {
        self.cur.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller's contract is the same as BytesMut's.
        unsafe { self.cur.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.cur.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= SHARE_MIN {
            if let Some(b) = self.find_shared(src) {
                if !self.cur.is_empty() {
                    self.flushed += self.cur.len();
                    self.parts.push(self.cur.split().freeze());
                }
                self.flushed += b.len();
                self.parts.push(b);
                return;
            }
        }
        self.cur.extend_from_slice(src);
    }
}

impl ByteBufMut for FrameBuf {
    fn offset(&self) -> usize {
        self.flushed + self.cur.len()
    }

    /// Seeking is possible within the current part only (message encoding never seeks; record
    /// batch encoding, which does, is not done into a frame).
    fn seek(&mut self, offset: usize) {
        let local = offset
            .checked_sub(self.flushed)
            .expect("seek into a part already written");
        ByteBufMut::seek(&mut self.cur, local);
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        let start = r
            .start
            .checked_sub(self.flushed)
            .expect("range in a part already written");
        let end = r.end - self.flushed;
        ByteBufMut::range(&mut self.cur, start..end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(shared: &[Bytes], writes: &[&[u8]]) -> ResponseFrame {
        let mut b = FrameBuf::new(shared.to_vec(), 16);
        for w in writes {
            b.put_slice(w);
        }
        b.finish()
    }

    #[test]
    fn shared_buffers_become_parts_and_the_bytes_are_unchanged() {
        let big = Bytes::from(vec![7u8; SHARE_MIN]);
        let other = Bytes::from(vec![9u8; SHARE_MIN + 1]);
        let small = Bytes::from(vec![1u8; 10]);
        let f = frame_of(
            &[big.clone(), small.clone(), other.clone()],
            &[b"head", &big, b"mid", &small, &other],
        );
        assert_eq!(f.parts().len(), 4, "head | big | mid+small | other");
        assert_eq!(f.parts()[1].as_ptr(), big.as_ptr(), "not copied");
        assert_eq!(f.parts()[3].as_ptr(), other.as_ptr(), "not copied");
        let mut want = b"head".to_vec();
        want.extend_from_slice(&big);
        want.extend_from_slice(b"mid");
        want.extend_from_slice(&small);
        want.extend_from_slice(&other);
        assert_eq!(f.len(), want.len());
        assert_eq!(&f.to_bytes()[..], &want[..]);
    }

    #[test]
    fn equal_bytes_elsewhere_are_copied() {
        let big = Bytes::from(vec![7u8; SHARE_MIN]);
        let copy = vec![7u8; SHARE_MIN];
        let f = frame_of(&[big], &[&copy]);
        assert_eq!(f.parts().len(), 1);
        assert_ne!(f.parts()[0].as_ptr(), copy.as_ptr());
    }
}
