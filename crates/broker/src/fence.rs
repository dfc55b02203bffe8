//! When this broker must stop serving partitions and groups even though its hosted state says
//! it leads them.
//!
//! Two reasons: the controller fenced the broker, or it could not heartbeat for a session
//! timeout (the controller then fences it and moves its leaderships away, so a client served
//! here could read stale data or write to a log nobody follows); and the data directory turned
//! out to belong to another cluster ([`Fence::fail`]) or the log directory failed
//! ([`Fence::fail_storage`]), which stops the broker for good.
//!
//! Fencing only counts once the broker has completed start-up and the controller has unfenced
//! it once ([`Fence::arm_when_unfenced`]): the lifecycle starts fenced, and a node that is
//! still starting serves nothing anyway (its partitions open only after it has caught up).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use runnel_controller::BrokerLifecycle;
use tokio::sync::watch;

pub struct Fence {
    lifecycle: watch::Receiver<BrokerLifecycle>,
    /// Set once start-up completed and the lifecycle reported the broker unfenced.
    armed: AtomicBool,
    /// Set with `fatal`: the broker must never serve again.
    failed: AtomicBool,
    /// Why, once known.
    fatal: watch::Sender<Option<String>>,
    /// Set when the failure is the log directory's ([`Self::fail_storage`]).
    storage: AtomicBool,
}

impl Fence {
    pub fn new(lifecycle: watch::Receiver<BrokerLifecycle>) -> Fence {
        Fence {
            lifecycle,
            armed: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            fatal: watch::channel(None).0,
            storage: AtomicBool::new(false),
        }
    }

    /// Whether partitions and groups must not be served now.
    pub fn is_fenced(&self) -> bool {
        if self.failed.load(Ordering::Acquire) {
            return true;
        }
        self.armed.load(Ordering::Acquire) && self.lifecycle.borrow().fenced
    }

    /// Whether fencing by the controller is in force (start-up completed, unfenced once).
    pub fn is_armed(&self) -> bool {
        self.armed.load(Ordering::Acquire)
    }

    /// Start-up has completed: from the moment the lifecycle first shows this broker registered
    /// and unfenced, a fenced lifecycle stops it serving. Call once (more calls are harmless).
    pub fn arm_when_unfenced(self: &Arc<Self>) {
        if self.is_armed() {
            return;
        }
        let fence = self.clone();
        let mut rx = self.lifecycle.clone();
        tokio::spawn(async move {
            if rx.wait_for(|l| l.registered && !l.fenced).await.is_ok() {
                fence.arm();
            }
        });
    }

    fn arm(&self) {
        if !self.armed.swap(true, Ordering::AcqRel) {
            tracing::info!("broker unfenced; it stops serving whenever it is fenced again");
        }
    }

    /// Stops this broker serving for good, with the reason (reported by
    /// [`Self::fatal_watch`], which makes the server exit).
    pub fn fail(&self, reason: String) {
        let first = self.fatal.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            *slot = Some(reason.clone());
            true
        });
        if first {
            self.failed.store(true, Ordering::Release);
            tracing::error!(reason = %reason, "broker stops serving");
        }
    }

    /// The reason given to [`Self::fail`], if any.
    /// Stops this broker serving because its log directory failed: unlike [`Self::fail`],
    /// the controller is still asked to move its leaderships before it stops.
    pub fn fail_storage(&self, reason: String) {
        self.storage.store(true, Ordering::Release);
        self.fail(reason);
    }

    /// Whether the failure is the log directory's.
    pub fn is_storage_failure(&self) -> bool {
        self.storage.load(Ordering::Acquire)
    }

    pub fn fatal(&self) -> Option<String> {
        self.fatal.borrow().clone()
    }

    /// Changes to `Some(reason)` when [`Self::fail`] is called.
    pub fn fatal_watch(&self) -> watch::Receiver<Option<String>> {
        self.fatal.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn state(registered: bool, fenced: bool) -> BrokerLifecycle {
        BrokerLifecycle { registered, fenced }
    }

    async fn until(f: impl Fn() -> bool) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !f() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("condition not reached");
    }

    #[tokio::test]
    async fn fenced_only_after_start_up_and_a_first_unfencing() {
        let (tx, rx) = watch::channel(state(false, true));
        let fence = Arc::new(Fence::new(rx));
        // Starting: the lifecycle is fenced, but that does not count yet.
        assert!(!fence.is_fenced());
        fence.arm_when_unfenced();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!fence.is_fenced());
        assert!(!fence.is_armed());
        tx.send_replace(state(true, false));
        until(|| fence.is_armed()).await;
        assert!(!fence.is_fenced());
        // Fenced by the controller (or no heartbeat for a session timeout).
        tx.send_replace(state(true, true));
        assert!(fence.is_fenced());
        tx.send_replace(state(true, false));
        assert!(!fence.is_fenced());
    }

    #[tokio::test]
    async fn a_fatal_failure_fences_for_good() {
        let (_tx, rx) = watch::channel(state(true, false));
        let fence = Fence::new(rx);
        let mut w = fence.fatal_watch();
        assert!(!fence.is_fenced());
        fence.fail("cluster id mismatch".into());
        fence.fail("second reason is ignored".into());
        assert!(fence.is_fenced());
        assert_eq!(fence.fatal().as_deref(), Some("cluster id mismatch"));
        assert!(w.has_changed().unwrap());
        assert_eq!(
            w.borrow_and_update().as_deref(),
            Some("cluster id mismatch")
        );
    }
}
