//! mitmdump's options and flags on our command line: `--set NAME[=VALUE]` for every mitmproxy
//! option and every mitmdump flag spelling, each value checked against the option's type; the
//! options with a meaning here are handed to `cli`, the rest are named in one warning each.

use clap::{Arg, ArgAction, ArgMatches, Command};
use thiserror::Error;

use super::mitm_options::{FLAGS, MITMPROXY_VERSION, OPTIONS};

/// The type of a mitmproxy option, as its `typespec` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionKind {
    /// `bool`: `true`, `false`, `toggle`, or no value (true).
    Bool,
    /// `int`: a value is required.
    Int,
    /// `Optional[int]`: no value means unset.
    OptionalInt,
    /// `str`: a value is required.
    Str,
    /// `Optional[str]`: no value means unset.
    OptionalStr,
    /// `Sequence[str]`: each `--set` adds a value; no value empties it.
    Seq,
}

impl OptionKind {
    /// How `--options` names the type.
    pub fn name(self) -> &'static str {
        match self {
            OptionKind::Bool => "bool",
            OptionKind::Int => "int",
            OptionKind::OptionalInt => "int or unset",
            OptionKind::Str => "str",
            OptionKind::OptionalStr => "str or unset",
            OptionKind::Seq => "sequence of str",
        }
    }
}

/// One mitmproxy option.
#[derive(Debug)]
pub struct MitmOption {
    /// Its name, as `--set` takes it.
    pub name: &'static str,
    /// Its type.
    pub kind: OptionKind,
    /// Its default, as it would be typed after `NAME=` (empty: none).
    pub default: &'static str,
    /// The values it accepts, when mitmproxy restricts them.
    pub choices: &'static [&'static str],
}

/// What a mitmdump flag does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagAction {
    /// `-h/--help`.
    Help,
    /// `--version`.
    Version,
    /// `--options`: list the options and exit.
    ListOptions,
    /// `--commands`: list the commands and exit.
    ListCommands,
    /// `--set NAME[=VALUE]`.
    Set,
    /// `-q`.
    Quiet,
    /// `-v`.
    Verbose,
    /// Sets its bool option to true.
    True,
    /// Sets its bool option to false.
    False,
    /// Sets its option to the flag's value.
    Value,
    /// Adds the flag's value to its sequence option.
    Append,
}

/// One flag of mitmdump's command line.
#[derive(Debug)]
pub struct MitmFlag {
    /// The long spelling without `--`.
    pub long: &'static str,
    /// The short spelling, if any.
    pub short: Option<char>,
    /// The option it sets (empty for the flags that set none).
    pub option: &'static str,
    /// What it does.
    pub action: FlagAction,
}

/// The mitmproxy options that have an effect here, with the native flag each one is.
pub const HONOURED: &[(&str, &str)] = &[
    ("server_replay", "-S FILE"),
    ("server_replay_extra", "--extra"),
    ("server_replay_kill_extra", "--kill"),
    ("server_replay_reuse", "--reuse"),
    ("server_replay_nopop", "--reuse"),
    ("server_replay_refresh", "false: --norefresh"),
    ("server_replay_use_headers", "--rheader"),
    ("server_replay_ignore_content", "--ignore-content"),
    ("server_replay_ignore_params", "--ignore-param"),
    (
        "server_replay_ignore_payload_params",
        "--ignore-payload-param",
    ),
    ("server_replay_ignore_host", "--ignore-host"),
    ("server_replay_ignore_port", "--ignore-port"),
    ("mode", "--mode (one mode)"),
    ("listen_host", "--listen-host"),
    ("listen_port", "-p"),
    ("ssl_insecure", "--ssl-insecure"),
    ("ssl_verify_upstream_trusted_ca", "--upstream-ca"),
    ("keep_host_header", "--keep-host-header"),
    ("keepserving", "false: --exit-when-done"),
    ("termlog_verbosity", "error or warn: -q"),
    ("flow_detail", "1 or more: -v"),
    ("save_stream_file", "-w FILE"),
    ("confdir", "the CA for TLS towards clients"),
    ("certs", "--certs [DOMAIN=]FILE"),
    (
        "http2",
        "HTTP/2 towards clients: ALPN h2 and h2c (--no-http2: HTTP/1 only)",
    ),
];

