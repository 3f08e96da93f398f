//! The command line (clap): `uringreplay [SERVE OPTIONS]`, `uringreplay inspect FILE...` and
//! `uringreplay convert IN... -o OUT`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{
    IoDriver, LookAhead, Order, ProxyMode, ReplayOptions, ServeOptions, Unmatched,
};

pub mod mitm;
#[rustfmt::skip]
pub mod mitm_options;

use mitm::{agree, FlagAction, FlagUse, Settings};

/// The line printed when `-k` could be read as mitmproxy 12's `--ssl-insecure`.
pub const K_MEANS_KILL: &str = "note: -k here means --kill (close the connection of a request no \
     recording answers), its legacy mitmdump meaning, not mitmproxy 12's --ssl-insecure; give \
     --ssl-insecure to skip verifying upstream certificates";

/// Replays recorded mitmproxy flows (mitmdump -S) at very high request rates.
#[derive(Debug, Parser)]
#[command(name = "uringreplay", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// A subcommand; without one, uringreplay serves the recordings given with -S.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options for serving.
    #[command(flatten)]
    pub serve: ServeArgs,
}

impl Cli {
    /// Parses the process's arguments (every mitmdump flag accepted); exits on a bad command line.
    pub fn parse_args() -> Cli {
        Cli::try_parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `args` (the first is the program name), accepting every mitmdump flag.
    pub fn try_parse_args<I, T>(args: I) -> Result<Cli, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let plain = Cli::command();
        let matches = mitm::add_flags(plain.clone()).try_get_matches_from(args)?;
        let mut cli = Cli::from_arg_matches(&matches)?;
        cli.serve.mitm_flags = mitm::flags_given(&plain, &matches);
        Ok(cli)
    }
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the HTTP flows of recordings and summarise them (like `mitmdump -nr FILE`).
    Inspect(InspectArgs),
    /// Write one format-21 flow file (what mitmproxy 11 and 12 read) from HAR and flow files.
    Convert(ConvertArgs),
}

/// `uringreplay convert`.
#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// HAR and flow files (any format version, compressed or not), read in order.
    #[arg(required = true, value_name = "IN")]
    pub inputs: Vec<PathBuf>,
    /// The flow file to write (truncated if it exists).
    #[arg(short = 'o', long = "output", value_name = "OUT", required = true)]
    pub output: PathBuf,
    /// Convert every readable flow, warning once per flow that cannot be read.
    #[arg(long)]
    pub skip_bad_flows: bool,
}

/// `uringreplay inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Flow files, read in order as one recording.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print only the summary.
    #[arg(long)]
    pub summary: bool,
    /// Print one JSON object per HTTP flow, then one summary object.
    #[arg(long)]
    pub json: bool,
    /// Load every readable flow, warning once per flow that cannot be read.
    #[arg(long)]
    pub skip_bad_flows: bool,
}

