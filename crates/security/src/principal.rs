//! Principals from certificates: Kafka's `ssl.principal.mapping.rules`.
//!
//! The value is a comma-separated list of rules tried in order; the first that applies gives
//! the principal name:
//!
//! - `DEFAULT`: the distinguished name as it is;
//! - `RULE:pattern/replacement/` with an optional `L` or `U` after the last `/` (lower or upper
//!   case the result): applies when the regular expression matches the whole distinguished
//!   name, and gives the name with every match replaced by `replacement` (`$1` for a group,
//!   `\` to quote the next character; `$n` beyond the number of groups is literal text).
//!
//! This is the behavior of Kafka's `SslPrincipalMapper`, including which rule strings are
//! refused. Patterns use Rust's regular expression syntax, which has no look-around or
//! back-references.

use std::fmt;
use std::sync::OnceLock;

use regex::{Captures, Regex};

/// Kafka's rule grammar; group 1 is `DEFAULT`, 2 the pattern, 4 the replacement, 6 the case.
const RULE_PATTERN: &str = r"(DEFAULT)|RULE:((\\.|[^\\/])*)/((\\.|[^\\/])*)/([LU]?).*?|(.*?)";

fn rule_splitter() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(&format!(r"\s*({RULE_PATTERN})\s*(,\s*|$)")).expect("valid rule splitter")
    })
}

fn rule_parser() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| Regex::new(&format!(r"\A(?:{RULE_PATTERN})")).expect("valid rule parser"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

#[derive(Debug, Clone)]
enum Rule {
    Default,
    Replace {
        pattern: String,
        replacement: String,
        case: Case,
        /// The pattern anchored at both ends, to test that it matches the whole name.
        whole: Regex,
        /// The pattern as written, for the replacement of every match.
        each: Regex,
    },
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::Default => f.write_str("DEFAULT"),
            Rule::Replace {
                pattern,
                replacement,
                case,
                ..
            } => {
                write!(f, "RULE:{pattern}/{replacement}")?;
                match case {
                    Case::Keep => Ok(()),
                    Case::Lower => f.write_str("/L"),
                    Case::Upper => f.write_str("/U"),
                }
            }
        }
    }
}

/// Parsed `ssl.principal.mapping.rules`.
#[derive(Debug, Clone)]
pub struct MappingRules {
    rules: Vec<Rule>,
}

impl Default for MappingRules {
    /// Kafka's default, `DEFAULT`.
    fn default() -> Self {
        MappingRules {
            rules: vec![Rule::Default],
        }
    }
}

impl fmt::Display for MappingRules {
    /// As Kafka lists them: `[RULE:^CN=(.*?),OU=x.*$/$1/L, DEFAULT]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, r) in self.rules.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{r}")?;
        }
        f.write_str("]")
    }
}

