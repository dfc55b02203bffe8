//! Bounds on client connections and on what they may make the broker hold: `max.connections`
//! (new connections wait to be accepted), `max.connections.per.ip` and its overrides (a
//! connection above the limit is closed at once), and the response bytes computed but not yet
//! sent, per connection (`fetch.max.bytes`) and over all connections
//! (`queued.max.request.bytes`). A connection whose client does not read its responses stops
//! being read once its budget is used, instead of queueing responses without bound.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::ConnectionLimits;

/// How often a refusal of connections from one address is logged (each is counted).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Connection counts, over all listeners and by address.
pub struct ConnectionQuotas {
    total: Arc<Semaphore>,
    per_ip_default: usize,
    per_ip_overrides: std::collections::BTreeMap<IpAddr, usize>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    last_logged: Mutex<HashMap<IpAddr, Instant>>,
    /// The broker-wide response budget (`queued.max.request.bytes`).
    responses: Option<(Arc<Semaphore>, usize)>,
    per_connection_responses: usize,
}

/// One admitted connection; gives its place back when dropped.
pub struct ConnectionSlot {
    quotas: Arc<ConnectionQuotas>,
    ip: IpAddr,
    _total: OwnedSemaphorePermit,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut per_ip = self.quotas.per_ip.lock();
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
        metrics::gauge!("runnel_connections").decrement(1.0);
    }
}

impl ConnectionQuotas {
    pub fn new(limits: &ConnectionLimits) -> Arc<ConnectionQuotas> {
        Arc::new(ConnectionQuotas {
            total: Arc::new(Semaphore::new(
                limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
            )),
            per_ip_default: limits.max_connections_per_ip,
            per_ip_overrides: limits.max_connections_per_ip_overrides.clone(),
            per_ip: Mutex::new(HashMap::new()),
            last_logged: Mutex::new(HashMap::new()),
            responses: limits.queued_max_bytes.map(|n| {
                let n = n.clamp(1, Semaphore::MAX_PERMITS);
                (Arc::new(Semaphore::new(n)), n)
            }),
            per_connection_responses: limits.fetch_max_bytes.max(1),
        })
    }

    /// Waits until the broker may hold one more connection (`max.connections`); call before
    /// accepting, so that at the limit connections wait in the listen queue.
    pub async fn wait_for_room(&self) -> OwnedSemaphorePermit {
        if self.total.available_permits() == 0 {
            metrics::counter!("runnel_connections_delayed_total").increment(1);
        }
        self.total
            .clone()
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed")
    }

    /// Admits a connection from `ip`, or refuses it when that address is at its limit
    /// (`max.connections.per.ip`, or its override).
    pub fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        room: OwnedSemaphorePermit,
    ) -> Option<ConnectionSlot> {
        let limit = self
            .per_ip_overrides
            .get(&ip)
            .copied()
            .unwrap_or(self.per_ip_default);
        {
            let mut per_ip = self.per_ip.lock();
            let n = per_ip.entry(ip).or_insert(0);
            if *n >= limit {
                if *n == 0 {
                    per_ip.remove(&ip);
                }
                drop(per_ip);
                self.refused(ip, limit);
                return None;
            }
            *n += 1;
        }
        metrics::gauge!("runnel_connections").increment(1.0);
        Some(ConnectionSlot {
            quotas: self.clone(),
            ip,
            _total: room,
        })
    }

    /// Counts a refusal; logs it once per address per [`REFUSAL_LOG_INTERVAL`].
    fn refused(&self, ip: IpAddr, limit: usize) {
        metrics::counter!("runnel_connections_refused_total", "reason" => "max.connections.per.ip")
            .increment(1);
        let now = Instant::now();
        let mut logged = self.last_logged.lock();
        let due = logged
            .get(&ip)
            .is_none_or(|t| now.duration_since(*t) >= REFUSAL_LOG_INTERVAL);
        if due {
            logged.insert(ip, now);
            // Forget addresses that have not been refused for a while.
            logged.retain(|_, t| now.duration_since(*t) < REFUSAL_LOG_INTERVAL * 10);
            tracing::warn!(%ip, limit, "connection refused: too many connections from this address (max.connections.per.ip); further refusals are counted in runnel_connections_refused_total");
        }
    }

    /// A new connection's response budget.
    pub fn response_budget(&self) -> ResponseBudget {
        ResponseBudget {
            connection: Arc::new(Semaphore::new(
                self.per_connection_responses.min(Semaphore::MAX_PERMITS),
            )),
            connection_max: self.per_connection_responses.min(Semaphore::MAX_PERMITS),
            global: self.responses.clone(),
        }
    }

    /// Connections open now from `ip`.
    pub fn connections_from(&self, ip: IpAddr) -> usize {
        self.per_ip.lock().get(&ip).copied().unwrap_or(0)
    }
}

