//! Level 15: every version of every API Runnel advertises answers a minimal well-formed request.
//!
//! 1. ApiVersions v0..=v4 on fresh connections: versions up to the advertised maximum answer
//!    with error 0 at that version; a higher one gets UNSUPPORTED_VERSION (35) in a v0-shaped
//!    response, as Kafka does (KIP-511), so clients can downgrade.
//! 2. For each (api, version) in the ApiVersions v0 answer, a minimal request built with
//!    kafka-protocol at that version on a new connection: the response must carry the right
//!    correlation id, decode at that version with no bytes left over, and carry no error code
//!    other than the ones the request legitimately provokes (listed per API below).
//!    APIs without a hand-made request here get kafka-protocol's default request, and only the
//!    decode is checked for them (their names are printed). Versions that kafka-protocol 0.18
//!    cannot encode (e.g. Produce v0-2, removed by KIP-896 but still advertised like Kafka does)
//!    are listed and skipped.

mod common;

use bytes::{Buf, Bytes};
use common::{create_topic, produce, record_batch, Conn, Server};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use kafka_protocol::records::Compression;

const TOPIC: &str = "t15";
const GROUP: &str = "t15-group";

fn s(x: &str) -> StrBytes {
    StrBytes::from_string(x.to_string())
}

fn tn(x: &str) -> TopicName {
    TopicName(s(x))
}

struct Ctx {
    topic_id: uuid::Uuid,
}