impl MappingRules {
    /// Parses the property value. Empty entries are ignored (so an empty value has no rules
    /// and maps nothing, as in Kafka).
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut rules = Vec::new();
        for caps in rule_splitter().captures_iter(s.trim()) {
            let Some(text) = caps.get(1).map(|m| m.as_str()) else {
                continue;
            };
            let Some(m) = rule_parser().captures(text) else {
                return Err(format!("Invalid rule: {text}"));
            };
            let end = m.get(0).map_or(0, |g| g.end());
            if end != text.len() {
                return Err(format!(
                    "Invalid rule: `{text}`, unmatched substring: `{}`",
                    &text[end..]
                ));
            }
            if m.get(1).is_some() {
                rules.push(Rule::Default);
            } else if let (Some(pattern), Some(replacement)) = (m.get(2), m.get(4)) {
                let pattern = pattern.as_str().to_string();
                let compile = |p: &str| {
                    Regex::new(p)
                        .map_err(|e| format!("Invalid rule: `{text}`, invalid pattern: {e}"))
                };
                let whole = compile(&format!(r"\A(?:{pattern})\z"))?;
                let each = compile(&pattern)?;
                let case = match m.get(6).map(|g| g.as_str()) {
                    Some("L") => Case::Lower,
                    Some("U") => Case::Upper,
                    _ => Case::Keep,
                };
                let replacement = replacement.as_str().to_string();
                check_replacement(&replacement, each.captures_len() - 1, &each)
                    .map_err(|e| format!("Invalid rule: `{text}`, {e}"))?;
                rules.push(Rule::Replace {
                    pattern,
                    replacement,
                    case,
                    whole,
                    each,
                });
            }
        }
        Ok(MappingRules { rules })
    }

    /// Maps a distinguished name (as [`crate::tls::subject_dn`] gives it) to a principal name.
    /// Fails, as Kafka does, when no rule applies.
    pub fn apply(&self, dn: &str) -> Result<String, String> {
        for rule in &self.rules {
            match rule {
                Rule::Default => return Ok(dn.to_string()),
                Rule::Replace {
                    replacement,
                    case,
                    whole,
                    each,
                    ..
                } => {
                    if !whole.is_match(dn) {
                        continue;
                    }
                    let groups = each.captures_len() - 1;
                    let mut out = String::with_capacity(dn.len());
                    // Java's find loop: an empty match may follow a non-empty one, and the
                    // search moves one character on after an empty match.
                    let mut last = 0;
                    let mut pos = 0;
                    while pos <= dn.len() {
                        let Some(caps) = each.captures_at(dn, pos) else {
                            break;
                        };
                        let m = caps.get(0).map_or(pos..pos, |g| g.range());
                        out.push_str(&dn[last..m.start]);
                        out.push_str(&expand(replacement, &caps, groups)?);
                        last = m.end;
                        pos = if m.is_empty() {
                            m.end + dn[m.end..].chars().next().map_or(1, char::len_utf8)
                        } else {
                            m.end
                        };
                    }
                    out.push_str(&dn[last..]);
                    return Ok(match case {
                        Case::Keep => out,
                        Case::Lower => out.to_lowercase(),
                        Case::Upper => out.to_uppercase(),
                    });
                }
            }
        }
        Err(format!("No rules apply to {dn}, rules {self}"))
    }
}

/// Checks a replacement once at parse time, so `apply` only fails when no rule applies.
fn check_replacement(replacement: &str, groups: usize, re: &Regex) -> Result<(), String> {
    let mut chars = replacement.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars
                    .next()
                    .ok_or("character to be escaped is missing in the replacement")?;
            }
            '$' => match chars.peek() {
                Some('{') => {
                    chars.next();
                    let name: String = chars.by_ref().take_while(|c| *c != '}').collect();
                    if !re.capture_names().any(|n| n == Some(name.as_str())) {
                        return Err(format!("no group with name {{{name}}} in the replacement"));
                    }
                }
                Some(d) if d.is_ascii_digit() => {
                    let first = d.to_digit(10).unwrap_or(0) as usize;
                    if groups == 0 && first > 0 {
                        return Err(format!("no group {first} in the replacement"));
                    }
                }
                _ => return Err("illegal group reference in the replacement".to_string()),
            },
            _ => {}
        }
    }
    Ok(())
}

