//! Kafka's key/value formats for `__transaction_state`, encoded by hand (kafka-protocol 0.18
//! does not ship these schemas).
//!
//! Key: `int16 version = 0`, then the transactional id as a classic string. Value: `int16
//! version`, then producer id, epoch, timeout, state id, the partitions grouped by topic (null
//! when the state is Empty), last update and start timestamps. We write version 0 (classic
//! encodings), which every Kafka reads; we read version 0 and version 1, the flexible
//! encoding of the same fields with tagged-field sections, whose tags we skip. A null value
//! is a tombstone: the transactional id expired.
//!
//! Decoding never panics: malformed bytes give a [`RecordError`].

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::metadata::TxnState;

pub const KEY_VERSION: i16 = 0;
pub const VALUE_VERSION: i16 = 0;
/// The newest value version we read.
pub const MAX_VALUE_VERSION: i16 = 1;

/// A `__transaction_state` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnLogValue {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeMap<String, BTreeSet<i32>>,
    pub last_update_ms: i64,
    /// -1 when no transaction started since InitProducerId.
    pub start_ms: i64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed __transaction_state record: {0}")]
pub struct RecordError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, RecordError> {
    Err(RecordError(msg.into()))
}

fn put_str(buf: &mut BytesMut, s: &str) {
    let b = s.as_bytes();
    let len = b.len().min(i16::MAX as usize);
    buf.put_i16(len as i16);
    buf.put_slice(&b[..len]);
}

pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(4 + transactional_id.len());
    b.put_i16(KEY_VERSION);
    put_str(&mut b, transactional_id);
    b.freeze()
}

