//! The server side of HTTP/1.x, sans-IO: bytes in, requests and response bytes out.
//!
//! It knows nothing about flows, sockets or clocks. [`request`] parses one request (head and body
//! framing, limits); [`conn`] is one connection's state machine on top of it (pipelining,
//! `Expect: 100-continue`, keep-alive, error answers).
#![forbid(unsafe_code)]

pub mod conn;
pub mod request;

pub use conn::{write_error, write_plain, Conn, Step};
pub use request::{split_absolute, split_authority, Limits, Request, RequestError, MAX_HEADERS};
