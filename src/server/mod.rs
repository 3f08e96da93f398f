//! The I/O drivers: everything that touches sockets, rings, threads, clocks and the allocator.
//!
//! Nothing in the core (`flowfile`, `replay`, `http1`, `upstream`) imports this module.

pub mod heap;
pub mod upstream_io;
pub mod upstream_tls;
