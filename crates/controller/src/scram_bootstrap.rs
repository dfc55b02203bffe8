//! The `--add-scram` argument: a SCRAM credential a new cluster starts with, in the syntax of
//! Kafka's `kafka-storage format --add-scram`:
//!
//! ```text
//! SCRAM-SHA-512=[name=admin,password=admin-secret]
//! SCRAM-SHA-256=[name=alice,iterations=8192,salt="MWx2NHBkbnc0ZndxN25vdGN4bTB5eTFrN3E=",saltedpassword="..."]
//! ```
//!
//! Keys: `name` (required), `password` or `saltedpassword` (one of them; `saltedpassword` needs
//! `salt`), `salt` (base64; random when absent), `iterations` (4096 to 16384, default 4096).
//! A value may be in double quotes, which may then hold commas.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use runnel_security::scram::{
    random_salt, ScramCredential, ScramMechanism, MAX_ITERATIONS, MIN_ITERATIONS,
};

/// Kafka's default iteration count for `--add-scram`.
pub const DEFAULT_ITERATIONS: i32 = 4096;

/// Standard base64, padding optional (as Java's `Base64.getDecoder()`).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Parses one `--add-scram` argument into the user, the mechanism and the credential to store.
/// The password itself is used only to derive the credential.
pub fn parse_add_scram(arg: &str) -> Result<(String, ScramMechanism, ScramCredential), String> {
    let arg = arg.trim();
    let Some((mechanism_name, config)) = arg.split_once('=') else {
        return Err(format!(
            "Failed to find equals sign in SCRAM argument '{arg}'"
        ));
    };
    let mechanism = ScramMechanism::from_name(mechanism_name)
        .ok_or_else(|| format!("The add-scram mechanism {mechanism_name} is not supported."))?;
    let config = config
        .strip_prefix('[')
        .ok_or("Expected configuration string to start with [")?;
    let config = config
        .strip_suffix(']')
        .ok_or("Expected configuration string to end with ]")?;

    let mut name = None;
    let mut salt = None;
    let mut iterations = None;
    let mut password = None;
    let mut salted_password = None;
    let mut unknown = Vec::new();
    for component in split_components(config) {
        let (key, value) = component
            .split_once('=')
            .ok_or_else(|| format!("No equals sign found in SCRAM component: {component}"))?;
        let value = unquote(value);
        let slot = match key {
            "name" => &mut name,
            "salt" => &mut salt,
            "iterations" => &mut iterations,
            "password" => &mut password,
            "saltedpassword" => &mut salted_password,
            _ => {
                unknown.push(key);
                continue;
            }
        };
        if slot.replace(value).is_some() {
            return Err(format!("'{key}' is given more than once to add-scram"));
        }
    }
    if !unknown.is_empty() {
        unknown.sort_unstable();
        unknown.dedup();
        return Err(format!(
            "Unknown SCRAM configurations: {}",
            unknown.join(", ")
        ));
    }
    let name = name.ok_or("You must supply 'name' to add-scram")?;
    if name.is_empty() {
        return Err("'name' must not be empty in add-scram".into());
    }
    let salt = salt
        .map(|s| {
            BASE64
                .decode(s)
                .map_err(|_| format!("Failed to decode given salt: {s}"))
        })
        .transpose()?;
    if salt.as_ref().is_some_and(|s| s.is_empty()) {
        return Err("'salt' must not be empty in add-scram".into());
    }
    let iterations = match iterations {
        None => DEFAULT_ITERATIONS,
        Some(s) => s
            .parse::<i32>()
            .map_err(|_| format!("Failed to parse iterations count: {s}"))?,
    };
    if iterations < MIN_ITERATIONS {
        return Err(format!(
            "The 'iterations' value must be >= {MIN_ITERATIONS} for add-scram using {}",
            mechanism.name()
        ));
    }
    if iterations > MAX_ITERATIONS {
        return Err(format!(
            "The 'iterations' value must be <= {MAX_ITERATIONS} for add-scram using {}",
            mechanism.name()
        ));
    }
    let credential = match (password, salted_password) {
        (Some(_), Some(_)) => {
            return Err(
                "You must supply only one of 'password' or 'saltedpassword' to add-scram".into(),
            )
        }
        (None, None) => {
            return Err("You must supply one of 'password' or 'saltedpassword' to add-scram".into())
        }
        (Some(password), None) => {
            let salt = salt.unwrap_or_else(random_salt);
            ScramCredential::from_password(mechanism, password, &salt, iterations)
        }
        (None, Some(encoded)) => {
            let salt = salt.ok_or("You must supply 'salt' with 'saltedpassword' to add-scram")?;
            let salted = BASE64
                .decode(encoded)
                .map_err(|_| format!("Failed to decode given saltedPassword: {encoded}"))?;
            if salted.is_empty() {
                return Err("'saltedpassword' must not be empty in add-scram".into());
            }
            ScramCredential::from_salted_password(mechanism, &salted, &salt, iterations)
        }
    };
    Ok((name.to_string(), mechanism, credential))
}

/// Splits on the commas that are not inside double quotes.
fn split_components(config: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in config.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&config[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&config[start..]);
    parts
}

