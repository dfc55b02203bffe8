//! The state machine: replays committed entries into the [`MetadataImage`], and snapshots.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::kv::{Kv, Slot};
use super::log_store::{io_err, json_err, read_slot, write_slot};
use super::{AppliedImage, MetadataResponse, RejectedRecord, StoreError, TypeConfig};
use crate::image::MetadataImage;

type Entry = openraft::Entry<TypeConfig>;
type NodeId = u64;
type Membership = StoredMembership<NodeId, openraft::BasicNode>;
type Meta = SnapshotMeta<NodeId, openraft::BasicNode>;

/// Everything the state machine persists, written as one value so it is never torn.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId<NodeId>>,
    last_membership: Membership,
    image: MetadataImage,
}

/// A snapshot as stored and as shipped: its metadata and the image it captures.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SnapshotFile {
    meta: Meta,
    image: MetadataImage,
}

/// The state-machine half of the store.
pub struct StateMachine {
    kv: Kv,
    state: Applied,
    /// Publishes the image after every apply batch and snapshot install (and as loaded).
    published: watch::Sender<Arc<AppliedImage>>,
}

impl StateMachine {
    pub(crate) fn load(kv: Kv) -> Result<Self, StoreError> {
        let state: Applied =
            read_slot(&kv, Slot::Applied, ErrorSubject::StateMachine)?.unwrap_or_default();
        let (published, _) = watch::channel(Arc::new(AppliedImage {
            index: state.last_applied.map_or(0, |id| id.index),
            image: state.image.clone(),
        }));
        Ok(StateMachine {
            kv,
            state,
            published,
        })
    }

    /// Follows the applied image. Take it before the state machine is handed to openraft, which
    /// gives no access to it afterwards; it keeps working for as long as the state machine lives.
    pub fn subscribe(&self) -> watch::Receiver<Arc<AppliedImage>> {
        self.published.subscribe()
    }

    fn publish(&self) {
        // `send_replace` stores the value even when no one subscribed yet.
        self.published.send_replace(Arc::new(AppliedImage {
            index: self.state.last_applied.map_or(0, |id| id.index),
            image: self.state.image.clone(),
        }));
    }

    /// The image as of the last applied entry.
    pub fn image(&self) -> &MetadataImage {
        &self.state.image
    }

    pub fn last_applied(&self) -> Option<LogId<NodeId>> {
        self.state.last_applied
    }

    fn persist(&self) -> Result<(), StorageError<NodeId>> {
        write_slot(
            &self.kv,
            Slot::Applied,
            &self.state,
            ErrorSubject::StateMachine,
        )
    }
}

fn snapshot_from(file: &SnapshotFile) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
    let bytes = serde_json::to_vec(file).map_err(|e| {
        json_err(
            ErrorSubject::Snapshot(Some(file.meta.signature())),
            ErrorVerb::Write,
            e,
        )
    })?;
    Ok(Snapshot {
        meta: file.meta.clone(),
        snapshot: Box::new(Cursor::new(bytes)),
    })
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, Membership), StorageError<NodeId>> {
        Ok((self.state.last_applied, self.state.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<MetadataResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        for entry in entries {
            self.state.last_applied = Some(entry.log_id);
            let mut response = MetadataResponse::default();
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(request) => {
                    for (index, record) in request.records.iter().enumerate() {
                        if let Err(error) = self.state.image.apply(record) {
                            tracing::warn!(
                                log_id = %entry.log_id,
                                index,
                                %error,
                                "metadata record rejected"
                            );
                            response.rejected.push(RejectedRecord { index, error });
                        }
                    }
                }
                EntryPayload::Membership(membership) => {
                    self.state.last_membership =
                        StoredMembership::new(Some(entry.log_id), membership);
                }
            }
            responses.push(response);
        }
        // Not flushed: after a crash openraft re-applies committed entries from the log.
        self.persist()?;
        self.publish();
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            kv: self.kv.clone(),
            state: self.state.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let subject = ErrorSubject::Snapshot(Some(meta.signature()));
        let shipped: SnapshotFile = serde_json::from_slice(snapshot.get_ref())
            .map_err(|e| json_err(subject.clone(), ErrorVerb::Read, e))?;
        // The metadata openraft hands us is authoritative; the shipped copy only carries the image.
        let file = SnapshotFile {
            meta: meta.clone(),
            image: shipped.image,
        };
        self.state = Applied {
            last_applied: meta.last_log_id,
            last_membership: meta.last_membership.clone(),
            image: file.image.clone(),
        };
        write_slot(&self.kv, Slot::Snapshot, &file, subject.clone())?;
        self.persist()?;
        self.kv
            .flush()
            .await
            .map_err(|e| io_err(subject, ErrorVerb::Write, e))?;
        self.publish();
        tracing::info!(
            snapshot_id = %meta.snapshot_id,
            last_log_index = meta.last_log_id.map(|id| id.index),
            "installed metadata snapshot"
        );
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let file: Option<SnapshotFile> =
            read_slot(&self.kv, Slot::Snapshot, ErrorSubject::Snapshot(None))?;
        file.as_ref().map(snapshot_from).transpose()
    }
}

/// Builds a snapshot of the state as it was when the builder was taken.
pub struct SnapshotBuilder {
    kv: Kv,
    state: Applied,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let last = self
            .state
            .last_applied
            .map(|id| {
                format!(
                    "{}-{}-{}",
                    id.leader_id.term, id.leader_id.node_id, id.index
                )
            })
            .unwrap_or_else(|| "none".to_string());
        let meta = Meta {
            last_log_id: self.state.last_applied,
            last_membership: self.state.last_membership.clone(),
            // Unique even when two snapshots cover the same log id.
            snapshot_id: format!("{last}-{}", uuid::Uuid::new_v4().simple()),
        };
        let file = SnapshotFile {
            meta,
            image: self.state.image.clone(),
        };
        let subject = ErrorSubject::Snapshot(Some(file.meta.signature()));
        write_slot(&self.kv, Slot::Snapshot, &file, subject.clone())?;
        // Flushed before openraft learns of it: it may purge the log up to this snapshot next.
        self.kv
            .flush()
            .await
            .map_err(|e| io_err(subject, ErrorVerb::Write, e))?;
        snapshot_from(&file)
    }
}
