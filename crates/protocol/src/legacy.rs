//! Request versions Kafka 4 removed (KIP-896) that clients still in use send without
//! negotiating, decoded by hand because kafka-protocol (generated from Kafka 4's schemas) no
//! longer can.
//!
//! Only OffsetCommit v0-1: sarama 1.22's consumer groups commit with v1 unless
//! `Consumer.Offsets.Retention` is set. They are accepted but not advertised (ApiVersions keeps
//! Kafka 4's ranges), decoded into the v2 message shape, and answered in the v2 response
//! layout, which is byte-for-byte the v0-1 layout.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::{GroupId, OffsetCommitRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

/// The version whose layout answers a legacy request.
pub fn response_version(api_key: kafka_protocol::messages::ApiKey, version: i16) -> i16 {
    if api_key == kafka_protocol::messages::ApiKey::OffsetCommit && version < 2 {
        2
    } else {
        version
    }
}

fn need(buf: &Bytes, n: usize, what: &str) -> Result<(), String> {
    if buf.remaining() < n {
        Err(format!("truncated {what}"))
    } else {
        Ok(())
    }
}

fn i32_(buf: &mut Bytes, what: &str) -> Result<i32, String> {
    need(buf, 4, what)?;
    Ok(buf.get_i32())
}

fn i64_(buf: &mut Bytes, what: &str) -> Result<i64, String> {
    need(buf, 8, what)?;
    Ok(buf.get_i64())
}

/// A nullable string (`None` for length -1).
fn string(buf: &mut Bytes, what: &str) -> Result<Option<StrBytes>, String> {
    need(buf, 2, what)?;
    let len = buf.get_i16();
    if len < 0 {
        return if len == -1 {
            Ok(None)
        } else {
            Err(format!("{what}: negative length {len}"))
        };
    }
    let len = len as usize;
    need(buf, len, what)?;
    let raw = buf.split_to(len);
    StrBytes::from_utf8(raw)
        .map(Some)
        .map_err(|_| format!("{what}: not UTF-8"))
}

fn required(buf: &mut Bytes, what: &str) -> Result<StrBytes, String> {
    string(buf, what)?.ok_or_else(|| format!("{what}: null"))
}

/// An array length; each element takes at least `min_element` bytes, so a count the rest of
/// the frame cannot hold is refused before anything is allocated for it.
fn count(buf: &mut Bytes, min_element: usize, what: &str) -> Result<usize, String> {
    let n = i32_(buf, what)?;
    if n < 0 {
        return Err(format!("{what}: negative count {n}"));
    }
    let n = n as usize;
    if n.saturating_mul(min_element) > buf.remaining() {
        return Err(format!("{what}: {n} elements cannot fit in the request"));
    }
    Ok(n)
}

