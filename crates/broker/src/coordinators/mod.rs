//! The broker's side of the coordinator runtime (`runnel-coordinator`): the coordinators kept in
//! internal topics, as a table the reconciler, the request handlers and the timer go through
//! ([`InternalCoordinator`], [`InternalTopics`]); the log seam over this node's partitions of
//! internal topics ([`shard_log`]); their creation on first use ([`topics`]); the group
//! coordinator service ([`group`]), the transaction coordinator service ([`txn`]), the sender
//! of its end-transaction markers ([`markers`]), the partition leader's side of transaction
//! verification ([`verify`]), and the gRPC channels to other nodes both use ([`channels`]).

pub mod channels;
pub mod group;
#[cfg(test)]
mod group_tests;
pub mod markers;
pub mod shard_log;
pub mod topics;
pub mod txn;
pub mod verify;

use std::sync::Arc;
use std::time::Duration;

use runnel_coordinator::group::OFFSETS_TOPIC;
use tokio::sync::watch;

use crate::replica::Partition;
use topics::InternalTopicSpec;

/// A coordinator kept in the partitions of an internal topic: loaded and unloaded with their
/// leadership here, named for its keys (group ids, transactional ids) by partition, created on
/// first use, and driven by a timer.
pub trait InternalCoordinator: Send + Sync {
    /// The internal topic.
    fn topic(&self) -> &'static str;
    /// How the topic is created when it does not exist yet.
    fn topic_spec(&self) -> InternalTopicSpec;
    /// Follows the topic's partition count as the image has it.
    fn set_num_partitions(&self, n: i32);
    /// The partition of the topic that owns `key`.
    fn partition_of(&self, key: &str) -> i32;
    /// This node leads `partition` now: replay it, then serve it.
    fn load(&self, partition: &Arc<Partition>);
    /// This node no longer leads partition `partition`.
    fn unload(&self, partition: i32);
    /// The periodic timer.
    fn tick(&self);
}

/// Every coordinator kept in an internal topic, by topic.
#[derive(Clone)]
pub struct InternalTopics(Vec<Arc<dyn InternalCoordinator>>);

impl InternalTopics {
    pub fn new(coordinators: Vec<Arc<dyn InternalCoordinator>>) -> InternalTopics {
        InternalTopics(coordinators)
    }

    /// The coordinator kept in `topic`, if it is an internal topic.
    pub fn get(&self, topic: &str) -> Option<&Arc<dyn InternalCoordinator>> {
        self.0.iter().find(|c| c.topic() == topic)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn InternalCoordinator>> {
        self.0.iter()
    }
}

/// Internal topics are written only by the broker itself; Metadata marks them internal and
/// client produce requests to them are refused, as in Kafka.
pub fn is_internal_topic(name: &str) -> bool {
    name == OFFSETS_TOPIC
}

/// Whether `name` is a topic a coordinator keeps (`__consumer_offsets`,
/// `__transaction_state`): Metadata marks them internal, and clients may not write to them.
pub fn is_coordinator_topic(name: &str) -> bool {
    name == OFFSETS_TOPIC || name == runnel_coordinator::txn::TRANSACTION_STATE_TOPIC
}

/// Every coordinator's timer, every 100 ms until `stop`.
pub async fn run_timers(coordinators: InternalTopics, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = tick.tick() => {
                for c in coordinators.iter() {
                    c.tick();
                }
            }
        }
    }
}
