//! Length-prefixed framing.
