use super::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::{ClientConnection, ServerConnection};
use std::collections::HashMap;
use x509_parser::prelude::FromDer;

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn new_ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    key_der: Vec<u8>,
    der: Vec<u8>,
}

fn leaf(ca: &Ca, sans: &[&str], uris: &[&str], dn: &[(DnType, &str)]) -> Leaf {
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    for u in uris {
        params
            .subject_alt_names
            .push(SanType::URI((*u).try_into().unwrap()));
    }
    params.distinguished_name = DistinguishedName::new();
    for (t, v) in dn {
        params.distinguished_name.push(t.clone(), *v);
    }
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        key_der: key.serialize_der(),
        der: cert.der().to_vec(),
    }
}

fn server_leaf(ca: &Ca) -> Leaf {
    leaf(
        ca,
        &["localhost", "127.0.0.1"],
        &["urn:runnel:node:1"],
        &[(DnType::CommonName, "broker-1")],
    )
}

fn client_leaf(ca: &Ca) -> Leaf {
    leaf(
        ca,
        &[],
        &[],
        &[
            (DnType::CountryName, "US"),
            (DnType::OrganizationName, "Acme"),
            (DnType::OrganizationalUnitName, "eng"),
            (DnType::CommonName, "alice"),
        ],
    )
}

fn props(pairs: &[(&str, &str)]) -> Result<TlsSettings, String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    TlsSettings::from_props(&|k| map.get(k).cloned())
}

fn inline_server(leaf: &Leaf, ca_pem: &str, client_auth: &str) -> TlsSettings {
    props(&[
        ("ssl.keystore.type", "PEM"),
        ("ssl.keystore.key", &leaf.key_pem),
        ("ssl.keystore.certificate.chain", &leaf.cert_pem),
        ("ssl.truststore.certificates", ca_pem),
        ("ssl.client.auth", client_auth),
    ])
    .unwrap()
}

fn inline_client(leaf: Option<&Leaf>, ca_pem: &str) -> TlsSettings {
    let mut p = vec![
        ("ssl.truststore.type", "PEM"),
        ("ssl.truststore.certificates", ca_pem),
    ];
    if let Some(l) = leaf {
        p.push(("ssl.keystore.key", &l.key_pem));
        p.push(("ssl.keystore.certificate.chain", &l.cert_pem));
    }
    props(&p).unwrap()
}

/// Moves bytes between the two ends until both finish the handshake or one fails.
fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    host: &str,
) -> Result<(ServerConnection, ClientConnection), String> {
    let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    let mut c = ClientConnection::new(client, name).map_err(|e| e.to_string())?;
    let mut s = ServerConnection::new(server).map_err(|e| e.to_string())?;
    for _ in 0..16 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            s.read_tls(&mut rd).unwrap();
        }
        s.process_new_packets()
            .map_err(|e| format!("server: {e}"))?;
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            c.read_tls(&mut rd).unwrap();
        }
        c.process_new_packets()
            .map_err(|e| format!("client: {e}"))?;
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok((s, c));
        }
    }
    Err("the handshake did not finish".to_string())
}

