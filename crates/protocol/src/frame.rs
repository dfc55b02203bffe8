//! Length-prefixed framing and request decoding.
//!
//! A Kafka frame is a 4-byte big-endian length followed by that many bytes. A request body starts
//! with the request header (api key, api version, correlation id, client id, and tagged fields for
//! flexible versions).

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use crate::versions;

/// Why a frame could not be taken off a connection. Every variant means the connection must be
/// closed: the stream position can no longer be trusted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame length {len} exceeds the maximum of {max} bytes (socket.request.max.bytes)")]
    TooLarge { len: i64, max: usize },
    #[error("negative frame length {0}")]
    Negative(i32),
    #[error("frame of {0} bytes is too short to hold a request header")]
    TooShort(usize),
}

/// Takes one complete frame off the front of `buf`, if one is there. Returns the frame body
/// (without the length prefix). Checks the length prefix before any body bytes arrive, and
/// reserves nothing for the body: the caller's buffer grows only as bytes arrive, so a hostile
/// length never makes us allocate for bytes that were not sent.
pub fn split_frame(buf: &mut BytesMut, max_size: usize) -> Result<Option<Bytes>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 0 {
        return Err(FrameError::Negative(len));
    }
    let len = len as usize;
    if len > max_size {
        return Err(FrameError::TooLarge {
            len: len as i64,
            max: max_size,
        });
    }
    if buf.len() < 4 + len {
        return Ok(None);
    }
    buf.advance(4);
    Ok(Some(buf.split_to(len).freeze()))
}

/// The fixed-position part of every request header: readable before we know whether we support
/// the API or version, so that error answers can always carry the correlation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderPrefix {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
}

pub fn peek_header_prefix(frame: &[u8]) -> Result<HeaderPrefix, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::TooShort(frame.len()));
    }
    Ok(HeaderPrefix {
        api_key: i16::from_be_bytes([frame[0], frame[1]]),
        api_version: i16::from_be_bytes([frame[2], frame[3]]),
        correlation_id: i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    })
}

/// A fully decoded request.
#[derive(Debug, Clone)]
pub struct DecodedRequest {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// Why a request could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("unknown api key {0}")]
    UnknownApiKey(i16),
    /// Only ApiVersions gets an answer for this (Kafka's fallback); for other APIs the
    /// connection is closed.
    #[error("unsupported version {version} of {api_key:?}")]
    UnsupportedVersion {
        prefix: HeaderPrefix,
        api_key: ApiKey,
        version: i16,
    },
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed {
        prefix: HeaderPrefix,
        api_key: ApiKey,
        version: i16,
        reason: String,
    },
}

/// Decodes a request frame body (header and body) for an API and version Runnel supports.
pub fn decode_request(mut frame: Bytes) -> Result<DecodedRequest, RequestError> {
    let prefix = peek_header_prefix(&frame)?;
    let api_key = ApiKey::try_from(prefix.api_key)
        .map_err(|_| RequestError::UnknownApiKey(prefix.api_key))?;
    let version = prefix.api_version;
    if !versions::is_supported(api_key, version) {
        return Err(RequestError::UnsupportedVersion {
            prefix,
            api_key,
            version,
        });
    }
    let malformed = |reason: String| RequestError::Malformed {
        prefix,
        api_key,
        version,
        reason,
    };
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| malformed(format!("header: {e:#}")))?;
    let body = if api_key == ApiKey::OffsetCommit && version < 2 {
        crate::legacy::decode_offset_commit(&mut frame, version)
            .map(RequestKind::OffsetCommit)
            .map_err(malformed)?
    } else {
        RequestKind::decode(api_key, &mut frame, version)
            .map_err(|e| malformed(format!("{e:#}")))?
    };
    Ok(DecodedRequest {
        api_key,
        header,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use kafka_protocol::messages::ApiVersionsRequest;
    use kafka_protocol::protocol::{Encodable, StrBytes};

    // The hostile-count test below needs the same allocator the broker runs with.
    #[global_allocator]
    static ALLOC: crate::alloc_guard::GuardedAlloc = crate::alloc_guard::GuardedAlloc;

    fn frame_of(api_key: ApiKey, version: i16, body: &impl Encodable) -> BytesMut {
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("t")));
        let mut b = BytesMut::new();
        header
            .encode(&mut b, api_key.request_header_version(version))
            .unwrap();
        body.encode(&mut b, version).unwrap();
        let mut out = BytesMut::new();
        out.put_i32(b.len() as i32);
        out.extend_from_slice(&b);
        out
    }

    #[test]
    fn splits_complete_frames_and_waits_for_partial_ones() {
        let mut buf = frame_of(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        let full_len = buf.len();
        let mut partial = buf.split_to(full_len - 1);
        assert_eq!(split_frame(&mut partial, 1024).unwrap(), None);
        partial.unsplit(buf);
        let frame = split_frame(&mut partial, 1024).unwrap().unwrap();
        assert!(partial.is_empty());
        let req = decode_request(frame).unwrap();
        assert_eq!(req.api_key, ApiKey::ApiVersions);
        assert_eq!(req.header.correlation_id, 7);
    }

    #[test]
    fn rejects_hostile_lengths_before_buffering() {
        let mut buf = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            split_frame(&mut buf, 100 << 20),
            Err(FrameError::TooLarge { .. })
        ));
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe][..]);
        assert_eq!(split_frame(&mut buf, 100), Err(FrameError::Negative(-2)));
    }

    #[test]
    fn unknown_api_key_and_unsupported_version_are_reported() {
        let frame = Bytes::from_static(&[0x7f, 0x00, 0, 1, 0, 0, 0, 9, 0, 0]);
        assert!(matches!(
            decode_request(frame),
            Err(RequestError::UnknownApiKey(0x7f00))
        ));
        let frame = Bytes::from_static(&[0, 18, 0, 99, 0, 0, 0, 9, 0, 0]);
        match decode_request(frame) {
            Err(RequestError::UnsupportedVersion { prefix, .. }) => {
                assert_eq!(prefix.correlation_id, 9)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn huge_array_count_in_tiny_frame_is_rejected_not_allocated() {
        // Metadata v0: header (key 3, v0, corr 1, client id null) then topics array count i32::MAX.
        let frame = Bytes::from_static(&[
            0, 3, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0, 1,
        ]);
        assert!(matches!(
            decode_request(frame),
            Err(RequestError::Malformed { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = decode_request(Bytes::from(data));
        }

        #[test]
        fn decoding_arbitrary_bodies_of_supported_apis_never_panics(
            idx in 0usize..64, version in 0i16..20,
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128),
        ) {
            let apis = versions::SUPPORTED;
            let (key, _, _) = apis[idx % apis.len()];
            let mut frame = vec![];
            frame.extend_from_slice(&(key as i16).to_be_bytes());
            frame.extend_from_slice(&version.to_be_bytes());
            frame.extend_from_slice(&1i32.to_be_bytes());
            frame.extend_from_slice(&body);
            let _ = decode_request(Bytes::from(frame));
        }
    }
}
