//! Brokers: registration, fencing and unfencing, controlled shutdown, and the leader elections
//! they cause; ISR changes proposed by partition leaders (AlterPartition); the cluster id.
//!
//! Elections follow KRaft: the new leader is the first replica (in replica order, so the
//! preferred leader wins when it can) that is in the ISR and *active*: unfenced and not in
//! controlled shutdown. A fenced broker leaves every ISR except when it is the last member: the
//! ISR never becomes empty, so the partition remembers who had all committed data. Without an
//! eligible ISR member the partition stays leaderless, unless unclean leader election is enabled
//! for the topic; then the first active replica leads with an ISR of itself (committed data may
//! be lost, by the user's choice).
//!
//! Controlled shutdown (KRaft's): a broker that wants to stop says so in its heartbeats. The
//! active controller records that it is in controlled shutdown and takes it out of every ISR
//! and leadership exactly as fencing would, while it keeps serving as a follower until it stops;
//! it may stop once it leads nothing (see [`leads_any`]) and is then fenced.

use std::collections::BTreeSet;

use uuid::Uuid;

use super::staged::Staged;
use super::{ControllerResult, ManagerConfig};
use crate::api::{AlterPartitionRequest, ControllerError, PartitionState, RegisterBrokerRequest};
use crate::image::{MetadataImage, PartitionRegistration, NO_LEADER};
use crate::records::{
    BrokerId, BrokerRegistrationChangeRecord, ClusterIdRecord, ConfigResourceType,
    FeatureLevelRecord, FenceBrokerRecord, PartitionChangeRecord, Record, RegisterBrokerRecord,
    UnfenceBrokerRecord,
};

/// The feature every new cluster finalizes at level 1.
pub const METADATA_VERSION: &str = "metadata.version";

/// The topic config that overrides [`ManagerConfig::unclean_leader_election`].
pub const UNCLEAN_LEADER_ELECTION: &str = "unclean.leader.election.enable";

/// Records that set the cluster id (and initial feature levels) when the image has none.
pub fn bootstrap(image: &MetadataImage, cluster_id: &str) -> ControllerResult<()> {
    if image.cluster_id().is_some() {
        return ControllerResult::new(Vec::new(), ());
    }
    if cluster_id.is_empty() {
        // The image would refuse the record; the node always passes a non-empty id.
        tracing::error!("refusing to bootstrap the cluster with an empty cluster id");
        return ControllerResult::new(Vec::new(), ());
    }
    let mut records = vec![Record::ClusterId(ClusterIdRecord {
        cluster_id: cluster_id.to_string(),
    })];
    if image.feature_level(METADATA_VERSION).is_none() {
        records.push(Record::FeatureLevel(FeatureLevelRecord {
            name: METADATA_VERSION.to_string(),
            feature_level: 1,
        }));
    }
    tracing::info!(cluster_id, "bootstrapping a new cluster");
    ControllerResult::new(records, ())
}

/// Registers a broker incarnation (fenced until it catches up). A registration of another
/// incarnation is refused with DUPLICATE_BROKER_REGISTRATION while the registered one is
/// unfenced and `session_live(its incarnation)` says its session has not expired (Kafka's
/// rule): two processes must not serve as one broker. A broker restarted after a clean
/// shutdown (fenced) or a crash (once its session expires) registers again.
pub fn register_broker(
    image: &MetadataImage,
    cfg: &ManagerConfig,
    req: &RegisterBrokerRequest,
    session_live: impl Fn(Uuid) -> bool,
) -> ControllerResult<Result<(), ControllerError>> {
    if req.broker_id < 0 {
        return refuse(ControllerError::InvalidRequest(format!(
            "Invalid broker id {}: broker ids must be non-negative.",
            req.broker_id
        )));
    }
    if req.endpoints.is_empty() {
        return refuse(ControllerError::InvalidRequest(format!(
            "Broker {} registered without any listener endpoint.",
            req.broker_id
        )));
    }
    if let Some(current) = image.broker(req.broker_id) {
        if current.incarnation_id == req.incarnation_id {
            // A retried registration of the same process.
            return ControllerResult::new(Vec::new(), Ok(()));
        }
        if !current.fenced && session_live(current.incarnation_id) {
            tracing::warn!(
                broker_id = req.broker_id,
                incarnation_id = %req.incarnation_id,
                registered_incarnation = %current.incarnation_id,
                "registration refused: another incarnation of the broker is live"
            );
            return refuse(ControllerError::DuplicateBrokerRegistration(format!(
                "Another broker is registered with broker id {}: incarnation {} is unfenced and \
                 its session has not expired.",
                req.broker_id, current.incarnation_id
            )));
        }
    }
    let previous = image.broker(req.broker_id).map(|b| b.incarnation_id);
    let mut staged = Staged::new(image);
    // The registration fences the broker; a restarted broker then leaves ISRs and leadership
    // exactly as if its old incarnation had been fenced.
    staged.push(Record::RegisterBroker(RegisterBrokerRecord {
        broker_id: req.broker_id,
        incarnation_id: req.incarnation_id,
        endpoints: req.endpoints.clone(),
        rack: req.rack.clone(),
    }));
    step_down(&mut staged, cfg, req.broker_id);
    tracing::info!(
        broker_id = req.broker_id,
        incarnation_id = %req.incarnation_id,
        previous_incarnation = ?previous,
        rack = ?req.rack,
        "broker registered (fenced until it catches up)"
    );
    ControllerResult::new(staged.into_records(), Ok(()))
}

pub fn fence_broker(
    image: &MetadataImage,
    cfg: &ManagerConfig,
    broker_id: BrokerId,
    incarnation_id: Uuid,
) -> ControllerResult<()> {
    match image.broker(broker_id) {
        Some(b) if b.incarnation_id == incarnation_id && !b.fenced => {}
        _ => return ControllerResult::new(Vec::new(), ()),
    }
    let mut staged = Staged::new(image);
    staged.push(Record::FenceBroker(FenceBrokerRecord {
        broker_id,
        incarnation_id,
    }));
    step_down(&mut staged, cfg, broker_id);
    let records = staged.into_records();
    tracing::info!(
        broker_id,
        %incarnation_id,
        partition_changes = records.len().saturating_sub(1),
        "broker fenced"
    );
    ControllerResult::new(records, ())
}

