use super::*;
use proptest::prelude::*;

const RFC_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC_CLIENT_FINAL: &str =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn rfc_credential() -> ScramCredential {
    let salt = B64.decode(RFC_SALT).unwrap();
    ScramCredential::from_password(ScramMechanism::Sha256, "pencil", &salt, 4096)
}

fn cred(m: ScramMechanism, password: &str) -> ScramCredential {
    ScramCredential::from_password(m, password, &random_salt(), MIN_ITERATIONS)
}

/// Runs a whole exchange; returns the server's result and the client's check of server-final.
fn exchange(
    m: ScramMechanism,
    user: &str,
    password: &str,
    stored: Option<ScramCredential>,
) -> Result<String, ScramError> {
    let mut client = ScramClient::new(m, user, password);
    let mut server = ScramServer::new(m, b"server secret");
    let server_first = server.client_first(&client.client_first(), |_| stored)?;
    let client_final = client.server_first(&server_first)?;
    let (server_final, who) = server.client_final(&client_final)?;
    client.server_final(&server_final)?;
    Ok(who)
}

#[test]
fn mechanism_names_and_codes() {
    assert_eq!(ScramMechanism::Sha256.name(), "SCRAM-SHA-256");
    assert_eq!(ScramMechanism::Sha512.name(), "SCRAM-SHA-512");
    assert_eq!(
        ScramMechanism::from_name("SCRAM-SHA-512"),
        Some(ScramMechanism::Sha512)
    );
    assert_eq!(ScramMechanism::from_name("scram-sha-256"), None);
    assert_eq!(ScramMechanism::from_name("PLAIN"), None);
    assert_eq!(ScramMechanism::Sha256.kafka_type(), 1);
    assert_eq!(ScramMechanism::Sha512.kafka_type(), 2);
    assert_eq!(
        ScramMechanism::from_kafka_type(2),
        Some(ScramMechanism::Sha512)
    );
    assert_eq!(ScramMechanism::from_kafka_type(0), None);
    assert_eq!(ScramMechanism::Sha256.to_string(), "SCRAM-SHA-256");
}

#[test]
fn rfc7677_client_side() {
    let mut client = ScramClient::with_nonce(
        ScramMechanism::Sha256,
        "user",
        "pencil",
        RFC_CLIENT_NONCE.to_string(),
    );
    assert_eq!(client.client_first(), RFC_CLIENT_FIRST.as_bytes());
    let client_final = client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
    assert_eq!(String::from_utf8(client_final).unwrap(), RFC_CLIENT_FINAL);
    client.server_final(RFC_SERVER_FINAL.as_bytes()).unwrap();
}

#[test]
fn rfc7677_server_side() {
    let mut server =
        ScramServer::new(ScramMechanism::Sha256, b"secret").with_server_nonce(RFC_SERVER_NONCE);
    let server_first = server
        .client_first(RFC_CLIENT_FIRST.as_bytes(), |user| {
            assert_eq!(user, "user");
            Some(rfc_credential())
        })
        .unwrap();
    assert_eq!(String::from_utf8(server_first).unwrap(), RFC_SERVER_FIRST);
    let (server_final, user) = server.client_final(RFC_CLIENT_FINAL.as_bytes()).unwrap();
    assert_eq!(String::from_utf8(server_final).unwrap(), RFC_SERVER_FINAL);
    assert_eq!(user, "user");
}

#[test]
fn salted_password_paths_agree() {
    for m in ScramMechanism::ALL {
        let salt = random_salt();
        assert_eq!(salt.len(), 32);
        let salted = salted_password(m, "pw", &salt, 4096);
        assert_eq!(salted.len(), m.hash_len());
        let a = ScramCredential::from_password(m, "pw", &salt, 4096);
        let b = ScramCredential::from_salted_password(m, &salted, &salt, 4096);
        assert_eq!(a, b);
        assert_eq!(a.stored_key.len(), m.hash_len());
        assert_eq!(a.server_key.len(), m.hash_len());
    }
    assert_ne!(random_salt(), random_salt());
}

