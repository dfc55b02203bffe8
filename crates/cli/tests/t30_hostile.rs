//! Level 30: hostile and malformed input on a raw `TcpStream`.
//!
//! STYLE.md: "A malformed or hostile request gets a Kafka error code or a closed connection with
//! a logged reason. It never panics the broker and never corrupts a log." Each test sends one
//! kind of bad input, checks the reaction Kafka would have (closed connection or the Kafka error
//! code), and then checks the server still serves a fresh well-formed client: ApiVersions on a
//! new connection and a produce/fetch round trip. Every server's stderr must be free of panics.

mod common;

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use common::{create_topic, fetch, produce, produce_verbose, record_batch, CResult, Conn, Server};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::records::Compression;

const HEALTH_TOPIC: &str = "health";

/// A server with a 1-partition topic for health checks.
fn server_with(sets: &[&str]) -> Server {
    let server = Server::start_with(sets);
    create_topic(server.socket_addr(), HEALTH_TOPIC, 1).expect("create health topic");
    server
}

/// The server is alive, answers ApiVersions on a new connection and round-trips a record.
fn assert_healthy(server: &mut Server, after: &str) {
    // Give a crashing server a moment to actually exit.
    std::thread::sleep(Duration::from_millis(100));
    server.assert_alive(after);
    let check = || -> CResult<()> {
        let mut conn = Conn::connect(server.socket_addr())?;
        let av = conn.api_versions(0)?;
        if av.error_code != 0 || av.api_keys.is_empty() {
            return Err(format!(
                "ApiVersions: error {} keys {}",
                av.error_code,
                av.api_keys.len()
            )
            .into());
        }
        let value = format!("health after {after}");
        let (err, base) = produce(
            &mut conn,
            HEALTH_TOPIC,
            0,
            record_batch(&[value.as_bytes()], Compression::None),
        )?;
        if err != 0 {
            return Err(format!("health produce error {err}").into());
        }
        let records = fetch(&mut conn, HEALTH_TOPIC, 0, base)?;
        match records.first() {
            Some(r) if r.offset == base && r.value.as_deref() == Some(value.as_bytes()) => Ok(()),
            other => Err(format!("health fetch at {base}: {other:?}").into()),
        }
    };
    if let Err(e) = check() {
        panic!(
            "server unhealthy after {after}: {e}\n{}",
            server.stderr_tail()
        );
    }
    let stderr = server.stderr();
    assert!(
        !stderr.contains("panicked") && !stderr.contains("memory allocation of"),
        "server panicked after {after}\n{}",
        server.stderr_tail()
    );
}

/// The server closes the connection (rather than answering or hanging).
fn assert_closed(conn: &mut Conn, what: &str) {
    if let Err(e) = conn.expect_closed() {
        panic!("{what}: connection not closed: {e}");
    }
}

/// A well-formed request header for `api_key`/`version` (header v1: i16 key, i16 version,
/// i32 correlation id, nullable string client id).
fn header_v1(api_key: i16, version: i16, correlation: i32) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_i16(api_key);
    b.put_i16(version);
    b.put_i32(correlation);
    b.put_i16(4);
    b.put_slice(b"evil");
    b
}

#[test]
fn garbage_bytes() {
    let mut server = server_with(&[]);
    // An HTTP request: its first four bytes read as a ~1.2 GB frame length.
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    conn.write_raw(b"GET / HTTP/1.1\r\nHost: runnel\r\n\r\n")
        .unwrap();
    assert_closed(&mut conn, "HTTP request");
    assert_healthy(&mut server, "an HTTP request");

    // A plausible length followed by random bytes (api key 0xa5a5 is no API).
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    let mut x: u32 = 0x9e37_79b9;
    let junk: Vec<u8> = (0..64)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8 | 0x80
        })
        .collect();
    conn.write_frame(&junk).unwrap();
    // Its api key is negative: Kafka closes; an answer is tolerated (see unknown_api_key).
    let _ = conn.read_frame();
    assert_healthy(&mut server, "a random frame");
}