/// A registered, unfenced broker of this incarnation enters controlled shutdown: the records
/// that mark it so (unless it already is) and move its leaderships to other active ISR members
/// and take it out of every ISR it is not the last member of. A partition without another
/// eligible leader becomes leaderless (its ISR kept) and is elected again when a broker comes
/// back. Writes nothing for a fenced broker or another incarnation. Running it again for a
/// broker already in controlled shutdown only moves what is still there (normally nothing).
pub fn controlled_shutdown(
    image: &MetadataImage,
    cfg: &ManagerConfig,
    broker_id: BrokerId,
    incarnation_id: Uuid,
) -> ControllerResult<()> {
    let already = match image.broker(broker_id) {
        Some(b) if b.incarnation_id == incarnation_id && !b.fenced => b.in_controlled_shutdown,
        _ => return ControllerResult::new(Vec::new(), ()),
    };
    let mut staged = Staged::new(image);
    if !already {
        staged.push(Record::BrokerRegistrationChange(
            BrokerRegistrationChangeRecord {
                broker_id,
                incarnation_id,
                in_controlled_shutdown: Some(true),
            },
        ));
    }
    step_down(&mut staged, cfg, broker_id);
    let records = staged.into_records();
    if !records.is_empty() {
        tracing::info!(
            broker_id,
            %incarnation_id,
            partition_changes = records.len() - usize::from(!already),
            "broker in controlled shutdown; its leaderships move away"
        );
    }
    ControllerResult::new(records, ())
}

/// Whether `broker` leads any partition (a broker in controlled shutdown may stop once it
/// leads none).
pub fn leads_any(image: &MetadataImage, broker: BrokerId) -> bool {
    partitions(image).any(|(_, _, _, reg)| reg.leader == broker)
}

/// Whether a broker in controlled shutdown may stop now (KRaft's rule): it leads nothing, and
/// every other active broker has reported (`applied(id, incarnation)`) applying the metadata
/// log up to `shutdown_index`, where its hand-over was committed, so no broker still acts on
/// leaderships or ISRs from before it. A broker that has not reported is not caught up; one
/// that stopped heartbeating holds the shutdown up until it is fenced.
pub fn shutdown_complete(
    image: &MetadataImage,
    broker: BrokerId,
    shutdown_index: u64,
    applied: impl Fn(BrokerId, Uuid) -> Option<u64>,
) -> bool {
    !leads_any(image, broker)
        && image
            .brokers()
            .filter(|b| b.broker_id != broker && b.is_active())
            .all(|b| applied(b.broker_id, b.incarnation_id).is_some_and(|i| i >= shutdown_index))
}

pub fn unfence_broker(
    image: &MetadataImage,
    cfg: &ManagerConfig,
    broker_id: BrokerId,
    incarnation_id: Uuid,
) -> ControllerResult<Result<(), ControllerError>> {
    let Some(b) = image.broker(broker_id) else {
        return refuse(ControllerError::StaleBrokerEpoch(format!(
            "Broker {broker_id} is not registered."
        )));
    };
    if b.incarnation_id != incarnation_id {
        return refuse(ControllerError::StaleBrokerEpoch(format!(
            "Broker {broker_id} is registered with incarnation {}, not {incarnation_id}.",
            b.incarnation_id
        )));
    }
    if !b.fenced {
        return ControllerResult::new(Vec::new(), Ok(()));
    }
    let mut staged = Staged::new(image);
    staged.push(Record::UnfenceBroker(UnfenceBrokerRecord {
        broker_id,
        incarnation_id,
    }));
    // Partitions that lost every eligible leader may elect again now.
    let changes: Vec<PartitionChangeRecord> = partitions(staged.image())
        .filter(|(_, _, _, reg)| reg.leader == NO_LEADER)
        .filter_map(|(name, topic_id, partition, reg)| {
            let (isr, leader) = elect(staged.image(), cfg, name, reg, reg.isr.clone());
            change(topic_id, partition, reg, isr, leader)
        })
        .collect();
    for c in changes {
        tracing::debug!(
            broker_id,
            topic_id = %c.topic_id,
            partition = c.partition,
            leader = ?c.leader,
            isr = ?c.isr,
            "leaderless partition elects a leader"
        );
        staged.push(Record::PartitionChange(c));
    }
    let records = staged.into_records();
    tracing::info!(
        broker_id,
        %incarnation_id,
        partition_changes = records.len().saturating_sub(1),
        "broker unfenced"
    );
    ControllerResult::new(records, Ok(()))
}

pub fn alter_partition(
    image: &MetadataImage,
    req: &AlterPartitionRequest,
) -> ControllerResult<Result<PartitionState, ControllerError>> {
    match check_alter_partition(image, req) {
        Err(e) => {
            tracing::debug!(
                broker_id = req.broker_id,
                topic_id = %req.topic_id,
                partition = req.partition,
                error = %e,
                "AlterPartition refused"
            );
            refuse(e)
        }
        Ok(None) => {
            let reg = image
                .partition(&req.topic_id, req.partition)
                .expect("checked above");
            ControllerResult::new(Vec::new(), Ok(state(reg)))
        }
        Ok(Some(new_isr)) => {
            let mut staged = Staged::new(image);
            staged.push(Record::PartitionChange(PartitionChangeRecord {
                topic_id: req.topic_id,
                partition: req.partition,
                isr: Some(new_isr.clone()),
                leader: None,
            }));
            let response = match staged.image().partition(&req.topic_id, req.partition) {
                Some(reg) => Ok(state(reg)),
                None => Err(ControllerError::Internal(
                    "partition vanished while changing its ISR".into(),
                )),
            };
            tracing::info!(
                broker_id = req.broker_id,
                topic_id = %req.topic_id,
                partition = req.partition,
                isr = ?new_isr,
                "ISR changed"
            );
            ControllerResult::new(staged.into_records(), response)
        }
    }
}

