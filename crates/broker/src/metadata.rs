//! The metadata image as this broker has applied it, and how far the hosted partitions follow
//! it. Handlers read the image here; the reconciler reports here what it has applied, so a
//! request can wait until a change it made is in force on this broker.

use std::sync::Arc;
use std::time::Duration;

use runnel_controller::{AppliedImage, ControllerNode};
use tokio::sync::watch;

/// The locally applied metadata image and the reconciler's progress.
pub struct MetadataView {
    node_id: i32,
    controller: Arc<ControllerNode>,
    images: watch::Receiver<Arc<AppliedImage>>,
    /// The last image index the reconciler applied to the hosted partitions.
    reconciled: watch::Sender<u64>,
    /// The last image the reconciler applied, to tell what the next one changed.
    reconciled_image: parking_lot::Mutex<Option<Arc<AppliedImage>>>,
}

impl MetadataView {
    pub fn new(node_id: i32, controller: Arc<ControllerNode>) -> MetadataView {
        MetadataView {
            node_id,
            images: controller.image(),
            controller,
            reconciled: watch::channel(0).0,
            reconciled_image: parking_lot::Mutex::new(None),
        }
    }

    /// This broker's node id.
    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// The locally applied metadata image.
    pub fn image(&self) -> Arc<AppliedImage> {
        self.images.borrow().clone()
    }

    pub fn image_watch(&self) -> watch::Receiver<Arc<AppliedImage>> {
        self.images.clone()
    }

    /// The active controller's id, -1 when none is known.
    pub fn active_controller(&self) -> i32 {
        self.controller.active_controller().unwrap_or(-1)
    }

    /// Whether `image` shows this process's own registration unfenced. Its registration was
    /// appended after everything committed before it, so such an image has caught up with the
    /// metadata log as of this start: acting on it can no longer undo newer metadata (a topic
    /// recreated while this node was down, say).
    pub fn caught_up(&self, image: &AppliedImage) -> bool {
        image
            .image
            .broker(self.node_id)
            .is_some_and(|b| !b.fenced && b.incarnation_id == self.controller.incarnation_id())
    }

    /// Waits until the local image has caught up (see [`Self::caught_up`]); false on timeout.
    pub async fn wait_caught_up(&self, timeout: Duration) -> bool {
        let mut images = self.image_watch();
        tokio::time::timeout(timeout, images.wait_for(|i| self.caught_up(i)))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The last image index the reconciler has applied to the hosted partitions.
    pub fn reconciled_index(&self) -> u64 {
        *self.reconciled.borrow()
    }

    /// Waits (up to `timeout`) until the reconciler has applied an image at `index` or later.
    pub async fn wait_reconciled_locally(&self, index: u64, timeout: Duration) -> bool {
        let mut rx = self.reconciled.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|i| *i >= index))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The image the data path answers from: the last one the reconciler has applied to the
    /// hosted partitions (the current image before the first pass). It agrees with the
    /// partitions' leaderships, so a partition this image names this node leader of is led
    /// here, whereas the current image may name a leadership the reconciler has yet to take up
    /// (a request that names one waits for it first: `handlers::take_up_pending`).
    pub fn serving_image(&self) -> Arc<AppliedImage> {
        self.reconciled_image
            .lock()
            .clone()
            .unwrap_or_else(|| self.image())
    }

    /// Records `image` as the one the reconciler is applying; returns the one it applied
    /// before (none on the first pass).
    pub(crate) fn swap_reconciled_image(
        &self,
        image: Arc<AppliedImage>,
    ) -> Option<Arc<AppliedImage>> {
        self.reconciled_image.lock().replace(image)
    }

    pub(crate) fn mark_reconciled(&self, index: u64) {
        self.reconciled.send_if_modified(|cur| {
            let newer = index > *cur;
            if newer {
                *cur = index;
            }
            newer
        });
    }

    /// Waits until the image has applied `index` and the hosted partitions follow it, so that
    /// a client's next request to this broker sees a change it just made. False on timeout.
    pub async fn wait_reconciled(&self, index: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        if !self.controller.wait_applied(index, timeout).await {
            return false;
        }
        let mut rx = self.reconciled.subscribe();
        tokio::time::timeout_at(deadline, rx.wait_for(|i| *i >= index))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}
