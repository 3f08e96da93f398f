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
        }
    }
}
