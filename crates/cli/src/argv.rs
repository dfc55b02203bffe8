//! Command-line spellings that Kafka's tools accept and clap does not, rewritten before clap
//! parses: Kafka's option parser (joptsimple) takes a long option after a single dash
//! (`-bootstrap-server`, `-topic`), so scripts and tutorials carry that spelling. `--zookeeper`,
//! the connection flag of Kafka 2.x tools, is answered with what to use instead.

use std::ffi::OsString;

/// What to tell someone who passes `--zookeeper` (or kafka-acls.sh's
/// `--authorizer-properties zookeeper.connect=...`).
pub const ZOOKEEPER: &str = "--zookeeper is not supported: Kafka 4 and Runnel keep no ZooKeeper, \
and the tools connect to the brokers instead: use --bootstrap-server HOST:PORT \
(for example --bootstrap-server localhost:9092)";

/// Rewrites `-name[=value]` to `--name[=value]` where `name` is a long option (or alias) of the
/// subcommand being run, and refuses `--zookeeper`. Option values are left alone (so
/// `--shift-by -5` stays as typed), as is everything after `--`.
pub fn normalize(root: &clap::Command, argv: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let mut root = root.clone();
    root.build();
    let mut out = Vec::with_capacity(argv.len());
    let mut iter = argv.into_iter();
    out.extend(iter.next());
    // The first word that is not an option names the subcommand.
    let mut sub: Option<clap::Command> = None;
    let mut value_follows = false;
    let mut optional_value = false;
    let mut rest_verbatim = false;
    for arg in iter {
        let Some(text) = arg.to_str().map(str::to_string) else {
            out.push(arg);
            value_follows = false;
            continue;
        };
        if rest_verbatim {
            out.push(arg);
            continue;
        }
        if value_follows {
            value_follows = false;
            if !(optional_value && text.starts_with('-')) {
                out.push(arg);
                continue;
            }
        }
        if text == "--" {
            rest_verbatim = true;
            out.push(arg);
            continue;
        }
        let command = match &sub {
            // A nested subcommand (`metadata-quorum describe`) has its own options.
            Some(c) if !text.starts_with('-') => {
                if let Some(nested) = c.find_subcommand(&text) {
                    sub = Some(nested.clone());
                }
                out.push(arg);
                continue;
            }
            Some(c) => c,
            None => {
                let name = single_dash_long(&text).unwrap_or(&text);
                if !text.starts_with('-') {
                    sub = root.find_subcommand(&text).cloned();
                } else if matches!(name, "version" | "help") {
                    out.push(OsString::from(format!("--{name}")));
                    continue;
                }
                out.push(arg);
                continue;
            }
        };
        let (name, long) = if let Some(name) = text.strip_prefix("--") {
            (name.split('=').next().unwrap_or(name), None)
        } else if let Some(name) = single_dash_long(&text) {
            (name.split('=').next().unwrap_or(name), Some(()))
        } else {
            out.push(arg);
            continue;
        };
        let Some(option) = find_long(command, name) else {
            if matches!(name, "zookeeper" | "authorizer-properties") {
                return Err(ZOOKEEPER.to_string());
            }
            out.push(arg);
            continue;
        };
        let inline_value = text.contains('=');
        let takes_value = option.get_action().takes_values();
        if takes_value && !inline_value {
            value_follows = true;
            optional_value = option.get_num_args().is_some_and(|n| n.min_values() == 0);
        }
        match long {
            Some(()) => out.push(OsString::from(format!("-{text}"))),
            None => out.push(arg),
        }
    }
    Ok(out)
}

/// `name` of `-name` when that could be a long option: more than one character after a single
/// dash, and not a negative number.
fn single_dash_long(text: &str) -> Option<&str> {
    let name = text.strip_prefix('-')?;
    if name.starts_with('-') || name.chars().count() < 2 {
        return None;
    }
    if name.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return None;
    }
    Some(name)
}

fn find_long<'a>(command: &'a clap::Command, name: &str) -> Option<&'a clap::Arg> {
    command.get_arguments().find(|a| {
        a.get_long() == Some(name)
            || a.get_all_aliases()
                .is_some_and(|aliases| aliases.contains(&name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Vec<String>, String> {
        use clap::CommandFactory;
        let argv = std::iter::once("runnel")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        normalize(&crate::Cli::command(), argv).map(|v| {
            v.into_iter()
                .skip(1)
                .map(|a| a.into_string().unwrap())
                .collect()
        })
    }

    #[test]
    fn single_dash_long_options_become_double_dash() {
        assert_eq!(
            run(&["topics", "-bootstrap-server", "h:9092", "-list"]).unwrap(),
            ["topics", "--bootstrap-server", "h:9092", "--list"]
        );
        assert_eq!(
            run(&["topics", "-topic=a", "--describe", "-version"]).unwrap(),
            ["topics", "--topic=a", "--describe", "--version"]
        );
        // Aliases count, values are kept as typed (even when they look like options).
        assert_eq!(
            run(&["console-producer", "-broker-list", "h:1", "-topic", "-list"]).unwrap(),
            [
                "console-producer",
                "--broker-list",
                "h:1",
                "--topic",
                "-list"
            ]
        );
        assert_eq!(
            run(&["consumer-groups", "--shift-by", "-5", "-group", "g"]).unwrap(),
            ["consumer-groups", "--shift-by", "-5", "--group", "g"]
        );
        // An optional value is not taken from the next option.
        assert_eq!(
            run(&["console-producer", "--compression-codec", "-topic", "t"]).unwrap(),
            ["console-producer", "--compression-codec", "--topic", "t"]
        );
        // Unknown words and short options are left for clap to judge.
        assert_eq!(
            run(&["topics", "-xyz", "-h", "--", "-topic"]).unwrap(),
            ["topics", "-xyz", "-h", "--", "-topic"]
        );
        assert_eq!(run(&["-version"]).unwrap(), ["--version"]);
        // Options of a nested subcommand are its own.
        assert_eq!(
            run(&[
                "metadata-quorum",
                "-bootstrap-server",
                "h:1",
                "describe",
                "-status"
            ])
            .unwrap(),
            [
                "metadata-quorum",
                "--bootstrap-server",
                "h:1",
                "describe",
                "--status"
            ]
        );
    }

    #[test]
    fn zookeeper_is_answered_with_bootstrap_server() {
        for args in [
            &["topics", "--zookeeper", "localhost:2181", "--list"][..],
            &["consumer-groups", "-zookeeper=localhost:2181", "--list"][..],
            &[
                "acls",
                "--authorizer-properties",
                "zookeeper.connect=localhost:2181",
                "--list",
            ][..],
        ] {
            let err = run(args).unwrap_err();
            assert!(err.contains("--bootstrap-server"), "{err}");
        }
        // As a value it is only a value.
        assert!(run(&["topics", "--topic", "--zookeeper", "--list"]).is_ok());
    }
}