/// Whether `name` has an effect here.
pub fn honoured(name: &str) -> bool {
    HONOURED.iter().any(|(n, _)| *n == name)
}

/// The option called `name`.
pub fn option(name: &str) -> Option<&'static MitmOption> {
    OPTIONS.iter().find(|o| o.name == name)
}

/// A mitmdump flag the user gave that our own flags do not cover.
#[derive(Debug, Clone)]
pub struct FlagUse {
    /// The flag.
    pub flag: &'static MitmFlag,
    /// Its value (for value and append flags).
    pub value: Option<String>,
    /// Its position on the command line.
    pub index: usize,
}

impl FlagUse {
    /// The flag as typed, with its value.
    fn spelled(&self) -> String {
        let flag = match self.flag.short {
            Some(s) => format!("-{s}/--{}", self.flag.long),
            None => format!("--{}", self.flag.long),
        };
        match &self.value {
            Some(v) => format!("{flag} {v}"),
            None => flag,
        }
    }
}

/// The argument id of a flag [`add_flags`] adds: its long spelling (our own ids are field
/// names, with `_`, and no mitmdump long spelling is one of them).
fn arg_id(flag: &MitmFlag) -> &'static str {
    flag.long
}

/// The mitmdump flags `cmd` does not define itself (by long spelling).
fn missing_flags(cmd: &Command) -> Vec<&'static MitmFlag> {
    let native = |long: &str| {
        cmd.get_arguments().any(|a| {
            a.get_long() == Some(long)
                || a.get_all_aliases()
                    .is_some_and(|aliases| aliases.contains(&long))
        })
    };
    FLAGS
        .iter()
        .filter(|f| {
            !matches!(
                f.action,
                FlagAction::Help
                    | FlagAction::Version
                    | FlagAction::Set
                    | FlagAction::Quiet
                    | FlagAction::Verbose
            ) && !native(f.long)
        })
        .collect()
}

/// Adds every mitmdump flag `cmd` lacks as a hidden argument, and the list of honoured
/// `--set` names to the help.
pub fn add_flags(cmd: Command) -> Command {
    let shorts: Vec<char> = cmd
        .get_arguments()
        .flat_map(|a| {
            a.get_short()
                .into_iter()
                .chain(a.get_all_short_aliases().unwrap_or_default())
        })
        .collect();
    let mut cmd = cmd.after_help(honoured_help());
    for flag in missing_flags(&cmd) {
        let mut arg = Arg::new(arg_id(flag)).long(flag.long).hide(true);
        if let Some(s) = flag.short.filter(|s| !shorts.contains(s)) {
            arg = arg.short(s);
        }
        arg = match flag.action {
            FlagAction::Value | FlagAction::Append => {
                arg.action(ArgAction::Append).value_name("VALUE")
            }
            _ => arg.action(ArgAction::Count),
        };
        cmd = cmd.arg(arg);
    }
    cmd
}

/// The mitmdump flags in `matches` that [`add_flags`] added, in command-line order.
pub fn flags_given(cmd: &Command, matches: &ArgMatches) -> Vec<FlagUse> {
    let mut given = Vec::new();
    for flag in missing_flags(cmd) {
        let id = arg_id(flag);
        match flag.action {
            FlagAction::Value | FlagAction::Append => {
                let (Ok(Some(values)), Some(indices)) =
                    (matches.try_get_many::<String>(id), matches.indices_of(id))
                else {
                    continue;
                };
                for (value, index) in values.zip(indices) {
                    given.push(FlagUse {
                        flag,
                        value: Some(value.clone()),
                        index,
                    });
                }
            }
            _ => {
                if matches
                    .try_get_one::<u8>(id)
                    .ok()
                    .flatten()
                    .copied()
                    .unwrap_or(0)
                    > 0
                {
                    given.push(FlagUse {
                        flag,
                        value: None,
                        index: matches.index_of(id).unwrap_or(0),
                    });
                }
            }
        }
    }
    given.sort_by_key(|f| f.index);
    given
}

