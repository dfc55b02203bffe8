//! Test doubles shared by the crate's tests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::log::{Appended, BoxFuture, ShardLog, WriteError};

/// A partition log in memory: the test moves its high watermark and leadership.
pub(crate) struct MemLog {
    pub(crate) state: Mutex<MemState>,
    hw: watch::Sender<i64>,
    reads: AtomicUsize,
    /// Called before each read (a test can unload the shard while it loads).
    pub(crate) on_read: Mutex<Option<Box<dyn FnMut() + Send>>>,
}

pub(crate) struct MemState {
    pub(crate) batches: Vec<(i64, i64, Bytes)>,
    pub(crate) end: i64,
    pub(crate) epoch: i32,
    pub(crate) leader: bool,
    pub(crate) refuse: Option<WriteError>,
    pub(crate) fail_append: Option<WriteError>,
}

impl MemLog {
    pub(crate) fn new() -> Arc<MemLog> {
        Arc::new(MemLog {
            state: Mutex::new(MemState {
                batches: Vec::new(),
                end: 0,
                epoch: 1,
                leader: true,
                refuse: None,
                fail_append: None,
            }),
            hw: watch::channel(0).0,
            reads: AtomicUsize::new(0),
            on_read: Mutex::new(None),
        })
    }

    pub(crate) fn set_hw(&self, hw: i64) {
        self.hw.send_replace(hw);
    }

    /// Every appended record replicated.
    pub(crate) fn replicate_all(&self) {
        let end = self.state.lock().end;
        self.set_hw(end);
    }

    pub(crate) fn lose_leadership(&self) {
        let mut s = self.state.lock();
        s.leader = false;
        s.epoch += 1;
        drop(s);
        self.hw.send_modify(|_| {});
    }
}

impl ShardLog for MemLog {
    fn leader_epoch(&self) -> i32 {
        self.state.lock().epoch
    }
    fn log_start_offset(&self) -> i64 {
        0
    }
    fn log_end_offset(&self) -> i64 {
        self.state.lock().end
    }
    fn high_watermark(&self) -> i64 {
        *self.hw.borrow()
    }
    fn read(&self, offset: i64, _max_bytes: usize) -> Result<Bytes, String> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        if let Some(f) = self.on_read.lock().as_mut() {
            f();
        }
        let s = self.state.lock();
        let mut out = BytesMut::new();
        for (_, last, b) in &s.batches {
            if *last >= offset {
                out.extend_from_slice(b);
            }
        }
        Ok(out.freeze())
    }
    fn check_writable(&self) -> Result<(), WriteError> {
        let s = self.state.lock();
        if !s.leader {
            return Err(WriteError::NotLeader);
        }
        s.refuse.clone().map_or(Ok(()), Err)
    }
    fn append(&self, batch: Bytes, _now_ms: i64) -> Result<Appended, WriteError> {
        let mut s = self.state.lock();
        if let Some(e) = s.fail_append.take() {
            return Err(e);
        }
        let mut b = BytesMut::from(&batch[..]);
        let base = s.end;
        b[0..8].copy_from_slice(&base.to_be_bytes());
        let delta = i32::from_be_bytes(b[23..27].try_into().unwrap()) as i64;
        let last = base + delta;
        s.batches.push((base, last, b.freeze()));
        s.end = last + 1;
        Ok(Appended {
            last_offset: last,
            leader_epoch: s.epoch,
        })
    }
    fn ack_status(&self, a: Appended) -> Option<Result<(), WriteError>> {
        let s = self.state.lock();
        if !s.leader || s.epoch != a.leader_epoch {
            return Some(Err(WriteError::NotLeader));
        }
        (*self.hw.borrow() > a.last_offset).then_some(Ok(()))
    }
    fn wait_replicated(
        self: Arc<Self>,
        a: Appended,
        timeout_ms: u64,
    ) -> BoxFuture<Result<(), WriteError>> {
        Box::pin(async move {
            let mut rx = self.hw.subscribe();
            let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
            loop {
                if let Some(r) = self.ack_status(a) {
                    return r;
                }
                match tokio::time::timeout_at(deadline, rx.changed()).await {
                    Ok(Ok(())) => {}
                    _ => return Err(WriteError::TimedOut),
                }
            }
        })
    }
}