/// The bytes of computed responses one connection may hold before it stops being read.
pub struct ResponseBudget {
    connection: Arc<Semaphore>,
    connection_max: usize,
    global: Option<(Arc<Semaphore>, usize)>,
}

/// Bytes of one queued response, given back once it is written.
pub struct ResponsePermit {
    _connection: Option<OwnedSemaphorePermit>,
    _global: Option<OwnedSemaphorePermit>,
}

impl ResponseBudget {
    /// Waits until `bytes` more may be held. A response larger than a budget takes all of it,
    /// so it waits until everything before it has been written.
    pub async fn reserve(&self, bytes: usize) -> ResponsePermit {
        if bytes == 0 {
            return ResponsePermit {
                _connection: None,
                _global: None,
            };
        }
        let take = |n: usize, max: usize| n.min(max).min(u32::MAX as usize) as u32;
        let connection = self
            .connection
            .clone()
            .acquire_many_owned(take(bytes, self.connection_max))
            .await
            .ok();
        let global = match &self.global {
            Some((sem, max)) => {
                if sem.available_permits() < bytes.min(*max) {
                    metrics::counter!("runnel_response_budget_waits_total").increment(1);
                }
                sem.clone().acquire_many_owned(take(bytes, *max)).await.ok()
            }
            None => None,
        };
        ResponsePermit {
            _connection: connection,
            _global: global,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_ip: usize, overrides: &[(&str, usize)]) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            max_connections_per_ip_overrides: overrides
                .iter()
                .map(|(ip, n)| (ip.parse().unwrap(), *n))
                .collect(),
            ..ConnectionLimits::default()
        }
    }

    #[tokio::test]
    async fn per_address_limits_and_overrides() {
        let q = ConnectionQuotas::new(&limits(100, 2, &[("10.0.0.9", 0), ("10.0.0.7", 3)]));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let s1 = q.admit(a, q.wait_for_room().await).unwrap();
        let _s2 = q.admit(a, q.wait_for_room().await).unwrap();
        assert!(q.admit(a, q.wait_for_room().await).is_none());
        assert_eq!(q.connections_from(a), 2);
        drop(s1);
        assert!(q.admit(a, q.wait_for_room().await).is_some());
        // An override of 0 refuses every connection from that address; another allows more.
        assert!(q
            .admit("10.0.0.9".parse().unwrap(), q.wait_for_room().await)
            .is_none());
        let seven: IpAddr = "10.0.0.7".parse().unwrap();
        let kept: Vec<_> = (0..3)
            .map(|_| q.admit(seven, q.total.clone().try_acquire_owned().unwrap()))
            .collect();
        assert!(kept.iter().all(Option::is_some));
        assert!(q
            .admit(seven, q.total.clone().try_acquire_owned().unwrap())
            .is_none());
    }

    #[tokio::test]
    async fn at_max_connections_the_next_waits_for_one_to_close() {
        let q = ConnectionQuotas::new(&limits(2, 10, &[]));
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = q.admit(ip, q.wait_for_room().await).unwrap();
        let _b = q.admit(ip, q.wait_for_room().await).unwrap();
        let waiting = tokio::time::timeout(Duration::from_millis(100), q.wait_for_room()).await;
        assert!(waiting.is_err(), "a third connection must wait");
        drop(a);
        let room = tokio::time::timeout(Duration::from_secs(1), q.wait_for_room())
            .await
            .expect("room once one closed");
        assert!(q.admit(ip, room).is_some());
    }

    #[tokio::test]
    async fn a_connection_holds_at_most_its_budget_of_response_bytes() {
        let q = ConnectionQuotas::new(&ConnectionLimits {
            fetch_max_bytes: 1000,
            queued_max_bytes: Some(1500),
            ..ConnectionLimits::default()
        });
        let short = Duration::from_millis(100);
        let long = Duration::from_secs(2);
        let one = q.response_budget();
        let two = q.response_budget();
        let p1 = one.reserve(600).await;
        // 600 + 600 > 1000: the connection's next response waits until the first is written.
        assert!(tokio::time::timeout(short, one.reserve(600)).await.is_err());
        // Another connection has its own budget, within the broker-wide one.
        let p2 = tokio::time::timeout(long, two.reserve(900)).await.unwrap();
        assert!(tokio::time::timeout(short, two.reserve(1)).await.is_err());
        drop(p1);
        let p3 = tokio::time::timeout(long, two.reserve(1)).await.unwrap();
        // A response larger than every budget takes all of them: it waits until everything
        // queued before it, on any connection, has been written.
        assert!(tokio::time::timeout(short, one.reserve(5000))
            .await
            .is_err());
        drop((p2, p3));
        assert!(tokio::time::timeout(long, one.reserve(5000)).await.is_ok());
    }
}
