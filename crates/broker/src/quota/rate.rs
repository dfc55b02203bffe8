//! The measurements quotas are enforced with, as Kafka's metrics library takes them: a rate
//! over a window of samples (byte and request-time quotas) and a token bucket (the controller
//! mutation quota, KIP-599). Pure arithmetic on times passed in, in milliseconds.

/// How quota windows are cut: `quota.window.num` samples of `quota.window.size.seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub samples: u32,
    pub sample_ms: u64,
}

impl Window {
    /// The whole window: every sample's span.
    pub fn total_ms(&self) -> u64 {
        u64::from(self.samples) * self.sample_ms
    }
}

/// A rate over the last `samples` windows (Kafka's `Rate` over a `SampledStat`).
#[derive(Debug, Clone)]
pub struct Rate {
    /// `(window start, total recorded in it)`, oldest first; at most `samples` of them.
    samples: std::collections::VecDeque<(u64, f64)>,
}

impl Rate {
    pub fn new() -> Rate {
        Rate {
            samples: std::collections::VecDeque::new(),
        }
    }

    fn purge(&mut self, w: Window, now: u64) {
        while let Some(&(start, _)) = self.samples.front() {
            if now.saturating_sub(start) >= w.total_ms() {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }

    /// Adds `value` (which may be negative, to take back what a refused request recorded).
    pub fn record(&mut self, w: Window, value: f64, now: u64) {
        self.purge(w, now);
        match self.samples.back_mut() {
            Some((start, total)) if now.saturating_sub(*start) < w.sample_ms => *total += value,
            _ => {
                // A new sample starts at a multiple of the sample span after the last one, so
                // samples never overlap.
                let start = match self.samples.back() {
                    Some(&(last, _)) => last + (now - last) / w.sample_ms * w.sample_ms,
                    None => now,
                };
                self.samples.push_back((start, value));
                while self.samples.len() > w.samples as usize {
                    self.samples.pop_front();
                }
            }
        }
    }

    /// The span the rate is measured over: from the oldest sample to now, but never less than
    /// `samples - 1` whole samples, so that a new sensor does not see its first bytes as a
    /// huge rate (Kafka's `Rate.windowSize`).
    pub fn window_ms(&self, w: Window, now: u64) -> u64 {
        let oldest = self.samples.front().map_or(now, |&(s, _)| s);
        let elapsed = now.saturating_sub(oldest);
        let full = elapsed / w.sample_ms;
        let min_full = u64::from(w.samples.saturating_sub(1));
        if full < min_full {
            elapsed + (min_full - full) * w.sample_ms
        } else {
            elapsed
        }
        .max(1)
    }

    /// Units per second over the window.
    pub fn measure(&mut self, w: Window, now: u64) -> f64 {
        self.purge(w, now);
        let total: f64 = self.samples.iter().map(|(_, v)| v).sum();
        total * 1000.0 / self.window_ms(w, now) as f64
    }

    /// How long the client must wait for its rate to come back to `quota` (Kafka's
    /// `ClientQuotaManager.throttleTime`: the excess over the quota, as a share of the quota,
    /// times the window), at most `max_ms`.
    pub fn throttle_ms(&mut self, w: Window, quota: f64, now: u64, max_ms: u64) -> u64 {
        let observed = self.measure(w, now);
        if observed <= quota || quota <= 0.0 {
            return 0;
        }
        let ms = (observed - quota) / quota * self.window_ms(w, now) as f64;
        (ms.round() as u64).min(max_ms)
    }

    /// The last time anything was recorded.
    pub fn last_ms(&self) -> Option<u64> {
        self.samples.back().map(|&(s, _)| s)
    }
}

impl Default for Rate {
    fn default() -> Self {
        Rate::new()
    }
}

/// A token bucket (Kafka's `TokenBucket`, KIP-599): `quota` tokens a second, at most `quota *
/// window` of them banked; a recording may take the balance below zero, and the quota is
/// exceeded while it is.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(w: Window, quota: f64, now: u64) -> TokenBucket {
        TokenBucket {
            tokens: Self::burst(w, quota),
            last_ms: now,
        }
    }

    fn burst(w: Window, quota: f64) -> f64 {
        quota * w.total_ms() as f64 / 1000.0
    }