/// Java's `Matcher.appendReplacement` expansion, after Kafka's treatment of `$n` with `n`
/// beyond the number of groups as literal text.
fn expand(replacement: &str, caps: &Captures<'_>, groups: usize) -> Result<String, String> {
    let mut out = String::new();
    let chars: Vec<char> = replacement.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '\\' => {
                let Some(&e) = chars.get(i) else {
                    return Err("character to be escaped is missing".to_string());
                };
                out.push(e);
                i += 1;
            }
            '$' if chars.get(i) == Some(&'{') => {
                let rest: String = chars[i + 1..].iter().collect();
                let Some(close) = rest.find('}') else {
                    return Err("named capturing group is missing trailing '}'".to_string());
                };
                let name = &rest[..close];
                out.push_str(caps.name(name).map_or("", |m| m.as_str()));
                i += 1 + rest[..=close].chars().count();
            }
            '$' => {
                let Some(first) = chars.get(i).and_then(|d| d.to_digit(10)) else {
                    return Err("Illegal group reference".to_string());
                };
                let mut num = first as usize;
                if num > groups {
                    if groups == 0 {
                        return Err(format!("No group {num}"));
                    }
                    // Beyond the groups: a literal `$`, the digits follow as text.
                    out.push('$');
                    continue;
                }
                i += 1;
                while let Some(d) = chars.get(i).and_then(|d| d.to_digit(10)) {
                    let next = num * 10 + d as usize;
                    if next > groups {
                        break;
                    }
                    num = next;
                    i += 1;
                }
                out.push_str(caps.get(num).map_or("", |m| m.as_str()));
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn splits(expected: &str, rules: &str) {
        assert_eq!(
            MappingRules::parse(rules).unwrap().to_string(),
            expected,
            "{rules:?}"
        );
    }

    #[test]
    fn valid_rules() {
        for r in [
            "DEFAULT",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L, DEFAULT",
            "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/",
            "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L",
            "RULE:^cn=(.?),ou=(.?),dc=(.?),dc=(.?)$/$1@$2/U",
            "RULE:^CN=([^,ADEFLTU,]+)(,.*|$)/$1/",
            "RULE:^CN=([^,DEFAULT,]+)(,.*|$)/$1/",
        ] {
            assert!(MappingRules::parse(r).is_ok(), "{r}");
        }
    }

    #[test]
    fn invalid_rules() {
        for r in [
            "default",
            "DEFAUL",
            "DEFAULT/L",
            "DEFAULT/U",
            "RULE:CN=(.*?),OU=ServiceUsers.*/$1",
            "rule:^CN=(.*?),OU=ServiceUsers.*$/$1/",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L/U",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/L",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/U",
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/LU",
            "RULE:^CN=(.*?$/$1/",
            "RULE:^CN=.*$/$1/",
        ] {
            assert!(MappingRules::parse(r).is_err(), "{r}");
        }
        assert_eq!(
            MappingRules::parse("DEFAULT/L").unwrap_err(),
            "Invalid rule: `DEFAULT/L`, unmatched substring: `/L`"
        );
    }

    #[test]
    fn kafka_mapper_examples() {
        let rules = [
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L",
            "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L",
            "RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U",
            "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U",
            "DEFAULT",
        ]
        .join(", ");
        let m = MappingRules::parse(&rules).unwrap();
        assert_eq!(
            m.apply("CN=Duke,OU=ServiceUsers,O=Org,C=US").unwrap(),
            "duke"
        );
        assert_eq!(
            m.apply("CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US")
                .unwrap(),
            "duke@sme"
        );
        assert_eq!(
            m.apply("cn=duke,ou=sme,dc=mycp,dc=com").unwrap(),
            "DUKE@SME"
        );
        assert_eq!(
            m.apply("cN=duke,OU=JavaSoft,O=Sun Microsystems").unwrap(),
            "DUKE"
        );
        assert_eq!(
            m.apply("OU=JavaSoft,O=Sun Microsystems,C=US").unwrap(),
            "OU=JavaSoft,O=Sun Microsystems,C=US"
        );
    }

    #[test]
    fn documented_example() {
        // Kafka's documentation: CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown
        // maps to "serviceuser", and adminUser,... to "adminuser" with /L.
        let m = MappingRules::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/L,DEFAULT",
        )
        .unwrap();
        assert_eq!(
            m.apply("CN=serviceuser,OU=ServiceUsers,O=Unknown,L=Unknown,ST=Unknown,C=Unknown")
                .unwrap(),
            "serviceuser"
        );
        assert_eq!(
            m.apply("CN=adminUser,OU=Admin,O=Unknown,L=Unknown,ST=Unknown,C=Unknown")
                .unwrap(),
            "adminuser@admin"
        );
        let m = MappingRules::parse("RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L").unwrap();
        assert_eq!(
            m.apply("CN=adminUser,OU=ServiceUsers,O=X").unwrap(),
            "adminuser"
        );
    }

    #[test]
    fn rules_splitting() {
        splits("[]", "");
        splits("[DEFAULT]", "DEFAULT");
        splits("[RULE:/]", "RULE://");
        splits("[RULE:/.*]", "RULE:/.*/");
        splits("[RULE:/.*/L]", "RULE:/.*/L");
        splits("[RULE:/, DEFAULT]", "RULE://,DEFAULT");
        splits("[RULE:/, DEFAULT]", "  RULE:// ,  DEFAULT  ");
        splits(
            "[RULE:   /     , DEFAULT]",
            "  RULE:   /     / ,  DEFAULT  ",
        );
        splits(
            "[RULE:  /     /U, DEFAULT]",
            "  RULE:  /     /U   ,DEFAULT  ",
        );
        splits(
            "[RULE:([A-Z]*)/$1/U, RULE:([a-z]+)/$1, DEFAULT]",
            "  RULE:([A-Z]*)/$1/U   ,RULE:([a-z]+)/$1/,   DEFAULT  ",
        );
        // Rules about rules.
        splits(
            r"[RULE:,RULE:,/,RULE:,\//U, RULE:,/RULE:,, RULE:,RULE:,/L,RULE:,/L, RULE:, DEFAULT, /DEFAULT, DEFAULT]",
            r"RULE:,RULE:,/,RULE:,\//U,RULE:,/RULE:,/,RULE:,RULE:,/L,RULE:,/L,RULE:, DEFAULT, /DEFAULT/,DEFAULT",
        );
        // Empty rules are ignored.
        splits("[]", ",   , , ,      , , ,   ");
        splits("[RULE:/, DEFAULT]", ",,RULE://,,,DEFAULT,,");
        splits(
            "[RULE: /   , DEFAULT]",
            ",  , RULE: /   /    ,,,   DEFAULT, ,   ",
        );
        splits(
            "[RULE:   /  /U, DEFAULT]",
            "     ,  , RULE:   /  /U    ,,  ,DEFAULT, ,",
        );
        // Escape sequences.
        splits(r"[RULE:\/\\\(\)\n\t/\/\/]", r"RULE:\/\\\(\)\n\t/\/\//");
        splits(
            r"[RULE:\**\/+/*/L, RULE:\/*\**/**]",
            r"RULE:\**\/+/*/L,RULE:\/*\**/**/",
        );
    }

    #[test]
    fn comma_with_whitespace() {
        let m = MappingRules::parse(r"RULE:^CN=((\\, *|\w)+)(,.*|$)/$1/,DEFAULT").unwrap();
        assert_eq!(
            m.apply(r"CN=Tkac\, Adam,OU=ITZ,DC=geodis,DC=cz").unwrap(),
            r"Tkac\, Adam"
        );
    }

    #[test]
    fn no_matching_rule_fails() {
        let m = MappingRules::parse("RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/").unwrap();
        let err = m.apply("CN=x,OU=Other").unwrap_err();
        assert_eq!(
            err,
            "No rules apply to CN=x,OU=Other, rules [RULE:^CN=(.*?),OU=ServiceUsers.*$/$1]"
        );
        assert!(MappingRules::parse("").unwrap().apply("CN=x").is_err());
        assert_eq!(
            MappingRules::default().apply("CN=x,O=y").unwrap(),
            "CN=x,O=y"
        );
    }

    #[test]
    fn replacement_references() {
        let m = MappingRules::parse(r"RULE:^CN=([a-z]+),O=([a-z]+)$/$2-$1-$3-\$1-$0/").unwrap();
        // $3 is beyond the two groups: literal text.
        assert_eq!(
            m.apply("CN=bob,O=acme").unwrap(),
            "acme-bob-$3-$1-CN=bob,O=acme"
        );
        let m = MappingRules::parse(r"RULE:^CN=(?P<name>[a-z]+)$/user-${name}/U").unwrap();
        assert_eq!(m.apply("CN=bob").unwrap(), "USER-BOB");
        // $12 with one group is group 1 then "2".
        let m = MappingRules::parse(r"RULE:^CN=([a-z]+)$/$12/").unwrap();
        assert_eq!(m.apply("CN=bob").unwrap(), "bob2");
        // Without groups, $1 has nothing to refer to.
        assert!(MappingRules::parse(r"RULE:^CN=bob$/$1/").is_err());
        assert!(MappingRules::parse(r"RULE:^CN=(bob)$/$x/").is_err());
        assert!(MappingRules::parse(r"RULE:^CN=(?P<n>bob)$/${m}/").is_err());
        // Every match is replaced, as Java's replaceAll.
        // ("abc".replaceAll("(.*)", "x$1") is "xabcx" in Java.)
        let m = MappingRules::parse(r"RULE:(.*)/x$1/").unwrap();
        assert_eq!(m.apply("abc").unwrap(), "xabcx");
        let m = MappingRules::parse(r"RULE:^(.*)$/x$1/").unwrap();
        assert_eq!(m.apply("abc").unwrap(), "xabc");
    }
}
