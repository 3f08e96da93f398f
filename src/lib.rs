//! uringreplay: answers HTTP requests with the responses recorded in mitmproxy flow files, the way
//! `mitmdump -S` (server-side replay) does, on per-core io_uring loops.
//!
//! The core (`flowfile`, `replay`, `http1`, `http2`, `upstream`) takes bytes and `now` and returns bytes and
//! decisions: it opens no socket, reads no clock and touches no file (the one exception is the
//! memory mapping in `flowfile/mod.rs`). The drivers in `server` do all I/O.
//!
//! # Layout
//! - [`flowfile`]: recordings, from bytes: tnetstring, mitmproxy formats (0,11)–21, views of flows.
//! - [`config`]: plain option data shared by everything else.
//! - [`admin`]: the admin endpoints (metrics, status, misses, unused, reset, reload), sans-IO.
//! - [`capture`]: the recorder (`-w`, `convert`): forwarded exchanges written as format-21 flows
//!   by a writer thread behind a bounded queue.
//! - [`cli`]: the command line.
//! - [`convert`]: `uringreplay convert`: one format-21 file from HAR and flow files.
//! - [`inspect`]: the `uringreplay inspect` listing and summary.
//! - [`launch`]: a serve run's start-up (load, infer the mode, report) for `main`.
//! - [`exchange`]: one request to one answer for every protocol: route, decide, reply description.
//! - [`replay`]: which recorded response answers a request (match key, index, consume order) and
//!   the exact response bytes (pre-rendered heads, refresh by fixed-width date patches).
//! - [`http1`]: the server side of HTTP/1.x, sans-IO (parsing, framing, keep-alive, limits).
//! - [`http2`]: the server side of HTTP/2, sans-IO (frames, HPACK, streams, flow control, limits).
//! - [`reqlog`]: `--log-json` lines: one JSON object per request, formatted into a buffer.
//! - [`stats`]: counters, summary and report lines.
//! - [`upstream`]: forwarding unmatched requests, sans-IO (routes, request writer, response relay, pool).
//! - [`server`]: the I/O drivers (sockets, rings, threads, the counting allocator).
//! - `fuzzing` (hidden): the fuzz targets, shared by `fuzz/` and `tests/fuzz_corpus.rs`.

pub mod admin;
pub mod capture;
pub mod cli;
pub mod config;
pub mod convert;
pub mod exchange;
pub mod flowfile;
#[doc(hidden)]
pub mod fuzzing;
pub mod http1;
pub mod http2;
pub mod hugepages;
pub mod inspect;
pub mod launch;
pub mod prefetch;
pub mod replay;
pub mod reqlog;
pub mod server;
pub mod stats;
pub mod tls;
pub mod upstream;