    fn refill(&mut self, w: Window, quota: f64, now: u64) {
        let elapsed = now.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + quota * elapsed).min(Self::burst(w, quota));
        self.last_ms = self.last_ms.max(now);
    }

    pub fn record(&mut self, w: Window, quota: f64, value: f64, now: u64) {
        self.refill(w, quota, now);
        self.tokens -= value;
    }

    /// How long until the balance is back at zero; zero while the quota is not exceeded.
    pub fn throttle_ms(&mut self, w: Window, quota: f64, now: u64) -> u64 {
        self.refill(w, quota, now);
        if self.tokens >= 0.0 || quota <= 0.0 {
            0
        } else {
            (-self.tokens / quota * 1000.0).ceil() as u64
        }
    }

    pub fn last_ms(&self) -> u64 {
        self.last_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Window = Window {
        samples: 11,
        sample_ms: 1000,
    };

    #[test]
    fn a_new_rate_is_measured_over_at_least_ten_samples() {
        let mut r = Rate::new();
        r.record(W, 10_000.0, 0);
        // 10 000 bytes at t=0 count as 10 000 over ten seconds, not over zero.
        assert_eq!(r.measure(W, 0), 1000.0);
        assert_eq!(r.measure(W, 500), 10_000.0 * 1000.0 / 10_500.0);
        // After the whole window the sample is gone.
        assert_eq!(r.measure(W, 11_000), 0.0);
    }

    /// Sends `chunk` bytes at a time, waiting each throttle out, for `duration_ms` against a
    /// 10 KB/s quota; the achieved rate.
    fn steady_sender(chunk: f64, duration_ms: u64) -> f64 {
        let mut r = Rate::new();
        let (mut now, mut sent) = (0u64, 0.0);
        while now < duration_ms {
            r.record(W, chunk, now);
            sent += chunk;
            now += r.throttle_ms(W, 10_000.0, now, W.total_ms()).max(1);
        }
        sent * 1000.0 / now as f64
    }

    #[test]
    fn throttle_brings_a_steady_sender_back_to_its_quota() {
        // The first window's worth goes at once (a new sensor measures over ten samples); after
        // that the client is held to its quota, so the average converges to it.
        for chunk in [1_000.0, 10_000.0] {
            let rate = steady_sender(chunk, 600_000);
            assert!(
                (rate - 10_000.0).abs() / 10_000.0 < 0.02,
                "{chunk}: rate {rate}"
            );
        }
        // A request worth more than the whole window is throttled for at most the window, so
        // such a client gets more than its quota (bounded by one request per window).
        let rate = steady_sender(100_000.0, 600_000);
        assert!(rate < 100_000.0 / 11.0 * 1.6, "rate {rate}");
    }

    #[test]
    fn under_the_quota_there_is_no_throttle_and_samples_roll() {
        let mut r = Rate::new();
        for s in 0..30u64 {
            r.record(W, 500.0, s * 1000);
            assert_eq!(r.throttle_ms(W, 1000.0, s * 1000, 11_000), 0);
        }
        assert!(r.samples.len() <= 11);
        let m = r.measure(W, 29_500);
        assert!((m - 500.0).abs() < 60.0, "{m}");
        // Taking a recording back is allowed.
        r.record(W, -500.0, 29_500);
        assert!(r.measure(W, 29_500) < m);
    }

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        // 2 partitions a second with 11 one-second samples: 22 may go at once.
        let mut b = TokenBucket::new(W, 2.0, 0);
        b.record(W, 2.0, 22.0, 0);
        assert_eq!(b.throttle_ms(W, 2.0, 0), 0);
        b.record(W, 2.0, 4.0, 0);
        // 4 over: two seconds until the balance is back to zero.
        assert_eq!(b.throttle_ms(W, 2.0, 0), 2000);
        assert_eq!(b.throttle_ms(W, 2.0, 1500), 500);
        assert_eq!(b.throttle_ms(W, 2.0, 2000), 0);
        // Refills stop at the burst.
        assert_eq!(b.throttle_ms(W, 2.0, 1_000_000), 0);
        b.record(W, 2.0, 23.0, 1_000_000);
        assert_eq!(b.throttle_ms(W, 2.0, 1_000_000), 500);
    }
}
