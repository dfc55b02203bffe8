//! Client quotas as Kafka enforces them (KIP-13, KIP-55, KIP-124, KIP-599): per user and
//! client id, a produce byte rate, a fetch byte rate, a share of request-handling time and a
//! rate of partition mutations, each looked up in the metadata image with Kafka's precedence
//! and measured over `quota.window.num` windows of `quota.window.size.seconds`.
//!
//! The manager only measures and answers "how long must this client wait"; the dispatcher
//! puts that time in the response's `throttle_time_ms` and the connection stops reading the
//! client for as long.

pub mod rate;

use parking_lot::Mutex;
use runnel_controller::managers::quotas::{
    CONSUMER_BYTE_RATE, CONTROLLER_MUTATION_RATE, PRODUCER_BYTE_RATE, REQUEST_PERCENTAGE,
};
use runnel_controller::records::{QuotaEntity, QuotaName};
use runnel_controller::MetadataImage;
use std::collections::HashMap;

use crate::context::RequestContext;
use rate::{Rate, TokenBucket, Window};

/// The four kinds of client quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    Produce,
    Fetch,
    Request,
    ControllerMutation,
}

impl QuotaKind {
    /// The quota's key in the metadata log.
    pub fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => PRODUCER_BYTE_RATE,
            QuotaKind::Fetch => CONSUMER_BYTE_RATE,
            QuotaKind::Request => REQUEST_PERCENTAGE,
            QuotaKind::ControllerMutation => CONTROLLER_MUTATION_RATE,
        }
    }

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            QuotaKind::Produce => "produce",
            QuotaKind::Fetch => "fetch",
            QuotaKind::Request => "request",
            QuotaKind::ControllerMutation => "controller_mutation",
        }
    }
}

/// Who is measured: the user and client id the matching quota was set for, with a default
/// entity replaced by the actual name (so a default quota applies to each user or client id
/// on its own, as in Kafka), and the component the quota does not name left out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SensorKey {
    pub user: Option<String>,
    pub client_id: Option<String>,
}

/// The quota that applies to a user and client id for one kind, and whom it measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub quota: f64,
    pub sensor: SensorKey,
}

/// Kafka's precedence (KIP-55): the most specific entity that sets the key wins.
pub fn resolve(
    image: &MetadataImage,
    kind: QuotaKind,
    user: &str,
    client_id: &str,
) -> Option<Applied> {
    let named = |n: &str| Some(QuotaName::Name(n.to_string()));
    let default = || Some(QuotaName::Default);
    // (entity, whether the sensor is per user, whether it is per client id)
    let candidates = [
        (named(user), named(client_id), true, true),
        (named(user), default(), true, true),
        (named(user), None, true, false),
        (default(), named(client_id), true, true),
        (default(), default(), true, true),
        (default(), None, true, false),
        (None, named(client_id), false, true),
        (None, default(), false, true),
    ];
    candidates
        .into_iter()
        .find_map(|(u, c, per_user, per_client)| {
            let entity = QuotaEntity {
                user: u,
                client_id: c,
            };
            let value = image.client_quota(&entity)?.get(kind.key())?;
            Some(Applied {
                quota: value.0,
                sensor: SensorKey {
                    user: per_user.then(|| user.to_string()),
                    client_id: per_client.then(|| client_id.to_string()),
                },
            })
        })
}

/// `quota.window.num` and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaWindows {
    /// `quota.window.num` × `quota.window.size.seconds`: byte and request-time quotas.
    pub client: Window,
    /// `controller.quota.window.num` × `controller.quota.window.size.seconds`.
    pub controller: Window,
}

impl Default for QuotaWindows {
    fn default() -> Self {
        let w = Window {
            samples: 11,
            sample_ms: 1000,
        };
        QuotaWindows {
            client: w,
            controller: w,
        }
    }
}

enum Sensor {
    Rate(Rate),
    Bucket(TokenBucket),
}

impl Sensor {
    fn last_ms(&self) -> u64 {
        match self {
            Sensor::Rate(r) => r.last_ms().unwrap_or(0),
            Sensor::Bucket(b) => b.last_ms(),
        }
    }
}

#[derive(Default)]
struct State {
    sensors: HashMap<(QuotaKind, SensorKey), Sensor>,
    last_sweep_ms: u64,
}

/// The broker's client quota state.
pub struct QuotaManager {
    windows: QuotaWindows,
    state: Mutex<State>,
}

/// The user and client id of a request, as quotas name them: the principal's name
/// (`ANONYMOUS` when unauthenticated) and the header's client id (empty when absent).
fn client_of(ctx: &RequestContext) -> (&str, &str) {
    (
        ctx.connection.principal.name.as_str(),
        ctx.client_id.as_deref().unwrap_or(""),
    )
}