#[test]
fn round_trip_both_mechanisms() {
    for m in ScramMechanism::ALL {
        assert_eq!(
            exchange(m, "alice", "alice-secret", Some(cred(m, "alice-secret"))).unwrap(),
            "alice"
        );
    }
}

#[test]
fn user_names_with_commas_and_equals() {
    let m = ScramMechanism::Sha512;
    let user = "a,b=c";
    let client = ScramClient::new(m, user, "pw");
    let first = String::from_utf8(client.client_first()).unwrap();
    assert!(first.starts_with("n,,n=a=2Cb=3Dc,r="), "{first}");
    assert_eq!(exchange(m, user, "pw", Some(cred(m, "pw"))).unwrap(), user);
}

#[test]
fn wrong_password_fails_at_the_final_step() {
    for m in ScramMechanism::ALL {
        let err = exchange(m, "alice", "wrong", Some(cred(m, "alice-secret"))).unwrap_err();
        assert_eq!(err, ScramError::InvalidCredentials);
        assert_eq!(
            err.to_string(),
            "Authentication failed: Invalid user credentials"
        );
    }
}

#[test]
fn credential_of_the_other_mechanism_fails() {
    let err = exchange(
        ScramMechanism::Sha512,
        "alice",
        "pw",
        Some(cred(ScramMechanism::Sha256, "pw")),
    )
    .unwrap_err();
    assert_eq!(err, ScramError::InvalidCredentials);
}

fn server_first_for_unknown(secret: &[u8], user: &str) -> (String, String) {
    let client = ScramClient::new(ScramMechanism::Sha256, user, "pw");
    let mut server = ScramServer::new(ScramMechanism::Sha256, secret);
    let first = String::from_utf8(
        server
            .client_first(&client.client_first(), |_| None)
            .unwrap(),
    )
    .unwrap();
    let mut parts = first.split(',');
    parts.next();
    (
        parts.next().unwrap().to_string(),
        parts.next().unwrap().to_string(),
    )
}

#[test]
fn unknown_user_looks_like_a_wrong_password() {
    let err = exchange(ScramMechanism::Sha256, "nobody", "pw", None).unwrap_err();
    assert_eq!(err, ScramError::InvalidCredentials);

    let (salt, iterations) = server_first_for_unknown(b"secret", "nobody");
    assert_eq!(iterations, "i=4096");
    let salt = B64.decode(salt.strip_prefix("s=").unwrap()).unwrap();
    assert_eq!(salt.len(), 32);
    // The same salt every time for a user, different per user and per secret.
    assert_eq!(
        server_first_for_unknown(b"secret", "nobody").0,
        server_first_for_unknown(b"secret", "nobody").0
    );
    assert_ne!(
        server_first_for_unknown(b"secret", "nobody").0,
        server_first_for_unknown(b"secret", "other").0
    );
    assert_ne!(
        server_first_for_unknown(b"secret", "nobody").0,
        server_first_for_unknown(b"secret2", "nobody").0
    );
}

#[test]
fn authorization_id() {
    let m = ScramMechanism::Sha256;
    let mut server = ScramServer::new(m, b"s");
    assert!(server
        .client_first(b"n,a=alice,n=alice,r=abc", |_| Some(cred(m, "pw")))
        .is_ok());
    let mut server = ScramServer::new(m, b"s");
    assert_eq!(
        server
            .client_first(b"n,a=bob,n=alice,r=abc", |_| Some(cred(m, "pw")))
            .unwrap_err(),
        ScramError::AuthorizationIdMismatch
    );
}

