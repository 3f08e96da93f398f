//! Which recorded response answers a request, and the exact bytes to send (spec §b–§d, §f).
#![forbid(unsafe_code)]

pub mod cookie;
pub mod date;
pub mod form;
pub mod key;
pub mod text;
