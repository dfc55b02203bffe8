//! Level 25: the internal topic `__consumer_offsets` belongs to the broker.
//!
//! Its partition count decides which partition coordinates a group
//! (`abs(hash(group)) % offsets.topic.num.partitions`), so clients must not create it with
//! another count, delete it, or write to it; Metadata marks it internal (Kafka's rules).

mod common;

use common::{create_topic, negotiate, produce_verbose, record_batch, CResult, Conn, Server};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

const OFFSETS: &str = "__consumer_offsets";

fn name(n: &str) -> TopicName {
    TopicName(StrBytes::from_string(n.to_string()))
}

#[test]
fn clients_cannot_create_delete_or_write_the_offsets_topic() -> CResult<()> {
    let server = Server::start_with(&["offsets.topic.num.partitions=7"]);
    let addr = server.socket_addr();

    // CreateTopics with the internal name is refused (INVALID_REQUEST = 42).
    let err = create_topic(addr, OFFSETS, 3).expect_err("creating the internal topic must fail");
    assert!(err.to_string().contains("error_code: 42"), "{err}");

    // Metadata with auto-create makes the broker create it, with its own partition count,
    // and reports it as internal.
    let mut conn = Conn::connect(addr)?;
    let v = negotiate(&mut conn, ApiKey::Metadata)?.min(12);
    let req = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name(OFFSETS)))
        ]))
        .with_allow_auto_topic_creation(true);
    let md = conn.request(v, &req)?;
    let t = md.topics.first().ok_or("no topic in metadata")?;
    assert_eq!(t.error_code, 0, "{t:?}");
    assert!(t.is_internal, "{OFFSETS} must be marked internal");
    assert_eq!(
        t.partitions.len(),
        7,
        "created with offsets.topic.num.partitions"
    );

    // Produce to it is refused (INVALID_TOPIC_EXCEPTION = 17).
    let (code, _, msg) = produce_verbose(
        &mut conn,
        OFFSETS,
        0,
        record_batch(&[b"x"], Compression::None),
    )?;
    assert_eq!(code, 17, "produce to the internal topic: {msg}");

    // DeleteTopics is refused (INVALID_REQUEST = 42) and the topic stays.
    let v = negotiate(&mut conn, ApiKey::DeleteTopics)?;
    let mut del = DeleteTopicsRequest::default().with_timeout_ms(10_000);
    if v >= 6 {
        del.topics = vec![DeleteTopicState::default().with_name(Some(name(OFFSETS)))];
    } else {
        del.topic_names = vec![name(OFFSETS)];
    }
    let resp = conn.request(v, &del)?;
    assert_eq!(
        resp.responses.first().map(|r| r.error_code),
        Some(42),
        "{resp:?}"
    );
    let v = negotiate(&mut conn, ApiKey::Metadata)?.min(12);
    let md = conn.request(v, &MetadataRequest::default().with_topics(None))?;
    assert!(
        md.topics
            .iter()
            .any(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(OFFSETS)),
        "the internal topic must still exist"
    );
    Ok(())
}