/// Serving options. Native flags first; mitmproxy's spellings (current and legacy) are aliases,
/// and `--set server_replay_*=VALUE` is accepted, so a mitmdump command line works unchanged.
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// Replay the flows of FILE (repeatable; files are read in order as one recording).
    #[arg(short = 'S', long = "server-replay", value_name = "FILE")]
    pub server_replay: Vec<PathBuf>,
    /// Load every readable flow, warning once per flow that cannot be read.
    #[arg(long)]
    pub skip_bad_flows: bool,
    /// Kill unmatched requests: close the connection without a byte (same as `--extra kill`).
    #[arg(
        long = "kill",
        visible_alias = "server-replay-kill-extra",
        alias = "replay-kill-extra"
    )]
    pub kill: bool,
    /// --kill, as older mitmdump spelled it (mitmproxy 12's -k is --ssl-insecure).
    #[arg(short = 'k')]
    pub kill_short: bool,
    /// What to do with unmatched requests: forward, kill, 204, 400, 404 or 500.
    #[arg(
        long = "extra",
        visible_alias = "server-replay-extra",
        value_name = "ACTION"
    )]
    pub extra: Option<String>,
    /// Serve the first recorded response of a key again and again instead of consuming flows.
    #[arg(long = "reuse", visible_alias = "no-pop", aliases = ["nopop", "server-replay-reuse", "server-replay-nopop"])]
    pub reuse: bool,
    /// Which flow answers a repeated request: consume (default), first, cycle or last.
    #[arg(long, value_name = "ORDER")]
    pub order: Option<String>,
    /// Send recorded dates and cookie expiry unchanged.
    #[arg(long = "norefresh", visible_alias = "no-server-replay-refresh")]
    pub norefresh: bool,
    /// Also match on this request header's value (repeatable).
    #[arg(
        long = "rheader",
        visible_alias = "server-replay-use-header",
        value_name = "NAME"
    )]
    pub rheader: Vec<String>,
    /// Leave the request body out of matching.
    #[arg(long = "ignore-content", alias = "replay-ignore-content")]
    pub ignore_content: bool,
    /// Leave this query parameter out of matching (repeatable).
    #[arg(
        long = "ignore-param",
        alias = "replay-ignore-param",
        value_name = "NAME"
    )]
    pub ignore_param: Vec<String>,
    /// Leave this form field out of matching (repeatable).
    #[arg(
        long = "ignore-payload-param",
        alias = "replay-ignore-payload-param",
        value_name = "NAME"
    )]
    pub ignore_payload_param: Vec<String>,
    /// Leave the host out of matching.
    #[arg(long = "ignore-host", alias = "replay-ignore-host")]
    pub ignore_host: bool,
    /// Leave the port out of matching.
    #[arg(long = "ignore-port", alias = "replay-ignore-port")]
    pub ignore_port: bool,
    /// `regular`, or `reverse:SCHEME://HOST[:PORT]`. Without it, a recording whose flows all went
    /// to one origin is replayed in reverse mode to that origin.
    #[arg(short = 'm', long, value_name = "MODE")]
    pub mode: Vec<String>,
    /// Port to listen on (0: any free port; the start-up line says which).
    #[arg(short = 'p', long = "listen-port", value_name = "PORT")]
    pub listen_port: Option<u16>,
    /// Address to listen on.
    #[arg(long = "listen-host", value_name = "ADDR")]
    pub listen_host: Option<String>,
    /// Worker threads, one event loop each (default: one per core).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// I/O driver: auto (io_uring, else epoll), uring or epoll.
    #[arg(long, value_name = "DRIVER", default_value = "auto")]
    pub io: String,
    /// Serve plain HTTP/1 through monoio's ops only, without each io_uring worker's direct ring
    /// (multishot receive into provided buffers, a turn's sends submitted together).
    #[arg(long)]
    pub no_direct_ring: bool,
    /// Parse and match every request, even one byte-identical to a request answered before
    /// (by default such a repeat is answered from a per-worker cache with the same bytes).
    #[arg(long)]
    pub no_repeat_cache: bool,
    /// On the direct ring, start loading the index slots, flow entries and flow bytes of a
    /// turn's requests before serving the first, so that their cache misses overlap: auto (for
    /// recordings of 32 Ki flows and 64 MiB or more), always or never.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    pub look_ahead: String,
    /// Largest request body accepted, in bytes (larger gets 413).
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body: u64,
    /// Seconds an idle keep-alive connection is kept.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub idle_timeout: u64,
    /// Seconds a started request head may take to arrive completely (also the longest pause
    /// allowed between pieces of a body).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub header_timeout: u64,
    /// Seconds a stop (SIGINT/SIGTERM) waits for answers in flight before exiting anyway (nginx's
    /// worker_shutdown_timeout); a second signal exits at once.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub shutdown_timeout: u64,
    /// Seconds a client may take none of the bytes sent to it (it stopped reading, or is gone)
    /// before its connection is reset (nginx's send_timeout); 0: never.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub send_timeout: u64,
    /// Exit once every recorded flow has been replayed (mitmdump's default; we keep serving).
    #[arg(long)]
    pub exit_when_done: bool,
    /// Print one line per request, like mitmdump.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Print no periodic summary lines (errors and the final report still appear).
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Also trust the CA certificates in this PEM file for https upstreams.
    #[arg(long = "upstream-ca", value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// Do not verify upstream TLS certificates (mitmproxy's name).
    #[arg(long = "ssl-insecure")]
    pub ssl_insecure: bool,
    /// Seconds allowed to connect upstream, and between two reads of its response (then 504).
    #[arg(long = "upstream-timeout", value_name = "SECS", default_value_t = 30.0)]
    pub upstream_timeout: f64,
    /// Reverse mode: send the client's Host header upstream instead of the target's.
    #[arg(long = "keep-host-header")]
    pub keep_host_header: bool,
    /// Start even if another server listens on the port, sharing it (SO_REUSEPORT) for a deliberate
    /// blue/green swap; without it a port in use is refused.
    #[arg(long = "reuse-port")]
    pub reuse_port: bool,
    /// Keep connections open after replayed responses recorded with `Connection: close` (or as
    /// HTTP/1.0 without keep-alive), dropping that field; for load tests.
    #[arg(long = "keep-alive")]
    pub keep_alive: bool,
    /// Serve the admin endpoints (/metrics, /status, /misses, /unused, POST /reset, POST /reload)
    /// over plain HTTP/1.1 on HOST:PORT, apart from the replay port (off by default).
    #[arg(long = "admin", value_name = "HOST:PORT")]
    pub admin: Option<String>,
    /// Write one JSON object per request to FILE, one a line (time, peer, method, URL, HTTP
    /// version, outcome, flow index, status, body bytes, service time); truncates FILE.
    #[arg(long = "log-json", value_name = "FILE")]
    pub log_json: Option<PathBuf>,
    /// With --log-json: log one request in N (counted per worker thread, so deterministic).
    #[arg(
        long = "log-sample",
        value_name = "N",
        default_value_t = 1,
        requires = "log_json",
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub log_sample: u64,
    /// Set mitmproxy option NAME (any of mitmproxy's; those with an effect here are listed below).
    #[arg(long = "set", value_name = "NAME[=VALUE]")]
    pub set: Vec<String>,
    /// Accepted for mitmdump compatibility: uringreplay keeps serving unless --exit-when-done.
    #[arg(long, hide = true)]
    pub keepserving: bool,
    /// mitmdump's trailing filter expression: it filters mitmdump's display and saved flows,
    /// not replay, so it is accepted with a warning.
    #[arg(hide = true, value_name = "FILTER", trailing_var_arg = true)]
    pub filter: Vec<String>,
    /// The mitmdump flags given that are not ours (filled in by [`Cli::try_parse_args`]).
    #[arg(skip)]
    pub mitm_flags: Vec<FlagUse>,
}

