//! `throttle_time_ms` in responses, and whether the client waits it out itself (KIP-219).
//!
//! A throttled client is told how long to wait in its response and the broker stops reading
//! its connection for that long. Clients that speak a version from before KIP-219 do not back
//! off on their own; their response is held back for the throttle time instead.

use kafka_protocol::messages::{ApiKey, ResponseKind};

/// For each API Runnel serves: the first version whose response has `throttle_time_ms`, and
/// the first version whose client throttles itself (KIP-219).
fn versions(api: ApiKey) -> Option<(i16, i16)> {
    Some(match api {
        ApiKey::Produce => (1, 6),
        ApiKey::Fetch => (1, 8),
        ApiKey::ListOffsets => (2, 3),
        ApiKey::OffsetForLeaderEpoch => (2, 3),
        ApiKey::Metadata => (3, 6),
        ApiKey::ApiVersions => (1, 2),
        ApiKey::CreateTopics => (2, 3),
        ApiKey::DeleteTopics => (1, 2),
        ApiKey::DeleteRecords => (0, 1),
        ApiKey::InitProducerId => (0, 1),
        ApiKey::DescribeConfigs => (0, 2),
        ApiKey::AlterConfigs => (0, 1),
        ApiKey::CreatePartitions => (0, 1),
        ApiKey::IncrementalAlterConfigs => (0, 1),
        ApiKey::DescribeCluster => (0, 0),
        ApiKey::FindCoordinator => (1, 2),
        ApiKey::JoinGroup => (2, 3),
        ApiKey::SyncGroup => (1, 2),
        ApiKey::Heartbeat => (1, 2),
        ApiKey::LeaveGroup => (1, 2),
        ApiKey::OffsetCommit => (3, 4),
        ApiKey::OffsetFetch => (3, 4),
        ApiKey::ListGroups => (1, 2),
        ApiKey::DescribeGroups => (1, 2),
        ApiKey::DeleteGroups => (0, 1),
        ApiKey::OffsetDelete => (0, 0),
        ApiKey::ElectLeaders => (0, 0),
        ApiKey::CreateAcls => (0, 1),
        ApiKey::DescribeAcls => (0, 1),
        ApiKey::DeleteAcls => (0, 1),
        ApiKey::DescribeUserScramCredentials => (0, 0),
        ApiKey::AlterUserScramCredentials => (0, 0),
        ApiKey::DescribeClientQuotas => (0, 0),
        ApiKey::AlterClientQuotas => (0, 0),
        _ => return None,
    })
}

/// Whether a client of this API version waits out `throttle_time_ms` on its own.
pub fn client_throttles(api: ApiKey, version: i16) -> bool {
    versions(api).is_some_and(|(_, from)| version >= from)
}

/// Applies `f` to the response's `throttle_time_ms`, if the response has one.
fn with_field<T>(body: &mut ResponseKind, f: impl FnOnce(&mut i32) -> T) -> Option<T> {
    macro_rules! field {
        ($($v:ident),* $(,)?) => {
            match body {
                $(ResponseKind::$v(r) => Some(f(&mut r.throttle_time_ms)),)*
                _ => None,
            }
        };
    }
    field!(
        Produce,
        Fetch,
        ListOffsets,
        OffsetForLeaderEpoch,
        Metadata,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        InitProducerId,
        DescribeConfigs,
        AlterConfigs,
        CreatePartitions,
        IncrementalAlterConfigs,
        DescribeCluster,
        FindCoordinator,
        JoinGroup,
        SyncGroup,
        Heartbeat,
        LeaveGroup,
        OffsetCommit,
        OffsetFetch,
        ListGroups,
        DescribeGroups,
        DeleteGroups,
        OffsetDelete,
        ElectLeaders,
        CreateAcls,
        DescribeAcls,
        DeleteAcls,
        DescribeUserScramCredentials,
        AlterUserScramCredentials,
        DescribeClientQuotas,
        AlterClientQuotas,
    )
}

/// The throttle time a handler already put in the response (the controller mutation quota).
pub fn get(body: &mut ResponseKind) -> u64 {
    with_field(body, |t| (*t).max(0) as u64).unwrap_or(0)
}

/// Puts `ms` in the response, when this version of it has the field.
pub fn set(body: &mut ResponseKind, api: ApiKey, version: i16, ms: u64) {
    if versions(api).is_some_and(|(field_from, _)| version >= field_from) {
        with_field(body, |t| *t = ms.min(i32::MAX as u64) as i32);
    }
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::{FetchResponse, HeartbeatResponse};

    use super::*;

    #[test]
    fn the_field_is_set_only_where_the_version_has_it() {
        let mut body = ResponseKind::Fetch(FetchResponse::default());
        set(&mut body, ApiKey::Fetch, 0, 500);
        assert_eq!(get(&mut body), 0);
        set(&mut body, ApiKey::Fetch, 4, 500);
        assert_eq!(get(&mut body), 500);
        assert!(!client_throttles(ApiKey::Fetch, 7));
        assert!(client_throttles(ApiKey::Fetch, 8));
        let mut hb = ResponseKind::Heartbeat(HeartbeatResponse::default());
        set(&mut hb, ApiKey::Heartbeat, 4, 7);
        assert_eq!(get(&mut hb), 7);
        assert!(!client_throttles(ApiKey::SaslHandshake, 1));
    }
}
