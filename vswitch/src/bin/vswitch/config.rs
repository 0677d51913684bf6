//! The daemon's configuration file, Docker's `daemon.json` in TOML: each key is one of
//! `vswitch daemon`'s flags without `--` (`group = "vswitch"`, `aging = 600`,
//! `docker-plugin = true`), plus `default-address-pools = [{ base = "10.90.0.0/16", size = 24 }]`
//! as Docker spells it. Its settings become flags on the command line, placed after `daemon`,
//! so they are checked exactly as flags are; a setting given both ways is refused, as dockerd
//! refuses it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::parser::ValueSource;
use clap::CommandFactory;

use crate::Cli;

/// `argv` with the daemon's configuration file's settings added, when it is `vswitch daemon`
/// and a file applies (given with `--config`, or the default one, if it exists).
pub fn with_config_file(argv: Vec<OsString>) -> Result<Vec<OsString>> {
    // Leniently: a flag that needs another the file gives must not hide the file. The
    // command line is checked whole once the file's settings are in.
    let Ok(matches) = Cli::command()
        .ignore_errors(true)
        .try_get_matches_from(&argv)
    else {
        return Ok(argv);
    };
    let Some(daemon) = matches.subcommand_matches("daemon") else {
        return Ok(argv);
    };
    let path = match daemon.get_one::<PathBuf>("config") {
        Some(path) => path.clone(),
        None => match default_path() {
            Some(path) if path.exists() => path,
            _ => return Ok(argv),
        },
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the daemon's configuration {}", path.display()))?;
    let flags = flags_of(&path, &text, |id| {
        daemon.value_source(id) == Some(ValueSource::CommandLine)
    })?;
    let at = subcommand_position(&argv).context("no `daemon` on the command line")? + 1;
    let mut argv = argv;
    argv.splice(at..at, flags.into_iter().map(OsString::from));
    Ok(argv)
}

/// Where the subcommand stands in `argv`: the first word that is neither an option nor the
/// value of a global option (`vswitch --socket daemon daemon`).
fn subcommand_position(argv: &[OsString]) -> Option<usize> {
    let globals_with_values = ["--socket", "--log-format"];
    let mut i = 1;
    while i < argv.len() {
        let word = argv[i].to_string_lossy();
        if globals_with_values.contains(&word.as_ref()) {
            i += 2;
        } else if word.starts_with('-') {
            i += 1;
        } else {
            return Some(i);
        }
    }
    None
}

/// /etc/vswitch/daemon.toml as root; $XDG_CONFIG_HOME/vswitch/daemon.toml (or
/// ~/.config/vswitch/daemon.toml) otherwise.
fn default_path() -> Option<PathBuf> {
    if nix::unistd::geteuid().is_root() {
        return Some(PathBuf::from("/etc/vswitch/daemon.toml"));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(config.join("vswitch/daemon.toml"))
}

/// The flags `text` (the file at `path`) stands for; `on_command_line(id)` says whether the
/// flag of that id was given there too.
fn flags_of(
    path: &Path,
    text: &str,
    on_command_line: impl Fn(&str) -> bool,
) -> Result<Vec<String>> {
    let file = path.display();
    let table: toml::Table =
        toml::from_str(text).with_context(|| format!("invalid daemon configuration {file}"))?;
    let command = Cli::command();
    let daemon = command
        .find_subcommand("daemon")
        .expect("the daemon subcommand exists");
    let mut flags = Vec::new();
    for (key, value) in &table {
        let long = match key.as_str() {
            "default-address-pools" => "default-address-pool",
            other => other,
        };
        let arg = daemon.get_arguments().find(|a| {
            a.get_long() == Some(long) && !a.is_global_set() && !matches!(long, "config" | "help")
        });
        let Some(arg) = arg else {
            bail!("{file}: unknown setting `{key}` (the settings are `vswitch daemon`'s flags without --)");
        };
        if long == "reset-state" {
            bail!("{file}: `{key}` is for one start only: give --{long} on the command line");
        }
        // A flag whose value may be left out (`--docker-plugin`): `true` takes its default.
        let optional_value = arg.get_num_args().is_some_and(|n| n.min_values() == 0);
        if on_command_line(arg.get_id().as_str()) {
            bail!("{file}: `{key}` is set both there and on the command line (--{long})");
        }
        let takes_value = arg.get_action().takes_values();
        let values: Vec<&toml::Value> = match value {
            toml::Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for value in values {
            let text = match value {
                toml::Value::Boolean(set) if !takes_value || optional_value => {
                    if *set {
                        flags.push(format!("--{long}"));
                    }
                    continue;
                }
                toml::Value::String(s) if takes_value => s.clone(),
                toml::Value::Integer(n) if takes_value => n.to_string(),
                toml::Value::Table(pool) if long == "default-address-pool" => {
                    match (pool.get("base"), pool.get("size")) {
                        (Some(toml::Value::String(base)), Some(toml::Value::Integer(size))) => {
                            format!("base={base},size={size}")
                        }
                        _ => bail!(
                            "{file}: `{key}`: each pool is {{ base = \"CIDR\", size = PREFIX_LENGTH }}"
                        ),
                    }
                }
                other => bail!(
                    "{file}: `{key}` = {other}: expected {}",
                    if takes_value {
                        "a string or a number"
                    } else {
                        "true or false"
                    }
                ),
            };
            flags.push(format!("--{long}={text}"));
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(text: &str) -> Result<Vec<String>> {
        flags_of(Path::new("daemon.toml"), text, |id| id == "metrics_addr")
    }

    #[test]
    fn settings_become_flags() {
        let got = flags(
            "group = \"vswitch\"\naging = 600\ndocker-plugin = true\n\
             default-address-pools = [{ base = \"10.90.0.0/16\", size = 24 }]\n",
        )
        .unwrap();
        assert_eq!(
            got,
            [
                "--aging=600",
                "--default-address-pool=base=10.90.0.0/16,size=24",
                "--docker-plugin",
                "--group=vswitch",
            ]
        );
        let argv: Vec<OsString> = ["vswitch", "--socket", "daemon", "daemon", "--aging", "5"]
            .map(OsString::from)
            .to_vec();
        assert_eq!(subcommand_position(&argv), Some(3));
    }

    #[test]
    fn unknown_mistyped_and_doubled_settings_are_refused_by_name() {
        for (text, said) in [
            ("colour = \"red\"", "unknown setting `colour`"),
            ("socket = \"/x\"", "unknown setting `socket`"),
            (
                "aging = true",
                "`aging` = true: expected a string or a number",
            ),
            ("reset-state = true", "for one start only"),
            ("docker-host = true", "expected a string or a number"),
            (
                "metrics-addr = \"127.0.0.1:9\"",
                "set both there and on the command line",
            ),
            (
                "default-address-pools = [{ base = \"10.0.0.0/8\" }]",
                "each pool is",
            ),
            ("aging = ", "invalid daemon configuration daemon.toml"),
        ] {
            let error = format!("{:#}", flags(text).unwrap_err());
            assert!(error.contains(said), "{text}: {error}");
        }
    }
}