/// Everything the serve path needs, checked.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Recordings, in order.
    pub files: Vec<PathBuf>,
    /// Matching and refresh.
    pub replay: ReplayOptions,
    /// Sockets, threads, logging.
    pub serve: ServeOptions,
    /// `--mode` was given (else the mode may be inferred from the recording).
    pub mode_given: bool,
    /// Warnings and notes for stderr, one line each, before loading.
    pub notes: Vec<String>,
    /// `-k` was given and not yet explained: explain it if the inferred origin is https.
    pub explain_k_for_https: bool,
}

fn parse_extra(value: &str) -> Result<Unmatched, String> {
    match value {
        "forward" => Ok(Unmatched::Forward),
        "kill" => Ok(Unmatched::Kill),
        "204" | "400" | "404" | "500" => Ok(Unmatched::Status(
            value.parse().expect("invariant: matched digits"),
        )),
        other => Err(format!(
            "unmatched-request action {other:?} is not one of forward, kill, 204, 400, 404, 500"
        )),
    }
}

/// A listen address given inside a mode spec (`MODE@[HOST:]PORT`).
type ListenOverride = (Option<String>, u16);

fn parse_mode(value: &str) -> Result<(ProxyMode, Option<ListenOverride>), String> {
    let (spec, listen) = match value.rsplit_once('@') {
        Some((spec, at)) => {
            let (host, port) = match at.rsplit_once(':') {
                Some((h, p)) => (Some(h.trim_matches(['[', ']']).to_string()), p),
                None => (None, at),
            };
            let port = port
                .parse::<u16>()
                .map_err(|_| format!("invalid listen port {port:?} in mode {value:?}"))?;
            (spec, Some((host, port)))
        }
        None => (value, None),
    };
    if spec == "regular" {
        return Ok((ProxyMode::Regular, listen));
    }
    match spec.strip_prefix("reverse:") {
        Some(target) => Ok((
            ProxyMode::Reverse(
                crate::upstream::Origin::parse_reverse_spec(target).map_err(|e| e.to_string())?,
            ),
            listen,
        )),
        None => Err(format!(
            "mode {value:?} is not supported: use regular or reverse:SCHEME://HOST[:PORT]"
        )),
    }
}

