//! Leader elections asked for rather than forced by a broker's fate: ElectLeaders (preferred and
//! unclean, Kafka's `kafka-leader-election.sh`) and the automatic preferred-leader rebalance
//! (`auto.leader.rebalance.enable`).
//!
//! Both follow KRaft: a preferred election makes the first replica the leader when it is in the
//! ISR and active (unfenced, not in controlled shutdown), and never touches the ISR. An unclean
//! election is for leaderless partitions only: it elects an active ISR member if there is one,
//! else the first active replica with an ISR of itself (committed data may be lost), whatever the
//! topic's `unclean.leader.election.enable` says: the operator asked for it.

use uuid::Uuid;

use super::cluster::{active, change, partitions};
use super::staged::Staged;
use super::ControllerResult;
use crate::api::{
    ControllerError, ElectLeadersRequest, ElectLeadersResponse, ElectionType, PartitionElections,
};
use crate::image::{MetadataImage, PartitionRegistration, NO_LEADER};
use crate::records::{BrokerId, PartitionChangeRecord, Record};

/// Preferred elections the automatic rebalance writes in one metadata entry (Kafka's
/// `maxElectionsPerImbalance`); the rest follow in later rounds.
pub const MAX_ELECTIONS_PER_REBALANCE: usize = 1000;

pub fn elect_leaders(
    image: &MetadataImage,
    req: &ElectLeadersRequest,
) -> ControllerResult<ElectLeadersResponse> {
    let mut staged = Staged::new(image);
    let mut topics: Vec<(String, PartitionElections)> = Vec::new();
    match &req.partitions {
        Some(requested) => {
            for (topic, indexes) in requested {
                let results = indexes
                    .iter()
                    .map(|&p| (p, elect_into(&mut staged, req.election_type, topic, p)))
                    .collect();
                topics.push((topic.clone(), results));
            }
        }
        None => {
            let mut all: Vec<(String, Vec<i32>)> = image
                .topics()
                .map(|t| (t.name.clone(), t.partitions.keys().copied().collect()))
                .collect();
            all.sort();
            for (topic, indexes) in all {
                let results: PartitionElections = indexes
                    .into_iter()
                    .map(|p| (p, elect_into(&mut staged, req.election_type, &topic, p)))
                    // Kafka leaves out what needed no election when asked for everything.
                    .filter(|(_, r)| !matches!(r, Err(ControllerError::ElectionNotNeeded(_))))
                    .collect();
                if !results.is_empty() {
                    topics.push((topic, results));
                }
            }
        }
    }
    let records = staged.into_records();
    tracing::info!(
        election = ?req.election_type,
        all_partitions = req.partitions.is_none(),
        elected = records.len(),
        "ElectLeaders"
    );
    ControllerResult::new(records, ElectLeadersResponse { topics })
}

/// Runs one partition's election against the staged image, pushing the change when there is one.
fn elect_into(
    staged: &mut Staged,
    election: ElectionType,
    topic: &str,
    partition: i32,
) -> Result<(), ControllerError> {
    let change = elect_one(staged.image(), election, topic, partition)?;
    tracing::debug!(topic, partition, leader = ?change.leader, isr = ?change.isr, ?election, "leader elected");
    staged.push(Record::PartitionChange(change));
    Ok(())
}