/// `Ok(Some(isr))` for a valid change, `Ok(None)` when the ISR is unchanged.
fn check_alter_partition(
    image: &MetadataImage,
    req: &AlterPartitionRequest,
) -> Result<Option<Vec<BrokerId>>, ControllerError> {
    let tp = format!("{}-{}", req.topic_id, req.partition);
    let reg = image
        .partition(&req.topic_id, req.partition)
        .ok_or_else(|| {
            ControllerError::UnknownTopicOrPartition(format!("Partition {tp} does not exist."))
        })?;
    match image.broker(req.broker_id) {
        Some(b) if b.incarnation_id == req.incarnation_id => {}
        Some(b) => {
            return Err(ControllerError::StaleBrokerEpoch(format!(
                "Broker {} is registered with incarnation {}, not {}.",
                req.broker_id, b.incarnation_id, req.incarnation_id
            )))
        }
        None => {
            return Err(ControllerError::StaleBrokerEpoch(format!(
                "Broker {} is not registered.",
                req.broker_id
            )))
        }
    }
    if reg.leader != req.broker_id {
        return Err(ControllerError::NotLeaderOrFollower(format!(
            "Broker {} is not the leader of {tp} (the leader is {}).",
            req.broker_id, reg.leader
        )));
    }
    if req.leader_epoch < reg.leader_epoch {
        return Err(ControllerError::FencedLeaderEpoch(format!(
            "Leader epoch {} of {tp} is older than the current {}.",
            req.leader_epoch, reg.leader_epoch
        )));
    }
    if req.leader_epoch > reg.leader_epoch {
        return Err(ControllerError::InvalidUpdateVersion(format!(
            "Leader epoch {} of {tp} is newer than the current {}.",
            req.leader_epoch, reg.leader_epoch
        )));
    }
    if req.partition_epoch != reg.partition_epoch {
        return Err(ControllerError::InvalidUpdateVersion(format!(
            "Partition epoch {} of {tp} is not the current {}.",
            req.partition_epoch, reg.partition_epoch
        )));
    }
    let set: BTreeSet<BrokerId> = req.new_isr.iter().copied().collect();
    if set.len() != req.new_isr.len() {
        return Err(ControllerError::InvalidRequest(format!(
            "The proposed ISR {:?} of {tp} contains duplicates.",
            req.new_isr
        )));
    }
    if !set.contains(&reg.leader) {
        return Err(ControllerError::InvalidRequest(format!(
            "The proposed ISR {:?} of {tp} does not contain the leader {}.",
            req.new_isr, reg.leader
        )));
    }
    for &b in &req.new_isr {
        if !reg.replicas.contains(&b) {
            return Err(ControllerError::IneligibleReplica(format!(
                "Broker {b} in the proposed ISR of {tp} is not a replica."
            )));
        }
        if b != reg.leader && image.broker(b).is_none_or(|r| !r.is_active()) {
            return Err(ControllerError::IneligibleReplica(format!(
                "Broker {b} in the proposed ISR of {tp} is fenced or shutting down."
            )));
        }
    }
    let current: BTreeSet<BrokerId> = reg.isr.iter().copied().collect();
    if current == set {
        Ok(None)
    } else {
        Ok(Some(req.new_isr.clone()))
    }
}

fn state(reg: &PartitionRegistration) -> PartitionState {
    PartitionState {
        leader: reg.leader,
        leader_epoch: reg.leader_epoch,
        partition_epoch: reg.partition_epoch,
        isr: reg.isr.clone(),
    }
}

fn refuse<T>(e: ControllerError) -> ControllerResult<Result<T, ControllerError>> {
    ControllerResult::new(Vec::new(), Err(e))
}

/// Whether unclean leader election applies to a topic: its config override, else the
/// cluster default.
pub(crate) fn unclean_enabled(image: &MetadataImage, cfg: &ManagerConfig, topic: &str) -> bool {
    match image
        .configs(ConfigResourceType::Topic, topic)
        .and_then(|c| c.get(UNCLEAN_LEADER_ELECTION))
    {
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        _ => cfg.unclean_leader_election,
    }
}

/// Every partition: (topic name, topic id, index, registration).
pub(super) fn partitions(
    image: &MetadataImage,
) -> impl Iterator<Item = (&str, Uuid, i32, &PartitionRegistration)> {
    image.topics().flat_map(|t| {
        t.partitions
            .iter()
            .map(move |(p, reg)| (t.name.as_str(), t.topic_id, *p, reg))
    })
}

/// Whether `b` may lead or join an ISR: registered, unfenced, not in controlled shutdown.
pub(super) fn active(image: &MetadataImage, b: BrokerId) -> bool {
    image.broker(b).is_some_and(|r| r.is_active())
}

/// The (ISR, leader) a partition ends up with when a leader is chosen from `isr`.
fn elect(
    image: &MetadataImage,
    cfg: &ManagerConfig,
    topic: &str,
    reg: &PartitionRegistration,
    isr: Vec<BrokerId>,
) -> (Vec<BrokerId>, BrokerId) {
    if let Some(&leader) = reg
        .replicas
        .iter()
        .find(|&&r| isr.contains(&r) && active(image, r))
    {
        return (isr, leader);
    }
    if unclean_enabled(image, cfg, topic) {
        if let Some(&leader) = reg.replicas.iter().find(|&&r| active(image, r)) {
            tracing::warn!(
                topic,
                leader,
                previous_isr = ?isr,
                "unclean leader election: a replica outside the ISR leads"
            );
            return (vec![leader], leader);
        }
    }
    (isr, NO_LEADER)
}

