//! A scratch copy of the image that the records a manager emits are replayed into as they are
//! emitted, so that later decisions of the same request see the effect of earlier records and
//! the batch is known to replay cleanly.

use crate::image::MetadataImage;
use crate::records::Record;

pub(crate) struct Staged {
    image: MetadataImage,
    records: Vec<Record>,
}

impl Staged {
    pub(crate) fn new(image: &MetadataImage) -> Self {
        Staged {
            image: image.clone(),
            records: Vec::new(),
        }
    }

    /// The image with every record pushed so far applied.
    pub(crate) fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// Applies the record to the scratch image and keeps it. A record the image refuses is a
    /// manager bug: it is logged and dropped, because the state machine would refuse it too.
    pub(crate) fn push(&mut self, record: Record) {
        match self.image.apply(&record) {
            Ok(()) => self.records.push(record),
            Err(error) => {
                // Unit tests must see such a bug; a running controller must not crash on it.
                #[cfg(test)]
                panic!("manager emitted a record that does not apply: {error}: {record:?}");
                #[cfg(not(test))]
                tracing::error!(%error, ?record, "manager emitted a record that does not apply; dropped");
            }
        }
    }

    pub(crate) fn into_records(self) -> Vec<Record> {
        self.records
    }
}