fn elect_one(
    image: &MetadataImage,
    election: ElectionType,
    topic: &str,
    partition: i32,
) -> Result<PartitionChangeRecord, ControllerError> {
    let tp = format!("{topic}-{partition}");
    let unknown =
        || ControllerError::UnknownTopicOrPartition(format!("The partition {tp} does not exist."));
    let t = image.topic_by_name(topic).ok_or_else(unknown)?;
    let reg = t.partitions.get(&partition).ok_or_else(unknown)?;
    match election {
        ElectionType::Preferred => {
            let preferred = reg.replicas.first().copied().unwrap_or(NO_LEADER);
            if reg.leader == preferred {
                return Err(ControllerError::ElectionNotNeeded(format!(
                    "The preferred replica {preferred} already leads {tp}."
                )));
            }
            preferred_change(image, t.topic_id, partition, reg).ok_or_else(|| {
                ControllerError::PreferredLeaderNotAvailable(format!(
                    "The preferred replica {preferred} of {tp} is not an in-sync replica, or is \
                     fenced or shutting down."
                ))
            })
        }
        ElectionType::Unclean => {
            if reg.leader != NO_LEADER {
                return Err(ControllerError::ElectionNotNeeded(format!(
                    "{tp} already has a leader ({}).",
                    reg.leader
                )));
            }
            let (isr, leader) = match reg
                .replicas
                .iter()
                .find(|&&r| reg.isr.contains(&r) && active(image, r))
            {
                Some(&clean) => (reg.isr.clone(), clean),
                None => match reg.replicas.iter().find(|&&r| active(image, r)) {
                    Some(&unclean) => {
                        tracing::warn!(
                            topic,
                            partition,
                            leader = unclean,
                            previous_isr = ?reg.isr,
                            "requested unclean leader election: a replica outside the ISR leads"
                        );
                        (vec![unclean], unclean)
                    }
                    None => {
                        return Err(ControllerError::EligibleLeadersNotAvailable(format!(
                            "No replica of {tp} ({:?}) is live.",
                            reg.replicas
                        )))
                    }
                },
            };
            change(t.topic_id, partition, reg, isr, leader)
                .ok_or_else(|| ControllerError::Internal(format!("no change electing {tp}")))
        }
    }
}

/// The change that makes the preferred replica lead, when it is not leading and is an active
/// ISR member.
fn preferred_change(
    image: &MetadataImage,
    topic_id: Uuid,
    partition: i32,
    reg: &PartitionRegistration,
) -> Option<PartitionChangeRecord> {
    let &preferred = reg.replicas.first()?;
    if reg.leader == preferred || !reg.isr.contains(&preferred) || !active(image, preferred) {
        return None;
    }
    change(topic_id, partition, reg, reg.isr.clone(), preferred)
}

