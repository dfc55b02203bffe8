//! Kafka's `sasl.jaas.config` syntax: one login module, its control flag and its options.
//!
//! ```text
//! org.apache.kafka.common.security.plain.PlainLoginModule required
//!     username="admin" password="admin-secret" user_alice="alice-secret";
//! ```
//!
//! Values may be quoted with `"` or `'` (with Java's escapes `\"`, `\\`, `\n`, `\t`, ...) or
//! be bare words; `//` and `/* */` comments are skipped; the final `;` may be left out.

use std::collections::BTreeMap;

/// One parsed login module entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JaasConfig {
    /// The login module class name.
    pub login_module: String,
    /// The control flag in lower case: `required`, `requisite`, `sufficient` or `optional`.
    pub flag: String,
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Quoted(String),
    Equals,
    Semicolon,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '=' => out.push(Token::Equals),
            ';' => out.push(Token::Semicolon),
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' || c == '\r' {
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                let mut closed = false;
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        closed = true;
                        break;
                    }
                    prev = c;
                }
                if !closed {
                    return Err("Unterminated comment in JAAS config".to_string());
                }
            }
            '"' | '\'' => {
                let quote = c;
                let mut value = String::new();
                let mut closed = false;
                while let Some(c) = chars.next() {
                    if c == quote {
                        closed = true;
                        break;
                    }
                    if c != '\\' {
                        value.push(c);
                        continue;
                    }
                    let Some(e) = chars.next() else { break };
                    match e {
                        'n' => value.push('\n'),
                        't' => value.push('\t'),
                        'r' => value.push('\r'),
                        'b' => value.push('\u{8}'),
                        'f' => value.push('\u{c}'),
                        'a' => value.push('\u{7}'),
                        'v' => value.push('\u{b}'),
                        '0'..='7' => {
                            // Java's octal escape: up to three digits, at most \377.
                            let mut n = e.to_digit(8).unwrap_or(0);
                            let max_digits = if e <= '3' { 2 } else { 1 };
                            for _ in 0..max_digits {
                                match chars.peek().and_then(|d| d.to_digit(8)) {
                                    Some(d) => {
                                        n = n * 8 + d;
                                        chars.next();
                                    }
                                    None => break,
                                }
                            }
                            value.push(char::from_u32(n).unwrap_or('\u{fffd}'));
                        }
                        other => value.push(other),
                    }
                }
                if !closed {
                    return Err("Unterminated quoted value in JAAS config".to_string());
                }
                out.push(Token::Quoted(value));
            }
            c => {
                let mut word = String::from(c);
                while let Some(&n) = chars.peek() {
                    if n.is_whitespace() || matches!(n, '=' | ';' | '"' | '\'') {
                        break;
                    }
                    if n == '/' {
                        let mut ahead = chars.clone();
                        ahead.next();
                        if matches!(ahead.peek(), Some('/') | Some('*')) {
                            break;
                        }
                    }
                    word.push(n);
                    chars.next();
                }
                out.push(Token::Word(word));
            }
        }
    }
    Ok(out)
}