/// Encodes a value as version 0. An Empty transaction is written with null partitions, as
/// Kafka does (it has none).
pub fn encode_value(v: &TxnLogValue) -> Bytes {
    let mut b = BytesMut::with_capacity(64);
    b.put_i16(VALUE_VERSION);
    b.put_i64(v.producer_id);
    b.put_i16(v.producer_epoch);
    b.put_i32(v.timeout_ms);
    b.put_i8(v.state.id());
    if v.state == TxnState::Empty {
        debug_assert!(
            v.partitions.is_empty(),
            "an Empty transaction has partitions"
        );
        b.put_i32(-1);
    } else {
        b.put_i32(v.partitions.len() as i32);
        for (topic, parts) in &v.partitions {
            put_str(&mut b, topic);
            b.put_i32(parts.len() as i32);
            for p in parts {
                b.put_i32(*p);
            }
        }
    }
    b.put_i64(v.last_update_ms);
    b.put_i64(v.start_ms);
    b.freeze()
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn need(&self, n: usize) -> Result<(), RecordError> {
        if self.0.remaining() < n {
            return err("truncated");
        }
        Ok(())
    }
    fn i8(&mut self) -> Result<i8, RecordError> {
        self.need(1)?;
        Ok(self.0.get_i8())
    }
    fn i16(&mut self) -> Result<i16, RecordError> {
        self.need(2)?;
        Ok(self.0.get_i16())
    }
    fn i32(&mut self) -> Result<i32, RecordError> {
        self.need(4)?;
        Ok(self.0.get_i32())
    }
    fn i64(&mut self) -> Result<i64, RecordError> {
        self.need(8)?;
        Ok(self.0.get_i64())
    }
    fn uvarint(&mut self) -> Result<u32, RecordError> {
        let mut v: u32 = 0;
        for i in 0..5 {
            let b = self.i8()? as u8;
            if i == 4 && b > 0x0f {
                return err("varint overflows 32 bits");
            }
            v |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        err("varint overflows 32 bits")
    }
    fn utf8(&mut self, len: usize) -> Result<String, RecordError> {
        self.need(len)?;
        let s = std::str::from_utf8(&self.0[..len])
            .map_err(|_| RecordError("string is not UTF-8".into()))?
            .to_string();
        self.0.advance(len);
        Ok(s)
    }
    fn str(&mut self) -> Result<String, RecordError> {
        let len = self.i16()?;
        if len < 0 {
            return err("null string");
        }
        self.utf8(len as usize)
    }
    fn compact_str(&mut self) -> Result<String, RecordError> {
        match self.uvarint()? {
            0 => err("null string"),
            n => self.utf8(n as usize - 1),
        }
    }
    /// A classic array count: `None` for null.
    fn count(&mut self) -> Result<Option<usize>, RecordError> {
        let n = self.i32()?;
        if n < -1 {
            return err(format!("negative array length {n}"));
        }
        Ok(usize::try_from(n).ok())
    }
    /// A compact array count: `None` for null.
    fn compact_count(&mut self) -> Result<Option<usize>, RecordError> {
        Ok(match self.uvarint()? {
            0 => None,
            n => Some(n as usize - 1),
        })
    }
    /// Skips a tagged-field section: none is known in the version 1 we read.
    fn skip_tags(&mut self) -> Result<(), RecordError> {
        let n = self.uvarint()?;
        for _ in 0..n {
            let _tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.need(size)?;
            self.0.advance(size);
        }
        Ok(())
    }
}

/// Decodes a key: `Ok(None)` for key versions other than 0, which loading skips.
pub fn decode_key(key: &[u8]) -> Result<Option<String>, RecordError> {
    let mut r = Reader(key);
    match r.i16()? {
        KEY_VERSION => Ok(Some(r.str()?)),
        _ => Ok(None),
    }
}

pub fn decode_value(value: &[u8]) -> Result<TxnLogValue, RecordError> {
    let mut r = Reader(value);
    let version = r.i16()?;
    if !(0..=MAX_VALUE_VERSION).contains(&version) {
        return err(format!("unsupported value version {version}"));
    }
    let flexible = version >= 1;
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let state_id = r.i8()?;
    let state =
        TxnState::from_id(state_id).ok_or_else(|| RecordError(format!("state id {state_id}")))?;
    let topics = if flexible {
        r.compact_count()?
    } else {
        r.count()?
    };
    let mut partitions: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    // Counts are not trusted for allocation: each element needs bytes, so a lying count ends
    // in "truncated".
    for _ in 0..topics.unwrap_or(0) {
        let topic = if flexible { r.compact_str()? } else { r.str()? };
        let n = if flexible {
            r.compact_count()?
        } else {
            r.count()?
        };
        let Some(n) = n else {
            return err("null partition list");
        };
        let ids = partitions.entry(topic).or_default();
        for _ in 0..n {
            ids.insert(r.i32()?);
        }
        if flexible {
            r.skip_tags()?;
        }
    }
    let last_update_ms = r.i64()?;
    let start_ms = r.i64()?;
    if flexible {
        r.skip_tags()?;
    }
    Ok(TxnLogValue {
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        last_update_ms,
        start_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ongoing() -> TxnLogValue {
        TxnLogValue {
            producer_id: 4000,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: BTreeMap::from([
                ("a".to_string(), BTreeSet::from([0, 2])),
                ("b".to_string(), BTreeSet::from([1])),
            ]),
            last_update_ms: 1_700_000_000_123,
            start_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn key_layout() {
        let k = encode_key("tx");
        assert_eq!(&k[..], &[0, 0, 0, 2, b't', b'x']);
        assert_eq!(decode_key(&k).unwrap(), Some("tx".to_string()));
        // Other key versions are skipped, not errors.
        assert_eq!(decode_key(&[0, 1, 0, 0]).unwrap(), None);
        assert!(decode_key(&[0, 0, 0, 5, b'a']).is_err());
        assert!(decode_key(&[0]).is_err());
        assert!(decode_key(&[0, 0, 0xff, 0xff]).is_err());
    }

    #[test]
    fn value_v0_layout() {
        let v = ongoing();
        let enc = encode_value(&v);
        let mut want = BytesMut::new();
        want.put_i16(0);
        want.put_i64(4000);
        want.put_i16(3);
        want.put_i32(60_000);
        want.put_i8(1);
        want.put_i32(2);
        want.put_slice(&[0, 1, b'a']);
        want.put_i32(2);
        want.put_i32(0);
        want.put_i32(2);
        want.put_slice(&[0, 1, b'b']);
        want.put_i32(1);
        want.put_i32(1);
        want.put_i64(1_700_000_000_123);
        want.put_i64(1_700_000_000_000);
        assert_eq!(&enc[..], &want[..]);
        assert_eq!(decode_value(&enc).unwrap(), v);
    }

    #[test]
    fn empty_is_written_with_null_partitions() {
        let v = TxnLogValue {
            state: TxnState::Empty,
            partitions: BTreeMap::new(),
            start_ms: -1,
            ..ongoing()
        };
        let enc = encode_value(&v);
        // version, pid, epoch, timeout, state, then the null array.
        assert_eq!(&enc[2 + 8 + 2 + 4 + 1..2 + 8 + 2 + 4 + 1 + 4], &[0xff; 4]);
        assert_eq!(decode_value(&enc).unwrap(), v);
        // A complete transaction has an empty, not null, array.
        let c = TxnLogValue {
            state: TxnState::CompleteCommit,
            partitions: BTreeMap::new(),
            ..ongoing()
        };
        let enc = encode_value(&c);
        assert_eq!(&enc[17..21], &[0, 0, 0, 0]);
        assert_eq!(decode_value(&enc).unwrap(), c);
    }

    /// Version 1 by hand: compact encodings, a tagged-field section after each topic and at
    /// the end, here carrying tags we do not know (2 = ClientTransactionVersion, 9 = made up).
    #[test]
    fn value_v1_with_unknown_tags_decodes() {
        let mut b = BytesMut::new();
        b.put_i16(1);
        b.put_i64(4000);
        b.put_i16(3);
        b.put_i32(60_000);
        b.put_i8(2); // PrepareCommit
        b.put_u8(2 + 1); // two topics
        b.put_u8(1 + 1);
        b.put_slice(b"a");
        b.put_u8(2 + 1);
        b.put_i32(0);
        b.put_i32(2);
        b.put_u8(1); // one tag on this element
        b.put_u8(9);
        b.put_u8(3);
        b.put_slice(&[1, 2, 3]);
        b.put_u8(1 + 1);
        b.put_slice(b"b");
        b.put_u8(1 + 1);
        b.put_i32(1);
        b.put_u8(0); // no tags
        b.put_i64(1_700_000_000_123);
        b.put_i64(1_700_000_000_000);
        b.put_u8(2); // two top-level tags
        b.put_u8(2);
        b.put_u8(2);
        b.put_i16(2);
        // Tag 200 (a two-byte varint) with a 130-byte (two-byte varint) payload.
        b.put_slice(&[0xc8, 0x01, 0x82, 0x01]);
        b.put_slice(&[7u8; 130]);
        let v = decode_value(&b).unwrap();
        assert_eq!(
            v,
            TxnLogValue {
                state: TxnState::PrepareCommit,
                ..ongoing()
            }
        );
        // Null partitions in v1 (compact 0) is an empty set.
        let mut e = BytesMut::new();
        e.put_i16(1);
        e.put_i64(5);
        e.put_i16(0);
        e.put_i32(1000);
        e.put_i8(0);
        e.put_u8(0);
        e.put_i64(10);
        e.put_i64(-1);
        e.put_u8(0);
        let v = decode_value(&e).unwrap();
        assert_eq!(
            (v.producer_id, v.state, v.start_ms),
            (5, TxnState::Empty, -1)
        );
        assert!(v.partitions.is_empty());
    }

    #[test]
    fn malformed_values_are_errors() {
        let enc = encode_value(&ongoing());
        for cut in 0..enc.len() {
            assert!(decode_value(&enc[..cut]).is_err(), "cut at {cut}");
        }
        // Unknown version, unknown state id, negative array length, null partition list,
        // non-UTF-8 topic, a varint longer than 5 bytes, a lying element count.
        let mut bad_version = enc.to_vec();
        bad_version[1] = 2;
        assert!(decode_value(&bad_version).is_err());
        let mut bad_state = enc.to_vec();
        bad_state[16] = 9;
        assert!(decode_value(&bad_state).is_err());
        let mut neg = enc.to_vec();
        neg[17..21].copy_from_slice(&(-2i32).to_be_bytes());
        assert!(decode_value(&neg).is_err());
        let mut null_parts = enc.to_vec();
        null_parts[24..28].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(decode_value(&null_parts).is_err());
        let mut not_utf8 = enc.to_vec();
        not_utf8[23] = 0xff;
        assert!(decode_value(&not_utf8).is_err());
        let mut huge = enc.to_vec();
        huge[17..21].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_value(&huge).is_err());
        let mut v1 = BytesMut::new();
        v1.put_i16(1);
        v1.put_i64(5);
        v1.put_i16(0);
        v1.put_i32(1000);
        v1.put_i8(1);
        v1.put_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert!(decode_value(&v1).is_err());
        assert!(decode_value(&[]).is_err());
        assert!(decode_value(&[0xde, 0xad, 0xbe, 0xef]).is_err());
    }

    fn any_state() -> impl Strategy<Value = TxnState> {
        (0i8..=7).prop_map(|id| TxnState::from_id(id).unwrap())
    }

    proptest! {
        #[test]
        fn values_round_trip(
            producer_id in any::<i64>(),
            producer_epoch in any::<i16>(),
            timeout_ms in any::<i32>(),
            state in any_state(),
            partitions in prop::collection::btree_map(
                "[a-z._-]{1,12}", prop::collection::btree_set(0i32..1000, 0..4), 0..4),
            last_update_ms in any::<i64>(),
            start_ms in any::<i64>(),
        ) {
            let v = TxnLogValue {
                producer_id,
                producer_epoch,
                timeout_ms,
                state,
                partitions: if state == TxnState::Empty { BTreeMap::new() } else { partitions },
                last_update_ms,
                start_ms,
            };
            prop_assert_eq!(decode_value(&encode_value(&v)).unwrap(), v);
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_value(&bytes);
            let _ = decode_key(&bytes);
        }
    }
}
