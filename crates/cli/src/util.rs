//! Small pieces shared by the client tools: Kafka's key partitioner, flag parsing, topic id
//! formatting, latency percentiles, and the client settings from `--command-config`.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use runnel_client::ClientConfig;

/// A tool's client settings: `client.id` defaults to `client_id`; the properties files are read
/// in order, then `overrides` (`--producer-property` and the like) apply, later winning.
pub fn client_config(
    client_id: &str,
    files: &[Option<&Path>],
    overrides: &[(String, String)],
) -> Result<ClientConfig> {
    let mut props = Vec::new();
    for path in files.iter().flatten() {
        props.extend(runnel_client::properties::load(path)?);
    }
    props.extend(overrides.iter().cloned());
    ClientConfig::from_properties(client_id, props)
}

/// Kafka's `Utils.murmur2`: the 32-bit MurmurHash2 variant the Java client hashes keys with.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Partition for a keyed record exactly as the Java client's built-in partitioner picks it:
/// `toPositive(murmur2(key)) % numPartitions`.
pub fn partition_for_key(key: &[u8], num_partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % num_partitions.max(1)
}

/// Kafka's `Uuid.toString()`: URL-safe base64 of the 16 bytes, without padding.
pub fn topic_id_string(id: &uuid::Uuid) -> String {
    base64_url_nopad(id.as_bytes())
}

fn base64_url_nopad(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (n >> (18 - 6 * i)) & 0x3f;
            out.push(ALPHABET[idx as usize] as char);
        }
    }
    out
}

/// Splits `k=v`; the value may contain `=`.
pub fn parse_kv(s: &str) -> Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| anyhow!("invalid property '{s}': expected key=value"))?;
    let k = k.trim();
    if k.is_empty() {
        bail!("invalid property '{s}': empty key");
    }
    Ok((k.to_string(), v.to_string()))
}

/// Parses kafka-configs.sh's `--add-config` syntax: `k1=v1,k2=[a,b],k3=v3`. Square brackets group
/// a list value whose commas are not separators; the brackets are dropped.
pub fn parse_config_list(s: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut current = String::new();
    let push = |item: &str, out: &mut Vec<(String, String)>| -> Result<()> {
        if item.trim().is_empty() {
            return Ok(());
        }
        let (k, v) = parse_kv(item)?;
        let v = v
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .map(str::to_string)
            .unwrap_or(v);
        out.push((k, v));
        Ok(())
    };
    for ch in s.chars() {
        match ch {
            '[' => {
                depth += 1;
                current.push(ch);
            }
            ']' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| anyhow!("unbalanced ']' in '{s}'"))?;
                current.push(ch);
            }
            ',' if depth == 0 => {
                push(&current, &mut out)?;
                current.clear();
            }
            _ => current.push(ch),
        }
    }
    if depth != 0 {
        bail!("unbalanced '[' in '{s}'");
    }
    push(&current, &mut out)?;
    Ok(out)
}

/// Splits `--delete-config k1,k2` into names.
pub fn parse_name_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// Percentiles over `(value, weight)` samples: each sample stands for `weight` observations of
/// `value` (a produce batch's latency attributed to each of its records). Returns, for each
/// requested quantile `q` in `[0, 1]`, the smallest value with at least `q` of the total weight at
/// or below it. Sorts `samples` in place. Empty input gives zeros.
pub fn weighted_percentiles(samples: &mut [(u64, u64)], quantiles: &[f64]) -> Vec<u64> {
    samples.sort_unstable_by_key(|s| s.0);
    let total: u64 = samples.iter().map(|s| s.1).sum();
    quantiles
        .iter()
        .map(|&q| {
            if total == 0 {
                return 0;
            }
            let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
            let mut seen = 0u64;
            for &(v, w) in samples.iter() {
                seen += w;
                if seen >= rank {
                    return v;
                }
            }
            samples.last().map(|s| s.0).unwrap_or(0)
        })
        .collect()
}

/// Weighted mean of `(value, weight)` samples.
pub fn weighted_mean(samples: &[(u64, u64)]) -> f64 {
    let total: u64 = samples.iter().map(|s| s.1).sum();
    if total == 0 {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&(v, w)| v as f64 * w as f64).sum();
    sum / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_java_utils() {
        // Kafka's own UtilsTest.testMurmur2 vectors.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }

    #[test]
    fn key_partitioning_uses_to_positive() {
        // toPositive(-973932308) = 1173551340; 1173551340 % 3 = 0 and % 7 = 3.
        assert_eq!(partition_for_key(b"21", 3), 1173551340 % 3);
        assert_eq!(partition_for_key(b"21", 7), 1173551340 % 7);
        assert_eq!(partition_for_key(b"abc", 10), 479470107 % 10);
        for n in 1..20 {
            assert!((0..n).contains(&partition_for_key(b"foobar", n)));
        }
    }

    #[test]
    fn topic_ids_print_like_kafka() {
        assert_eq!(
            topic_id_string(&uuid::Uuid::nil()),
            "AAAAAAAAAAAAAAAAAAAAAA"
        );
        let id = uuid::Uuid::from_bytes([0xff; 16]);
        assert_eq!(topic_id_string(&id), "_____________________w");
        let id =
            uuid::Uuid::from_bytes([0xfb, 0xef, 0xbe, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let s = topic_id_string(&id);
        assert_eq!(s.len(), 22);
        assert!(s.starts_with("----"));
    }

    #[test]
    fn config_lists_parse_like_kafka_configs() {
        assert_eq!(
            parse_config_list("a=1,b=2").unwrap(),
            vec![("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(
            parse_config_list("x=[p,q],y=a=b").unwrap(),
            vec![("x".into(), "p,q".into()), ("y".into(), "a=b".into())]
        );
        assert!(parse_config_list("novalue").is_err());
        assert!(parse_config_list("a=[1,2").is_err());
        assert_eq!(parse_name_list("a, b,,c"), vec!["a", "b", "c"]);
    }

    #[test]
    fn percentiles_are_weighted() {
        let mut s = vec![(10, 1), (1, 98), (100, 1)];
        assert_eq!(
            weighted_percentiles(&mut s, &[0.5, 0.98, 0.99, 0.999, 1.0]),
            vec![1, 1, 10, 100, 100]
        );
        let mut empty: Vec<(u64, u64)> = Vec::new();
        assert_eq!(weighted_percentiles(&mut empty, &[0.5]), vec![0]);
        assert!((weighted_mean(&[(1, 1), (3, 3)]) - 2.5).abs() < 1e-9);
    }
}
