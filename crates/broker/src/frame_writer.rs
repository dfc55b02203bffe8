//! Writing a [`ResponseFrame`] to a connection: its parts in order, vectored where the stream
//! supports it, with partial writes resumed where they stopped.

use std::io::{self, IoSlice};

use runnel_protocol::response_frame::ResponseFrame;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Most parts handed to one vectored write.
const MAX_IO_SLICES: usize = 64;

/// Writes the frame: every part, in order, in as few writes as the stream allows.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    wr: &mut W,
    frame: &ResponseFrame,
) -> io::Result<()> {
    let parts = frame.parts();
    if let [one] = parts {
        return wr.write_all(one).await;
    }
    let mut part = 0;
    let mut offset = 0;
    while part < parts.len() {
        let slices: Vec<IoSlice<'_>> = parts[part..]
            .iter()
            .take(MAX_IO_SLICES)
            .enumerate()
            .map(|(i, p)| IoSlice::new(if i == 0 { &p[offset..] } else { &p[..] }))
            .collect();
        let mut n = wr.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while n > 0 && part < parts.len() {
            let left = parts[part].len() - offset;
            if n >= left {
                n -= left;
                part += 1;
                offset = 0;
            } else {
                offset += n;
                n = 0;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::{BufMut, Bytes};
    use runnel_protocol::response_frame::{FrameBuf, SHARE_MIN};

    use super::*;

    /// A writer that accepts at most `max` bytes per call, vectored or not.
    struct Trickle {
        out: Vec<u8>,
        max: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let n = buf.len().min(self.max);
            self.out.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> std::task::Poll<io::Result<usize>> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.max - n);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                if n == self.max {
                    break;
                }
            }
            std::task::Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn partial_vectored_writes_send_every_byte_in_order() {
        let shared: Vec<Bytes> = (0..100u8)
            .map(|i| Bytes::from(vec![i; SHARE_MIN + i as usize]))
            .collect();
        let mut b = FrameBuf::new(shared.clone(), 16);
        for s in &shared {
            b.put_slice(b"xy");
            b.put_slice(s);
        }
        let f = b.finish();
        assert_eq!(f.parts().len(), 200);
        for max in [7, 4096, 10_000, usize::MAX / 2] {
            let mut w = Trickle {
                out: Vec::new(),
                max,
            };
            write_frame(&mut w, &f).await.unwrap();
            assert_eq!(w.out, f.to_bytes().to_vec(), "max {max}");
        }
    }
}