/// `"value"` -> `value`; anything else as it is.
fn unquote(value: &str) -> &str {
    if value.len() >= 2 && value.starts_with('"') && value.ends_with('"') {
        &value[1..value.len() - 1]
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use runnel_security::scram::salted_password;

    use super::*;

    /// Kafka's ScramParserTest salt, "1lv4pdnw4fwq7notcxm0yy1k7q" in base64.
    const SALT_B64: &str = "MWx2NHBkbnc0ZndxN25vdGN4bTB5eTFrN3E=";
    const SALT: &[u8] = b"1lv4pdnw4fwq7notcxm0yy1k7q";

    fn err(arg: &str) -> String {
        parse_add_scram(arg).unwrap_err()
    }

    #[test]
    fn a_password_with_defaults() {
        let (name, mechanism, c) =
            parse_add_scram("SCRAM-SHA-512=[name=admin,password=admin-secret]").unwrap();
        assert_eq!(name, "admin");
        assert_eq!(mechanism, ScramMechanism::Sha512);
        assert_eq!(c.iterations, DEFAULT_ITERATIONS);
        assert!(!c.salt.is_empty());
        let again =
            ScramCredential::from_password(ScramMechanism::Sha512, "admin-secret", &c.salt, 4096);
        assert_eq!(c, again);
        // A fresh random salt each time.
        let (_, _, other) =
            parse_add_scram("SCRAM-SHA-512=[name=admin,password=admin-secret]").unwrap();
        assert_ne!(c.salt, other.salt);
    }

    #[test]
    fn iterations_salt_and_quotes() {
        let (name, mechanism, c) = parse_add_scram(&format!(
            "  SCRAM-SHA-256=[name=\"bob\",password=\"my pass, with a comma\",iterations=8192,salt=\"{SALT_B64}\"]  "
        ))
        .unwrap();
        assert_eq!((name.as_str(), mechanism), ("bob", ScramMechanism::Sha256));
        assert_eq!(c.salt, SALT);
        assert_eq!(c.iterations, 8192);
        assert_eq!(
            c,
            ScramCredential::from_password(
                ScramMechanism::Sha256,
                "my pass, with a comma",
                SALT,
                8192
            )
        );
        // Padding is optional, as in Java's decoder.
        let (_, _, unpadded) = parse_add_scram(&format!(
            "SCRAM-SHA-256=[name=bob,password=my pass,salt={}]",
            SALT_B64.trim_end_matches('=')
        ))
        .unwrap();
        assert_eq!(unpadded.salt, SALT);
    }

    #[test]
    fn a_salted_password() {
        let salted = salted_password(ScramMechanism::Sha256, "alice-secret", SALT, 4096);
        let arg = format!(
            "SCRAM-SHA-256=[name=alice,salt=\"{SALT_B64}\",saltedpassword=\"{}\"]",
            BASE64.encode(&salted)
        );
        let (_, _, c) = parse_add_scram(&arg).unwrap();
        assert_eq!(
            c,
            ScramCredential::from_password(ScramMechanism::Sha256, "alice-secret", SALT, 4096)
        );
    }

    #[test]
    fn kafkas_error_messages() {
        assert_eq!(
            err("SCRAM-SHA-512"),
            "Failed to find equals sign in SCRAM argument 'SCRAM-SHA-512'"
        );
        assert_eq!(
            err("SCRAM-SHA-UNSUPPORTED=[name=a,password=b]"),
            "The add-scram mechanism SCRAM-SHA-UNSUPPORTED is not supported."
        );
        assert_eq!(
            err("SCRAM-SHA-256=name=a,password=b"),
            "Expected configuration string to start with ["
        );
        assert_eq!(
            err("SCRAM-SHA-256=[name=a,password=b"),
            "Expected configuration string to end with ]"
        );
        assert_eq!(
            err("SCRAM-SHA-256=[password=mypass]"),
            "You must supply 'name' to add-scram"
        );
        assert_eq!(
            err("SCRAM-SHA-256=[name=bar]"),
            "You must supply one of 'password' or 'saltedpassword' to add-scram"
        );
        assert_eq!(
            err("SCRAM-SHA-256=[name=bob,password=mypass,unknown2=x,unknown=something]"),
            "Unknown SCRAM configurations: unknown, unknown2"
        );
        assert_eq!(
            err("SCRAM-SHA-256=[name=alice,saltedpassword=\"mT0yyUUxnlJaC99HXgRTSYlbuqa4FSGtJCJfTMvjYCE=\"]"),
            "You must supply 'salt' with 'saltedpassword' to add-scram"
        );
        assert_eq!(
            err("SCRAM-SHA-256=[name]"),
            "No equals sign found in SCRAM component: name"
        );
        assert_eq!(
            err("SCRAM-SHA-256=[name=a,password=b,iterations=many]"),
            "Failed to parse iterations count: many"
        );
        assert_eq!(
            err("SCRAM-SHA-256=[name=a,password=b,iterations=4095]"),
            "The 'iterations' value must be >= 4096 for add-scram using SCRAM-SHA-256"
        );
        assert_eq!(
            err("SCRAM-SHA-512=[name=a,password=b,iterations=16385]"),
            "The 'iterations' value must be <= 16384 for add-scram using SCRAM-SHA-512"
        );
        assert_eq!(
            err("SCRAM-SHA-256=[name=a,password=b,salt=!!!]"),
            "Failed to decode given salt: !!!"
        );
        assert_eq!(
            err(&format!(
                "SCRAM-SHA-256=[name=a,salt={SALT_B64},saltedpassword=%%]"
            )),
            "Failed to decode given saltedPassword: %%"
        );
    }

    #[test]
    fn ambiguous_or_empty_values_are_refused() {
        assert!(err("SCRAM-SHA-256=[name=,password=b]").contains("'name'"));
        assert!(err("SCRAM-SHA-256=[name=\"\",password=b]").contains("'name'"));
        assert!(err("SCRAM-SHA-256=[name=a,name=b,password=b]").contains("more than once"));
        assert!(err(&format!(
            "SCRAM-SHA-256=[name=a,password=b,salt={SALT_B64},saltedpassword={SALT_B64}]"
        ))
        .contains("only one of"));
        assert!(err("SCRAM-SHA-256=[name=a,password=b,salt=]").contains("'salt'"));
    }
}