/// client-final for a client-first-bare, computed from the RFC's formulas.
fn manual_client_final(
    m: ScramMechanism,
    password: &str,
    bare: &str,
    server_first: &str,
    extra: &str,
) -> String {
    let mut parts = server_first.split(',');
    let nonce = &parts.next().unwrap()[2..];
    let salt = B64.decode(&parts.next().unwrap()[2..]).unwrap();
    let iterations: i32 = parts.next().unwrap()[2..].parse().unwrap();
    let salted = salted_password(m, password, &salt, iterations);
    let client_key = m.hmac(&salted, &[b"Client Key"]);
    let without_proof = format!("c=biws,r={nonce}{extra}");
    let auth = format!("{bare},{server_first},{without_proof}");
    let signature = m.hmac(&m.hash(&client_key), &[auth.as_bytes()]);
    format!(
        "{without_proof},p={}",
        B64.encode(xor(&client_key, &signature))
    )
}

#[test]
fn extensions_are_accepted_and_ignored() {
    let m = ScramMechanism::Sha256;
    let stored = cred(m, "pw");
    let bare = "n=alice,r=abcdef,tokenauth=true";
    let mut server = ScramServer::new(m, b"s");
    let server_first = server
        .client_first(format!("n,,{bare}").as_bytes(), |_| Some(stored.clone()))
        .unwrap();
    let server_first = String::from_utf8(server_first).unwrap();
    // client-final may carry extensions before the proof too.
    let fin = manual_client_final(m, "pw", bare, &server_first, ",ext=1");
    let (_, user) = server.client_final(fin.as_bytes()).unwrap();
    assert_eq!(user, "alice");
    // The manual computation agrees with the server when there are no extensions.
    let mut server = ScramServer::new(m, b"s");
    let server_first = server
        .client_first(b"n,,n=alice,r=xyz", |_| Some(stored.clone()))
        .unwrap();
    let fin = manual_client_final(
        m,
        "pw",
        "n=alice,r=xyz",
        &String::from_utf8(server_first).unwrap(),
        "",
    );
    assert!(server.client_final(fin.as_bytes()).is_ok());
}

#[test]
fn y_flag_without_channel_binding() {
    let m = ScramMechanism::Sha256;
    let stored = cred(m, "pw");
    let mut server = ScramServer::new(m, b"s");
    let first = server
        .client_first(b"y,,n=alice,r=abc", |_| Some(stored))
        .unwrap();
    let nonce = String::from_utf8(first).unwrap().split(',').next().unwrap()[2..].to_string();
    // The channel binding must repeat the y header; "n,," does not match.
    let err = server
        .client_final(format!("c=biws,r={nonce},p=AAAA").as_bytes())
        .unwrap_err();
    assert!(
        matches!(err, ScramError::InvalidMessage(ref m) if m.contains("channel binding")),
        "{err}"
    );
}

#[test]
fn malformed_client_first() {
    let m = ScramMechanism::Sha256;
    let bad: &[&[u8]] = &[
        b"",
        b"n",
        b"n,",
        b"x,,n=a,r=b",
        b"p=tls-unique,,n=a,r=b",
        b"n,,",
        b"n,,n=a",
        b"n,,n=,r=b",
        b"n,,n=a,r=",
        b"n,,r=b,n=a",
        b"n,,m=x,n=a,r=b",
        b"n,,n=a=2,r=b",
        b"n,,n=a=41,r=b",
        b"n,,n=a,r=b,=x",
        b"n,,n=a,r=b,noequals",
        b"n,,n=a,r=b\x01",
        b"n,b=x,n=a,r=b",
        b"n,,n=\xff,r=b",
    ];
    for msg in bad {
        let mut server = ScramServer::new(m, b"s");
        let r = server.client_first(msg, |_| Some(cred(m, "pw")));
        assert!(
            matches!(r, Err(ScramError::InvalidMessage(_))),
            "{:?}: {r:?}",
            String::from_utf8_lossy(msg)
        );
    }
}

