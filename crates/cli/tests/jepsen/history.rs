//! What a Jepsen run records: every send and its outcome, and what was read back afterwards.

use std::collections::BTreeMap;
use std::fmt;

/// How one send ended, as the producer saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The broker acknowledged the record at this position (acks=all): it must be there.
    Acked { partition: i32, offset: i64 },
    /// The client reported an error that normally means the broker did not append it. With
    /// retries an earlier attempt may still have been appended, so the record may appear (once).
    Failed(String),
    /// Timed out or was cut off in flight: it may or may not have been appended (once).
    Indeterminate(String),
}

impl Outcome {
    pub fn is_acked(&self) -> bool {
        matches!(self, Outcome::Acked { .. })
    }
}

/// One value a producer tried to write. Values are unique across the run: `p<producer>-<seq>`,
/// with `seq` counting up per producer, so a producer's seq order is its send order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOp {
    pub producer: u32,
    pub seq: u64,
    /// The partition the record was sent to.
    pub partition: i32,
    pub outcome: Outcome,
    /// Milliseconds since the start of the run when the send was enqueued and when its outcome
    /// arrived (for correlating anomalies with the nemesis timeline).
    pub sent_ms: u64,
    pub done_ms: u64,
}

impl SendOp {
    pub fn value(&self) -> String {
        value_of(self.producer, self.seq)
    }
}

pub fn value_of(producer: u32, seq: u64) -> String {
    format!("p{producer}-{seq}")
}

/// One partition as one read saw it: every record from `log_start` up to (at least)
/// `high_watermark`, in offset order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionRead {
    pub log_start: i64,
    pub high_watermark: i64,
    /// (offset, value); a null or non-UTF-8 payload is rendered lossily, so it can never match
    /// a sent value and is reported as never sent.
    pub records: Vec<(i64, String)>,
}

/// A whole read of the topic after the cluster healed; a run may read more than once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadBack {
    pub partitions: BTreeMap<i32, PartitionRead>,
}

impl fmt::Display for ReadBack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (p, r) in &self.partitions {
            write!(
                f,
                "[p{p}: {} records, log start {}, hw {}] ",
                r.records.len(),
                r.log_start,
                r.high_watermark
            )?;
        }
        Ok(())
    }
}