/// A minimal request for `api` at `version` and the error codes it may legitimately provoke
/// (besides 0). `None` if there is no hand-made request for `api`.
fn minimal_request(
    api: ApiKey,
    v: i16,
    ctx: &Ctx,
    server: &Server,
) -> Option<(RequestKind, Vec<i16>)> {
    let kind = match api {
        ApiKey::Produce => {
            let mut t = produce_request::TopicProduceData::default();
            if v >= 13 {
                t.topic_id = ctx.topic_id;
            } else {
                t.name = tn(TOPIC);
            }
            let mut p = produce_request::PartitionProduceData::default();
            p.index = 0;
            p.records = Some(record_batch(
                &[format!("api-versions v{v}").as_bytes()],
                Compression::None,
            ));
            t.partition_data = vec![p];
            let mut r = ProduceRequest::default();
            r.acks = -1;
            r.timeout_ms = 10_000;
            r.topic_data = vec![t];
            (RequestKind::Produce(r), vec![])
        }
        ApiKey::Fetch => {
            let mut p = fetch_request::FetchPartition::default();
            p.partition = 0;
            p.fetch_offset = 0;
            p.partition_max_bytes = 1 << 20;
            let mut t = fetch_request::FetchTopic::default();
            if v >= 13 {
                t.topic_id = ctx.topic_id;
            } else {
                t.topic = tn(TOPIC);
            }
            t.partitions = vec![p];
            let mut r = FetchRequest::default();
            r.max_wait_ms = 100;
            r.min_bytes = 1;
            r.max_bytes = 1 << 20;
            r.topics = vec![t];
            (RequestKind::Fetch(r), vec![])
        }
        ApiKey::ListOffsets => {
            let mut p = list_offsets_request::ListOffsetsPartition::default();
            p.partition_index = 0;
            p.timestamp = -1;
            let mut t = list_offsets_request::ListOffsetsTopic::default();
            t.name = tn(TOPIC);
            t.partitions = vec![p];
            let mut r = ListOffsetsRequest::default();
            r.replica_id = BrokerId(-1);
            r.topics = vec![t];
            (RequestKind::ListOffsets(r), vec![])
        }
        ApiKey::Metadata => {
            let mut t = metadata_request::MetadataRequestTopic::default();
            t.name = Some(tn(TOPIC));
            let mut r = MetadataRequest::default();
            r.topics = Some(vec![t]);
            (RequestKind::Metadata(r), vec![])
        }
        ApiKey::OffsetCommit => {
            let mut p = offset_commit_request::OffsetCommitRequestPartition::default();
            p.partition_index = 0;
            p.committed_offset = 0;
            let mut t = offset_commit_request::OffsetCommitRequestTopic::default();
            if v >= 10 {
                t.topic_id = ctx.topic_id;
            } else {
                t.name = tn(TOPIC);
            }
            t.partitions = vec![p];
            let mut r = OffsetCommitRequest::default();
            r.group_id = GroupId(s(GROUP));
            r.generation_id_or_member_epoch = -1; // a standalone (simple) commit
            r.topics = vec![t];
            (RequestKind::OffsetCommit(r), vec![])
        }
        ApiKey::OffsetFetch => {
            let mut r = OffsetFetchRequest::default();
            if v >= 8 {
                let mut t = offset_fetch_request::OffsetFetchRequestTopics::default();
                if v >= 10 {
                    t.topic_id = ctx.topic_id;
                } else {
                    t.name = tn(TOPIC);
                }
                t.partition_indexes = vec![0];
                let mut g = offset_fetch_request::OffsetFetchRequestGroup::default();
                g.group_id = GroupId(s(GROUP));
                g.topics = Some(vec![t]);
                r.groups = vec![g];
            } else {
                let mut t = offset_fetch_request::OffsetFetchRequestTopic::default();
                t.name = tn(TOPIC);
                t.partition_indexes = vec![0];
                r.group_id = GroupId(s(GROUP));
                r.topics = Some(vec![t]);
            }
            (RequestKind::OffsetFetch(r), vec![])
        }
        ApiKey::FindCoordinator => {
            let mut r = FindCoordinatorRequest::default();
            if v >= 4 {
                r.coordinator_keys = vec![s(GROUP)];
            } else {
                r.key = s(GROUP);
            }
            (RequestKind::FindCoordinator(r), vec![])
        }
        ApiKey::JoinGroup => {
            let mut p = join_group_request::JoinGroupRequestProtocol::default();
            p.name = s("range");
            p.metadata = Bytes::from_static(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            let mut r = JoinGroupRequest::default();
            r.group_id = GroupId(s(&format!("{GROUP}-join-{v}")));
            r.session_timeout_ms = 10_000;
            if v >= 1 {
                r.rebalance_timeout_ms = 10_000;
            }
            r.protocol_type = s("consumer");
            r.protocols = vec![p];
            // v4+: the first join of an unknown member gets MEMBER_ID_REQUIRED (79), KIP-394.
            (RequestKind::JoinGroup(r), vec![79])
        }
        ApiKey::Heartbeat => {
            let mut r = HeartbeatRequest::default();
            r.group_id = GroupId(s(GROUP));
            r.generation_id = 1;
            r.member_id = s("no-such-member");
            // A made-up member: UNKNOWN_MEMBER_ID (25), ILLEGAL_GENERATION (22) or
            // GROUP_ID_NOT_FOUND (69) are the expected answers.
            (RequestKind::Heartbeat(r), vec![22, 25, 69])
        }
        ApiKey::LeaveGroup => {
            let mut r = LeaveGroupRequest::default();
            r.group_id = GroupId(s(GROUP));
            if v >= 3 {
                let mut m = leave_group_request::MemberIdentity::default();
                m.member_id = s("no-such-member");
                r.members = vec![m];
            } else {
                r.member_id = s("no-such-member");
            }
            (RequestKind::LeaveGroup(r), vec![25, 69])
        }
        ApiKey::SyncGroup => {
            let mut r = SyncGroupRequest::default();
            r.group_id = GroupId(s(GROUP));
            r.generation_id = 1;
            r.member_id = s("no-such-member");
            if v >= 5 {
                r.protocol_type = Some(s("consumer"));
                r.protocol_name = Some(s("range"));
            }
            (RequestKind::SyncGroup(r), vec![22, 25, 69])
        }
        ApiKey::DescribeGroups => {
            let mut r = DescribeGroupsRequest::default();
            r.groups = vec![GroupId(s(GROUP))];
            // v6 (KIP-1043) reports an unknown group as GROUP_ID_NOT_FOUND (69).
            (RequestKind::DescribeGroups(r), vec![69])
        }
        ApiKey::ListGroups => (
            RequestKind::ListGroups(ListGroupsRequest::default()),
            vec![],
        ),
        ApiKey::SaslHandshake => {
            let mut r = SaslHandshakeRequest::default();
            r.mechanism = s("PLAIN");
            // A PLAINTEXT listener: UNSUPPORTED_SASL_MECHANISM (33) or ILLEGAL_SASL_STATE (34).
            (RequestKind::SaslHandshake(r), vec![33, 34])
        }
        ApiKey::CreateTopics => {
            let mut t = create_topics_request::CreatableTopic::default();
            t.name = tn(&format!("{TOPIC}-create-v{v}"));
            t.num_partitions = 1;
            t.replication_factor = 1;
            let mut r = CreateTopicsRequest::default();
            r.topics = vec![t];
            r.timeout_ms = 10_000;
            (RequestKind::CreateTopics(r), vec![])
        }
        ApiKey::DeleteTopics => {
            let name = format!("{TOPIC}-delete-v{v}");
            create_topic(server.socket_addr(), &name, 1).expect("create topic to delete");
            let mut r = DeleteTopicsRequest::default();
            if v >= 6 {
                let mut t = delete_topics_request::DeleteTopicState::default();
                t.name = Some(tn(&name));
                r.topics = vec![t];
            } else {
                r.topic_names = vec![tn(&name)];
            }
            r.timeout_ms = 10_000;
            (RequestKind::DeleteTopics(r), vec![])
        }
        ApiKey::InitProducerId => {
            // An idempotent producer's (a null transactional id; "" is INVALID_REQUEST).
            let mut r = InitProducerIdRequest::default();
            r.transactional_id = None;
            r.transaction_timeout_ms = 60_000;
            (RequestKind::InitProducerId(r), vec![])
        }
        ApiKey::OffsetForLeaderEpoch => {
            let mut p = offset_for_leader_epoch_request::OffsetForLeaderPartition::default();
            p.partition = 0;
            p.leader_epoch = 0;
            let mut t = offset_for_leader_epoch_request::OffsetForLeaderTopic::default();
            t.topic = tn(TOPIC);
            t.partitions = vec![p];
            let mut r = OffsetForLeaderEpochRequest::default();
            if v >= 3 {
                r.replica_id = BrokerId(-1);
            }
            r.topics = vec![t];
            (RequestKind::OffsetForLeaderEpoch(r), vec![])
        }
        ApiKey::DescribeConfigs => {
            let mut res = describe_configs_request::DescribeConfigsResource::default();
            res.resource_type = 2; // topic
            res.resource_name = s(TOPIC);
            res.configuration_keys = None; // all of them
            let mut r = DescribeConfigsRequest::default();
            r.resources = vec![res];
            (RequestKind::DescribeConfigs(r), vec![])
        }
        ApiKey::CreatePartitions => {
            let mut t = create_partitions_request::CreatePartitionsTopic::default();
            t.name = tn(TOPIC);
            t.count = 2;
            t.assignments = None; // null: let the broker place them (empty list means "none")
            let mut r = CreatePartitionsRequest::default();
            r.topics = vec![t];
            r.timeout_ms = 10_000;
            r.validate_only = true;
            (RequestKind::CreatePartitions(r), vec![])
        }
        ApiKey::DeleteGroups => {
            let mut r = DeleteGroupsRequest::default();
            r.groups_names = vec![GroupId(s("t15-no-such-group"))];
            (RequestKind::DeleteGroups(r), vec![69])
        }
        ApiKey::DescribeCluster => (
            RequestKind::DescribeCluster(DescribeClusterRequest::default()),
            vec![],
        ),
        ApiKey::DescribeProducers => {
            let mut t = describe_producers_request::TopicRequest::default();
            t.name = tn(TOPIC);
            t.partition_indexes = vec![0];
            let mut r = DescribeProducersRequest::default();
            r.topics = vec![t];
            (RequestKind::DescribeProducers(r), vec![])
        }
        ApiKey::ListTransactions => (
            RequestKind::ListTransactions(ListTransactionsRequest::default()),
            vec![],
        ),
        _ => return None,
    };
    Some(kind)
}

/// kafka-protocol's default request for APIs without a hand-made one.
fn default_request(api: ApiKey) -> Option<RequestKind> {
    macro_rules! defaults {
        ($($name:ident => $ty:ident),* $(,)?) => {
            match api {
                $(ApiKey::$name => Some(RequestKind::$name($ty::default())),)*
                _ => None,
            }
        };
    }
    defaults!(
        DeleteRecords => DeleteRecordsRequest,
        AddPartitionsToTxn => AddPartitionsToTxnRequest,
        AddOffsetsToTxn => AddOffsetsToTxnRequest,
        EndTxn => EndTxnRequest,
        WriteTxnMarkers => WriteTxnMarkersRequest,
        TxnOffsetCommit => TxnOffsetCommitRequest,
        DescribeAcls => DescribeAclsRequest,
        CreateAcls => CreateAclsRequest,
        DeleteAcls => DeleteAclsRequest,
        AlterConfigs => AlterConfigsRequest,
        AlterReplicaLogDirs => AlterReplicaLogDirsRequest,
        DescribeLogDirs => DescribeLogDirsRequest,
        SaslAuthenticate => SaslAuthenticateRequest,
        ElectLeaders => ElectLeadersRequest,
        IncrementalAlterConfigs => IncrementalAlterConfigsRequest,
        AlterPartitionReassignments => AlterPartitionReassignmentsRequest,
        ListPartitionReassignments => ListPartitionReassignmentsRequest,
        OffsetDelete => OffsetDeleteRequest,
        DescribeClientQuotas => DescribeClientQuotasRequest,
        AlterClientQuotas => AlterClientQuotasRequest,
        DescribeUserScramCredentials => DescribeUserScramCredentialsRequest,
        AlterUserScramCredentials => AlterUserScramCredentialsRequest,
        DescribeQuorum => DescribeQuorumRequest,
        UpdateFeatures => UpdateFeaturesRequest,
        DescribeTransactions => DescribeTransactionsRequest,
        ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest,
        ConsumerGroupDescribe => ConsumerGroupDescribeRequest,
        GetTelemetrySubscriptions => GetTelemetrySubscriptionsRequest,
        PushTelemetry => PushTelemetryRequest,
        DescribeTopicPartitions => DescribeTopicPartitionsRequest,
        ListConfigResources => ListConfigResourcesRequest,
    )
}

/// Every `error_code: N` in the response's Debug text (nested ones included).
fn error_codes(debug: &str) -> Vec<i16> {
    let mut out = Vec::new();
    let mut rest = debug;
    while let Some(i) = rest.find("error_code: ") {
        rest = &rest[i + "error_code: ".len()..];
        let n: String = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '-')
            .collect();
        if let Ok(n) = n.parse() {
            out.push(n);
        }
    }
    out
}

