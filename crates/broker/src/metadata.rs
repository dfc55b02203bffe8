//! The node's metadata image: cluster id, topics (with their persisted topic ids, partition
//! counts and config overrides) and the producer-id allocator.
//!
//! Single-node Runnel keeps this in one JSON document in the data directory, replaced atomically
//! (write to a temporary file, fsync, rename, fsync the directory) on every change. The
//! controller quorum (a later issue) replaces this store with a replicated metadata log; the rest
//! of the broker only sees [`MetadataStore`]'s methods.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Producer ids are reserved on disk in blocks, so a restart never hands out an id twice.
const PRODUCER_ID_BLOCK: i64 = 1000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
struct Image {
    cluster_id: String,
    topics: BTreeMap<String, TopicMeta>,
    /// Every producer id below this may have been handed out.
    producer_id_reserved_until: i64,
}

pub struct MetadataStore {
    path: PathBuf,
    inner: Mutex<State>,
}

struct State {
    image: Image,
    next_producer_id: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata I/O on {path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("metadata file {path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> MetadataError + '_ {
    move |cause| MetadataError::Io {
        path: path.display().to_string(),
        cause,
    }
}

/// Writes `bytes` to `path` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), MetadataError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Kafka's topic name rules.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return Err("Topic name cannot be \".\" or \"..\"".into());
    }
    if name.len() > 249 {
        return Err(format!(
            "Topic name is illegal, it can't be longer than 249 characters, topic name: {name}"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-')
    {
        return Err(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

impl MetadataStore {
    /// Opens the store in `data_dir`, creating it (and a cluster id) on first start.
    pub fn open(data_dir: &Path, cluster_id: Option<&str>) -> Result<MetadataStore, MetadataError> {
        std::fs::create_dir_all(data_dir).map_err(io_err(data_dir))?;
        let path = data_dir.join("runnel-metadata.json");
        let image = match std::fs::read(&path) {
            Ok(bytes) => {
                let image: Image =
                    serde_json::from_slice(&bytes).map_err(|e| MetadataError::Corrupt {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                if let Some(want) = cluster_id {
                    if want != image.cluster_id {
                        return Err(MetadataError::Invalid(format!(
                            "data directory {} belongs to cluster {}, not {want}",
                            data_dir.display(),
                            image.cluster_id
                        )));
                    }
                }
                image
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = cluster_id
                    .map(str::to_string)
                    .unwrap_or_else(new_cluster_id);
                tracing::info!(cluster_id = %id, data_dir = %data_dir.display(), "initialising a new data directory");
                Image {
                    cluster_id: id,
                    ..Image::default()
                }
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        let store = MetadataStore {
            path,
            inner: Mutex::new(State {
                next_producer_id: image.producer_id_reserved_until,
                image,
            }),
        };
        store.persist(&store.inner.lock().image)?;
        Ok(store)
    }

    fn persist(&self, image: &Image) -> Result<(), MetadataError> {
        let bytes =
            serde_json::to_vec_pretty(image).map_err(|e| MetadataError::Invalid(e.to_string()))?;
        write_atomic(&self.path, &bytes)
    }

    pub fn cluster_id(&self) -> String {
        self.inner.lock().image.cluster_id.clone()
    }

    pub fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.inner.lock().image.topics.get(name).cloned()
    }

    pub fn topic_by_id(&self, id: Uuid) -> Option<TopicMeta> {
        self.inner
            .lock()
            .image
            .topics
            .values()
            .find(|t| t.id == id)
            .cloned()
    }

    pub fn topics(&self) -> Vec<TopicMeta> {
        self.inner.lock().image.topics.values().cloned().collect()
    }

    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta, MetadataError> {
        let mut st = self.inner.lock();
        if st.image.topics.contains_key(name) {
            return Err(MetadataError::TopicExists(name.to_string()));
        }
        let meta = TopicMeta {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            replication_factor,
            configs,
        };
        let mut next = st.image.clone();
        next.topics.insert(name.to_string(), meta.clone());
        self.persist(&next)?;
        st.image = next;
        Ok(meta)
    }

    pub fn delete_topic(&self, name: &str) -> Result<TopicMeta, MetadataError> {
        let mut st = self.inner.lock();
        let mut next = st.image.clone();
        let meta = next
            .topics
            .remove(name)
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        self.persist(&next)?;
        st.image = next;
        Ok(meta)
    }

    pub fn set_partition_count(&self, name: &str, count: i32) -> Result<TopicMeta, MetadataError> {
        self.update_topic(name, |t| t.partitions = count)
    }

    pub fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<TopicMeta, MetadataError> {
        self.update_topic(name, |t| t.configs = configs)
    }

    fn update_topic(
        &self,
        name: &str,
        f: impl FnOnce(&mut TopicMeta),
    ) -> Result<TopicMeta, MetadataError> {
        let mut st = self.inner.lock();
        let mut next = st.image.clone();
        let t = next
            .topics
            .get_mut(name)
            .ok_or_else(|| MetadataError::UnknownTopic(name.to_string()))?;
        f(t);
        let out = t.clone();
        self.persist(&next)?;
        st.image = next;
        Ok(out)
    }

    /// Hands out a new producer id. Ids are reserved on disk a block at a time.
    pub fn allocate_producer_id(&self) -> Result<i64, MetadataError> {
        let mut st = self.inner.lock();
        if st.next_producer_id >= st.image.producer_id_reserved_until {
            let mut next = st.image.clone();
            next.producer_id_reserved_until = st.next_producer_id + PRODUCER_ID_BLOCK;
            self.persist(&next)?;
            st.image = next;
        }
        let id = st.next_producer_id;
        st.next_producer_id += 1;
        Ok(id)
    }
}

/// A Kafka-style cluster id: 16 random bytes, URL-safe base64 without padding (22 chars).
pub fn new_cluster_id() -> String {
    base64_url(Uuid::new_v4().as_bytes())
}

/// URL-safe base64 without padding, as Kafka prints topic and cluster ids.
pub fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 2);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = ((b[0] as u32) << 16) | ((b[1] as u32) << 8) | b[2] as u32;
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_ids_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = MetadataStore::open(dir.path(), None).unwrap();
        let cid = s.cluster_id();
        assert_eq!(cid.len(), 22);
        let t = s.create_topic("a", 3, 1, BTreeMap::new()).unwrap();
        assert!(matches!(
            s.create_topic("a", 1, 1, BTreeMap::new()),
            Err(MetadataError::TopicExists(_))
        ));
        let p1 = s.allocate_producer_id().unwrap();
        drop(s);
        let s = MetadataStore::open(dir.path(), None).unwrap();
        assert_eq!(s.cluster_id(), cid);
        assert_eq!(s.topic("a").unwrap().id, t.id);
        assert!(
            s.allocate_producer_id().unwrap() > p1,
            "producer ids are never reused"
        );
        assert!(MetadataStore::open(dir.path(), Some("other")).is_err());
    }

    #[test]
    fn topic_name_rules() {
        assert!(validate_topic_name("my-topic.v1_x").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("a b").is_err());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
    }

    #[test]
    fn base64_matches_known_vectors() {
        assert_eq!(base64_url(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_url(b"fo"), "Zm8");
        assert_eq!(base64_url(&[0xfb, 0xff]), "-_8");
    }
}
