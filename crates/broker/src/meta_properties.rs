//! `meta.properties`: ties a data directory to its node and cluster, in Kafka's format
//! (`version=1`, `node.id`, `cluster.id`).
//!
//! It is written once the node has caught up with a metadata image that carries a cluster id.
//! From then on a start with another `node.id`, or with the metadata log gone (a fresh quorum
//! would not know the topics, and the reconciler would delete every partition as a stray), is
//! refused; an image of another cluster stops the broker before it touches any partition.

use std::collections::BTreeMap;
use std::path::Path;

use crate::config::BrokerConfig;

pub const FILE: &str = "meta.properties";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaProperties {
    pub node_id: i32,
    pub cluster_id: String,
}

impl MetaProperties {
    fn render(&self) -> String {
        format!(
            "#\n#Written by Runnel\nversion=1\nnode.id={}\ncluster.id={}\n",
            self.node_id, self.cluster_id
        )
    }

    fn parse(text: &str) -> Result<MetaProperties, String> {
        let mut props = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let Some((k, v)) = line.split_once(['=', ':']) else {
                return Err(format!("malformed line {line:?}"));
            };
            props.insert(k.trim().to_string(), v.trim().to_string());
        }
        match props.get("version").map(String::as_str) {
            Some("0") | Some("1") => {}
            other => return Err(format!("unsupported version {other:?}")),
        }
        let node_id = props
            .get("node.id")
            .or_else(|| props.get("broker.id"))
            .ok_or("no node.id")?
            .parse::<i32>()
            .map_err(|e| format!("invalid node.id: {e}"))?;
        let cluster_id = props
            .get("cluster.id")
            .filter(|c| !c.is_empty())
            .ok_or("no cluster.id")?
            .clone();
        Ok(MetaProperties {
            node_id,
            cluster_id,
        })
    }
}

/// The data directory's `meta.properties`; `Ok(None)` when there is none.
pub fn read(data_dir: &Path) -> Result<Option<MetaProperties>, String> {
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => MetaProperties::parse(&text)
            .map(Some)
            .map_err(|e| format!("{} is invalid: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes `meta.properties` atomically and durably.
pub fn write(data_dir: &Path, m: &MetaProperties) -> std::io::Result<()> {
    crate::replica::write_atomic(&data_dir.join(FILE), m.render().as_bytes())
}

/// The checks before the metadata quorum member starts: a data directory that belongs to
/// another node, or whose metadata log is gone, is refused.
pub fn check_at_startup(config: &BrokerConfig) -> Result<(), String> {
    let Some(m) = read(&config.data_dir)? else {
        return Ok(());
    };
    if m.node_id != config.node_id {
        return Err(format!(
            "{} belongs to node.id {} (cluster {}), but this node is configured with node.id {}; refusing to start",
            config.data_dir.join(FILE).display(),
            m.node_id,
            m.cluster_id,
            config.node_id
        ));
    }
    let metadata_dir = config.metadata_dir();
    let empty = match std::fs::read_dir(&metadata_dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            return Err(format!(
                "cannot read the metadata log directory {}: {e}",
                metadata_dir.display()
            ))
        }
    };
    if empty {
        return Err(format!(
            "{} exists (cluster {}) but {} is missing or empty: the metadata log is missing; refusing to start to avoid deleting partitions",
            config.data_dir.join(FILE).display(),
            m.cluster_id,
            metadata_dir.display()
        ));
    }
    Ok(())
}

/// Ties the data directory to `cluster_id` (the caught-up image's): writes `meta.properties`
/// if there is none, and fails if it names another cluster.
pub fn check_cluster(data_dir: &Path, node_id: i32, cluster_id: &str) -> Result<(), String> {
    match read(data_dir)? {
        Some(m) if m.cluster_id == cluster_id => Ok(()),
        Some(m) => Err(format!(
            "{} belongs to cluster {}, but the metadata quorum is cluster {cluster_id}; refusing to serve or to touch any partition",
            data_dir.join(FILE).display(),
            m.cluster_id
        )),
        None => {
            let m = MetaProperties {
                node_id,
                cluster_id: cluster_id.to_string(),
            };
            write(data_dir, &m).map_err(|e| {
                format!("cannot write {}: {e}", data_dir.join(FILE).display())
            })?;
            tracing::info!(node_id, cluster_id, dir = %data_dir.display(), "wrote meta.properties");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path, node_id: i32) -> BrokerConfig {
        let props: Vec<(String, String)> = [
            ("log.dirs", dir.to_str().unwrap().to_string()),
            ("listeners", "PLAINTEXT://127.0.0.1:0".to_string()),
            ("node.id", node_id.to_string()),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        BrokerConfig::from_properties(&props).unwrap()
    }

    #[test]
    fn round_trips_in_kafkas_format() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let m = MetaProperties {
            node_id: 3,
            cluster_id: "MkU3OEVBNTcwNTJENDM2Qk".into(),
        };
        write(dir.path(), &m).unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE)).unwrap();
        assert!(text.contains("version=1\n"), "{text}");
        assert!(text.contains("node.id=3\n"), "{text}");
        assert!(
            text.contains("cluster.id=MkU3OEVBNTcwNTJENDM2Qk\n"),
            "{text}"
        );
        assert_eq!(read(dir.path()).unwrap(), Some(m));
        // A file written by Kafka (with a directory.id) reads too.
        std::fs::write(
            dir.path().join(FILE),
            "#\n#Tue\nnode.id=1\ndirectory.id=abc\nversion=1\ncluster.id=xyz\n",
        )
        .unwrap();
        assert_eq!(
            read(dir.path()).unwrap(),
            Some(MetaProperties {
                node_id: 1,
                cluster_id: "xyz".into()
            })
        );
        std::fs::write(
            dir.path().join(FILE),
            "version=1\nnode.id=x\ncluster.id=c\n",
        )
        .unwrap();
        assert!(read(dir.path()).is_err());
    }

    #[test]
    fn start_up_refuses_another_node_or_a_missing_metadata_log() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), 1);
        // A fresh directory starts.
        assert_eq!(check_at_startup(&cfg), Ok(()));
        write(
            dir.path(),
            &MetaProperties {
                node_id: 1,
                cluster_id: "c1".into(),
            },
        )
        .unwrap();
        let err = check_at_startup(&cfg).unwrap_err();
        assert!(err.contains("the metadata log is missing"), "{err}");
        std::fs::create_dir_all(cfg.metadata_dir()).unwrap();
        let err = check_at_startup(&cfg).unwrap_err();
        assert!(err.contains("the metadata log is missing"), "{err}");
        std::fs::write(cfg.metadata_dir().join("log"), b"x").unwrap();
        assert_eq!(check_at_startup(&cfg), Ok(()));
        let err = check_at_startup(&config(dir.path(), 2)).unwrap_err();
        assert!(
            err.contains("node.id 1") && err.contains("node.id 2"),
            "{err}"
        );
    }

    #[test]
    fn the_first_cluster_id_sticks() {
        let dir = tempfile::tempdir().unwrap();
        check_cluster(dir.path(), 4, "c1").unwrap();
        assert_eq!(
            read(dir.path()).unwrap(),
            Some(MetaProperties {
                node_id: 4,
                cluster_id: "c1".into()
            })
        );
        check_cluster(dir.path(), 4, "c1").unwrap();
        let err = check_cluster(dir.path(), 4, "c2").unwrap_err();
        assert!(
            err.contains("cluster c1") && err.contains("cluster c2"),
            "{err}"
        );
        // The file is left as it was.
        assert_eq!(read(dir.path()).unwrap().unwrap().cluster_id, "c1");
    }
}