/// One round of the automatic leader rebalance: elects the preferred replica of up to `max`
/// partitions it does not lead although it could (an active ISR member). The response says
/// whether eligible partitions were left for another round.
pub fn rebalance_leaders(image: &MetadataImage, max: usize) -> ControllerResult<bool> {
    let mut changes = partitions(image)
        .filter_map(|(_, topic_id, partition, reg)| {
            preferred_change(image, topic_id, partition, reg)
        })
        .peekable();
    let mut staged = Staged::new(image);
    let mut moved: Vec<(Uuid, i32, BrokerId)> = Vec::new();
    while moved.len() < max {
        let Some(c) = changes.next() else { break };
        moved.push((c.topic_id, c.partition, c.leader.unwrap_or(NO_LEADER)));
        staged.push(Record::PartitionChange(c));
    }
    let more = changes.peek().is_some();
    if !moved.is_empty() {
        tracing::info!(
            elections = moved.len(),
            more,
            "leader rebalance: preferred replicas lead again"
        );
        for (topic_id, partition, leader) in &moved {
            tracing::debug!(%topic_id, partition, leader, "preferred leader elected");
        }
    }
    ControllerResult::new(staged.into_records(), more)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::managers::cluster::{controlled_shutdown, fence_broker};
    use crate::managers::testkit::{apply_all, brokers, inc, replay, with_topic};
    use crate::managers::ManagerConfig;
    use crate::records::{BrokerRegistrationChangeRecord, FenceBrokerRecord};

    const T: u128 = 55;

    fn tid() -> Uuid {
        Uuid::from_u128(T)
    }

    fn part(image: &MetadataImage, p: i32) -> PartitionRegistration {
        image.partition(&tid(), p).unwrap().clone()
    }

    /// Moves the leadership of partition `p` to `leader` (an ISR member) by hand.
    fn lead(image: &MetadataImage, p: i32, leader: BrokerId) -> MetadataImage {
        apply_all(
            image,
            &[Record::PartitionChange(PartitionChangeRecord {
                topic_id: tid(),
                partition: p,
                isr: None,
                leader: Some(leader),
            })],
        )
    }

    fn isr(image: &MetadataImage, p: i32, isr: &[BrokerId]) -> MetadataImage {
        apply_all(
            image,
            &[Record::PartitionChange(PartitionChangeRecord {
                topic_id: tid(),
                partition: p,
                isr: Some(isr.to_vec()),
                leader: None,
            })],
        )
    }

    fn req(election_type: ElectionType, parts: &[(&str, &[i32])]) -> ElectLeadersRequest {
        ElectLeadersRequest {
            election_type,
            partitions: Some(
                parts
                    .iter()
                    .map(|(t, ps)| (t.to_string(), ps.to_vec()))
                    .collect(),
            ),
        }
    }

    fn codes(r: &ElectLeadersResponse) -> Vec<(String, i32, &'static str)> {
        r.topics
            .iter()
            .flat_map(|(t, ps)| {
                ps.iter().map(move |(p, res)| {
                    let code = match res {
                        Ok(()) => "OK",
                        Err(ControllerError::ElectionNotNeeded(_)) => "NOT_NEEDED",
                        Err(ControllerError::PreferredLeaderNotAvailable(_)) => "PREFERRED_NA",
                        Err(ControllerError::EligibleLeadersNotAvailable(_)) => "ELIGIBLE_NA",
                        Err(ControllerError::UnknownTopicOrPartition(_)) => "UNKNOWN",
                        Err(e) => panic!("unexpected {e:?}"),
                    };
                    (t.clone(), *p, code)
                })
            })
            .collect()
    }

    fn shut_down(image: &MetadataImage, b: BrokerId) -> MetadataImage {
        let r = controlled_shutdown(image, &ManagerConfig::default(), b, inc(b));
        assert!(!r.records.is_empty());
        replay(image, &r)
    }

    #[test]
    fn preferred_election_result_codes() {
        // p0 is led by its preferred replica; p1 is led by 2 while 1 could lead; p2 is led by
        // 2 with 1 out of the ISR; p3 is led by 2 while its preferred replica 4 is in the ISR
        // but in controlled shutdown.
        let image = with_topic(
            &brokers(4),
            "t",
            T,
            &[&[1, 2, 3], &[1, 2, 3], &[1, 2, 3], &[4, 2, 3]],
        );
        let image = lead(&image, 1, 2);
        let image = isr(&lead(&image, 2, 2), 2, &[2, 3]);
        let image = lead(&image, 3, 2);
        let image = apply_all(
            &image,
            &[Record::BrokerRegistrationChange(
                BrokerRegistrationChangeRecord {
                    broker_id: 4,
                    incarnation_id: inc(4),
                    in_controlled_shutdown: Some(true),
                },
            )],
        );
        assert!(part(&image, 3).isr.contains(&4));
        let r = elect_leaders(
            &image,
            &req(
                ElectionType::Preferred,
                &[("t", &[0, 1, 2, 3, 9]), ("nope", &[0])],
            ),
        );
        assert_eq!(
            codes(&r.response),
            vec![
                ("t".into(), 0, "NOT_NEEDED"),
                ("t".into(), 1, "OK"),
                ("t".into(), 2, "PREFERRED_NA"),
                ("t".into(), 3, "PREFERRED_NA"),
                ("t".into(), 9, "UNKNOWN"),
                ("nope".into(), 0, "UNKNOWN"),
            ]
        );
        let before = part(&image, 1);
        let after = replay(&image, &r);
        let p1 = part(&after, 1);
        assert_eq!(p1.leader, 1);
        assert_eq!(p1.leader_epoch, before.leader_epoch + 1);
        assert_eq!(p1.isr, before.isr, "a preferred election keeps the ISR");
        assert_eq!(r.records.len(), 1, "only p1 changed");
        // A fenced preferred replica is not available either.
        let fenced = apply_all(
            &image,
            &[Record::FenceBroker(FenceBrokerRecord {
                broker_id: 1,
                incarnation_id: inc(1),
            })],
        );
        let r = elect_leaders(&fenced, &req(ElectionType::Preferred, &[("t", &[1])]));
        assert_eq!(codes(&r.response), vec![("t".into(), 1, "PREFERRED_NA")]);
        assert!(r.records.is_empty());
    }

    #[test]
    fn all_partitions_leave_out_what_needs_no_election() {
        let image = with_topic(&brokers(3), "t", T, &[&[1, 2, 3], &[2, 3, 1], &[3, 1, 2]]);
        let image = lead(&image, 2, 1);
        let all = ElectLeadersRequest {
            election_type: ElectionType::Preferred,
            partitions: None,
        };
        let r = elect_leaders(&image, &all);
        assert_eq!(codes(&r.response), vec![("t".into(), 2, "OK")]);
        let image = replay(&image, &r);
        assert_eq!(part(&image, 2).leader, 3);
        let r = elect_leaders(&image, &all);
        assert!(r.response.topics.is_empty(), "{:?}", r.response);
        assert!(r.records.is_empty());
        // Named explicitly, the same partitions answer ELECTION_NOT_NEEDED.
        let r = elect_leaders(&image, &req(ElectionType::Preferred, &[("t", &[0, 2])]));
        assert_eq!(
            codes(&r.response),
            vec![("t".into(), 0, "NOT_NEEDED"), ("t".into(), 2, "NOT_NEEDED")]
        );
    }

    #[test]
    fn unclean_election_result_codes() {
        let cfg = ManagerConfig::default();
        // p0 has a leader; p1's only ISR member 1 is fenced, 2 is live: unclean elects 2;
        // p2's replicas are all fenced.
        let image = with_topic(&brokers(3), "t", T, &[&[1, 2], &[1, 2], &[1, 3]]);
        let image = isr(&image, 1, &[1]);
        let image = replay(&image, &fence_broker(&image, &cfg, 3, inc(3)));
        let image = replay(&image, &fence_broker(&image, &cfg, 1, inc(1)));
        assert_eq!(part(&image, 1).leader, NO_LEADER);
        assert_eq!(part(&image, 2).leader, NO_LEADER);
        let r = elect_leaders(&image, &req(ElectionType::Unclean, &[("t", &[0, 1, 2])]));
        assert_eq!(
            codes(&r.response),
            vec![
                ("t".into(), 0, "NOT_NEEDED"),
                ("t".into(), 1, "OK"),
                ("t".into(), 2, "ELIGIBLE_NA"),
            ]
        );
        let after = replay(&image, &r);
        let p1 = part(&after, 1);
        assert_eq!((p1.leader, p1.isr.clone()), (2, vec![2]));
        assert_eq!(p1.leader_epoch, part(&image, 1).leader_epoch + 1);
        // A shutting-down replica is no candidate either.
        let image = with_topic(&brokers(2), "t", T, &[&[1, 2]]);
        let image = isr(&image, 0, &[1]);
        let image = shut_down(&image, 2);
        let image = replay(&image, &fence_broker(&image, &cfg, 1, inc(1)));
        let r = elect_leaders(&image, &req(ElectionType::Unclean, &[("t", &[0])]));
        assert_eq!(codes(&r.response), vec![("t".into(), 0, "ELIGIBLE_NA")]);
    }

    #[test]
    fn rebalance_elects_only_eligible_preferred_replicas_in_bounded_batches() {
        // Six partitions preferring 1, all led by 2.
        let image = with_topic(&brokers(3), "t", T, &[&[1, 2, 3] as &[BrokerId]; 6]);
        let mut image = image;
        for p in 0..6 {
            image = lead(&image, p, 2);
        }
        // p4: 1 is out of the ISR.
        image = isr(&image, 4, &[2, 3]);
        let r = rebalance_leaders(&image, 2);
        assert!(r.response, "more partitions are left");
        assert_eq!(r.records.len(), 2);
        let image = replay(&image, &r);
        let r = rebalance_leaders(&image, 100);
        assert!(!r.response);
        assert_eq!(r.records.len(), 3);
        let image = replay(&image, &r);
        for p in [0, 1, 2, 3, 5] {
            let reg = part(&image, p);
            assert_eq!((reg.leader, reg.leader_epoch), (1, 2), "p{p}");
        }
        assert_eq!(part(&image, 4).leader, 2, "1 is not in p4's ISR");
        assert!(rebalance_leaders(&image, 100).records.is_empty());

        // A preferred replica in controlled shutdown is never brought back.
        let image = shut_down(&image, 1);
        for p in 0..6 {
            assert_ne!(part(&image, p).leader, 1);
        }
        let r = rebalance_leaders(&image, 100);
        assert!(r.records.is_empty(), "{:?}", r.records);
        assert!(!r.response);
    }
}
