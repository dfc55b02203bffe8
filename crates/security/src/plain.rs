//! SASL PLAIN (RFC 4616) messages, with the checks of Kafka's `PlainSaslServer`.

use subtle::ConstantTimeEq;

/// Parses `[authzid] NUL authcid NUL passwd` into (authorization id, user name, password).
/// An empty user name or password, or an authorization id other than the user name, is
/// refused with Kafka's message.
pub fn parse(msg: &[u8]) -> Result<(String, String, String), String> {
    let text = std::str::from_utf8(msg)
        .map_err(|_| "Invalid SASL/PLAIN response: not UTF-8".to_string())?;
    let tokens: Vec<&str> = text.splitn(4, '\0').collect();
    if tokens.len() != 3 {
        return Err(format!(
            "Invalid SASL/PLAIN response: expected 3 tokens, got {}",
            tokens.len()
        ));
    }
    let (authzid, user, password) = (tokens[0], tokens[1], tokens[2]);
    if user.is_empty() {
        return Err("Authentication failed: username not specified".to_string());
    }
    if password.is_empty() {
        return Err("Authentication failed: password not specified".to_string());
    }
    if !authzid.is_empty() && authzid != user {
        return Err(
            "Authentication failed: Client requested an authorization id that is different from username".to_string(),
        );
    }
    Ok((authzid.to_string(), user.to_string(), password.to_string()))
}

/// The client's message: no authorization id, then the user name and password.
pub fn encode(user: &str, password: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(user.len() + password.len() + 2);
    out.push(0);
    out.extend_from_slice(user.as_bytes());
    out.push(0);
    out.extend_from_slice(password.as_bytes());
    out
}

/// Compares a given password with the expected one in time independent of where they differ.
pub fn password_matches(expected: &str, given: &str) -> bool {
    bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let msg = encode("alice", "alice-secret");
        assert_eq!(msg, b"\0alice\0alice-secret");
        assert_eq!(
            parse(&msg).unwrap(),
            (String::new(), "alice".into(), "alice-secret".into())
        );
    }

    #[test]
    fn authzid() {
        assert_eq!(
            parse(b"alice\0alice\0pw").unwrap(),
            ("alice".into(), "alice".into(), "pw".into())
        );
        assert_eq!(
            parse(b"bob\0alice\0pw").unwrap_err(),
            "Authentication failed: Client requested an authorization id that is different from username"
        );
    }

    #[test]
    fn malformed() {
        assert_eq!(
            parse(b"alice").unwrap_err(),
            "Invalid SASL/PLAIN response: expected 3 tokens, got 1"
        );
        assert_eq!(
            parse(b"\0alice").unwrap_err(),
            "Invalid SASL/PLAIN response: expected 3 tokens, got 2"
        );
        assert_eq!(
            parse(b"\0a\0b\0c").unwrap_err(),
            "Invalid SASL/PLAIN response: expected 3 tokens, got 4"
        );
        assert_eq!(
            parse(b"\0\0pw").unwrap_err(),
            "Authentication failed: username not specified"
        );
        assert_eq!(
            parse(b"\0alice\0").unwrap_err(),
            "Authentication failed: password not specified"
        );
        assert!(parse(b"\0al\xffice\0pw").is_err());
        assert!(parse(b"").is_err());
    }

    #[test]
    fn password_comparison() {
        assert!(password_matches("secret", "secret"));
        assert!(!password_matches("secret", "secreT"));
        assert!(!password_matches("secret", "secret2"));
        assert!(!password_matches("", "x"));
    }
}
