//! Java `.properties` files as Kafka's tools read them (`java.util.Properties.load`): `key=value`,
//! `key: value` or `key value` entries, `#` and `!` comments, lines continued with a trailing
//! backslash (how long `sasl.jaas.config` values are usually written), and the escapes `\t`,
//! `\n`, `\r`, `\f`, `\uXXXX` and `\<any>` for the character itself.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Parses properties text into `(key, value)` pairs in file order (a later duplicate wins when
/// collected into a map, as in Java).
pub fn parse(text: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut continuing = false;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_start_matches([' ', '\t', '\x0c']);
        if !continuing && (line.is_empty() || line.starts_with('#') || line.starts_with('!')) {
            continue;
        }
        // An odd number of trailing backslashes continues the entry on the next line.
        let trailing = line.len() - line.trim_end_matches('\\').len();
        if trailing % 2 == 1 {
            logical.push_str(&line[..line.len() - 1]);
            continuing = true;
            continue;
        }
        logical.push_str(line);
        continuing = false;
        let entry = std::mem::take(&mut logical);
        out.push(split_entry(&entry).with_context(|| format!("line {}", n + 1))?);
    }
    if continuing {
        out.push(split_entry(&logical).context("last line")?);
    }
    Ok(out)
}

/// Reads and parses a properties file; errors name the file.
pub fn load(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read properties file {}", path.display()))?;
    parse(&text).with_context(|| format!("invalid properties file {}", path.display()))
}

fn split_entry(entry: &str) -> Result<(String, String)> {
    let chars: Vec<char> = entry.chars().collect();
    let mut i = 0;
    let mut key_end = chars.len();
    let mut escaped = false;
    while i < chars.len() {
        let c = chars[i];
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' || c == ' ' || c == '\t' || c == '\x0c' {
            key_end = i;
            break;
        }
        i += 1;
    }
    let key: String = chars[..key_end].iter().collect();
    // The separator: whitespace, then at most one '=' or ':', then whitespace.
    let mut j = key_end;
    while j < chars.len() && matches!(chars[j], ' ' | '\t' | '\x0c') {
        j += 1;
    }
    if j < chars.len() && matches!(chars[j], '=' | ':') {
        j += 1;
    }
    while j < chars.len() && matches!(chars[j], ' ' | '\t' | '\x0c') {
        j += 1;
    }
    let value: String = chars[j.min(chars.len())..].iter().collect();
    let key = unescape(&key)?;
    if key.is_empty() {
        bail!("entry without a key: '{entry}'");
    }
    Ok((key, unescape(&value)?))
}

fn unescape(s: &str) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = it.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .and_then(char::from_u32);
                match code {
                    Some(ch) => out.push(ch),
                    None => bail!("malformed \\uxxxx escape '\\u{hex}'"),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap()
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn separators_comments_and_blank_lines() {
        let text = "# comment\n! also a comment\n\n  a=1\nb : 2\nc 3\nd=\ne\nf=x=y\n";
        assert_eq!(
            map(text),
            vec![
                kv("a", "1"),
                kv("b", "2"),
                kv("c", "3"),
                kv("d", ""),
                kv("e", ""),
                kv("f", "x=y"),
            ]
        );
    }

    #[test]
    fn continuation_lines_join_without_leading_whitespace() {
        let text = "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule \\\n    required username=\"alice\" \\\n    password=\"alice-secret\";\nnext=1\n";
        assert_eq!(
            map(text),
            vec![
                kv(
                    "sasl.jaas.config",
                    "org.apache.kafka.common.security.plain.PlainLoginModule required \
                     username=\"alice\" password=\"alice-secret\";"
                ),
                kv("next", "1"),
            ]
        );
        // An even number of trailing backslashes is an escaped backslash, not a continuation.
        assert_eq!(map("a=x\\\\\nb=y"), vec![kv("a", "x\\"), kv("b", "y")]);
        // A continuation at the end of the text still ends the entry.
        assert_eq!(map("a=x\\"), vec![kv("a", "x")]);
    }

    #[test]
    fn escapes() {
        assert_eq!(
            map("key\\ with\\=odd\\:chars = a\\tb\\u0041\\\\c\\q"),
            vec![kv("key with=odd:chars", "a\tbA\\cq")]
        );
        assert!(parse("a=\\u12").is_err());
        assert!(parse("=value").is_err());
        // Windows line endings.
        assert_eq!(map("a=1\r\nb=2\r\n"), vec![kv("a", "1"), kv("b", "2")]);
    }
}
