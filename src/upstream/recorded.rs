//! The origins a recording's flows went to, worked out flow by flow while it loads: with no
//! `--mode`, a recording of one origin is replayed as a reverse proxy for it.
#![forbid(unsafe_code)]

use std::fmt;

use super::{Origin, Scheme};
use crate::flowfile::RequestView;

/// One recorded origin as written in the flow: any scheme (only http and https can become an
/// [`Origin`]), so a message can name what cannot be reverse-proxied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Lower-case scheme as recorded.
    scheme: String,
    /// Host as recorded.
    host: String,
    /// Port.
    port: u16,
}

impl Seen {
    /// The reverse-mode origin (only called for http and https).
    fn origin(&self) -> Origin {
        Origin {
            scheme: if self.scheme == "https" {
                Scheme::Https
            } else {
                Scheme::Http
            },
            host: self.host.as_str().into(),
            port: self.port,
        }
    }
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// How many distinct origins [`RecordedOrigins`] names in its message.
const ORIGINS_NAMED: usize = 3;

/// The origins the recorded flows went to, worked out flow by flow while they load.
#[derive(Default)]
pub enum RecordedOrigins {
    /// No flow yet.
    #[default]
    NoFlow,
    /// Every flow so far went here.
    One(Seen),
    /// Several origins: the first few (at most three), whether there are more, and
    /// a scheme other than http(s) if one was seen.
    Many {
        /// The first distinct origins, in recording order.
        seen: Vec<Seen>,
        /// More distinct origins than `seen` holds were recorded.
        more: bool,
        /// A recorded scheme that reverse mode cannot use.
        other_scheme: Option<String>,
    },
}

/// Whether `r` went to `o` (no allocation: `o.scheme` is lower case already).
fn same_origin(o: &Seen, r: &RequestView<'_>) -> bool {
    r.scheme.eq_ignore_ascii_case(o.scheme.as_bytes())
        && r.host == o.host.as_bytes()
        && r.port == o.port
}

impl RecordedOrigins {
    /// Takes the next flow's request.
    pub fn add(&mut self, r: &RequestView<'_>) {
        match self {
            RecordedOrigins::NoFlow => {
                let this = origin(r);
                *self = if matches!(this.scheme.as_str(), "http" | "https") {
                    RecordedOrigins::One(this)
                } else {
                    RecordedOrigins::Many {
                        other_scheme: Some(this.scheme.clone()),
                        seen: vec![this],
                        more: false,
                    }
                };
            }
            RecordedOrigins::One(o) => {
                if !same_origin(o, r) {
                    let this = origin(r);
                    let other_scheme = (!matches!(this.scheme.as_str(), "http" | "https"))
                        .then(|| this.scheme.clone());
                    *self = RecordedOrigins::Many {
                        seen: vec![o.clone(), this],
                        more: false,
                        other_scheme,
                    };
                }
            }
            RecordedOrigins::Many {
                seen,
                more,
                other_scheme,
            } => {
                if *more || seen.iter().any(|o| same_origin(o, r)) {
                    return;
                }
                if seen.len() == ORIGINS_NAMED {
                    *more = true;
                    return;
                }
                let this = origin(r);
                if other_scheme.is_none() && !matches!(this.scheme.as_str(), "http" | "https") {
                    *other_scheme = Some(this.scheme.clone());
                }
                seen.push(this);
            }
        }
    }

    /// The single origin every recorded flow went to, if there is exactly one; otherwise why
    /// regular mode is used (a sentence for the user).
    pub fn single(self) -> Result<Origin, String> {
        match self {
            RecordedOrigins::One(o) => Ok(o.origin()),
            RecordedOrigins::NoFlow => Err(
                "no --mode given and no flow recorded: replaying in regular mode \
                 (each request forwarded to its own Host)"
                    .to_string(),
            ),
            RecordedOrigins::Many {
                seen,
                more,
                other_scheme,
            } => {
                let names: Vec<String> = seen.iter().map(ToString::to_string).collect();
                let why = match other_scheme {
                    Some(scheme) => format!("a {scheme} flow cannot be reverse-proxied"),
                    None => "no single reverse target fits them all".to_string(),
                };
                Err(format!(
                    "no --mode given and the recorded flows went to {} origins ({}{}): \
                     replaying in regular mode, {why}; unmatched requests go to their own Host \
                     (give --mode reverse:URL to send them all to one)",
                    if more { "more than 3" } else { "several" },
                    names.join(", "),
                    if more { ", …" } else { "" },
                ))
            }
        }
    }
}

/// The origin of a recorded request.
fn origin(r: &RequestView<'_>) -> Seen {
    Seen {
        scheme: String::from_utf8_lossy(r.scheme).to_ascii_lowercase(),
        host: String::from_utf8_lossy(r.host).into_owned(),
        port: r.port,
    }
}