#[test]
fn api_versions_v0_to_v4() {
    let server = Server::start();
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    let v0 = conn.api_versions(0).expect("ApiVersions v0");
    assert_eq!(v0.error_code, 0);
    let own = v0
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .expect("ApiVersions does not advertise itself");
    assert_eq!(own.min_version, 0, "ApiVersions v0 must stay supported");
    for v in 0..=4i16 {
        let mut conn = Conn::connect(server.socket_addr()).unwrap();
        if v <= own.max_version {
            let r = conn
                .api_versions(v)
                .unwrap_or_else(|e| panic!("ApiVersions v{v}: {e}"));
            assert_eq!(r.error_code, 0, "ApiVersions v{v}");
            assert_eq!(
                r.api_keys, v0.api_keys,
                "ApiVersions v{v} advertises something else than v0"
            );
        } else {
            // Kafka answers an unsupported ApiVersions version with a v0 response carrying
            // UNSUPPORTED_VERSION and its own versions (KIP-511).
            let req = ApiVersionsRequest::default()
                .with_client_software_name(s("runnel-tests"))
                .with_client_software_version(s("0.1"));
            let (correlation, buf) = conn.encode_request(ApiKey::ApiVersions, v, &req).unwrap();
            conn.write_frame(&buf).unwrap();
            let mut resp = conn
                .read_frame()
                .unwrap()
                .expect("closed on ApiVersions v{v}");
            assert_eq!(resp.get_i32(), correlation);
            let r =
                ApiVersionsResponse::decode(&mut resp, 0).expect("v0-shaped ApiVersions response");
            assert_eq!(
                r.error_code, 35,
                "ApiVersions v{v} above max {}",
                own.max_version
            );
            assert!(
                !r.api_keys.is_empty(),
                "UNSUPPORTED_VERSION answer lists no versions"
            );
        }
    }
}