/// OffsetCommit v0 (group, topics) or v1 (group, generation, member, and a commit timestamp
/// per partition, which is dropped: the coordinator stamps commits itself, as Kafka does for
/// v2+).
pub fn decode_offset_commit(buf: &mut Bytes, version: i16) -> Result<OffsetCommitRequest, String> {
    debug_assert!(version < 2);
    let group_id = required(buf, "group id")?;
    let (generation, member_id) = if version >= 1 {
        (i32_(buf, "generation")?, required(buf, "member id")?)
    } else {
        (-1, StrBytes::default())
    };
    let partition_size = if version >= 1 {
        4 + 8 + 8 + 2
    } else {
        4 + 8 + 2
    };
    let n_topics = count(buf, 2 + 4, "topics")?;
    let mut topics = Vec::with_capacity(n_topics);
    for _ in 0..n_topics {
        let name = required(buf, "topic name")?;
        let n_parts = count(buf, partition_size, "partitions")?;
        let mut partitions = Vec::with_capacity(n_parts);
        for _ in 0..n_parts {
            let index = i32_(buf, "partition index")?;
            let offset = i64_(buf, "committed offset")?;
            if version >= 1 {
                let _commit_timestamp = i64_(buf, "commit timestamp")?;
            }
            let metadata = string(buf, "committed metadata")?;
            partitions.push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(index)
                    .with_committed_offset(offset)
                    .with_committed_leader_epoch(-1)
                    .with_committed_metadata(metadata),
            );
        }
        topics.push(
            OffsetCommitRequestTopic::default()
                .with_name(TopicName(name))
                .with_partitions(partitions),
        );
    }
    if buf.has_remaining() {
        return Err(format!("{} bytes after the request", buf.remaining()));
    }
    Ok(OffsetCommitRequest::default()
        .with_group_id(GroupId(group_id))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(member_id)
        .with_retention_time_ms(-1)
        .with_topics(topics))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    fn put_str(b: &mut BytesMut, s: &str) {
        b.put_i16(s.len() as i16);
        b.put_slice(s.as_bytes());
    }

    fn v1_request(metadata: Option<&str>) -> Bytes {
        let mut b = BytesMut::new();
        put_str(&mut b, "grp");
        b.put_i32(7);
        put_str(&mut b, "member-1");
        b.put_i32(1);
        put_str(&mut b, "t");
        b.put_i32(2);
        for (p, o) in [(0, 42i64), (3, 9)] {
            b.put_i32(p);
            b.put_i64(o);
            b.put_i64(-1);
            match metadata {
                Some(m) => put_str(&mut b, m),
                None => b.put_i16(-1),
            }
        }
        b.freeze()
    }

    #[test]
    fn v1_decodes_into_the_v2_shape() {
        let r = decode_offset_commit(&mut v1_request(Some("m")), 1).unwrap();
        assert_eq!(&*r.group_id.0, "grp");
        assert_eq!(r.generation_id_or_member_epoch, 7);
        assert_eq!(&*r.member_id, "member-1");
        assert_eq!(r.topics.len(), 1);
        assert_eq!(&*r.topics[0].name.0, "t");
        let parts: Vec<(i32, i64, Option<&str>)> = r.topics[0]
            .partitions
            .iter()
            .map(|p| {
                (
                    p.partition_index,
                    p.committed_offset,
                    p.committed_metadata.as_deref(),
                )
            })
            .collect();
        assert_eq!(parts, vec![(0, 42, Some("m")), (3, 9, Some("m"))]);
        let r = decode_offset_commit(&mut v1_request(None), 1).unwrap();
        assert_eq!(r.topics[0].partitions[0].committed_metadata, None);
    }

    #[test]
    fn v0_has_no_generation_or_timestamp() {
        let mut b = BytesMut::new();
        put_str(&mut b, "g");
        b.put_i32(1);
        put_str(&mut b, "t");
        b.put_i32(1);
        b.put_i32(5);
        b.put_i64(100);
        put_str(&mut b, "");
        let r = decode_offset_commit(&mut b.freeze(), 0).unwrap();
        assert_eq!(r.generation_id_or_member_epoch, -1);
        assert_eq!(r.topics[0].partitions[0].committed_offset, 100);
    }

    #[test]
    fn malformed_requests_are_refused_without_panicking() {
        let full = v1_request(Some("meta"));
        // Every truncation fails cleanly.
        for len in 0..full.len() {
            assert!(decode_offset_commit(&mut full.slice(..len), 1).is_err());
        }
        // Trailing bytes, huge counts, negative lengths.
        let mut b = BytesMut::from(&full[..]);
        b.put_u8(0);
        assert!(decode_offset_commit(&mut b.freeze(), 1).is_err());
        let mut b = BytesMut::new();
        put_str(&mut b, "g");
        b.put_i32(i32::MAX);
        assert!(decode_offset_commit(&mut b.freeze(), 0).is_err());
        let mut b = BytesMut::new();
        b.put_i16(-5);
        assert!(decode_offset_commit(&mut b.freeze(), 0).is_err());
    }
}
