//! A scripted single-node Kafka broker for unit tests of the client tools: it answers
//! ApiVersions, Metadata and Produce for one topic and records every Produce batch it sees.

use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, MetadataResponse, ProduceRequest, ProduceResponse,
    RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::RecordBatchDecoder;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One Produce batch as the broker received it.
#[derive(Debug, Clone)]
pub struct SeenBatch {
    pub partition: i32,
    pub base_sequence: i32,
    pub producer_id: i64,
    pub record_count: i32,
    pub bytes: Bytes,
}

#[derive(Default)]
pub struct State {
    pub batches: Vec<SeenBatch>,
    /// Error codes to answer the next Produce requests with (front first); then success.
    pub produce_errors: Vec<i16>,
}

pub struct FakeBroker {
    pub addr: String,
    pub state: Arc<Mutex<State>>,
}

impl FakeBroker {
    /// Serves topic `topic` with `partitions` partitions, all led by node 1.
    pub async fn start(topic: &str, partitions: i32) -> FakeBroker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let (topic, st, a) = (topic.to_string(), state.clone(), addr.clone());
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(
                    sock,
                    a.clone(),
                    topic.clone(),
                    partitions,
                    st.clone(),
                ));
            }
        });
        FakeBroker { addr, state }
    }
}

async fn serve(
    mut sock: TcpStream,
    addr: String,
    topic: String,
    partitions: i32,
    state: Arc<Mutex<State>>,
) {
    loop {
        let mut len = [0u8; 4];
        if sock.read_exact(&mut len).await.is_err() {
            return;
        }
        let mut frame = vec![0u8; i32::from_be_bytes(len) as usize];
        sock.read_exact(&mut frame).await.unwrap();
        let mut buf = Bytes::from(frame);
        let key = ApiKey::try_from(i16::from_be_bytes([buf[0], buf[1]])).unwrap();
        let version = i16::from_be_bytes([buf[2], buf[3]]);
        let header = RequestHeader::decode(&mut buf, key.request_header_version(version)).unwrap();
        let mut body = BytesMut::new();
        match key {
            ApiKey::ApiVersions => {
                let v = |k: ApiKey, min, max| {
                    let mut a = ApiVersion::default();
                    a.api_key = k as i16;
                    a.min_version = min;
                    a.max_version = max;
                    a
                };
                let mut r = ApiVersionsResponse::default();
                r.api_keys = vec![
                    v(ApiKey::ApiVersions, 0, 3),
                    v(ApiKey::Metadata, 0, 12),
                    v(ApiKey::Produce, 3, 11),
                ];
                r.encode(&mut body, version).unwrap();
            }
            ApiKey::Metadata => {
                let (host, port) = addr.rsplit_once(':').unwrap();
                let mut b = MetadataResponseBroker::default();
                b.node_id = BrokerId(1);
                b.host = StrBytes::from_string(host.to_string());
                b.port = port.parse().unwrap();
                let mut t = MetadataResponseTopic::default();
                t.name = Some(TopicName(StrBytes::from_string(topic.clone())));
                t.partitions = (0..partitions)
                    .map(|i| {
                        let mut p = MetadataResponsePartition::default();
                        p.partition_index = i;
                        p.leader_id = BrokerId(1);
                        p.replica_nodes = vec![BrokerId(1)];
                        p.isr_nodes = vec![BrokerId(1)];
                        p
                    })
                    .collect();
                let mut r = MetadataResponse::default();
                r.brokers = vec![b];
                r.controller_id = BrokerId(1);
                r.topics = vec![t];
                r.encode(&mut body, version).unwrap();
            }
            ApiKey::Produce => {
                let req = ProduceRequest::decode(&mut buf, version).unwrap();
                let mut st = state.lock().unwrap();
                let error = if st.produce_errors.is_empty() {
                    0
                } else {
                    st.produce_errors.remove(0)
                };
                let mut r = ProduceResponse::default();
                for td in req.topic_data {
                    let mut tr = TopicProduceResponse::default();
                    tr.name = td.name.clone();
                    for pd in td.partition_data {
                        let bytes = pd.records.unwrap_or_default();
                        let info =
                            RecordBatchDecoder::decode_batch_info(&mut bytes.clone()).unwrap();
                        st.batches.push(SeenBatch {
                            partition: pd.index,
                            base_sequence: info[0].base_sequence,
                            producer_id: info[0].producer_id,
                            record_count: info.iter().map(|i| i.record_count).sum(),
                            bytes,
                        });
                        let mut pr = PartitionProduceResponse::default();
                        pr.index = pd.index;
                        pr.error_code = error;
                        tr.partition_responses.push(pr);
                    }
                    r.responses.push(tr);
                }
                if req.acks == 0 {
                    continue;
                }
                r.encode(&mut body, version).unwrap();
            }
            other => panic!("fake broker does not handle {other:?}"),
        }
        let mut out = BytesMut::new();
        let mut rh = ResponseHeader::default();
        rh.correlation_id = header.correlation_id;
        rh.encode(&mut out, key.response_header_version(version))
            .unwrap();
        out.extend_from_slice(&body);
        let mut framed = BytesMut::with_capacity(out.len() + 4);
        framed.put_i32(out.len() as i32);
        framed.extend_from_slice(&out);
        sock.write_all(&framed).await.unwrap();
    }
}