fn honoured_help() -> String {
    let mut text = format!(
        "mitmproxy {MITMPROXY_VERSION} options: every `--set NAME[=VALUE]` and every mitmdump flag \
         is accepted. These have an effect here (the rest are named in a warning and ignored; \
         --options lists them all):\n"
    );
    for (name, native) in HONOURED {
        text.push_str(&format!("  {name:<36} {native}\n"));
    }
    text
}

/// `--options`: every mitmproxy option, its type and default, and whether it has an effect here.
pub fn options_listing() -> String {
    let mut text = String::new();
    for o in OPTIONS {
        let effect = HONOURED
            .iter()
            .find(|(n, _)| *n == o.name)
            .map_or("no effect here".to_string(), |(_, native)| {
                format!("here: {native}")
            });
        let kind = if o.choices.is_empty() {
            o.kind.name().to_string()
        } else {
            o.choices.join("|")
        };
        text.push_str(&format!(
            "{} ({kind}, default {:?}): {effect}\n",
            o.name, o.default
        ));
    }
    text
}

/// A mitmproxy option or value on the command line that cannot be used; each names how the
/// user spelled it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OptionError {
    /// A bool option got something other than true, false or toggle.
    #[error("{spelled}: {name} is a boolean: give true, false or toggle (or no value for true), not {got:?}")]
    NotBool {
        /// As typed.
        spelled: String,
        /// The option.
        name: &'static str,
        /// The value given.
        got: String,
    },
    /// An int option got something that is not an integer.
    #[error("{spelled}: {name} takes an integer, not {got:?}")]
    NotInt {
        /// As typed.
        spelled: String,
        /// The option.
        name: &'static str,
        /// The value given.
        got: String,
    },
    /// An option that must have a value got none.
    #[error("{spelled}: {name} needs a value ({name}=VALUE)")]
    NeedsValue {
        /// As typed.
        spelled: String,
        /// The option.
        name: &'static str,
    },
    /// A value outside the option's choices.
    #[error("{spelled}: {name} is one of {}, not {got:?}", choices.join(", "))]
    NotAChoice {
        /// As typed.
        spelled: String,
        /// The option.
        name: &'static str,
        /// What it accepts.
        choices: &'static [&'static str],
        /// The value given.
        got: String,
    },
    /// `--set` with a name mitmproxy does not have.
    #[error("{spelled}: mitmproxy {MITMPROXY_VERSION} has no option {name:?} (uringreplay --options lists them)")]
    Unknown {
        /// As typed.
        spelled: String,
        /// The name given.
        name: String,
    },
    /// One option given two different values.
    #[error("{one} and {other} contradict each other: give only one of them")]
    Contradiction {
        /// The first spelling.
        one: String,
        /// The spelling that disagrees with it.
        other: String,
    },
}

/// At the edge (`ServeArgs::to_config`), an option error is the sentence the user reads.
impl From<OptionError> for String {
    fn from(e: OptionError) -> String {
        e.to_string()
    }
}

/// A checked value of one setting.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A bool option's value.
    Bool(bool),
    /// An int option's value (`None`: unset).
    Int(Option<i64>),
    /// A str option's value (`None`: unset).
    Str(Option<String>),
    /// One value added to a sequence option (`None`: empty it).
    Seq(Option<String>),
}

/// One mitmproxy option set on the command line.
#[derive(Debug, Clone)]
pub struct Setting {
    /// The option.
    pub option: &'static MitmOption,
    /// Its checked value.
    pub value: Value,
    /// How the user spelled it (`--set NAME=VALUE` or the flag).
    pub spelled: String,
}

