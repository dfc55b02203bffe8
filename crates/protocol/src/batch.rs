//! Record batch (magic v2) header parsing, validation and in-place patching.
