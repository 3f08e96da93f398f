//! Plain configuration data shared by the CLI, the replay core and the server.
//!
//! Nothing here parses or validates command lines (that is `cli`) or acts on the options.
#![forbid(unsafe_code)]

/// What to do with a request that no recorded flow answers (mitmproxy `server_replay_extra`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Unmatched {
    /// Send it to the upstream (mitmproxy's default).
    #[default]
    Forward,
    /// Close the client connection without a byte.
    Kill,
    /// Answer with an empty response of this status (204, 400, 404 or 500; spec §c.5).
    Status(u16),
}

/// Which recorded flow answers a repeated request (spec §c.3, plus our extensions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Each recorded flow once, in recording order (mitmproxy's default, "pop").
    #[default]
    Consume,
    /// Always the first recorded flow with a response (mitmproxy `server_replay_reuse`/`nopop`).
    First,
    /// Round-robin over the recorded responses of a key, forever.
    Cycle,
    /// Always the newest recorded flow with a response (mitmproxy issue 8139).
    Last,
}

/// How requests are matched to recordings and how responses are refreshed (spec §a.1, §b, §d).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Header names whose values are part of the key (`server_replay_use_headers`, `--rheader`).
    pub use_headers: Vec<String>,
    /// Leave the request body out of the key (`server_replay_ignore_content`).
    pub ignore_content: bool,
    /// Query parameter names left out of the key (`server_replay_ignore_params`).
    pub ignore_params: Vec<String>,
    /// Form field names left out of the key (`server_replay_ignore_payload_params`).
    pub ignore_payload_params: Vec<String>,
    /// Leave the host out of the key (`server_replay_ignore_host`).
    pub ignore_host: bool,
    /// Leave the port out of the key (`server_replay_ignore_port`).
    pub ignore_port: bool,
    /// Which flow answers a repeated request.
    pub order: Order,
    /// Shift dates and cookie expiry to now (`server_replay_refresh`, on by default).
    pub refresh: bool,
    /// What to do when nothing matches.
    pub unmatched: Unmatched,
    /// `--keep-alive`: replayed responses whose recording asks to close (`Connection: close`, or
    /// HTTP/1.0 without keep-alive) keep the connection open instead (spec §f.5 rule 3 overridden).
    pub keep_alive: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            use_headers: Vec::new(),
            ignore_content: false,
            ignore_params: Vec::new(),
            ignore_payload_params: Vec::new(),
            ignore_host: false,
            ignore_port: false,
            order: Order::Consume,
            refresh: true,
            unmatched: Unmatched::Forward,
            keep_alive: false,
        }
    }
}

/// Which I/O driver the workers run (`--io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoDriver {
    /// io_uring where the kernel allows it, else epoll.
    #[default]
    Auto,
    /// io_uring only (fail if unavailable).
    Uring,
    /// epoll (monoio's legacy driver).
    Epoll,
}

/// Whether the direct ring looks a turn's requests up ahead of serving them (`--look-ahead`,
/// [`crate::replay::lookahead`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LookAhead {
    /// For recordings of many flows and bytes ([`crate::replay::lookahead::pays_for`]).
    #[default]
    Auto,
    /// Whatever the recording's size.
    Always,
    /// Never.
    Never,
}

/// How requests name their destination (spec §e): regular, or reverse to one
/// [`crate::upstream::Origin`] (`--mode reverse:SCHEME://HOST[:PORT]`). One type with the
/// forwarding side's.
pub type ProxyMode = crate::upstream::Mode;