#[test]
fn malformed_client_final() {
    let m = ScramMechanism::Sha256;
    let stored = cred(m, "pw");
    let client = ScramClient::new(m, "alice", "pw");
    let mut server = ScramServer::new(m, b"s");
    let first = String::from_utf8(
        server
            .client_first(&client.client_first(), |_| Some(stored.clone()))
            .unwrap(),
    )
    .unwrap();
    let nonce = first.split(',').next().unwrap()[2..].to_string();
    let bad = [
        String::new(),
        "c=biws".to_string(),
        format!("c=biws,r={nonce}"),
        format!("c=biws,r={nonce},p=!!"),
        format!("c=bad!,r={nonce},p=AAAA"),
        format!("c=eSws,r={nonce},p=AAAA"),
        "c=biws,r=other,p=AAAA".to_string(),
        format!("r={nonce},c=biws,p=AAAA"),
    ];
    for msg in bad {
        let mut server = ScramServer::new(m, b"s");
        server
            .client_first(&client.client_first(), |_| Some(stored.clone()))
            .unwrap();
        let r = server.client_final(msg.as_bytes());
        assert!(
            matches!(r, Err(ScramError::InvalidMessage(_))),
            "{msg}: {r:?}"
        );
    }
    // A proof of the wrong length is a failed authentication.
    let r = server.client_final(format!("c=biws,r={nonce},p=AAAA").as_bytes());
    assert_eq!(r.unwrap_err(), ScramError::InvalidCredentials);
}

#[test]
fn steps_out_of_order() {
    let m = ScramMechanism::Sha256;
    let mut server = ScramServer::new(m, b"s");
    assert_eq!(
        server.client_final(b"c=biws,r=a,p=AAAA").unwrap_err(),
        ScramError::OutOfOrder
    );
    let mut server = ScramServer::new(m, b"s");
    server.client_first(b"n,,n=a,r=b", |_| None).unwrap();
    assert_eq!(
        server.client_first(b"n,,n=a,r=b", |_| None).unwrap_err(),
        ScramError::OutOfOrder
    );
    // After a failure the exchange is over.
    let mut server = ScramServer::new(m, b"s");
    assert!(server.client_first(b"garbage", |_| None).is_err());
    assert_eq!(
        server.client_final(b"c=biws,r=a,p=AAAA").unwrap_err(),
        ScramError::OutOfOrder
    );

    let client = ScramClient::new(m, "a", "pw");
    assert_eq!(
        client.server_final(b"v=AAAA").unwrap_err(),
        ScramError::OutOfOrder
    );
}

#[test]
fn client_checks_the_server() {
    let m = ScramMechanism::Sha256;
    let mut client = ScramClient::with_nonce(m, "user", "pencil", RFC_CLIENT_NONCE.to_string());
    // Nonce not extending ours.
    assert!(matches!(
        client.server_first(b"r=other,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"),
        Err(ScramError::InvalidMessage(_))
    ));
    let mut client = ScramClient::with_nonce(m, "user", "pencil", RFC_CLIENT_NONCE.to_string());
    assert!(matches!(
        client.server_first(
            format!("r={RFC_CLIENT_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096").as_bytes()
        ),
        Err(ScramError::InvalidMessage(_))
    ));
    for (i, word) in [(4095, "less"), (16385, "more")] {
        let mut client = ScramClient::with_nonce(m, "user", "pencil", RFC_CLIENT_NONCE.to_string());
        let msg = format!("r={RFC_CLIENT_NONCE}xyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i={i}");
        let err = client.server_first(msg.as_bytes()).unwrap_err();
        assert!(
            matches!(&err, ScramError::BadCredential(s) if s.contains(word)),
            "{err}"
        );
    }
    let mut client = ScramClient::with_nonce(m, "user", "pencil", RFC_CLIENT_NONCE.to_string());
    client.server_first(RFC_SERVER_FIRST.as_bytes()).unwrap();
    assert_eq!(
        client
            .server_final(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            .unwrap_err(),
        ScramError::InvalidServerSignature
    );
    assert_eq!(
        client.server_final(b"e=invalid-proof").unwrap_err(),
        ScramError::ServerError("invalid-proof".into())
    );
    assert!(matches!(
        client.server_final(b"x=1"),
        Err(ScramError::InvalidMessage(_))
    ));
}

#[test]
fn stored_credential_with_too_few_iterations() {
    let m = ScramMechanism::Sha256;
    let weak = ScramCredential::from_password(m, "pw", b"salt", 1000);
    let mut server = ScramServer::new(m, b"s");
    let err = server
        .client_first(b"n,,n=a,r=b", |_| Some(weak))
        .unwrap_err();
    assert!(matches!(err, ScramError::BadCredential(_)), "{err}");
}

fn scramish() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..96),
        "[nypcrvsiemaA-Z0-9=,+/\\-]{0,64}".prop_map(String::into_bytes),
        (
            "(c=biws|c=eSws|c=|r=|)",
            "[a-zA-Z0-9]{0,8}",
            "(,r=|,p=|,x=|,)",
            "[a-zA-Z0-9+/=]{0,48}"
        )
            .prop_map(|(a, b, c, d)| format!("{a}{b}{c}{d}").into_bytes()),
    ]
}

