//! Our own listen address: binding the workers' listeners (one SO_REUSEPORT group that no second
//! copy joins unless asked to) and telling whether a forward target is that address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::config::ServeOptions;

/// Why the listeners could not be bound (the message is the sentence the user sees).
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// `--listen-host` does not resolve.
    #[error("cannot resolve listen address {host}: {source}")]
    Resolve {
        /// The host as given.
        host: String,
        /// The resolver's error.
        source: std::io::Error,
    },
    /// `--listen-host` resolves to nothing.
    #[error("listen address {host} has no address")]
    NoAddress {
        /// The host as given.
        host: String,
    },
    /// Another socket (another copy of uringreplay, or anything else) holds the port.
    #[error(
        "port {port} is already in use (on {addr}): stop the other server or choose another port \
         with -p; to share the port with another uringreplay on purpose (a blue/green swap), \
         start this one with --reuse-port"
    )]
    InUse {
        /// The port.
        port: u16,
        /// The address we tried.
        addr: SocketAddr,
    },
    /// Any other socket error.
    #[error("cannot listen on {addr}: {source}")]
    Socket {
        /// The address we tried.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// A listening socket on `addr`; `reuse_port` sets SO_REUSEPORT before binding (joining any group
/// already on the port), otherwise the bind is exclusive.
fn listener(addr: SocketAddr, reuse_port: bool) -> Result<Socket, ListenError> {
    let failed = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            ListenError::InUse {
                port: addr.port(),
                addr,
            }
        } else {
            ListenError::Socket { addr, source }
        }
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(failed)?;
    socket.set_reuse_address(true).map_err(failed)?;
    socket.set_reuse_port(reuse_port).map_err(failed)?;
    // Accepted connections inherit TCP_NODELAY on Linux: one syscall here, none per connection.
    socket.set_nodelay(true).map_err(failed)?;
    socket.set_nonblocking(true).map_err(failed)?;
    socket.bind(&addr.into()).map_err(failed)?;
    socket.listen(4096).map_err(failed)?;
    Ok(socket)
}

/// Binds `options.threads` listeners on one address (the first picks the port when it is 0), one
/// per worker, in one SO_REUSEPORT group so the kernel spreads connections over the workers.
///
/// Unless `options.reuse_port`, the first listener is bound and listening *without*
/// SO_REUSEPORT, which the kernel refuses (EADDRINUSE, at bind or at listen) while any other
/// socket holds the port, reuse-port or not; only then is SO_REUSEPORT switched on for it and the
/// other workers' listeners join it. Two copies started at the same moment cannot both get there:
/// of two exclusive sockets only one can listen. What remains open: once the group exists, a
/// socket that binds with SO_REUSEPORT under the same user (another copy started with
/// `--reuse-port`, on purpose, or other software) joins it, as the kernel allows.
pub fn bind_all(options: &ServeOptions) -> Result<(SocketAddr, Vec<TcpListener>), ListenError> {
    let wanted = (options.listen_host.as_str(), options.listen_port)
        .to_socket_addrs()
        .map_err(|source| ListenError::Resolve {
            host: options.listen_host.clone(),
            source,
        })?
        .next()
        .ok_or_else(|| ListenError::NoAddress {
            host: options.listen_host.clone(),
        })?;
    let first = listener(wanted, options.reuse_port)?;
    let socket_error = |source| ListenError::Socket {
        addr: wanted,
        source,
    };
    if !options.reuse_port {
        // Set after listen: the socket is exclusive until now, and the workers' sockets below
        // join its group (the kernel checks the flag of sockets already bound when one joins).
        first.set_reuse_port(true).map_err(socket_error)?;
    }
    let bound = first
        .local_addr()
        .map_err(socket_error)?
        .as_socket()
        .ok_or_else(|| socket_error(std::io::ErrorKind::InvalidData.into()))?;
    let mut all = vec![TcpListener::from(first)];
    for _ in 1..options.threads {
        all.push(listener(bound, true)?.into());
    }
    Ok((bound, all))
}