/// `Some((value, spelling))` when a native flag was given.
fn given<T>(on: bool, value: T, spelled: &str) -> Option<(T, String)> {
    on.then(|| (value, spelled.to_string()))
}

impl ServeArgs {
    /// `--options` or `--commands` was given: the text to print before exiting 0.
    pub fn listing(&self) -> Option<String> {
        self.mitm_flags.iter().find_map(|f| {
            match f.flag.action {
            FlagAction::ListOptions => Some(mitm::options_listing()),
            FlagAction::ListCommands => Some(
                "uringreplay runs no mitmproxy addons or scripts, so it has no mitmproxy commands\n"
                    .to_string(),
            ),
            _ => None,
        }
        })
    }

    /// Checks the options and turns them into configuration; the error is one sentence.
    pub fn to_config(&self) -> Result<ServeConfig, String> {
        let mitm = Settings::collect(&self.set, &self.mitm_flags)?;
        let mut notes = mitm.warnings();
        if !self.filter.is_empty() {
            notes.push(format!(
                "warning: the filter expression {:?} has no effect here (mitmdump applies it to \
                 its display and saved flows, not to replay); ignored",
                self.filter.join(" ")
            ));
        }
        let mut files = self.server_replay.clone();
        files.extend(mitm.seq("server_replay").into_iter().map(|(f, _)| f.into()));
        let bool_of = |native: Option<(bool, String)>, name: &str| -> Result<bool, String> {
            Ok(agree([native, mitm.bool(name)?])?.is_some_and(|(b, _)| b))
        };
        let seq_of = |native: &[String], name: &str| -> Vec<String> {
            let mut all = native.to_vec();
            all.extend(mitm.seq(name).into_iter().map(|(v, _)| v));
            all
        };
        let refresh = agree([
            given(self.norefresh, false, "--norefresh"),
            mitm.bool("server_replay_refresh")?,
        ])?
        .is_none_or(|(r, _)| r);
        let mut replay = ReplayOptions {
            use_headers: seq_of(&self.rheader, "server_replay_use_headers"),
            ignore_content: bool_of(
                given(self.ignore_content, true, "--ignore-content"),
                "server_replay_ignore_content",
            )?,
            ignore_params: seq_of(&self.ignore_param, "server_replay_ignore_params"),
            ignore_payload_params: seq_of(
                &self.ignore_payload_param,
                "server_replay_ignore_payload_params",
            ),
            ignore_host: bool_of(
                given(self.ignore_host, true, "--ignore-host"),
                "server_replay_ignore_host",
            )?,
            ignore_port: bool_of(
                given(self.ignore_port, true, "--ignore-port"),
                "server_replay_ignore_port",
            )?,
            refresh,
            keep_alive: self.keep_alive,
            ..ReplayOptions::default()
        };
        if replay.ignore_content && !replay.ignore_payload_params.is_empty() {
            notes.push(
                "warning: --ignore-content leaves the whole request body out of matching, so \
                 --ignore-payload-param has no effect (as in mitmproxy)"
                    .to_string(),
            );
        }
        let extra = agree([
            self.extra
                .clone()
                .map(|e| (e.clone(), format!("--extra {e}"))),
            mitm.str("server_replay_extra")?,
        ])?;
        let kill_spelling = if self.kill_short { "-k" } else { "--kill" };
        let kill = agree([
            given(self.kill || self.kill_short, true, kill_spelling),
            mitm.bool("server_replay_kill_extra")?,
        ])?;
        let reuse = bool_of(given(self.reuse, true, "--reuse"), "server_replay_reuse")?
            || mitm.bool("server_replay_nopop")?.is_some_and(|(b, _)| b);
        let mut modes: Vec<(String, String)> = self
            .mode
            .iter()
            .map(|m| (m.clone(), format!("--mode {m}")))
            .collect();
        modes.extend(mitm.seq("mode"));
        if let Some((a, b)) = modes.iter().find_map(|(m, s)| {
            modes
                .iter()
                .find(|(other, _)| other != m)
                .map(|(_, t)| (s, t))
        }) {
            return Err(format!(
                "{a} and {b}: uringreplay serves one mode at a time; give only one of them"
            ));
        }
        let (mode, mode_listen) = match modes.first() {
            Some((m, _)) => parse_mode(m).map(|(m, l)| (Some(m), l))?,
            None => (None, None),
        };
        let mut listen_host = agree([
            self.listen_host
                .clone()
                .map(|h| (h.clone(), format!("--listen-host {h}"))),
            mitm.str("listen_host")?,
        ])?
        .map(|(h, _)| h);
        let mitm_port = match mitm.int("listen_port")? {
            Some((p, spelled)) => Some((
                u16::try_from(p)
                    .map_err(|_| format!("{spelled}: {p} is not a port (0 to 65535)"))?,
                spelled,
            )),
            None => None,
        };
        let mut listen_port =
            agree([self.listen_port.map(|p| (p, format!("-p {p}"))), mitm_port])?.map(|(p, _)| p);
        let ssl_setting = mitm.bool("ssl_insecure")?;
        let ssl_named = self.ssl_insecure || ssl_setting.is_some();
        let ssl_insecure = bool_of(
            given(self.ssl_insecure, true, "--ssl-insecure"),
            "ssl_insecure",
        )?;
        let upstream_ca = agree([
            self.upstream_ca
                .clone()
                .map(|p| (p.clone(), format!("--upstream-ca {}", p.display()))),
            mitm.str("ssl_verify_upstream_trusted_ca")?
                .map(|(p, s)| (PathBuf::from(p), s)),
        ])?
        .map(|(p, _)| p);
        let keep_host_header = bool_of(
            given(self.keep_host_header, true, "--keep-host-header"),
            "keep_host_header",
        )?;
        // The listener's TLS: mitmproxy's CA in the confdir, the user's certificates.
        let tls = crate::tls::TlsOptions {
            confdir: mitm.str("confdir")?.map(|(dir, _)| expand_home(&dir)),
            certs: mitm
                .seq("certs")
                .iter()
                .map(|(spec, _)| crate::tls::CertSpec::parse(spec))
                .collect(),
        };
        // mitmdump exits once replay is done unless keepserving; we keep serving unless told.
        let exit_when_done = agree([
            given(self.exit_when_done, false, "--exit-when-done"),
            given(self.keepserving, true, "--keepserving"),
            mitm.bool("keepserving")?,
        ])?
        .is_some_and(|(keep, _)| !keep);
        // As in mitmdump, -q and -v win over termlog_verbosity and flow_detail.
        let quiet = self.quiet
            || mitm
                .str("termlog_verbosity")?
                .is_some_and(|(v, _)| matches!(v.as_str(), "error" | "warn"));
        let verbose = self.verbose || mitm.int("flow_detail")?.is_some_and(|(d, _)| d >= 1);

        let extra_policy = extra.as_ref().map(|(e, _)| parse_extra(e)).transpose()?;
        replay.unmatched = match (&kill, &extra) {
            (Some((true, k)), Some((e, spelled))) if e != "kill" => {
                notes.push(format!(
                    "warning: {k} and {spelled} both say what to do with unmatched requests: {k} \
                     wins (as in mitmproxy, where server_replay_kill_extra overrides \
                     server_replay_extra)"
                ));
                Unmatched::Kill
            }
            (Some((true, _)), _) => Unmatched::Kill,
            _ => extra_policy.unwrap_or_default(),
        };
        replay.order = match self.order.as_deref() {
            None if reuse => Order::First,
            None | Some("consume") => Order::Consume,
            Some("first") => Order::First,
            Some("cycle") => Order::Cycle,
            Some("last") => Order::Last,
            Some(other) => {
                return Err(format!(
                    "--order {other:?} is not one of consume, first, cycle, last"
                ))
            }
        };
        if reuse && replay.order != Order::First {
            return Err(format!(
                "--reuse (always the first recorded response, --order first) and --order {} \
                 contradict each other: give only one of them",
                self.order.as_deref().unwrap_or_default()
            ));
        }
        let io = match self.io.as_str() {
            "auto" => IoDriver::Auto,
            "uring" => IoDriver::Uring,
            "epoll" => IoDriver::Epoll,
            other => return Err(format!("--io {other:?} is not one of auto, uring, epoll")),
        };
        let look_ahead = match self.look_ahead.as_str() {
            "auto" => LookAhead::Auto,
            "always" => LookAhead::Always,
            "never" => LookAhead::Never,
            other => {
                return Err(format!(
                    "--look-ahead {other:?} is not one of auto, always, never"
                ))
            }
        };
        let threads = match self.threads {
            Some(0) => return Err("--threads must be at least 1".to_string()),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if !(self.upstream_timeout.is_finite()
            && self.upstream_timeout > 0.0
            && self.upstream_timeout <= 86_400.0)
        {
            return Err(format!(
                "--upstream-timeout {} is not a number of seconds between 0 and 86400",
                self.upstream_timeout
            ));
        }
        let save = mitm
            .str("save_stream_file")?
            .filter(|(v, _)| !v.is_empty() && v != "+")
            .map(|(v, _)| crate::capture::SaveTarget::parse(&v));
        if files.is_empty() && save.is_none() {
            return Err(
                "nothing to replay: give a recording with -S FILE (or -w FILE to record one)"
                    .to_string(),
            );
        }
        let mode_given = mode.is_some();
        let https_mode = matches!(&mode, Some(ProxyMode::Reverse(t)) if t.scheme == crate::upstream::Scheme::Https);
        let explain_now = self.kill_short && (ssl_named || https_mode);
        if explain_now {
            notes.push(K_MEANS_KILL.to_string());
        }
        if let Some((host, port)) = mode_listen {
            listen_port = Some(port);
            if host.is_some() {
                listen_host = host;
            }
        }
        Ok(ServeConfig {
            files,
            replay,
            serve: ServeOptions {
                listen_host: listen_host.unwrap_or_else(|| "127.0.0.1".to_string()),
                listen_port: listen_port.unwrap_or(8080),
                threads,
                io,
                mode: mode.unwrap_or_default(),
                max_body: self.max_body,
                idle_timeout_secs: self.idle_timeout,
                header_timeout_secs: self.header_timeout,
                shutdown_timeout_secs: self.shutdown_timeout,
                send_timeout_secs: self.send_timeout,
                direct_ring: !self.no_direct_ring,
                repeat_cache: !self.no_repeat_cache,
                look_ahead,
                verbose,
                quiet,
                exit_when_done,
                upstream_ca,
                ssl_insecure,
                upstream_timeout: std::time::Duration::from_secs_f64(self.upstream_timeout),
                keep_host_header,
                reuse_port: self.reuse_port,
                tls,
                // mitmproxy's `http2` (default true; `--no-http2`): ALPN h2 and h2c.
                http2: mitm.bool("http2")?.is_none_or(|(on, _)| on),
                save,
                admin: self.admin.clone(),
                log_json: self.log_json.clone(),
                log_sample: self.log_sample,
            },
            mode_given,
            notes,
            explain_k_for_https: self.kill_short && !explain_now && !mode_given,
        })
    }
}

/// `~/rest` with `$HOME` for `~`, as mitmproxy expands its `confdir`; anything else unchanged.
fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ if path == "~" => crate::tls::default_confdir()
            .parent()
            .map(PathBuf::from)
            .unwrap_or_default(),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<ServeConfig, String> {
        let mut all = vec!["uringreplay"];
        all.extend_from_slice(args);
        Cli::try_parse_args(all)
            .map_err(|e| e.to_string())?
            .serve
            .to_config()
    }

