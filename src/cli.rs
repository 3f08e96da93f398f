//! The command line (clap): `uringreplay [SERVE OPTIONS]` and `uringreplay inspect FILE...`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{
    IoDriver, Order, ProxyMode, ReplayOptions, ReverseTarget, ServeOptions, Unmatched,
};

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

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the HTTP flows of recordings and summarise them (like `mitmdump -nr FILE`).
    Inspect(InspectArgs),
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
    /// Kill unmatched requests: close the connection without a byte (legacy `-k`; same as `--extra kill`).
    #[arg(
        short = 'k',
        long = "kill",
        visible_alias = "server-replay-kill-extra",
        alias = "replay-kill-extra"
    )]
    pub kill: bool,
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
    #[arg(long, value_name = "MODE")]
    pub mode: Option<String>,
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
    /// Largest request body accepted, in bytes (larger gets 413).
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body: u64,
    /// Seconds an idle keep-alive connection is kept.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub idle_timeout: u64,
    /// Seconds a started request may take to arrive completely.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub header_timeout: u64,
    /// Seconds a stop (SIGINT/SIGTERM) waits for answers in flight before exiting anyway (nginx's
    /// worker_shutdown_timeout); a second signal exits at once.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    pub shutdown_timeout: u64,
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
    /// mitmproxy option `NAME=VALUE` (server_replay_*, mode, listen_host, listen_port, keepserving).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// Accepted for mitmdump compatibility: uringreplay keeps serving unless --exit-when-done.
    #[arg(long, hide = true)]
    pub keepserving: bool,
    /// Accepted for mitmdump compatibility (refresh is on by default).
    #[arg(long = "server-replay-refresh", hide = true)]
    pub refresh_on: bool,
    /// Accepted for mitmdump compatibility (the defaults).
    #[arg(
        long = "no-server-replay-reuse",
        alias = "no-server-replay-kill-extra",
        hide = true
    )]
    pub mitm_defaults: bool,
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
}

fn parse_bool(name: &str, value: Option<&str>) -> Result<bool, String> {
    match value.map(str::to_ascii_lowercase).as_deref() {
        None | Some("true" | "yes" | "on" | "1") => Ok(true),
        Some("false" | "no" | "off" | "0") => Ok(false),
        Some(other) => Err(format!(
            "--set {name}: expected true or false, got {other:?}"
        )),
    }
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
        Some(target) => Ok((ProxyMode::Reverse(ReverseTarget::parse(target)?), listen)),
        None => Err(format!(
            "mode {value:?} is not supported: use regular or reverse:SCHEME://HOST[:PORT]"
        )),
    }
}

impl ServeArgs {
    /// Checks the options and turns them into configuration; the error is one sentence.
    pub fn to_config(&self) -> Result<ServeConfig, String> {
        let mut files = self.server_replay.clone();
        let mut replay = ReplayOptions {
            use_headers: self.rheader.clone(),
            ignore_content: self.ignore_content,
            ignore_params: self.ignore_param.clone(),
            ignore_payload_params: self.ignore_payload_param.clone(),
            ignore_host: self.ignore_host,
            ignore_port: self.ignore_port,
            refresh: !self.norefresh,
            keep_alive: self.keep_alive,
            ..ReplayOptions::default()
        };
        let mut extra = self.extra.as_deref().map(parse_extra).transpose()?;
        let mut kill = self.kill;
        let mut reuse = self.reuse;
        let mut mode = None;
        let mut mode_listen = None;
        if let Some(m) = self.mode.as_deref() {
            (mode, mode_listen) = parse_mode(m).map(|(m, l)| (Some(m), l))?;
        }
        let mut listen_host = self.listen_host.clone();
        let mut listen_port = self.listen_port;
        let mut ssl_insecure = self.ssl_insecure;
        let mut keep_host_header = self.keep_host_header;
        for item in &self.set {
            let (name, value) = match item.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (item.as_str(), None),
            };
            let text = || value.ok_or_else(|| format!("--set {name} needs a value"));
            match name {
                "server_replay" => files.push(PathBuf::from(text()?)),
                "server_replay_extra" => extra = Some(parse_extra(text()?)?),
                "server_replay_kill_extra" => kill = parse_bool(name, value)?,
                "server_replay_reuse" | "server_replay_nopop" => reuse = parse_bool(name, value)?,
                "server_replay_refresh" => replay.refresh = parse_bool(name, value)?,
                "server_replay_use_headers" => replay.use_headers.push(text()?.to_string()),
                "server_replay_ignore_content" => replay.ignore_content = parse_bool(name, value)?,
                "server_replay_ignore_params" => replay.ignore_params.push(text()?.to_string()),
                "server_replay_ignore_payload_params" => {
                    replay.ignore_payload_params.push(text()?.to_string())
                }
                "server_replay_ignore_host" => replay.ignore_host = parse_bool(name, value)?,
                "server_replay_ignore_port" => replay.ignore_port = parse_bool(name, value)?,
                "mode" => (mode, mode_listen) = parse_mode(text()?).map(|(m, l)| (Some(m), l))?,
                "listen_host" => listen_host = Some(text()?.to_string()),
                "listen_port" => {
                    listen_port = Some(
                        text()?
                            .parse()
                            .map_err(|_| format!("--set listen_port: invalid port {value:?}"))?,
                    )
                }
                "ssl_insecure" => ssl_insecure = parse_bool(name, value)?,
                "keep_host_header" => keep_host_header = parse_bool(name, value)?,
                // We always serve until told to stop (or --exit-when-done), and connect upstream
                // lazily, which is what offline replay needs; these are accepted and have no effect.
                "keepserving" | "connection_strategy" | "upstream_cert" => {}
                other => return Err(format!("--set {other}: unknown or unsupported option")),
            }
        }
        replay.unmatched = if kill {
            Unmatched::Kill
        } else {
            extra.unwrap_or_default()
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
        let io = match self.io.as_str() {
            "auto" => IoDriver::Auto,
            "uring" => IoDriver::Uring,
            "epoll" => IoDriver::Epoll,
            other => return Err(format!("--io {other:?} is not one of auto, uring, epoll")),
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
        if files.is_empty() {
            return Err("nothing to replay: give a recording with -S FILE".to_string());
        }
        let mode_given = mode.is_some();
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
                verbose: self.verbose,
                quiet: self.quiet,
                exit_when_done: self.exit_when_done,
                upstream_ca: self.upstream_ca.clone(),
                ssl_insecure,
                upstream_timeout: std::time::Duration::from_secs_f64(self.upstream_timeout),
                keep_host_header,
                reuse_port: self.reuse_port,
            },
            mode_given,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<ServeConfig, String> {
        let mut all = vec!["uringreplay"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all)
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
    fn a_listen_address_inside_the_mode_spec_is_used() {
        let c = config(&["-S", "a", "--mode", "reverse:http://h:81@127.0.0.2:9000"]).unwrap();
        assert_eq!(
            (c.serve.listen_host.as_str(), c.serve.listen_port),
            ("127.0.0.2", 9000)
        );
        assert!(matches!(c.serve.mode, ProxyMode::Reverse(ref t) if t.port == 81 && t.host == "h"));
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