/// Checks `value` against `option`'s type; `spelled` names it in the error.
fn check(
    option: &'static MitmOption,
    value: Option<&str>,
    spelled: &str,
) -> Result<Value, OptionError> {
    let name = option.name;
    let choice = |v: &str| {
        if option.choices.is_empty() || option.choices.contains(&v) {
            Ok(())
        } else {
            Err(OptionError::NotAChoice {
                spelled: spelled.to_string(),
                name,
                choices: option.choices,
                got: v.to_string(),
            })
        }
    };
    let int = |v: &str| {
        v.trim().parse::<i64>().map_err(|_| OptionError::NotInt {
            spelled: spelled.to_string(),
            name,
            got: v.to_string(),
        })
    };
    let required = || OptionError::NeedsValue {
        spelled: spelled.to_string(),
        name,
    };
    Ok(match option.kind {
        OptionKind::Bool => Value::Bool(match value {
            None | Some("true") => true,
            Some("false") => false,
            Some("toggle") => option.default != "true",
            Some(other) => {
                return Err(OptionError::NotBool {
                    spelled: spelled.to_string(),
                    name,
                    got: other.to_string(),
                })
            }
        }),
        OptionKind::Int => Value::Int(Some(int(value.ok_or_else(required)?)?)),
        OptionKind::OptionalInt => Value::Int(match value {
            None | Some("") => None,
            Some(v) => Some(int(v)?),
        }),
        OptionKind::Str => {
            let v = value.ok_or_else(required)?;
            choice(v)?;
            Value::Str(Some(v.to_string()))
        }
        OptionKind::OptionalStr => match value {
            None => Value::Str(None),
            Some(v) => {
                choice(v)?;
                Value::Str(Some(v.to_string()))
            }
        },
        OptionKind::Seq => match value {
            None => Value::Seq(None),
            Some(v) => {
                choice(v)?;
                Value::Seq(Some(v.to_string()))
            }
        },
    })
}

/// The mitmproxy options set on one command line, checked, in the order mitmproxy applies
/// them: every `--set` first, then the flags.
#[derive(Debug, Default)]
pub struct Settings {
    items: Vec<Setting>,
    /// `--set` names that are no mitmproxy option (allowed when a script could define them).
    unknown: Vec<String>,
}

impl Settings {
    /// Checks the `--set` items and the mitmdump flags given.
    pub fn collect(set: &[String], flags: &[FlagUse]) -> Result<Settings, OptionError> {
        let mut settings = Settings::default();
        let scripts = flags.iter().any(|f| f.flag.option == "scripts");
        for item in set {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (item.as_str(), None),
            };
            let spelled = format!("--set {item}");
            let Some(option) = option(name) else {
                if scripts {
                    settings.unknown.push(spelled);
                    continue;
                }
                return Err(OptionError::Unknown {
                    spelled,
                    name: name.to_string(),
                });
            };
            let value = check(option, value, &spelled)?;
            settings.items.push(Setting {
                option,
                value,
                spelled,
            });
        }
        for used in flags {
            let value = match used.flag.action {
                FlagAction::True => Value::Bool(true),
                FlagAction::False => Value::Bool(false),
                FlagAction::Value | FlagAction::Append => {
                    let Some(option) = option(used.flag.option) else {
                        continue;
                    };
                    check(option, used.value.as_deref(), &used.spelled())?
                }
                _ => continue,
            };
            let Some(option) = option(used.flag.option) else {
                continue;
            };
            // An append flag adds one value, like one `--set NAME=VALUE`.
            let value = match (option.kind, value) {
                (OptionKind::Seq, Value::Str(v)) => Value::Seq(v),
                (_, v) => v,
            };
            settings.items.push(Setting {
                option,
                value,
                spelled: used.spelled(),
            });
        }
        Ok(settings)
    }

    /// One warning line per option given that has no effect here (the first spelling names it).
    pub fn warnings(&self) -> Vec<String> {
        let mut named: Vec<&str> = Vec::new();
        let mut lines = Vec::new();
        for s in &self.items {
            if honoured(s.option.name) || named.contains(&s.option.name) {
                continue;
            }
            named.push(s.option.name);
            lines.push(format!(
                "warning: {}: mitmproxy option {} has no effect here; ignored",
                s.spelled, s.option.name
            ));
        }
        for spelled in &self.unknown {
            lines.push(format!(
                "warning: {spelled}: no mitmproxy option of that name (a script's option?); \
                 scripts do not run here; ignored"
            ));
        }
        lines
    }

    /// The settings of option `name`, in order.
    fn of<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Setting> + 'a {
        self.items.iter().filter(move |s| s.option.name == name)
    }

    /// The one value of scalar option `name` (and how it was spelled), or an error naming two
    /// spellings that disagree.
    fn scalar<'a>(&'a self, name: &'a str) -> Result<Option<(&'a Value, &'a str)>, OptionError> {
        agree(self.of(name).map(|s| Some((&s.value, s.spelled.as_str()))))
    }

    /// Bool option `name`, if given.
    pub fn bool(&self, name: &str) -> Result<Option<(bool, String)>, OptionError> {
        Ok(match self.scalar(name)? {
            Some((Value::Bool(b), spelled)) => Some((*b, spelled.to_string())),
            _ => None,
        })
    }

    /// Int option `name`, if given a value.
    pub fn int(&self, name: &str) -> Result<Option<(i64, String)>, OptionError> {
        Ok(match self.scalar(name)? {
            Some((Value::Int(Some(i)), spelled)) => Some((*i, spelled.to_string())),
            _ => None,
        })
    }

    /// Str option `name`, if given a value.
    pub fn str(&self, name: &str) -> Result<Option<(String, String)>, OptionError> {
        Ok(match self.scalar(name)? {
            Some((Value::Str(Some(s)), spelled)) => Some((s.clone(), spelled.to_string())),
            _ => None,
        })
    }

    /// Sequence option `name`'s values with their spellings (a value-less `--set` empties it).
    pub fn seq(&self, name: &str) -> Vec<(String, String)> {
        let mut values = Vec::new();
        for s in self.of(name) {
            match &s.value {
                Value::Seq(Some(v)) => values.push((v.clone(), s.spelled.clone())),
                Value::Seq(None) => values.clear(),
                _ => {}
            }
        }
        values
    }
}