/// Whether a connection to `target` (host as typed, IPv6 without brackets) on `port` would
/// reach our own listener `bound`.
///
/// The port must be ours, and the host one of: mitmproxy's own self-connect set (`localhost`,
/// `127.0.0.1`, `::1` and the listen address; see its `proxyserver.server_connect`), any name
/// under `localhost.` (RFC 6761), the same IP in another spelling (IPv4-mapped IPv6, or the
/// unspecified address, which Linux connects to loopback), or, when we listen on a wildcard
/// address, any address of this host (`is_local`). Other host names are not resolved at
/// start-up (a lookup could stall it); the run-time `Via` check catches them.
pub fn reaches_us(
    target_host: &str,
    port: u16,
    bound: SocketAddr,
    dual_stack: bool,
    is_local: impl Fn(IpAddr) -> bool,
) -> bool {
    if port != bound.port() {
        return false;
    }
    let host = target_host.trim_end_matches('.');
    if host.eq_ignore_ascii_case("localhost")
        || host
            .get(host.len().saturating_sub(".localhost".len())..)
            .is_some_and(|tail| tail.eq_ignore_ascii_case(".localhost"))
    {
        return true;
    }
    let Ok(ip) = host.parse::<IpAddr>() else {
        return false;
    };
    let ip = canonical(ip);
    let ours = unmapped(bound.ip());
    if ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || ip == IpAddr::V6(Ipv6Addr::LOCALHOST) {
        return true;
    }
    if ip == ours {
        return true;
    }
    match ours {
        IpAddr::V4(v4) if v4.is_unspecified() => ip.is_ipv4() && (ip.is_loopback() || is_local(ip)),
        IpAddr::V6(v6) if v6.is_unspecified() => {
            (ip.is_ipv6() || dual_stack) && (ip.is_loopback() || is_local(ip))
        }
        _ => false,
    }
}

/// An IPv4-mapped IPv6 address as IPv4.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// A target address as the address a connection to it reaches: IPv4-mapped IPv6 as IPv4, and
/// the unspecified address as loopback (Linux connects there).
fn canonical(ip: IpAddr) -> IpAddr {
    match unmapped(ip) {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// Whether `ip` is an address of this host: binding a UDP socket to it succeeds only then
/// (no packet is sent).
pub fn is_local_address(ip: IpAddr) -> bool {
    UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Whether an IPv6 wildcard listener also takes IPv4 connections (not IPV6_V6ONLY).
pub fn is_dual_stack(listener: &TcpListener) -> bool {
    SockRef::from(listener).only_v6().is_ok_and(|only| !only)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(addr: &str) -> SocketAddr {
        addr.parse().unwrap()
    }

    /// Pretends 10.1.2.3 is the only non-loopback address of this host.
    fn local(ip: IpAddr) -> bool {
        ip == IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))
    }

    #[test]
    fn the_same_port_and_address_in_any_spelling_is_us() {
        let bound = at("127.0.0.1:8080");
        for host in [
            "127.0.0.1",
            "localhost",
            "LocalHost.",
            "api.localhost",
            "::ffff:127.0.0.1",
            "0.0.0.0",
            "::1",
        ] {
            assert!(reaches_us(host, 8080, bound, false, local), "{host}");
        }
        assert!(!reaches_us("127.0.0.1", 8081, bound, false, local));
        assert!(!reaches_us("127.0.0.2", 8080, bound, false, local));
        assert!(!reaches_us("10.1.2.3", 8080, bound, false, local));
        assert!(!reaches_us("example.com", 8080, bound, false, local));
        assert!(!reaches_us("notlocalhost", 8080, bound, false, local));
    }

    #[test]
    fn a_wildcard_listener_is_reached_through_every_local_address() {
        let any4 = at("0.0.0.0:8080");
        assert!(reaches_us("10.1.2.3", 8080, any4, false, local));
        assert!(reaches_us("127.0.0.5", 8080, any4, false, local));
        assert!(!reaches_us("10.9.9.9", 8080, any4, false, local));
        let any6 = at("[::]:8080");
        assert!(reaches_us("10.1.2.3", 8080, any6, true, local));
        assert!(!reaches_us("10.1.2.3", 8080, any6, false, local));
        assert!(!reaches_us("10.1.2.3", 9999, any6, true, local));
    }

    #[test]
    fn loopback_addresses_are_local() {
        assert!(is_local_address(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        // TEST-NET-1 (RFC 5737) is never assigned to a host.
        assert!(!is_local_address(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))));
    }

    #[test]
    fn a_second_exclusive_bind_is_refused_and_reuse_port_joins() {
        let options = ServeOptions {
            listen_port: 0,
            threads: 2,
            ..ServeOptions::default()
        };
        let (bound, _listeners) = bind_all(&options).unwrap();
        let second = ServeOptions {
            listen_port: bound.port(),
            ..options.clone()
        };
        let err = bind_all(&second).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("port {} is already in use", bound.port())),
            "{err}"
        );
        let shared = ServeOptions {
            reuse_port: true,
            ..second
        };
        assert_eq!(bind_all(&shared).unwrap().0, bound);
    }
}