/// How the server runs (everything that is not about matching).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// Address to listen on.
    pub listen_host: String,
    /// Port to listen on (0: any free port).
    pub listen_port: u16,
    /// Worker threads (one event loop each).
    pub threads: usize,
    /// I/O driver.
    pub io: IoDriver,
    /// On io_uring, serve plain HTTP/1 connections on each worker's direct ring (multishot
    /// receive, batched sends) rather than through monoio's ops; `--no-direct-ring`: false.
    pub direct_ring: bool,
    /// Answer a replayed request byte-identical to one answered before from the worker's repeat
    /// cache (`crate::exchange::repeat`); `--no-repeat-cache`: false.
    pub repeat_cache: bool,
    /// On the direct ring, start loading what a turn's requests will read before serving the
    /// first (`--look-ahead`).
    pub look_ahead: LookAhead,
    /// Proxy mode.
    pub mode: ProxyMode,
    /// Largest request body accepted.
    pub max_body: u64,
    /// Seconds a keep-alive connection may stay idle.
    pub idle_timeout_secs: u64,
    /// Seconds a started request head may take to arrive.
    pub header_timeout_secs: u64,
    /// Seconds a stop waits for open connections before the process exits anyway.
    pub shutdown_timeout_secs: u64,
    /// Seconds a client may take none of the bytes sent to it before its connection is reset
    /// (0: never).
    pub send_timeout_secs: u64,
    /// Print one line per request.
    pub verbose: bool,
    /// Print no periodic summary lines.
    pub quiet: bool,
    /// Exit once every recorded flow has been replayed.
    pub exit_when_done: bool,
    /// A PEM file of extra CA certificates trusted for https upstreams (`--upstream-ca`).
    pub upstream_ca: Option<std::path::PathBuf>,
    /// Accept any upstream certificate (`--ssl-insecure`, mitmproxy's `ssl_insecure`).
    pub ssl_insecure: bool,
    /// Time allowed to connect upstream and between two reads of its response.
    pub upstream_timeout: std::time::Duration,
    /// Reverse mode: send the client's Host upstream unchanged (mitmproxy's `keep_host_header`).
    pub keep_host_header: bool,
    /// Share the listen port with sockets already on it (`--reuse-port`), instead of refusing.
    pub reuse_port: bool,
    /// The listener's TLS: mitmproxy's `confdir` and `certs`.
    pub tls: crate::tls::TlsOptions,
    /// HTTP/2 towards clients (mitmproxy's `http2`): ALPN `h2` on TLS, h2c with prior knowledge.
    pub http2: bool,
    /// `-w FILE` / `--save-stream-file` (mitmproxy's `save_stream_file`): every forwarded
    /// exchange is saved there as a flow.
    pub save: Option<crate::capture::SaveTarget>,
    /// `--admin HOST:PORT`: where the admin endpoints listen (`None`: nowhere).
    pub admin: Option<String>,
    /// `--log-json FILE`: one JSON line per request goes there (`None`: no request log).
    pub log_json: Option<std::path::PathBuf>,
    /// `--log-sample N`: each worker logs one request in N (1: every request).
    pub log_sample: u64,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            listen_host: "127.0.0.1".to_string(),
            listen_port: 8080,
            threads: 1,
            io: IoDriver::Auto,
            direct_ring: true,
            repeat_cache: true,
            look_ahead: LookAhead::Auto,
            mode: ProxyMode::Regular,
            max_body: 16 * 1024 * 1024,
            idle_timeout_secs: 60,
            header_timeout_secs: 10,
            shutdown_timeout_secs: 10,
            send_timeout_secs: 60,
            verbose: false,
            quiet: false,
            exit_when_done: false,
            upstream_ca: None,
            ssl_insecure: false,
            upstream_timeout: std::time::Duration::from_secs(30),
            keep_host_header: false,
            reuse_port: false,
            tls: crate::tls::TlsOptions::default(),
            http2: true,
            save: None,
            admin: None,
            log_json: None,
            log_sample: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn reverse_specs_parse_like_mitmproxy() {
        use crate::upstream::{Origin, Scheme};
        let t = Origin::parse_reverse_spec("http://127.0.0.1:29411").unwrap();
        assert_eq!(
            (t.scheme, &*t.host, t.port),
            (Scheme::Http, "127.0.0.1", 29411)
        );
        assert_eq!(t.host_header(), "127.0.0.1:29411");
        assert_eq!(t.url().to_string(), "http://127.0.0.1:29411");
        let t = Origin::parse_reverse_spec("example.com/").unwrap();
        assert_eq!((t.scheme, t.port), (Scheme::Https, 443));
        assert_eq!(t.host_header(), "example.com");
        let t = Origin::parse_reverse_spec("http://[::1]:81").unwrap();
        assert_eq!((&*t.host, t.port), ("::1", 81));
        assert_eq!(t.url().to_string(), "http://[::1]:81");
        assert!(Origin::parse_reverse_spec("http://h/path").is_err());
        assert!(Origin::parse_reverse_spec("ftp://h").is_err());
    }
}
