//! The API versions Runnel implements, and what ApiVersions advertises.
//!
//! Architecture invariant: this table lists exactly the (api, version) pairs the broker handles.
//! Nothing is advertised because kafka-protocol can decode it; each range here is a claim that
//! a handler implements that version's semantics and a test exercises it.

use kafka_protocol::messages::ApiKey;

/// (api, min advertised, max advertised).
///
/// Produce is advertised from v0 as Kafka 4 does (older librdkafka turns compression off when
/// Produce's minimum is above 0), but versions below [`PRODUCE_MIN_ACCEPTED`] are refused when
/// actually sent (KIP-896).
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 0, 11),
    (ApiKey::Fetch, 4, 16),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 4),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::InitProducerId, 0, 5),
    // Transactions: the client side of the coordinator (AddPartitionsToTxn v4+ are for brokers
    // verifying a produce, KIP-890, which Runnel's brokers do over their gRPC links).
    (ApiKey::AddPartitionsToTxn, 0, 3),
    (ApiKey::AddOffsetsToTxn, 0, 4),
    (ApiKey::EndTxn, 0, 4),
    (ApiKey::TxnOffsetCommit, 0, 4),
    // An administrator's abort of a hanging transaction (kafka-transactions.sh abort; Kafka 4
    // serves v1 only). Runnel's coordinators send their markers over the gRPC links.
    (ApiKey::WriteTxnMarkers, 1, 1),
    // Inspecting producers and transactions (KIP-664; ListTransactions v1 is KIP-994's
    // duration filter).
    (ApiKey::DescribeProducers, 0, 0),
    (ApiKey::DescribeTransactions, 0, 0),
    (ApiKey::ListTransactions, 0, 1),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    // Group coordination, the classic protocol: Kafka 4.0's ranges (KIP-896 removed JoinGroup
    // v0-1, OffsetCommit v0-1, OffsetFetch v0), except that JoinGroup v1 is kept for sarama
    // 1.22, which sends it without negotiating.
    (ApiKey::FindCoordinator, 0, 6),
    (ApiKey::JoinGroup, 1, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 9),
    (ApiKey::OffsetFetch, 1, 9),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 6),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    // The metadata quorum (KIP-595/836); v2 (KIP-853's node listeners) is not implemented.
    (ApiKey::DescribeQuorum, 0, 1),
    // Preferred and unclean leader election (KIP-183, KIP-460), decided by the controller.
    (ApiKey::ElectLeaders, 0, 2),
    // v0 is followed by raw SASL tokens, v1 by SaslAuthenticate requests (KIP-152).
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::DescribeAcls, 1, 3),
    (ApiKey::CreateAcls, 1, 3),
    (ApiKey::DeleteAcls, 1, 3),
    (ApiKey::DescribeUserScramCredentials, 0, 0),
    (ApiKey::AlterUserScramCredentials, 0, 0),
    // Client quotas (KIP-546), stored in the metadata log and enforced by each broker.
    (ApiKey::DescribeClientQuotas, 0, 1),
    (ApiKey::AlterClientQuotas, 0, 1),
];

/// Versions accepted when sent but not advertised: Kafka 4 removed them (KIP-896), but clients
/// still in use send them without negotiating (sarama 1.22's consumer groups commit with
/// OffsetCommit v1). Decoded by [`crate::legacy`].
pub const ACCEPTED_UNADVERTISED: &[(ApiKey, i16, i16)] = &[(ApiKey::OffsetCommit, 0, 1)];

/// Produce v0-2 used the pre-v2 message format, which Kafka 4 removed.
pub const PRODUCE_MIN_ACCEPTED: i16 = 3;

/// The advertised range of an API, if Runnel implements it at all.
pub fn advertised(api_key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == api_key)
        .map(|&(_, min, max)| (min, max))
}

/// Whether a request of this version is accepted and decoded.
pub fn is_supported(api_key: ApiKey, version: i16) -> bool {
    if ACCEPTED_UNADVERTISED
        .iter()
        .any(|&(k, min, max)| k == api_key && (min..=max).contains(&version))
    {
        return true;
    }
    match advertised(api_key) {
        Some((min, max)) => {
            let min = if api_key == ApiKey::Produce {
                PRODUCE_MIN_ACCEPTED
            } else {
                min
            };
            (min..=max).contains(&version)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_advertised_version_is_decodable_by_kafka_protocol() {
        for &(key, min, max) in SUPPORTED {
            let valid = key.valid_versions();
            let accepted_min = if key == ApiKey::Produce {
                PRODUCE_MIN_ACCEPTED
            } else {
                min
            };
            assert!(
                valid.min <= accepted_min && max <= valid.max,
                "{key:?} {accepted_min}..={max} outside kafka-protocol's {valid}"
            );
        }
    }

    #[test]
    fn produce_v0_to_v2_is_advertised_but_refused() {
        assert_eq!(advertised(ApiKey::Produce), Some((0, 11)));
        assert!(!is_supported(ApiKey::Produce, 2));
        assert!(is_supported(ApiKey::Produce, 3));
        assert!(!is_supported(ApiKey::JoinGroup, 0));
    }
}