#[test]
fn truncated_frame_then_close() {
    let mut server = server_with(&[]);
    for cut in [1usize, 3, 10] {
        let mut conn = Conn::connect(server.socket_addr()).unwrap();
        let mut frame = BytesMut::new();
        frame.put_i32(100);
        frame.put_slice(&header_v1(ApiKey::ApiVersions as i16, 0, 1)[..]);
        frame.put_slice(&[0u8; 100]);
        conn.write_raw(&frame[..cut]).unwrap();
        drop(conn);
        assert_healthy(&mut server, &format!("a frame cut after {cut} bytes"));
    }
    // Half-close: the server sees EOF mid-frame and must not spin or answer.
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(50);
    frame.put_slice(&header_v1(ApiKey::ApiVersions as i16, 0, 1)[..]);
    conn.write_raw(&frame).unwrap();
    conn.shutdown_write();
    assert_closed(&mut conn, "truncated frame + half-close");
    assert_healthy(&mut server, "a truncated frame and half-close");
}

#[test]
fn huge_and_negative_length_prefix() {
    let mut server = server_with(&[]);
    for len in [i32::MAX, 0x4000_0000, -1, i32::MIN, -100] {
        let mut conn = Conn::connect(server.socket_addr()).unwrap();
        let mut b = BytesMut::new();
        b.put_i32(len);
        b.put_slice(&header_v1(ApiKey::ApiVersions as i16, 0, 1)[..]);
        conn.write_raw(&b).unwrap();
        assert_closed(&mut conn, &format!("length prefix {len}"));
        assert_healthy(&mut server, &format!("length prefix {len}"));
    }
    // Above socket.request.max.bytes (set small here) but well under 2 GiB.
    let mut server = server_with(&["socket.request.max.bytes=1048576"]);
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    let mut b = BytesMut::new();
    b.put_i32(2 << 20);
    b.put_slice(&header_v1(ApiKey::ApiVersions as i16, 0, 1)[..]);
    conn.write_raw(&b).unwrap();
    assert_closed(&mut conn, "2 MiB frame over socket.request.max.bytes=1 MiB");
    assert_healthy(&mut server, "a frame over socket.request.max.bytes");
}

#[test]
fn unknown_api_key() {
    let mut server = server_with(&[]);
    for (key, version) in [(9999i16, 0i16), (-1, 0), (ApiKey::Metadata as i16, 999)] {
        let mut conn = Conn::connect(server.socket_addr()).unwrap();
        conn.write_frame(&header_v1(key, version, 77)).unwrap();
        // Kafka closes the connection for an unknown API key; an error response is also
        // acceptable if it echoes the correlation id.
        match conn.read_frame() {
            Ok(None) | Err(_) => {}
            Ok(Some(resp)) => {
                assert!(resp.len() >= 4, "short response to api {key} v{version}");
                let correlation = i32::from_be_bytes(resp[..4].try_into().unwrap());
                assert_eq!(
                    correlation, 77,
                    "api {key} v{version}: wrong correlation id"
                );
            }
        }
        assert_healthy(&mut server, &format!("api key {key} version {version}"));
    }
}

#[test]
fn bad_crc_is_corrupt_message() {
    let mut server = server_with(&[]);
    let good = record_batch(&[b"one", b"two-payload"], Compression::None);
    // Flip one byte of a record value: the batch still parses, only its CRC is wrong (Kafka
    // checks the CRC before looking at records, so the answer is CORRUPT_MESSAGE).
    let at = good
        .windows(11)
        .position(|w| w == b"two-payload")
        .expect("value in batch");
    let mut bad = BytesMut::from(&good[..]);
    bad[at + 4] ^= 0x01;
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    let (err, _, msg) = produce_verbose(&mut conn, HEALTH_TOPIC, 0, bad.freeze()).unwrap();
    assert_eq!(
        err, 2,
        "bad CRC: want CORRUPT_MESSAGE (2); broker said {msg:?}"
    );
    // Nothing of the corrupt batch may be readable.
    let records = fetch(&mut conn, HEALTH_TOPIC, 0, 0).unwrap();
    assert!(records.is_empty(), "corrupt batch was stored: {records:?}");
    assert_healthy(&mut server, "a batch with a bad CRC");
}