/// The first given value, unless another given value differs: then a sentence naming both.
pub fn agree<T: PartialEq, S: AsRef<str>>(
    given: impl IntoIterator<Item = Option<(T, S)>>,
) -> Result<Option<(T, S)>, OptionError> {
    let mut first: Option<(T, S)> = None;
    for (value, spelled) in given.into_iter().flatten() {
        match &first {
            None => first = Some((value, spelled)),
            Some((v, s)) if *v != value => {
                return Err(OptionError::Contradiction {
                    one: s.as_ref().to_string(),
                    other: spelled.as_ref().to_string(),
                })
            }
            Some(_) => {}
        }
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_honoured_name_is_a_mitmproxy_option() {
        for (name, _) in HONOURED {
            assert!(option(name).is_some(), "{name}");
        }
    }

    #[test]
    fn values_are_checked_against_the_option_type() {
        let set =
            |item: &str| Settings::collect(&[item.to_string()], &[]).map_err(|e| e.to_string());
        assert!(set("anticache").is_ok());
        assert!(set("anticache=false").is_ok());
        assert!(set("anticache=maybe").unwrap_err().contains("boolean"));
        assert!(set("flow_detail=x").unwrap_err().contains("integer"));
        assert!(set("flow_detail").unwrap_err().contains("needs a value"));
        assert!(set("termlog_verbosity=loud")
            .unwrap_err()
            .contains("one of error"));
        assert!(set("no_such_option=1").unwrap_err().contains("no option"));
        let s = set("listen_port").unwrap();
        assert_eq!(s.int("listen_port").unwrap(), None);
    }

    #[test]
    fn a_scalar_given_twice_with_different_values_is_refused() {
        let s = Settings::collect(
            &["listen_host=a".to_string(), "listen_host=b".to_string()],
            &[],
        )
        .unwrap();
        let e = s.str("listen_host").unwrap_err().to_string();
        assert!(
            e.contains("--set listen_host=a") && e.contains("--set listen_host=b"),
            "{e}"
        );
    }

    #[test]
    fn a_valueless_set_empties_a_sequence() {
        let items = ["scripts=a", "scripts", "scripts=b"].map(String::from);
        let s = Settings::collect(&items, &[]).unwrap();
        let values: Vec<String> = s.seq("scripts").into_iter().map(|(v, _)| v).collect();
        assert_eq!(values, ["b"]);
        assert_eq!(s.warnings().len(), 1, "one warning per option");
    }
}
