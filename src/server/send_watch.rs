//! `--send-timeout` (nginx's `send_timeout`): a client that takes nothing of what is sent to it
//! for that long loses its connection, so a client that stops reading cannot hold a connection,
//! its answer's buffers and a pending send forever.
//!
//! Nothing on the request path: the worker's sweeper asks the kernel, every few ticks, for each
//! open connection's TCP send queue and acknowledged byte count (`TCP_INFO`). A connection with
//! bytes queued whose acknowledged count stays the same for the timeout is reset (`SO_LINGER`
//! 0, then `shutdown`, which ends its pending send or read with an error: the driver then drops
//! it). A slow client that keeps reading keeps its connection. [`SendWatch`] is the decision,
//! kept apart from the system calls so fake ticks test it.

use std::os::fd::RawFd;

/// What the sweeper knows of one connection's sending, between its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWatch {
    /// The acknowledged byte count at the last check that saw it change (or saw the queue
    /// start), and that check's tick; `None` while nothing is queued.
    since: Option<(u64, u64)>,
}

/// What one check of a connection's socket found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendState {
    /// Bytes are queued: sent and not acknowledged, or not sent yet.
    pub queued: bool,
    /// Bytes the client has acknowledged so far.
    pub acked: u64,
}

impl SendWatch {
    /// Nothing queued seen yet.
    pub const IDLE: SendWatch = SendWatch { since: None };

    /// Takes the check made at tick `now`; true when the client has acknowledged nothing for
    /// `timeout` ticks while bytes were queued (the connection is to be ended).
    pub fn observe(&mut self, now: u64, state: SendState, timeout: u64) -> bool {
        if !state.queued {
            self.since = None;
            return false;
        }
        match self.since {
            Some((acked, at)) if acked == state.acked => now.saturating_sub(at) >= timeout,
            _ => {
                self.since = Some((state.acked, now));
                false
            }
        }
    }
}

/// The send state of TCP socket `fd` (`None`: not a TCP socket, or closed).
pub fn send_state(fd: RawFd) -> Option<SendState> {
    // SAFETY: tcp_info is plain data (integers only), for which all zeros is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which we own, and updates
    // `len`; an fd that is not a socket only makes it fail.
    let got = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    if got != 0 {
        return None;
    }
    Some(SendState {
        queued: info.tcpi_unacked > 0 || info.tcpi_notsent_bytes > 0,
        acked: info.tcpi_bytes_acked,
    })
}

/// Ends a connection whose client stopped taking its bytes: a reset on close (the queued bytes
/// would never be taken), and a shutdown that makes its pending send and read fail now.
pub fn end(fd: RawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads one linger struct we own; shutdown only changes the socket's
    // state. The caller holds the connection open (its driver closes it after this fails its
    // pending I/O).
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queued(acked: u64) -> SendState {
        SendState {
            queued: true,
            acked,
        }
    }

    #[test]
    fn a_client_that_takes_nothing_for_the_timeout_is_ended() {
        let mut w = SendWatch::IDLE;
        assert!(!w.observe(10, queued(100), 4));
        assert!(!w.observe(12, queued(100), 4));
        assert!(!w.observe(13, queued(100), 4));
        assert!(w.observe(14, queued(100), 4));
    }

    #[test]
    fn progress_restarts_the_timeout() {
        let mut w = SendWatch::IDLE;
        assert!(!w.observe(0, queued(0), 4));
        assert!(!w.observe(3, queued(1), 4));
        assert!(!w.observe(6, queued(1), 4));
        assert!(w.observe(7, queued(1), 4));
    }

    #[test]
    fn an_empty_queue_is_never_ended_and_forgets_the_wait() {
        let mut w = SendWatch::IDLE;
        assert!(!w.observe(0, queued(5), 4));
        let idle = SendState {
            queued: false,
            acked: 5,
        };
        for now in 1..100 {
            assert!(!w.observe(now, idle, 4));
        }
        // Queued again with the same count: the wait starts over.
        assert!(!w.observe(100, queued(5), 4));
        assert!(!w.observe(103, queued(5), 4));
        assert!(w.observe(104, queued(5), 4));
    }

    #[test]
    fn the_state_of_a_real_socket_is_read() {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let before = send_state(client.as_raw_fd()).unwrap();
        assert!(!before.queued);
        client.write_all(b"hello").unwrap();
        // Loopback acknowledges at once; the count covers the bytes once acknowledged.
        let mut after = send_state(client.as_raw_fd()).unwrap();
        for _ in 0..1_000_000 {
            if !after.queued {
                break;
            }
            std::thread::yield_now();
            after = send_state(client.as_raw_fd()).unwrap();
        }
        assert_eq!(after.acked, before.acked + 5);
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(send_state(udp.as_raw_fd()), None);
    }
}