    #[test]
    fn a_mitmdump_command_line_is_understood() {
        let c = config(&[
            "-S",
            "a.flows",
            "--server-replay-kill-extra",
            "--no-pop",
            "--norefresh",
            "--server-replay-use-header",
            "accept",
            "--set",
            "server_replay_ignore_params=ts",
            "--set",
            "server_replay_ignore_port",
            "--set",
            "mode=reverse:http://127.0.0.1:29411",
        ])
        .unwrap();
        assert_eq!(c.replay.unmatched, Unmatched::Kill);
        assert_eq!(c.replay.order, Order::First);
        assert!(!c.replay.refresh && c.replay.ignore_port);
        assert_eq!(c.replay.use_headers, ["accept"]);
        assert_eq!(c.replay.ignore_params, ["ts"]);
        assert!(matches!(c.serve.mode, ProxyMode::Reverse(ref t) if t.port == 29411));
    }

    #[test]
    fn confdir_and_certs_are_parsed_for_the_listeners_tls() {
        let c = config(&[
            "-S",
            "a",
            "--set",
            "confdir=/etc/mitm",
            "--certs",
            "*.example.com=/certs/wild.pem",
            "--set",
            "certs=/certs/any.pem",
        ])
        .unwrap();
        assert_eq!(c.serve.tls.confdir, Some(PathBuf::from("/etc/mitm")));
        // The `--set`s first, then the flags, as the other sequence options are collected.
        assert_eq!(
            c.serve.tls.certs,
            [
                crate::tls::CertSpec {
                    domain: None,
                    file: "/certs/any.pem".into()
                },
                crate::tls::CertSpec {
                    domain: Some("*.example.com".into()),
                    file: "/certs/wild.pem".into()
                },
            ]
        );
        let c = config(&["-S", "a", "--set", "confdir=~/conf"]).unwrap();
        let home = PathBuf::from(std::env::var_os("HOME").unwrap());
        assert_eq!(c.serve.tls.confdir, Some(home.join("conf")));
        // Not given: mitmproxy's default, ~/.mitmproxy, chosen when the TLS is built.
        assert_eq!(config(&["-S", "a"]).unwrap().serve.tls.confdir, None);
    }

    #[test]
    fn a_listen_address_inside_the_mode_spec_is_used() {
        let c = config(&["-S", "a", "--mode", "reverse:http://h:81@127.0.0.2:9000"]).unwrap();
        assert_eq!(
            (c.serve.listen_host.as_str(), c.serve.listen_port),
            ("127.0.0.2", 9000)
        );
        assert!(
            matches!(c.serve.mode, ProxyMode::Reverse(ref t) if t.port == 81 && &*t.host == "h")
        );
        let c = config(&["-S", "a", "--mode", "regular@8081"]).unwrap();
        assert_eq!(c.serve.listen_port, 8081);
    }

    #[test]
    fn legacy_kill_and_status_extras_map_to_unmatched() {
        assert_eq!(
            config(&["-S", "a", "-k"]).unwrap().replay.unmatched,
            Unmatched::Kill
        );
        assert_eq!(
            config(&["-S", "a", "--extra", "404"])
                .unwrap()
                .replay
                .unmatched,
            Unmatched::Status(404)
        );
        assert!(config(&["-S", "a", "--extra", "418"]).is_err());
        assert!(config(&["-S", "a", "--set", "nonsense=1"]).is_err());
    }
}