#[test]
fn oversized_batch_is_message_too_large() {
    let mut server = server_with(&["message.max.bytes=1000"]);
    let big = vec![b'x'; 2000];
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    let (err, _) = produce(
        &mut conn,
        HEALTH_TOPIC,
        0,
        record_batch(&[&big], Compression::None),
    )
    .unwrap();
    assert_eq!(
        err, 10,
        "2000-byte batch with message.max.bytes=1000: want MESSAGE_TOO_LARGE (10)"
    );
    let records = fetch(&mut conn, HEALTH_TOPIC, 0, 0).unwrap();
    assert!(records.is_empty(), "oversized batch was stored");
    assert_healthy(&mut server, "an oversized batch");
}

#[test]
fn produce_to_nonexistent_partition() {
    let mut server = server_with(&["auto.create.topics.enable=false"]);
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    let batch = record_batch(&[b"nowhere"], Compression::None);
    let (err, _) = produce(&mut conn, HEALTH_TOPIC, 7, batch.clone()).unwrap();
    assert_eq!(
        err, 3,
        "partition 7 of a 1-partition topic: want UNKNOWN_TOPIC_OR_PARTITION (3)"
    );
    let (err, _) = produce(&mut conn, HEALTH_TOPIC, -1, batch.clone()).unwrap();
    assert_eq!(err, 3, "partition -1: want UNKNOWN_TOPIC_OR_PARTITION (3)");
    let (err, _) = produce(&mut conn, "no-such-topic", 0, batch).unwrap();
    assert_eq!(
        err, 3,
        "missing topic with auto-create off: want UNKNOWN_TOPIC_OR_PARTITION (3)"
    );
    assert_healthy(&mut server, "produce to a nonexistent partition");
}

#[test]
fn metadata_with_huge_array_count() {
    let mut server = server_with(&[]);
    for count in [0x7fff_ffffi32, 0x1000_0000, -2] {
        let mut body = header_v1(ApiKey::Metadata as i16, 0, 5);
        body.put_i32(count); // topic array length, and no elements follow
        let mut conn = Conn::connect(server.socket_addr()).unwrap();
        conn.write_frame(&body).unwrap();
        // Kafka closes the connection on a request it cannot parse; any answer must at least
        // not be a crash.
        let _ = conn.read_frame();
        assert_healthy(
            &mut server,
            &format!("Metadata v0 with topic count {count}"),
        );
    }
    // The same trick inside a Produce: a huge topic-data count.
    let mut body = header_v1(ApiKey::Produce as i16, 3, 6);
    body.put_i16(-1); // transactional id
    body.put_i16(-1); // acks
    body.put_i32(1000); // timeout
    body.put_i32(0x7fff_ffff); // topic data count
    let mut conn = Conn::connect(server.socket_addr()).unwrap();
    conn.write_frame(&body).unwrap();
    let _ = conn.read_frame();
    assert_healthy(&mut server, "Produce v3 with topic count 0x7fffffff");
}

/// Many connections that send a partial frame and stay open must not stop others.
#[test]
fn idle_half_frames_do_not_block_others() {
    let mut server = server_with(&[]);
    let mut held = Vec::new();
    for _ in 0..50 {
        let mut conn = Conn::connect(server.socket_addr()).unwrap();
        conn.write_raw(&[0, 0, 0, 40, 0, 18]).unwrap();
        held.push(conn);
    }
    assert_healthy(&mut server, "50 idle half-frames");
    drop(held);
}