impl QuotaManager {
    pub fn new(windows: QuotaWindows) -> QuotaManager {
        QuotaManager {
            windows,
            state: Mutex::new(State::default()),
        }
    }

    /// The quota of `kind` that applies to the request's client, if any. Requests the broker
    /// makes itself have none.
    pub fn applied(
        &self,
        kind: QuotaKind,
        image: &MetadataImage,
        ctx: &RequestContext,
    ) -> Option<Applied> {
        if ctx.internal || image.client_quotas().next().is_none() {
            return None;
        }
        let (user, client_id) = client_of(ctx);
        resolve(image, kind, user, client_id)
    }

    fn window(&self, kind: QuotaKind) -> Window {
        match kind {
            QuotaKind::ControllerMutation => self.windows.controller,
            _ => self.windows.client,
        }
    }

    /// Records `value` for the client and answers how long it must now wait, in
    /// milliseconds (0 without a quota or within it).
    pub fn record(
        &self,
        kind: QuotaKind,
        image: &MetadataImage,
        ctx: &RequestContext,
        value: f64,
        now_ms: u64,
    ) -> u64 {
        let Some(applied) = self.applied(kind, image, ctx) else {
            return 0;
        };
        let throttle = self.record_applied(kind, &applied, value, now_ms);
        if throttle > 0 {
            metrics::counter!("runnel_quota_throttled_total", "quota" => kind.label()).increment(1);
            metrics::counter!("runnel_quota_throttle_time_ms_total", "quota" => kind.label())
                .increment(throttle);
        }
        throttle
    }

    fn record_applied(&self, kind: QuotaKind, applied: &Applied, value: f64, now: u64) -> u64 {
        let w = self.window(kind);
        let mut state = self.state.lock();
        self.sweep(&mut state, now);
        let key = (kind, applied.sensor.clone());
        let sensor = state.sensors.entry(key).or_insert_with(|| match kind {
            QuotaKind::ControllerMutation => {
                Sensor::Bucket(TokenBucket::new(w, applied.quota, now))
            }
            _ => Sensor::Rate(Rate::new()),
        });
        match sensor {
            Sensor::Rate(r) => {
                r.record(w, value, now);
                r.throttle_ms(w, applied.quota, now, w.total_ms())
            }
            Sensor::Bucket(b) => {
                b.record(w, applied.quota, value, now);
                b.throttle_ms(w, applied.quota, now)
            }
        }
    }

    /// Takes back a recording (a throttled fetch is answered empty, so its bytes do not count).
    pub fn unrecord(
        &self,
        kind: QuotaKind,
        image: &MetadataImage,
        ctx: &RequestContext,
        value: f64,
        now_ms: u64,
    ) {
        if let Some(applied) = self.applied(kind, image, ctx) {
            self.record_applied(kind, &applied, -value, now_ms);
        }
    }

    /// How long the client must wait before its quota of `kind` allows more, without
    /// recording anything (KIP-599's strict check before each topic).
    pub fn throttle(
        &self,
        kind: QuotaKind,
        image: &MetadataImage,
        ctx: &RequestContext,
        now_ms: u64,
    ) -> u64 {
        match self.applied(kind, image, ctx) {
            Some(applied) => self.record_applied(kind, &applied, 0.0, now_ms),
            None => 0,
        }
    }

    /// The most a client may take at once, if it has a quota of `kind`: half of one sample's
    /// worth. Kafka allows a whole window less one sample, but a response that large spends
    /// the client's quota for most of the window and leaves a consumer that polls greedily at
    /// about half its quota; half a sample keeps it within a few percent of its quota.
    pub fn max_in_window(
        &self,
        kind: QuotaKind,
        image: &MetadataImage,
        ctx: &RequestContext,
    ) -> Option<u64> {
        let applied = self.applied(kind, image, ctx)?;
        let w = self.window(kind);
        Some((applied.quota * w.sample_ms as f64 / 2000.0).max(1.0) as u64)
    }

    /// Forgets sensors idle for a whole window: a rate over an empty window is zero and a bucket
    /// idle that long is full, so a new sensor measures them the same. This bounds the map by the
    /// clients active within one window, whatever client ids a client cycles through.
    fn sweep(&self, state: &mut State, now: u64) {
        let span = self
            .windows
            .client
            .total_ms()
            .max(self.windows.controller.total_ms());
        if now.saturating_sub(state.last_sweep_ms) < span {
            return;
        }
        state.last_sweep_ms = now;
        state
            .sensors
            .retain(|_, s| now.saturating_sub(s.last_ms()) < span);
    }

    #[cfg(test)]
    fn sensor_count(&self) -> usize {
        self.state.lock().sensors.len()
    }
}

#[cfg(test)]
mod tests;