proptest! {
    #[test]
    fn server_never_panics(first in scramish(), fin in scramish(), known in any::<bool>()) {
        let m = ScramMechanism::Sha256;
        let stored = if known { Some(cred(m, "pw")) } else { None };
        let mut server = ScramServer::new(m, b"s");
        let _ = server.client_first(&first, |_| stored.clone());
        let _ = server.client_final(&fin);

        // And client-final after a valid client-first.
        let mut server = ScramServer::new(m, b"s");
        prop_assert!(server.client_first(b"n,,n=alice,r=abc", |_| stored.clone()).is_ok());
        let r = server.client_final(&fin);
        prop_assert!(r.is_err());
    }

    #[test]
    fn client_never_panics(first in scramish(), fin in scramish()) {
        let mut client = ScramClient::with_nonce(ScramMechanism::Sha512, "u", "pw", "abc".to_string());
        if client.server_first(&first).is_ok() {
            let _ = client.server_final(&fin);
        }
        let mut client = ScramClient::with_nonce(ScramMechanism::Sha512, "u", "pw", "abc".to_string());
        let _ = client.server_first(b"r=abcdef,s=AAAA,i=4096");
        prop_assert!(client.server_final(&fin).is_err() || fin.starts_with(b"v="));
    }
}

/// librdkafka before 2.1 repeats its own nonce in front of the combined nonce in its final
/// message; Kafka accepts a final nonce that ends with the combined one, and so does Runnel.
#[test]
fn final_nonce_with_the_client_nonce_repeated_is_accepted() {
    let m = ScramMechanism::Sha512;
    let cred = ScramCredential::from_password(m, "pw", b"some salt", 4096);
    let mut server = ScramServer::new(m, b"secret");
    let client_first_bare = "n=alice,r=clientnonce";
    let server_first = String::from_utf8(
        server
            .client_first(format!("n,,{client_first_bare}").as_bytes(), |_| {
                Some(cred.clone())
            })
            .unwrap(),
    )
    .unwrap();
    let combined = server_first
        .split(',')
        .find_map(|a| a.strip_prefix("r="))
        .unwrap()
        .to_string();
    let without_proof = format!("c=biws,r=clientnonce{combined}");
    let auth = format!("{client_first_bare},{server_first},{without_proof}");
    let salted = salted_password(m, "pw", b"some salt", 4096);
    let client_key = m.hmac(&salted, &[b"Client Key"]);
    let stored = m.hash(&client_key);
    let proof = xor(&client_key, &m.hmac(&stored, &[auth.as_bytes()]));
    let last = format!("{without_proof},p={}", B64.encode(proof));
    let (_, user) = server.client_final(last.as_bytes()).unwrap();
    assert_eq!(user, "alice");
    // A nonce that does not end with the combined one is still refused.
    let mut server = ScramServer::new(m, b"secret");
    server
        .client_first(format!("n,,{client_first_bare}").as_bytes(), |_| {
            Some(cred.clone())
        })
        .unwrap();
    let bad = format!("c=biws,r={combined}x,p={}", B64.encode([0u8; 64]));
    assert!(server.client_final(bad.as_bytes()).is_err());
}