/// Parses a `sasl.jaas.config` value holding exactly one login module.
pub fn parse(text: &str) -> Result<JaasConfig, String> {
    let tokens = tokenize(text)?;
    let mut it = tokens.into_iter().peekable();
    let mut entries = Vec::new();
    while let Some(tok) = it.next() {
        let login_module = match tok {
            Token::Word(w) => w,
            Token::Semicolon => continue,
            _ => return Err("Login module not specified in JAAS config".to_string()),
        };
        let flag = match it.next() {
            Some(Token::Word(f)) => f,
            None | Some(Token::Semicolon) => {
                return Err("Login module control flag not specified in JAAS config".to_string())
            }
            Some(_) => {
                return Err(
                    "Login module control flag is not available in the JAAS config".to_string(),
                )
            }
        };
        let flag_lower = flag.to_ascii_lowercase();
        if !matches!(
            flag_lower.as_str(),
            "required" | "requisite" | "sufficient" | "optional"
        ) {
            return Err(format!(
                "Invalid login module control flag '{flag}' in JAAS config"
            ));
        }
        let mut options = BTreeMap::new();
        loop {
            match it.next() {
                None | Some(Token::Semicolon) => break,
                Some(Token::Word(key)) | Some(Token::Quoted(key)) => {
                    if it.next() != Some(Token::Equals) {
                        return Err(format!(
                            "Value not specified for key '{key}' in JAAS config"
                        ));
                    }
                    match it.next() {
                        Some(Token::Word(v)) | Some(Token::Quoted(v)) => {
                            options.insert(key, v);
                        }
                        _ => {
                            return Err(format!(
                                "Value not specified for key '{key}' in JAAS config"
                            ))
                        }
                    }
                }
                Some(Token::Equals) => {
                    return Err("Option name not specified in JAAS config".to_string())
                }
            }
        }
        entries.push(JaasConfig {
            login_module,
            flag: flag_lower,
            options,
        });
    }
    match entries.len() {
        0 => Err("Login module not specified in JAAS config".to_string()),
        1 => Ok(entries.remove(0)),
        n => Err(format!(
            "JAAS config property contains {n} login modules, should be 1 module"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = "org.apache.kafka.common.security.plain.PlainLoginModule";

    #[test]
    fn plain_server_config() {
        let c = parse(&format!(
            r#"{PLAIN} required user_alice="alice-secret" username="admin" password="x";"#
        ))
        .unwrap();
        assert_eq!(c.login_module, PLAIN);
        assert_eq!(c.flag, "required");
        assert_eq!(c.options.len(), 3);
        assert_eq!(c.options["user_alice"], "alice-secret");
        assert_eq!(c.options["username"], "admin");
        assert_eq!(c.options["password"], "x");
    }

    #[test]
    fn optional_semicolon_whitespace_and_comments() {
        let c = parse(&format!(
            "  {PLAIN}\n   REQUIRED // the flag\n username=\"admin\" /* who */ password='p w'\n"
        ))
        .unwrap();
        assert_eq!(c.flag, "required");
        assert_eq!(c.options["username"], "admin");
        assert_eq!(c.options["password"], "p w");
    }

    #[test]
    fn escapes_in_quoted_values() {
        let c = parse(&format!(
            r#"{PLAIN} required password="a\"b\\c\nd\101" other='it\'s' semi="a;b=c";"#
        ))
        .unwrap();
        assert_eq!(c.options["password"], "a\"b\\c\ndA");
        assert_eq!(c.options["other"], "it's");
        assert_eq!(c.options["semi"], "a;b=c");
    }

    #[test]
    fn bare_values_and_scram_module() {
        let c = parse(
            "org.apache.kafka.common.security.scram.ScramLoginModule sufficient username=alice password=alice-secret tokenauth=true;",
        )
        .unwrap();
        assert_eq!(c.flag, "sufficient");
        assert_eq!(c.options["username"], "alice");
        assert_eq!(c.options["password"], "alice-secret");
        assert_eq!(c.options["tokenauth"], "true");
        let c = parse(&format!("{PLAIN} required;")).unwrap();
        assert!(c.options.is_empty());
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse("").unwrap_err(),
            "Login module not specified in JAAS config"
        );
        assert_eq!(
            parse("   ").unwrap_err(),
            "Login module not specified in JAAS config"
        );
        assert_eq!(
            parse(PLAIN).unwrap_err(),
            "Login module control flag not specified in JAAS config"
        );
        assert_eq!(
            parse(&format!("{PLAIN} mandatory;")).unwrap_err(),
            "Invalid login module control flag 'mandatory' in JAAS config"
        );
        assert_eq!(
            parse(&format!("{PLAIN} required username;")).unwrap_err(),
            "Value not specified for key 'username' in JAAS config"
        );
        assert_eq!(
            parse(&format!("{PLAIN} required username=;")).unwrap_err(),
            "Value not specified for key 'username' in JAAS config"
        );
        assert_eq!(
            parse(&format!(r#"{PLAIN} required username="admin"#)).unwrap_err(),
            "Unterminated quoted value in JAAS config"
        );
        assert_eq!(
            parse(&format!(
                "{PLAIN} required a=\"1\"; {PLAIN} required b=\"2\";"
            ))
            .unwrap_err(),
            "JAAS config property contains 2 login modules, should be 1 module"
        );
        assert!(parse(&format!("{PLAIN} required /* open")).is_err());
        assert!(parse(&format!("{PLAIN} required =x;")).is_err());
    }
}