#[test]
fn mutual_tls_handshake() {
    let ca = new_ca("Test CA");
    let server = server_leaf(&ca);
    let client = client_leaf(&ca);
    let dir = tempfile::tempdir().unwrap();
    let keystore = dir.path().join("server.pem");
    std::fs::write(
        &keystore,
        format!("{}{}{}", server.key_pem, server.cert_pem, ca.pem),
    )
    .unwrap();
    let truststore = dir.path().join("ca.pem");
    std::fs::write(&truststore, &ca.pem).unwrap();
    let s = props(&[
        ("ssl.keystore.location", keystore.to_str().unwrap()),
        ("ssl.truststore.location", truststore.to_str().unwrap()),
        ("ssl.client.auth", "required"),
    ])
    .unwrap();
    let (sc, cc) = handshake(
        server_config(&s).unwrap(),
        client_config(&inline_client(Some(&client), &ca.pem)).unwrap(),
        "localhost",
    )
    .unwrap();
    assert_eq!(
        sc.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    let peer = sc.peer_certificates().unwrap();
    assert_eq!(
        subject_dn(&peer[0]).as_deref(),
        Some("CN=alice,OU=eng,O=Acme,C=US")
    );
    let server_certs = cc.peer_certificates().unwrap();
    assert_eq!(
        server_certs.len(),
        2,
        "the chain from the keystore file is sent"
    );
    assert_eq!(
        san_uris(&server_certs[0]),
        vec!["urn:runnel:node:1".to_string()]
    );
    assert_eq!(subject_dn(&server_certs[0]).as_deref(), Some("CN=broker-1"));
    // By IP address too.
    assert!(handshake(
        server_config(&s).unwrap(),
        client_config(&inline_client(Some(&client), &ca.pem)).unwrap(),
        "127.0.0.1"
    )
    .is_ok());
}

/// Inline PEM joined onto one line (a properties value continued with `\`) is accepted, as
/// in Kafka.
#[test]
fn inline_pem_on_one_line() {
    let ca = new_ca("One-line CA");
    let server = server_leaf(&ca);
    let one_line = |pem: &str| pem.split_whitespace().collect::<Vec<_>>().join(" ");
    let flat = Leaf {
        key_pem: one_line(&server.key_pem),
        cert_pem: one_line(&server.cert_pem),
        ..server
    };
    assert!(!flat.cert_pem.contains('\n'));
    handshake(
        server_config(&inline_server(&flat, &one_line(&ca.pem), "none")).unwrap(),
        client_config(&inline_client(None, &ca.pem)).unwrap(),
        "localhost",
    )
    .unwrap();
}

#[test]
fn untrusted_ca_refused() {
    let ca1 = new_ca("CA one");
    let ca2 = new_ca("CA two");
    let server = server_leaf(&ca1);
    let err = handshake(
        server_config(&inline_server(&server, &ca1.pem, "none")).unwrap(),
        client_config(&inline_client(None, &ca2.pem)).unwrap(),
        "localhost",
    )
    .unwrap_err();
    assert!(
        err.starts_with("client:") && err.contains("UnknownIssuer"),
        "{err}"
    );
}

#[test]
fn client_auth_required_without_certificate() {
    let ca = new_ca("CA");
    let server = server_leaf(&ca);
    let err = handshake(
        server_config(&inline_server(&server, &ca.pem, "required")).unwrap(),
        client_config(&inline_client(None, &ca.pem)).unwrap(),
        "localhost",
    )
    .unwrap_err();
    assert!(err.starts_with("server:"), "{err}");

    // Requested: accepted without a certificate.
    let (sc, _) = handshake(
        server_config(&inline_server(&server, &ca.pem, "requested")).unwrap(),
        client_config(&inline_client(None, &ca.pem)).unwrap(),
        "localhost",
    )
    .unwrap();
    assert!(sc.peer_certificates().is_none());

    // Requested: a certificate from an untrusted CA is still refused.
    let other = new_ca("Other CA");
    let stranger = client_leaf(&other);
    assert!(handshake(
        server_config(&inline_server(&server, &ca.pem, "requested")).unwrap(),
        client_config(&inline_client(Some(&stranger), &ca.pem)).unwrap(),
        "localhost",
    )
    .is_err());

    // Required needs a trust store.
    let s = props(&[
        ("ssl.keystore.key", &server.key_pem),
        ("ssl.keystore.certificate.chain", &server.cert_pem),
        ("ssl.client.auth", "required"),
    ])
    .unwrap();
    assert!(server_config(&s).unwrap_err().contains("truststore"));
}

#[test]
fn tls12_only() {
    let ca = new_ca("CA");
    let server = server_leaf(&ca);
    let mut s = inline_server(&server, &ca.pem, "none");
    s.enabled_protocols = vec![TlsProtocol::Tls12];
    let s12 = props(&[
        ("ssl.keystore.key", &server.key_pem),
        ("ssl.keystore.certificate.chain", &server.cert_pem),
        ("ssl.enabled.protocols", "TLSv1.2"),
        (
            "ssl.cipher.suites",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ),
    ])
    .unwrap();
    assert_eq!(s12.enabled_protocols, vec![TlsProtocol::Tls12]);
    for settings in [s, s12] {
        let (sc, _) = handshake(
            server_config(&settings).unwrap(),
            client_config(&inline_client(None, &ca.pem)).unwrap(),
            "localhost",
        )
        .unwrap();
        assert_eq!(
            sc.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
    }
    let (sc, _) = handshake(
        server_config(
            &props(&[
                ("ssl.keystore.key", &server.key_pem),
                ("ssl.keystore.certificate.chain", &server.cert_pem),
                (
                    "ssl.cipher.suites",
                    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                ),
            ])
            .unwrap(),
        )
        .unwrap(),
        client_config(&inline_client(None, &ca.pem)).unwrap(),
        "localhost",
    )
    .unwrap();
    assert_eq!(
        sc.negotiated_cipher_suite().map(iana_name).as_deref(),
        Some("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256")
    );

    // A TLS 1.3-only client cannot talk to a TLS 1.2-only server.
    let mut c13 = inline_client(None, &ca.pem);
    c13.enabled_protocols = vec![TlsProtocol::Tls13];
    let mut s12 = inline_server(&server, &ca.pem, "none");
    s12.enabled_protocols = vec![TlsProtocol::Tls12];
    assert!(handshake(
        server_config(&s12).unwrap(),
        client_config(&c13).unwrap(),
        "localhost"
    )
    .is_err());
}

#[test]
fn host_name_verification() {
    let ca = new_ca("CA");
    let server = server_leaf(&ca);
    let sc = server_config(&inline_server(&server, &ca.pem, "none")).unwrap();
    let err = handshake(
        sc.clone(),
        client_config(&inline_client(None, &ca.pem)).unwrap(),
        "other.example",
    )
    .unwrap_err();
    assert!(err.contains("not valid for name"), "{err}");

    let no_check = props(&[
        ("ssl.truststore.certificates", &ca.pem),
        ("ssl.endpoint.identification.algorithm", ""),
    ])
    .unwrap();
    assert!(!no_check.endpoint_identification);
    assert!(handshake(
        sc.clone(),
        client_config(&no_check).unwrap(),
        "other.example"
    )
    .is_ok());
    // The chain is still verified.
    let other = new_ca("Other");
    let no_check_other = props(&[
        ("ssl.truststore.certificates", &other.pem),
        ("ssl.endpoint.identification.algorithm", ""),
    ])
    .unwrap();
    assert!(handshake(sc, client_config(&no_check_other).unwrap(), "other.example").is_err());
}

fn encrypt_key(key_der: &[u8], password: &str, pbkdf2: bool) -> String {
    use pkcs8::der::pem::LineEnding;
    let info = pkcs8::PrivateKeyInfoRef::try_from(key_der).unwrap();
    let doc = if pbkdf2 {
        // What `openssl pkcs8 -topk8 -v2 aes-256-cbc` writes: PBKDF2-HMAC-SHA256, AES-256-CBC.
        let params = pkcs8::pkcs5::pbes2::Parameters::generate_pbkdf2_sha256_aes256cbc(
            2048,
            b"saltsalt",
            [7u8; 16],
        )
        .unwrap();
        info.encrypt_with_params(params, password).unwrap()
    } else {
        info.encrypt(password).unwrap()
    };
    doc.to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
        .unwrap()
        .to_string()
}

#[test]
fn encrypted_private_key() {
    let ca = new_ca("CA");
    let server = server_leaf(&ca);
    for pbkdf2 in [true, false] {
        let encrypted = encrypt_key(&server.key_der, "key-secret", pbkdf2);
        assert!(encrypted.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        let settings = |password: Option<&str>| {
            let mut p = vec![
                ("ssl.keystore.key", encrypted.as_str()),
                ("ssl.keystore.certificate.chain", &server.cert_pem),
            ];
            if let Some(pw) = password {
                p.push(("ssl.key.password", pw));
            }
            props(&p).unwrap()
        };
        let sc = server_config(&settings(Some("key-secret"))).unwrap();
        assert!(handshake(
            sc,
            client_config(&inline_client(None, &ca.pem)).unwrap(),
            "localhost"
        )
        .is_ok());
        let err = server_config(&settings(Some("wrong"))).unwrap_err();
        assert!(err.contains("cannot decrypt"), "{err}");
        let err = server_config(&settings(None)).unwrap_err();
        assert!(err.contains("ssl.key.password"), "{err}");
    }
}

#[test]
fn settings_from_props() {
    let d = props(&[]).unwrap();
    assert_eq!(d, TlsSettings::default());
    assert!(d.endpoint_identification);
    assert_eq!(
        d.enabled_protocols,
        vec![TlsProtocol::Tls12, TlsProtocol::Tls13]
    );
    assert_eq!(d.client_auth, ClientAuth::None);

    let err = props(&[("ssl.keystore.type", "JKS")]).unwrap_err();
    assert!(
        err.contains("ssl.keystore.type=JKS is not supported") && err.contains("PEM"),
        "{err}"
    );
    let err = props(&[("ssl.truststore.type", "PKCS12")]).unwrap_err();
    assert!(
        err.contains("ssl.truststore.type=PKCS12 is not supported"),
        "{err}"
    );
    assert!(props(&[("ssl.keystore.type", "pem")]).is_ok());
    assert!(props(&[("ssl.keystore.password", "x")])
        .unwrap_err()
        .contains("ssl.key.password"));
    assert!(props(&[("ssl.truststore.password", "x")]).is_err());

    let err = props(&[("ssl.cipher.suites", "TLS_AES_128_GCM_SHA256,TLS_BOGUS")]).unwrap_err();
    assert!(
        err.contains("'TLS_BOGUS'") && err.contains("TLS_AES_128_GCM_SHA256"),
        "{err}"
    );
    assert!(props(&[("ssl.cipher.suites", "TLS_RSA_WITH_AES_128_CBC_SHA")]).is_err());
    let s = props(&[(
        "ssl.cipher.suites",
        "TLS_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    )])
    .unwrap();
    assert_eq!(
        s.cipher_suites,
        vec![
            "TLS_AES_256_GCM_SHA384",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        ]
    );
    // TLS 1.3 only with TLS 1.2 suites only: nothing to negotiate.
    let err = props(&[
        ("ssl.enabled.protocols", "TLSv1.3"),
        ("ssl.cipher.suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    ])
    .unwrap_err();
    assert!(err.contains("no cipher suite"), "{err}");
    for s in supported_cipher_suites() {
        assert!(props(&[("ssl.cipher.suites", &s)]).is_ok(), "{s}");
    }

    assert!(props(&[("ssl.enabled.protocols", "TLSv1.1")])
        .unwrap_err()
        .contains("TLSv1.1"));
    assert_eq!(
        props(&[("ssl.enabled.protocols", "TLSv1.3")])
            .unwrap()
            .enabled_protocols,
        vec![TlsProtocol::Tls13]
    );
    assert!(props(&[("ssl.protocol", "SSLv3")]).is_err());
    assert!(props(&[("ssl.protocol", "TLSv1.3")]).is_ok());

    assert_eq!(
        props(&[("ssl.client.auth", "REQUIRED")])
            .unwrap()
            .client_auth,
        ClientAuth::Required
    );
    assert_eq!(
        props(&[("ssl.client.auth", "requested")])
            .unwrap()
            .client_auth,
        ClientAuth::Requested
    );
    assert!(props(&[("ssl.client.auth", "always")])
        .unwrap_err()
        .contains("ssl.client.auth"));

    assert!(
        props(&[("ssl.endpoint.identification.algorithm", "HTTPS")])
            .unwrap()
            .endpoint_identification
    );
    assert!(props(&[("ssl.endpoint.identification.algorithm", "ldap")]).is_err());

    assert!(props(&[("ssl.keystore.location", "/x"), ("ssl.keystore.key", "k")]).is_err());
    assert!(props(&[("ssl.keystore.key", "k")])
        .unwrap_err()
        .contains("ssl.keystore.certificate.chain"));
    assert!(props(&[("ssl.keystore.certificate.chain", "c")])
        .unwrap_err()
        .contains("ssl.keystore.key"));
    assert!(props(&[
        ("ssl.truststore.location", "/x"),
        ("ssl.truststore.certificates", "c")
    ])
    .is_err());
    assert_eq!(
        props(&[("ssl.keystore.location", " /etc/k.pem ")])
            .unwrap()
            .keystore,
        Some(KeystoreSource::File("/etc/k.pem".into()))
    );

    let s = props(&[
        ("ssl.keystore.key", "SECRET-KEY"),
        ("ssl.keystore.certificate.chain", "c"),
        ("ssl.key.password", "PW"),
    ])
    .unwrap();
    let debug = format!("{s:?}");
    assert!(
        !debug.contains("SECRET-KEY") && !debug.contains("PW"),
        "{debug}"
    );
}

#[test]
fn store_errors() {
    let ca = new_ca("CA");
    let server = server_leaf(&ca);
    // No keystore for a server.
    assert!(server_config(&TlsSettings::default())
        .unwrap_err()
        .contains("ssl.keystore.location"));
    // Missing file.
    let s = props(&[("ssl.keystore.location", "/nonexistent/k.pem")]).unwrap();
    assert!(server_config(&s)
        .unwrap_err()
        .contains("/nonexistent/k.pem"));
    // A keystore without a key, or without a certificate.
    let dir = tempfile::tempdir().unwrap();
    let only_cert = dir.path().join("c.pem");
    std::fs::write(&only_cert, &server.cert_pem).unwrap();
    let s = props(&[("ssl.keystore.location", only_cert.to_str().unwrap())]).unwrap();
    assert!(server_config(&s).unwrap_err().contains("no private key"));
    let only_key = dir.path().join("k.pem");
    std::fs::write(&only_key, &server.key_pem).unwrap();
    let s = props(&[("ssl.keystore.location", only_key.to_str().unwrap())]).unwrap();
    assert!(server_config(&s).unwrap_err().contains("no certificate"));
    // A key that does not belong to the certificate.
    let other = server_leaf(&ca);
    let s = props(&[
        ("ssl.keystore.key", &other.key_pem),
        ("ssl.keystore.certificate.chain", &server.cert_pem),
    ])
    .unwrap();
    assert!(server_config(&s).is_err());
    // Garbage and truncated PEM.
    let s = props(&[
        ("ssl.keystore.key", "not pem"),
        ("ssl.keystore.certificate.chain", &server.cert_pem),
    ])
    .unwrap();
    assert!(server_config(&s).unwrap_err().contains("no private key"));
    let truncated = &server.key_pem[..server.key_pem.len() - 30];
    let s = props(&[
        ("ssl.keystore.key", truncated),
        ("ssl.keystore.certificate.chain", &server.cert_pem),
    ])
    .unwrap();
    assert!(server_config(&s).unwrap_err().contains("no END line"));
    // A trust store without certificates.
    let s = props(&[("ssl.truststore.certificates", &server.key_pem)]).unwrap();
    assert!(client_config(&s).unwrap_err().contains("no certificate"));
    // Bag attributes lines around sections are skipped.
    let with_bags = format!("Bag Attributes\n    friendlyName: ca\n{}", ca.pem);
    assert!(client_config(&props(&[("ssl.truststore.certificates", &with_bags)]).unwrap()).is_ok());
}

#[test]
fn reloading_server_config() {
    let ca = new_ca("CA");
    let first = server_leaf(&ca);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.pem");
    std::fs::write(&path, format!("{}{}", first.key_pem, first.cert_pem)).unwrap();
    let settings = props(&[("ssl.keystore.location", path.to_str().unwrap())]).unwrap();
    let r = ReloadingServerConfig::new(settings).unwrap();
    let client = client_config(&inline_client(None, &ca.pem)).unwrap();
    let served = |r: &ReloadingServerConfig| {
        let (_, c) = handshake(r.current(), client.clone(), "localhost").unwrap();
        c.peer_certificates().unwrap()[0].to_vec()
    };
    assert_eq!(served(&r), first.der);
    assert_eq!(r.reload_if_changed(), Ok(false));
    let before = r.current();

    // A new certificate and key: picked up.
    let second = server_leaf(&ca);
    std::fs::write(&path, format!("{}{}", second.key_pem, second.cert_pem)).unwrap();
    assert_eq!(r.reload_if_changed(), Ok(true));
    assert!(!Arc::ptr_eq(&before, &r.current()));
    assert_eq!(served(&r), second.der);
    assert_eq!(r.reload_if_changed(), Ok(false));

    // A broken file: the error once, the previous configuration stays.
    std::fs::write(&path, "-----BEGIN PRIVATE KEY-----\ngarbage").unwrap();
    let err = r.reload_if_changed().unwrap_err();
    assert!(err.contains("keeping the previous one"), "{err}");
    assert_eq!(r.reload_if_changed(), Ok(false));
    assert_eq!(served(&r), second.der);

    // A missing file is an error too, and the configuration stays.
    std::fs::remove_file(&path).unwrap();
    assert!(r.reload_if_changed().is_err());
    assert_eq!(served(&r), second.der);

    // Fixed: picked up.
    std::fs::write(&path, format!("{}{}", first.key_pem, first.cert_pem)).unwrap();
    assert_eq!(r.reload_if_changed(), Ok(true));
    assert_eq!(served(&r), first.der);

    // Inline settings have nothing to reload.
    let inline = ReloadingServerConfig::new(inline_server(&first, &ca.pem, "none")).unwrap();
    assert_eq!(inline.reload_if_changed(), Ok(false));
}

// ---- Distinguished names ----

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    if content.len() < 128 {
        out.push(content.len() as u8);
    } else {
        out.push(0x81);
        out.push(content.len() as u8);
    }
    out.extend_from_slice(content);
    out
}

const CN: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
const O: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x0a];
const OU: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x0b];
const C: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x06];
const EMAIL: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01,
];
const DC: &[u8] = &[
    0x06, 0x0a, 0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19,
];
const UID: &[u8] = &[
    0x06, 0x0a, 0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01,
];

fn ava(oid: &[u8], tag: u8, value: &str) -> Vec<u8> {
    tlv(0x30, &[oid, &tlv(tag, value.as_bytes())].concat())
}

fn dn_of(rdns: &[Vec<Vec<u8>>]) -> String {
    let body: Vec<u8> = rdns
        .iter()
        .flat_map(|avas| tlv(0x31, &avas.concat()))
        .collect();
    let der = tlv(0x30, &body);
    let (_, name) = x509_parser::x509::X509Name::from_der(&der).unwrap();
    name_to_rfc2253(&name).unwrap()
}

const UTF8: u8 = 0x0c;
const PRINTABLE: u8 = 0x13;
const IA5: u8 = 0x16;

#[test]
fn rfc2253_like_java() {
    // DER order C, O, OU, CN prints in reverse.
    assert_eq!(
        dn_of(&[
            vec![ava(C, PRINTABLE, "US")],
            vec![ava(O, UTF8, "Acme")],
            vec![ava(OU, UTF8, "eng")],
            vec![ava(CN, UTF8, "alice")],
        ]),
        "CN=alice,OU=eng,O=Acme,C=US"
    );
    // Special characters, leading and trailing spaces.
    assert_eq!(
        dn_of(&[vec![ava(CN, UTF8, "Tkac, Adam")]]),
        r"CN=Tkac\, Adam"
    );
    assert_eq!(
        dn_of(&[vec![ava(CN, UTF8, r#"a+b=c<d>e#f;g"h\i"#)]]),
        r#"CN=a\+b\=c\<d\>e\#f\;g\"h\\i"#
    );
    assert_eq!(dn_of(&[vec![ava(CN, UTF8, " x  ")]]), r"CN=\ x\ \ ");
    assert_eq!(dn_of(&[vec![ava(CN, UTF8, "#1")]]), r"CN=\#1");
    assert_eq!(dn_of(&[vec![ava(CN, UTF8, "Zoë")]]), "CN=Zoë");
    // A multi-valued RDN joins with '+'.
    assert_eq!(
        dn_of(&[
            vec![ava(O, UTF8, "Acme")],
            vec![ava(CN, UTF8, "bob"), ava(UID, UTF8, "b1")]
        ]),
        "CN=bob+UID=b1,O=Acme"
    );
    // DC is a keyword; emailAddress is not and prints as its OID with the DER value in hex.
    assert_eq!(
        dn_of(&[
            vec![ava(DC, IA5, "com")],
            vec![ava(DC, IA5, "example")],
            vec![ava(EMAIL, IA5, "a@b.c")],
        ]),
        "1.2.840.113549.1.9.1=#16056140622e63,DC=example,DC=com"
    );
    assert_eq!(dn_of(&[]), "");
}

#[test]
fn certificate_names_and_uris() {
    let ca = new_ca("My CA");
    let server = server_leaf(&ca);
    assert_eq!(subject_dn(&server.der).as_deref(), Some("CN=broker-1"));
    assert_eq!(san_uris(&server.der), vec!["urn:runnel:node:1".to_string()]);
    let client = client_leaf(&ca);
    assert!(san_uris(&client.der).is_empty());
    assert_eq!(subject_dn(b"not a certificate"), None);
    assert!(san_uris(b"").is_empty());
}