/// The record that moves `reg` to (`isr`, `leader`), or none when nothing changes. The leader
/// is named only when it changes, so the leader epoch bumps exactly then.
pub(super) fn change(
    topic_id: Uuid,
    partition: i32,
    reg: &PartitionRegistration,
    isr: Vec<BrokerId>,
    leader: BrokerId,
) -> Option<PartitionChangeRecord> {
    let isr = (isr != reg.isr).then_some(isr);
    let leader = (leader != reg.leader).then_some(leader);
    (isr.is_some() || leader.is_some()).then_some(PartitionChangeRecord {
        topic_id,
        partition,
        isr,
        leader,
    })
}

/// After `broker` was fenced (or put in controlled shutdown) in `staged`: takes it out of every
/// ISR (except as the last member) and moves its leaderships elsewhere.
fn step_down(staged: &mut Staged, cfg: &ManagerConfig, broker: BrokerId) {
    let image = staged.image();
    let changes: Vec<PartitionChangeRecord> = partitions(image)
        .filter(|(_, _, _, reg)| reg.isr.contains(&broker) || reg.leader == broker)
        .filter_map(|(name, topic_id, partition, reg)| {
            let isr: Vec<BrokerId> = if reg.isr.len() > 1 {
                reg.isr.iter().copied().filter(|&b| b != broker).collect()
            } else {
                reg.isr.clone()
            };
            let (isr, leader) = if reg.leader == broker || reg.leader == NO_LEADER {
                elect(image, cfg, name, reg, isr)
            } else {
                (isr, reg.leader)
            };
            change(topic_id, partition, reg, isr, leader)
        })
        .collect();
    for c in changes {
        tracing::debug!(
            broker_id = broker,
            topic_id = %c.topic_id,
            partition = c.partition,
            leader = ?c.leader,
            isr = ?c.isr,
            "broker leaves ISR / leadership"
        );
        staged.push(Record::PartitionChange(c));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::managers::testkit::{
        apply_all, brokers, check_invariants, endpoint, inc, replay, with_topic,
    };
    use crate::records::ConfigRecord;

    const T: u128 = 77;

    fn tid() -> Uuid {
        Uuid::from_u128(T)
    }

    fn part(image: &MetadataImage, p: i32) -> PartitionRegistration {
        image.partition(&tid(), p).unwrap().clone()
    }

    fn fence(image: &MetadataImage, cfg: &ManagerConfig, b: BrokerId) -> MetadataImage {
        let r = fence_broker(image, cfg, b, inc(b));
        assert!(!r.records.is_empty(), "fencing {b} wrote nothing");
        replay(image, &r)
    }

    fn unfence(image: &MetadataImage, cfg: &ManagerConfig, b: BrokerId) -> MetadataImage {
        let r = unfence_broker(image, cfg, b, inc(b));
        assert_eq!(r.response, Ok(()));
        replay(image, &r)
    }

    fn register_req(b: BrokerId, incarnation: Uuid) -> RegisterBrokerRequest {
        RegisterBrokerRequest {
            broker_id: b,
            incarnation_id: incarnation,
            endpoints: vec![endpoint()],
            rack: None,
            rpc_address: "127.0.0.1:1".into(),
        }
    }

    fn set_topic_config(image: &MetadataImage, key: &str, value: &str) -> MetadataImage {
        apply_all(
            image,
            &[Record::Config(ConfigRecord {
                resource_type: ConfigResourceType::Topic,
                resource_name: "t".into(),
                name: key.into(),
                value: Some(value.into()),
            })],
        )
    }

    #[test]
    fn bootstrap_sets_cluster_id_once() {
        let image = MetadataImage::new();
        let r = bootstrap(&image, "abc");
        assert_eq!(r.records.len(), 2);
        let after = replay(&image, &r);
        assert_eq!(after.cluster_id(), Some("abc"));
        assert_eq!(after.feature_level(METADATA_VERSION), Some(1));
        assert!(bootstrap(&after, "abc").records.is_empty());
        assert!(bootstrap(&after, "other").records.is_empty());
        assert!(bootstrap(&image, "").records.is_empty());
    }

    #[test]
    fn fencing_the_leader_elects_the_next_isr_member() {
        let cfg = ManagerConfig::default();
        let image = with_topic(&brokers(3), "t", T, &[&[1, 2, 3], &[2, 3, 1]]);
        let after = fence(&image, &cfg, 1);
        assert!(after.broker(1).unwrap().fenced);
        let p0 = part(&after, 0);
        assert_eq!((p0.leader, p0.leader_epoch, p0.partition_epoch), (2, 1, 1));
        assert_eq!(p0.isr, vec![2, 3]);
        // Partition 1 keeps its leader (no leader epoch bump) and loses 1 from its ISR.
        let p1 = part(&after, 1);
        assert_eq!((p1.leader, p1.leader_epoch, p1.partition_epoch), (2, 0, 1));
        assert_eq!(p1.isr, vec![2, 3]);
        // Fencing twice, or a stale incarnation, writes nothing.
        assert!(fence_broker(&after, &cfg, 1, inc(1)).records.is_empty());
        assert!(fence_broker(&image, &cfg, 1, Uuid::from_u128(5))
            .records
            .is_empty());
        assert!(fence_broker(&image, &cfg, 9, inc(9)).records.is_empty());
    }

    #[test]
    fn the_last_isr_member_stays_and_the_partition_goes_leaderless() {
        let cfg = ManagerConfig::default();
        let image = with_topic(&brokers(2), "t", T, &[&[1, 2]]);
        let image = fence(&image, &cfg, 2);
        assert_eq!(part(&image, 0).isr, vec![1]);
        let image = fence(&image, &cfg, 1);
        let p = part(&image, 0);
        assert_eq!(p.leader, NO_LEADER);
        assert_eq!(p.isr, vec![1], "the last ISR member is kept");
        assert_eq!(p.leader_epoch, 1);
        // Broker 2 comes back: it is no ISR member, so without unclean election nothing moves.
        let image = unfence(&image, &cfg, 2);
        assert_eq!(part(&image, 0).leader, NO_LEADER);
        // Broker 1 comes back and leads again.
        let image = unfence(&image, &cfg, 1);
        let p = part(&image, 0);
        assert_eq!((p.leader, p.leader_epoch), (1, 2));
        assert_eq!(p.isr, vec![1]);
    }

    #[test]
    fn unclean_election_by_broker_default() {
        let cfg = ManagerConfig {
            unclean_leader_election: true,
            ..ManagerConfig::default()
        };
        let image = with_topic(&brokers(2), "t", T, &[&[1, 2]]);
        let image = fence(&image, &cfg, 2);
        let image = fence(&image, &cfg, 1);
        assert_eq!(part(&image, 0).leader, NO_LEADER);
        let image = unfence(&image, &cfg, 2);
        let p = part(&image, 0);
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
    }

    #[test]
    fn unclean_election_by_topic_override_both_ways() {
        let clean = ManagerConfig::default();
        let unclean = ManagerConfig {
            unclean_leader_election: true,
            ..ManagerConfig::default()
        };
        // ISR shrank to [1] earlier (2 fell behind) while 2 stays unfenced.
        let base = with_topic(&brokers(2), "t", T, &[&[1, 2]]);
        let base = apply_all(
            &base,
            &[Record::PartitionChange(PartitionChangeRecord {
                topic_id: tid(),
                partition: 0,
                isr: Some(vec![1]),
                leader: None,
            })],
        );
        // Default off, topic on: 2 takes over right away when 1 is fenced.
        let on = set_topic_config(&base, UNCLEAN_LEADER_ELECTION, "true");
        let after = fence(&on, &clean, 1);
        let p = part(&after, 0);
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
        // Default on, topic off: no unclean election.
        let off = set_topic_config(&base, UNCLEAN_LEADER_ELECTION, "false");
        let after = fence(&off, &unclean, 1);
        let p = part(&after, 0);
        assert_eq!((p.leader, p.isr.clone()), (NO_LEADER, vec![1]));
        // Neither: the out-of-sync replica is never elected.
        let after = fence(&base, &clean, 1);
        assert_eq!(part(&after, 0).leader, NO_LEADER);
    }

    #[test]
    fn fenced_isr_members_are_skipped_in_elections() {
        let cfg = ManagerConfig::default();
        // ISR [1, 2, 3] where 2 is fenced but (artificially) still in the ISR: 3 is elected.
        let image = with_topic(&brokers(3), "t", T, &[&[1, 2, 3]]);
        let image = apply_all(
            &image,
            &[Record::FenceBroker(FenceBrokerRecord {
                broker_id: 2,
                incarnation_id: inc(2),
            })],
        );
        let r = fence_broker(&image, &cfg, 1, inc(1));
        let after = apply_all(&image, &r.records);
        let p = part(&after, 0);
        assert_eq!((p.leader, p.isr.clone()), (3, vec![2, 3]));
    }

    fn shut_down(image: &MetadataImage, cfg: &ManagerConfig, b: BrokerId) -> MetadataImage {
        let r = controlled_shutdown(image, cfg, b, inc(b));
        assert!(
            !r.records.is_empty(),
            "controlled shutdown of {b} wrote nothing"
        );
        replay(image, &r)
    }

    #[test]
    fn controlled_shutdown_moves_leaders_to_active_isr_members_only() {
        let cfg = ManagerConfig::default();
        // p0 led by 1 (ISR 1,2,3); p1 led by 1 whose next replica 4 is fenced but still in the
        // ISR and 3 is in controlled shutdown; p2 followed by 1; p3 led by 1 alone.
        let image = with_topic(
            &brokers(4),
            "t",
            T,
            &[&[1, 2, 3], &[1, 4, 3, 2], &[2, 1, 3], &[1]],
        );
        let image = apply_all(
            &image,
            &[Record::FenceBroker(FenceBrokerRecord {
                broker_id: 4,
                incarnation_id: inc(4),
            })],
        );
        // 3 shuts down first: it leads nothing, leaves every ISR.
        let image = shut_down(&image, &cfg, 3);
        assert!(image.broker(3).unwrap().in_controlled_shutdown);
        assert!(!image.broker(3).unwrap().fenced);
        for p in 0..3 {
            assert!(!part(&image, p).isr.contains(&3), "p{p}");
        }
        let before = image.clone();
        let r = controlled_shutdown(&image, &cfg, 1, inc(1));
        assert!(matches!(r.records[0], Record::BrokerRegistrationChange(_)));
        let image = replay(&image, &r);
        let b1 = image.broker(1).unwrap();
        assert!(b1.in_controlled_shutdown && !b1.fenced);
        let p0 = part(&image, 0);
        assert_eq!((p0.leader, p0.isr.clone()), (2, vec![2]));
        assert_eq!(p0.leader_epoch, part(&before, 0).leader_epoch + 1);
        // Fenced 4 and shutting-down 3 are skipped: 2 leads.
        let p1 = part(&image, 1);
        assert_eq!((p1.leader, p1.isr.clone()), (2, vec![4, 2]));
        assert_eq!(p1.leader_epoch, part(&before, 1).leader_epoch + 1);
        // A follower leaves the ISR, the leader (and its epoch) stays.
        let p2 = part(&image, 2);
        assert_eq!((p2.leader, p2.isr.clone()), (2, vec![2]));
        assert_eq!(p2.leader_epoch, part(&before, 2).leader_epoch);
        assert!(p2.partition_epoch > part(&before, 2).partition_epoch);
        // No other eligible leader: leaderless, the ISR kept, the epoch bumped.
        let p3 = part(&image, 3);
        assert_eq!((p3.leader, p3.isr.clone()), (NO_LEADER, vec![1]));
        assert_eq!(p3.leader_epoch, part(&before, 3).leader_epoch + 1);
        assert!(!leads_any(&image, 1));
        // Running it again writes nothing.
        assert!(controlled_shutdown(&image, &cfg, 1, inc(1))
            .records
            .is_empty());
        // Another incarnation, a fenced or unknown broker: nothing.
        assert!(controlled_shutdown(&before, &cfg, 1, Uuid::from_u128(9))
            .records
            .is_empty());
        assert!(controlled_shutdown(&before, &cfg, 4, inc(4))
            .records
            .is_empty());
        assert!(controlled_shutdown(&before, &cfg, 7, inc(7))
            .records
            .is_empty());
    }

    #[test]
    fn a_broker_in_controlled_shutdown_is_never_elected() {
        let cfg = ManagerConfig::default();
        let unclean = ManagerConfig {
            unclean_leader_election: true,
            ..ManagerConfig::default()
        };
        let image = with_topic(&brokers(3), "t", T, &[&[1, 2], &[3, 1]]);
        let image = shut_down(&image, &cfg, 1);
        // p0 is now led by 2. 2 is fenced: 1 is the only other replica, shutting down.
        let image = fence(&image, &unclean, 2);
        assert_eq!(part(&image, 0).leader, NO_LEADER);
        assert_eq!(part(&image, 0).isr, vec![2]);
        // Unfencing 3 elects nothing for p0 (1 is no candidate even with unclean election).
        let image = fence(&image, &cfg, 3);
        assert_eq!(part(&image, 1).leader, NO_LEADER);
        assert_eq!(part(&image, 1).isr, vec![3]);
        let image = unfence(&image, &unclean, 3);
        assert_eq!(part(&image, 0).leader, NO_LEADER);
        assert_eq!(part(&image, 1).leader, 3);
        // It cannot join an ISR either.
        let r = alter_partition(
            &image,
            &AlterPartitionRequest {
                broker_id: 3,
                incarnation_id: inc(3),
                topic_id: tid(),
                partition: 1,
                leader_epoch: part(&image, 1).leader_epoch,
                partition_epoch: part(&image, 1).partition_epoch,
                new_isr: vec![3, 1],
            },
        );
        assert!(matches!(
            r.response,
            Err(ControllerError::IneligibleReplica(_))
        ));
        // No new partition is placed on it, nor does it enter a new partition's ISR.
        assert!(!crate::managers::placement::usable_brokers(&image)
            .iter()
            .any(|c| c.id == 1));

        // When 2 comes back, it leads p0 again; 1 still does not.
        let image = unfence(&image, &cfg, 2);
        assert_eq!(part(&image, 0).leader, 2);
    }

    #[test]
    fn controlled_shutdown_is_cleared_by_a_new_registration() {
        let cfg = ManagerConfig::default();
        let image = with_topic(&brokers(2), "t", T, &[&[1, 2]]);
        let image = shut_down(&image, &cfg, 1);
        assert_eq!(part(&image, 0).leader, 2);
        let image = fence(&image, &cfg, 1);
        // The restarted broker registers anew and, once unfenced, is a candidate again.
        let restarted = Uuid::from_u128(4242);
        let image = replay(
            &image,
            &register_broker(&image, &cfg, &register_req(1, restarted), |_| false),
        );
        assert!(!image.broker(1).unwrap().in_controlled_shutdown);
        let image = replay(&image, &unfence_broker(&image, &cfg, 1, restarted));
        assert!(image.broker(1).unwrap().is_active());
        // Back in the ISR (replication would do this), it can lead again.
        let image = apply_all(
            &image,
            &[Record::PartitionChange(PartitionChangeRecord {
                topic_id: tid(),
                partition: 0,
                isr: Some(vec![2, 1]),
                leader: None,
            })],
        );
        let image = fence(&image, &cfg, 2);
        assert_eq!(part(&image, 0).leader, 1);
    }

    #[test]
    fn shutdown_completes_once_leaderless_and_every_active_broker_caught_up() {
        let cfg = ManagerConfig::default();
        let image = with_topic(&brokers(4), "t", T, &[&[1, 2], &[3, 1]]);
        let image = fence(&image, &cfg, 4);
        assert!(
            !shutdown_complete(&image, 1, 10, |_, _| Some(100)),
            "1 leads p0"
        );
        let image = shut_down(&image, &cfg, 1);
        let reported = |known: &'static [(BrokerId, u64)]| {
            move |b: BrokerId, incarnation: Uuid| {
                assert_eq!(incarnation, inc(b));
                known.iter().find(|(id, _)| *id == b).map(|(_, i)| *i)
            }
        };
        // 3 has not caught up; 2 has not reported; fenced 4 does not count, nor does 1 itself.
        assert!(!shutdown_complete(
            &image,
            1,
            10,
            reported(&[(2, 10), (3, 9)])
        ));
        assert!(!shutdown_complete(&image, 1, 10, reported(&[(3, 10)])));
        assert!(shutdown_complete(
            &image,
            1,
            10,
            reported(&[(2, 10), (3, 11)])
        ));
        // Another broker in controlled shutdown is not waited for.
        let image = shut_down(&image, &cfg, 3);
        assert!(shutdown_complete(&image, 1, 10, reported(&[(2, 12)])));
    }

    #[test]
    fn unfence_checks_incarnation() {
        let cfg = ManagerConfig::default();
        let image = brokers(1);
        assert!(matches!(
            unfence_broker(&image, &cfg, 1, Uuid::from_u128(9)).response,
            Err(ControllerError::StaleBrokerEpoch(_))
        ));
        assert!(matches!(
            unfence_broker(&image, &cfg, 4, inc(4)).response,
            Err(ControllerError::StaleBrokerEpoch(_))
        ));
        // Already unfenced.
        let r = unfence_broker(&image, &cfg, 1, inc(1));
        assert_eq!(r.response, Ok(()));
        assert!(r.records.is_empty());
    }

    #[test]
    fn register_new_and_retried() {
        let cfg = ManagerConfig::default();
        let image = MetadataImage::new();
        let r = register_broker(&image, &cfg, &register_req(3, inc(3)), |_| false);
        assert_eq!(r.response, Ok(()));
        let after = replay(&image, &r);
        assert!(after.broker(3).unwrap().fenced);
        let again = register_broker(&after, &cfg, &register_req(3, inc(3)), |_| true);
        assert_eq!(again.response, Ok(()));
        assert!(again.records.is_empty());

        let mut bad = register_req(-1, inc(1));
        assert!(matches!(
            register_broker(&image, &cfg, &bad, |_| false).response,
            Err(ControllerError::InvalidRequest(_))
        ));
        bad.broker_id = 1;
        bad.endpoints.clear();
        let r = register_broker(&image, &cfg, &bad, |_| false);
        assert!(matches!(
            r.response,
            Err(ControllerError::InvalidRequest(_))
        ));
        assert!(r.records.is_empty());
    }

    #[test]
    fn a_second_incarnation_waits_for_the_first_ones_session() {
        let cfg = ManagerConfig::default();
        // Broker 1 is registered and unfenced under inc(1).
        let image = brokers(3);
        let restarted = register_req(1, Uuid::from_u128(777));
        let asked = std::cell::RefCell::new(Vec::new());
        let r = register_broker(&image, &cfg, &restarted, |i| {
            asked.borrow_mut().push(i);
            true
        });
        assert!(r.records.is_empty());
        assert!(
            matches!(r.response, Err(ControllerError::DuplicateBrokerRegistration(ref m)) if m.contains("broker id 1")),
            "{:?}",
            r.response
        );
        assert_eq!(
            *asked.borrow(),
            vec![inc(1)],
            "the live session asked about is the registered one's"
        );
        // Its session expired: the new incarnation takes over.
        let r = register_broker(&image, &cfg, &restarted, |_| false);
        assert_eq!(r.response, Ok(()));
        // Fenced (a clean shutdown, or fenced for an expired session): no session matters.
        let fenced = fence(&image, &cfg, 1);
        let r = register_broker(&fenced, &cfg, &restarted, |_| true);
        assert_eq!(r.response, Ok(()));
        // The same incarnation retrying is never a duplicate.
        let r = register_broker(&image, &cfg, &register_req(1, inc(1)), |_| true);
        assert_eq!(r.response, Ok(()));
        assert!(r.records.is_empty());
    }

    #[test]
    fn restart_moves_leadership_away_from_the_old_incarnation() {
        let cfg = ManagerConfig::default();
        let image = with_topic(&brokers(3), "t", T, &[&[1, 2, 3], &[2, 1, 3], &[1]]);
        let r = register_broker(
            &image,
            &cfg,
            &register_req(1, Uuid::from_u128(5555)),
            |_| false,
        );
        assert_eq!(r.response, Ok(()));
        assert!(matches!(r.records[0], Record::RegisterBroker(_)));
        let after = replay(&image, &r);
        let b = after.broker(1).unwrap();
        assert!(b.fenced);
        assert_eq!(b.incarnation_id, Uuid::from_u128(5555));
        let p0 = part(&after, 0);
        assert_eq!(
            (p0.leader, p0.leader_epoch, p0.isr.clone()),
            (2, 1, vec![2, 3])
        );
        let p1 = part(&after, 1);
        assert_eq!(
            (p1.leader, p1.leader_epoch, p1.isr.clone()),
            (2, 0, vec![2, 3])
        );
        // Single replica: leaderless, ISR kept; the new incarnation leads once unfenced.
        let p2 = part(&after, 2);
        assert_eq!((p2.leader, p2.isr.clone()), (NO_LEADER, vec![1]));
        let r = unfence_broker(&after, &cfg, 1, Uuid::from_u128(5555));
        let after = replay(&after, &r);
        assert_eq!(part(&after, 2).leader, 1);
    }

    fn alter(
        image: &MetadataImage,
        broker: BrokerId,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[BrokerId],
    ) -> ControllerResult<Result<PartitionState, ControllerError>> {
        alter_partition(
            image,
            &AlterPartitionRequest {
                broker_id: broker,
                incarnation_id: inc(broker),
                topic_id: tid(),
                partition: 0,
                leader_epoch,
                partition_epoch,
                new_isr: isr.to_vec(),
            },
        )
    }

    #[test]
    fn alter_partition_shrinks_and_expands() {
        let image = with_topic(&brokers(3), "t", T, &[&[1, 2, 3]]);
        let r = alter(&image, 1, 0, 0, &[1, 2]);
        let state = r.response.clone().unwrap();
        assert_eq!(
            state,
            PartitionState {
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 1,
                isr: vec![1, 2]
            }
        );
        let image = replay(&image, &r);
        assert_eq!(part(&image, 0).isr, vec![1, 2]);
        // Stale partition epoch now.
        assert!(matches!(
            alter(&image, 1, 0, 0, &[1, 2, 3]).response,
            Err(ControllerError::InvalidUpdateVersion(_))
        ));
        let r = alter(&image, 1, 0, 1, &[1, 2, 3]);
        assert_eq!(r.response.clone().unwrap().partition_epoch, 2);
        let image = replay(&image, &r);
        // Unchanged ISR (in any order): no records, current state.
        let r = alter(&image, 1, 0, 2, &[3, 2, 1]);
        assert!(r.records.is_empty());
        assert_eq!(r.response.unwrap().partition_epoch, 2);
    }

    #[test]
    fn alter_partition_errors() {
        let image = with_topic(&brokers(4), "t", T, &[&[1, 2, 3]]);
        let image = apply_all(
            &image,
            &[
                Record::PartitionChange(PartitionChangeRecord {
                    topic_id: tid(),
                    partition: 0,
                    isr: None,
                    leader: Some(1),
                }),
                Record::PartitionChange(PartitionChangeRecord {
                    topic_id: tid(),
                    partition: 0,
                    isr: Some(vec![1, 2]),
                    leader: None,
                }),
            ],
        );
        // leader epoch 1, partition epoch 2.
        let err = |r: ControllerResult<Result<PartitionState, ControllerError>>| {
            assert!(r.records.is_empty());
            r.response.unwrap_err()
        };
        assert!(matches!(
            err(alter(&image, 1, 0, 2, &[1])),
            ControllerError::FencedLeaderEpoch(_)
        ));
        assert!(matches!(
            err(alter(&image, 1, 2, 2, &[1])),
            ControllerError::InvalidUpdateVersion(_)
        ));
        assert!(matches!(
            err(alter(&image, 1, 1, 1, &[1])),
            ControllerError::InvalidUpdateVersion(_)
        ));
        assert!(matches!(
            err(alter(&image, 2, 1, 2, &[2])),
            ControllerError::NotLeaderOrFollower(_)
        ));
        assert!(matches!(
            err(alter(&image, 1, 1, 2, &[2, 3])),
            ControllerError::InvalidRequest(_)
        ));
        assert!(matches!(
            err(alter(&image, 1, 1, 2, &[1, 2, 2])),
            ControllerError::InvalidRequest(_)
        ));
        assert!(matches!(
            err(alter(&image, 1, 1, 2, &[1, 4])),
            ControllerError::IneligibleReplica(_)
        ));
        let mut stale = AlterPartitionRequest {
            broker_id: 1,
            incarnation_id: Uuid::from_u128(1),
            topic_id: tid(),
            partition: 0,
            leader_epoch: 1,
            partition_epoch: 2,
            new_isr: vec![1],
        };
        assert!(matches!(
            err(alter_partition(&image, &stale)),
            ControllerError::StaleBrokerEpoch(_)
        ));
        stale.incarnation_id = inc(1);
        stale.partition = 5;
        assert!(matches!(
            err(alter_partition(&image, &stale)),
            ControllerError::UnknownTopicOrPartition(_)
        ));
        // A fenced broker cannot join the ISR.
        let fenced = apply_all(
            &image,
            &[Record::FenceBroker(FenceBrokerRecord {
                broker_id: 3,
                incarnation_id: inc(3),
            })],
        );
        assert!(matches!(
            err(alter(&fenced, 1, 1, 2, &[1, 2, 3])),
            ControllerError::IneligibleReplica(_)
        ));
        // Unfenced, it can.
        let r = alter(&image, 1, 1, 2, &[1, 2, 3]);
        replay(&image, &r);
        assert_eq!(r.response.unwrap().isr, vec![1, 2, 3]);
    }

    /// Random register/fence/unfence/create/alter sequences on a small cluster keep every
    /// partition invariant and always produce records that replay.
    #[test]
    fn random_lifecycles_keep_invariants() {
        use crate::api::{CreatableTopic, CreateTopicsRequest};
        use crate::managers::testkit::TestValidator;
        use crate::managers::{topics, Ctx};

        for seed in 1..=20u64 {
            let mut ctx = Ctx::new(seed);
            let cfg = ManagerConfig {
                unclean_leader_election: seed % 2 == 0,
                ..ManagerConfig::default()
            };
            let mut image = MetadataImage::new();
            let mut incarnations: BTreeMap<BrokerId, Uuid> = BTreeMap::new();
            let mut topics_made = 0;
            for _ in 0..300 {
                let b = (ctx.next_u64() % 5) as BrokerId;
                let roll = ctx.next_u64() % 11;
                let records = match roll {
                    0 | 1 => {
                        let incarnation = ctx.next_uuid();
                        incarnations.insert(b, incarnation);
                        register_broker(&image, &cfg, &register_req(b, incarnation), |_| false)
                            .records
                    }
                    2 | 3 => match incarnations.get(&b) {
                        Some(i) => fence_broker(&image, &cfg, b, *i).records,
                        None => Vec::new(),
                    },
                    4..=6 => match incarnations.get(&b) {
                        Some(i) => unfence_broker(&image, &cfg, b, *i).records,
                        None => Vec::new(),
                    },
                    10 => match incarnations.get(&b) {
                        Some(i) => {
                            let r = controlled_shutdown(&image, &cfg, b, *i);
                            let after = apply_all(&image, &r.records);
                            if after.broker(b).is_some_and(|r| !r.fenced) {
                                assert!(!leads_any(&after, b), "{b} still leads");
                            }
                            r.records
                        }
                        None => Vec::new(),
                    },
                    7 => {
                        topics_made += 1;
                        let req = CreateTopicsRequest {
                            topics: vec![CreatableTopic {
                                name: format!("t{topics_made}"),
                                num_partitions: 1 + (ctx.next_u64() % 4) as i32,
                                replication_factor: 1 + (ctx.next_u64() % 3) as i16,
                                assignments: BTreeMap::new(),
                                configs: Vec::new(),
                                internal: false,
                            }],
                            validate_only: false,
                        };
                        topics::create_topics(&image, &cfg, &TestValidator, &mut ctx, &req).records
                    }
                    _ => {
                        // The leader of some partition drops a random follower from the ISR.
                        let target = image.topics().flat_map(|t| {
                            t.partitions
                                .iter()
                                .map(move |(p, r)| (t.topic_id, *p, r.clone()))
                        });
                        match target
                            .filter(|(_, _, r)| r.leader != NO_LEADER && r.isr.len() > 1)
                            .nth((ctx.next_u64() % 3) as usize)
                        {
                            Some((topic_id, partition, r)) => {
                                let leader = r.leader;
                                let req = AlterPartitionRequest {
                                    broker_id: leader,
                                    incarnation_id: image.broker(leader).unwrap().incarnation_id,
                                    topic_id,
                                    partition,
                                    leader_epoch: r.leader_epoch,
                                    partition_epoch: r.partition_epoch,
                                    new_isr: r
                                        .isr
                                        .iter()
                                        .copied()
                                        .filter(|&x| x == leader || x != r.isr[r.isr.len() - 1])
                                        .collect(),
                                };
                                let res = alter_partition(&image, &req);
                                assert!(res.response.is_ok(), "{:?}", res.response);
                                res.records
                            }
                            None => Vec::new(),
                        }
                    }
                };
                image = apply_all(&image, &records);
                check_invariants(&image);
            }
            assert!(image.topics().count() > 0);
        }
    }
}
