//! The client byte stream a connection driver runs over: any monoio stream that reads (with
//! cancellation), writes and gathers, plus one non-blocking "take what has arrived" used when a
//! stop or deadline cancels a pending read. Plain TCP implements it here (its vectored write
//! sends bodies straight from the mapping); TLS towards the client (`super::client_tls`, over
//! `tls::TlsSession`) implements the same trait (its `drain_arrived` hands over decrypted bytes).

use std::os::fd::AsRawFd;

use monoio::io::{AsyncReadRent, AsyncWriteRent, CancelableAsyncReadRent};
use monoio::net::TcpStream;

/// A client connection's byte stream, for the connection driver.
pub trait Transport: AsyncReadRent + AsyncWriteRent + CancelableAsyncReadRent {
    /// Moves what has already arrived into `input` without waiting (at most 1 MiB), so a stop
    /// answers the requests already received. Returns how many bytes it moved.
    fn drain_arrived(&mut self, input: &mut Vec<u8>) -> usize;

    /// The connection's (peer, local) socket addresses, where it has them: what a saved flow
    /// (`-w`) records of the client side. Called on the forward path only.
    fn addresses(&self) -> Option<(std::net::SocketAddr, std::net::SocketAddr)>;

    /// Whether a CONNECT on this stream can open a tunnel ([`Transport::into_tcp`] gives the
    /// TCP stream back): plain TCP only; a CONNECT inside TLS or inside a tunnel is refused.
    const TUNNELS: bool = false;

    /// The TCP stream itself, for a tunnel (`None` unless [`Transport::TUNNELS`]).
    fn into_tcp(self) -> Option<TcpStream>
    where
        Self: Sized,
    {
        None
    }
}

impl Transport for TcpStream {
    const TUNNELS: bool = true;

    fn into_tcp(self) -> Option<TcpStream> {
        Some(self)
    }

    fn addresses(&self) -> Option<(std::net::SocketAddr, std::net::SocketAddr)> {
        Some((self.peer_addr().ok()?, self.local_addr().ok()?))
    }

    fn drain_arrived(&mut self, input: &mut Vec<u8>) -> usize {
        const MOST: usize = 1024 * 1024;
        let start = input.len();
        while input.len() - start < MOST {
            if input.capacity() - input.len() < 4096 {
                input.reserve(16 * 1024);
            }
            let spare = input.spare_capacity_mut();
            // SAFETY: recv writes at most `spare.len()` bytes into `input`'s spare capacity,
            // which nothing else borrows; the fd belongs to `self`, alive for this call.
            // MSG_DONTWAIT: it never blocks the worker.
            let n = unsafe {
                libc::recv(
                    self.as_raw_fd(),
                    spare.as_mut_ptr().cast(),
                    spare.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            let Ok(n @ 1..) = usize::try_from(n) else {
                break;
            };
            // SAFETY: the kernel initialised the first `n` bytes of the spare capacity.
            unsafe { input.set_len(input.len() + n) };
        }
        input.len() - start
    }
}
