//! The server side of HTTP/2 (RFC 9113), sans-IO: bytes and `now` in, events and frames out.
//!
//! It knows nothing about sockets, clocks or flows. [`frame`] is the wire layout; [`hpack`] the
//! header compression (decoder from `loona-hpack`, bounded; encoder ours, allocation-free);
//! [`huffman`] the Huffman code (decoded before loona sees a block);
//! [`reply`] turns a recorded response's header list into what mitmproxy sends an HTTP/2 client;
//! [`conn`] is one connection's state machine (preface, SETTINGS, streams, flow control, limits).
#![forbid(unsafe_code)]

pub mod conn;
pub mod frame;
pub mod hpack;
pub mod huffman;
pub mod reply;

#[cfg(test)]
mod tests;

pub use conn::{
    preface, AnswerError, Conn, ConnError, Event, Limits, Preface, Request, MIN_READ_BUFFER,
};
pub use frame::ErrorCode;

/// The client connection preface (RFC 9113 §3.4), before the client's first SETTINGS frame.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