#[test]
fn every_advertised_api_version() {
    let server = Server::start();
    create_topic(server.socket_addr(), TOPIC, 1).expect("create topic");
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    let (err, _) = produce(
        &mut conn,
        TOPIC,
        0,
        record_batch(&[b"seed"], Compression::None),
    )
    .unwrap();
    assert_eq!(err, 0, "seed produce");
    let advertised = conn.api_versions(0).unwrap().api_keys;

    // The topic id, for the versions that address topics by id.
    let mut topic_id = uuid::Uuid::nil();
    let md_max = advertised
        .iter()
        .find(|k| k.api_key == ApiKey::Metadata as i16)
        .map(|k| k.max_version)
        .unwrap_or(0);
    if md_max >= 10 {
        let mut t = metadata_request::MetadataRequestTopic::default();
        t.name = Some(tn(TOPIC));
        let mut r = MetadataRequest::default();
        r.topics = Some(vec![t]);
        let v = md_max.min(12);
        let md = conn.request(v, &r).expect("metadata");
        topic_id = md.topics[0].topic_id;
    }
    let ctx = Ctx { topic_id };

    let mut failures = Vec::new();
    let mut unencodable = Vec::new();
    let mut decode_only = Vec::new();
    let mut checked = 0;
    for k in &advertised {
        let Ok(api) = ApiKey::try_from(k.api_key) else {
            failures.push(format!("advertises unknown api key {}", k.api_key));
            continue;
        };
        if api == ApiKey::ApiVersions {
            continue; // api_versions_v0_to_v4
        }
        if k.min_version > k.max_version || k.min_version < 0 {
            failures.push(format!(
                "{api:?}: bad range {}..={}",
                k.min_version, k.max_version
            ));
            continue;
        }
        let ours = api.valid_versions();
        for v in k.min_version..=k.max_version {
            if v < ours.min || v > ours.max {
                unencodable.push(format!("{api:?} v{v}"));
                continue;
            }
            let mut check_errors = true;
            let (req, allowed) = match minimal_request(api, v, &ctx, &server) {
                Some(x) => x,
                None => match default_request(api) {
                    Some(r) => {
                        decode_only.push(format!("{api:?} v{v}"));
                        check_errors = false;
                        (r, Vec::new())
                    }
                    None => {
                        failures.push(format!("{api:?} v{v}: no request to send (add one to t15)"));
                        continue;
                    }
                },
            };
            match send_kind(&server, api, v, &req) {
                Err(e) => failures.push(format!("{api:?} v{v}: {e}")),
                Ok(resp) => {
                    checked += 1;
                    if check_errors {
                        let bad: Vec<i16> = error_codes(&format!("{resp:?}"))
                            .into_iter()
                            .filter(|c| *c != 0 && !allowed.contains(c))
                            .collect();
                        if !bad.is_empty() {
                            failures.push(format!("{api:?} v{v}: error codes {bad:?} in {resp:?}"));
                        }
                    }
                }
            }
        }
    }
    println!("checked {checked} (api, version) pairs");
    println!("not encodable by kafka-protocol 0.18 (skipped): {unencodable:?}");
    println!("decode-only (default request, errors not checked): {decode_only:?}");
    let mut srv = server;
    srv.assert_alive("after every advertised api version");
    assert!(checked > 0, "nothing was checked");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn send_kind(
    server: &Server,
    api: ApiKey,
    v: i16,
    req: &RequestKind,
) -> Result<ResponseKind, String> {
    let mut conn = Conn::connect(server.socket_addr()).map_err(|e| e.to_string())?;
    let (correlation, mut buf) = conn.encode_header(api, v).map_err(|e| e.to_string())?;
    req.encode(&mut buf, v)
        .map_err(|e| format!("encode: {e}"))?;
    conn.write_frame(&buf).map_err(|e| e.to_string())?;
    let mut resp = conn
        .read_frame()
        .map_err(|e| e.to_string())?
        .ok_or("connection closed instead of a response")?;
    let header = ResponseHeader::decode(&mut resp, api.response_header_version(v))
        .map_err(|e| format!("decode response header: {e}"))?;
    if header.correlation_id != correlation {
        return Err(format!(
            "correlation id {} != {correlation}",
            header.correlation_id
        ));
    }
    let r = ResponseKind::decode(api, &mut resp, v).map_err(|e| format!("decode response: {e}"))?;
    if resp.has_remaining() {
        return Err(format!("{} trailing bytes in response", resp.remaining()));
    }
    Ok(r)
}
