//! The server side of HTTP/1.x, sans-IO: bytes in, requests and response bytes out.
//!
//! It knows nothing about flows, sockets or clocks. [`request`] parses one request (head and body
//! framing, limits); [`chunked`] decodes the chunked transfer coding, strictly and incrementally
//! (the upstream response relay uses it too); [`conn`] is one connection's state machine on top
//! of them (pipelining, `Expect: 100-continue`, keep-alive, error answers).
#![forbid(unsafe_code)]

pub mod chunked;
pub mod conn;
pub mod request;

pub use chunked::{ChunkError, ChunkedDecoder};
pub use conn::{write_error, write_plain, Conn, Step};
pub use request::{
    header_slots, split_absolute, split_authority, BodyState, HeaderSlots, Limits, Request,
    RequestError, MAX_HEADERS,
};
