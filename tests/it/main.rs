//! Integration tests: the real `uringreplay` binary on 127.0.0.1 (port 0, two threads), spoken to
//! with raw bytes.
// The tests are a driver: they read the clock for deadlines and to check refreshed dates.
#![allow(clippy::disallowed_methods)]

mod admin;
mod capture;
mod defaults;
mod engine;
mod forward;
mod h2;
mod hostile;
mod lifecycle;
mod options;
mod record;
mod replay;
mod reqlog;
mod ring;
mod support;
mod tls;
mod words;
