//! The one buffer pump between our byte buffers and a rustls connection, client or server side:
//! TLS bytes in (`read_tls` + `process_new_packets`), plaintext out, plaintext in, TLS records out.
//! Used by the listener's [`super::session::TlsSession`] and by `server::upstream_tls`.

use std::io::{self, BufRead, Write};

use rustls::ConnectionCommon;

/// Feeds all of `input` (TLS bytes from the peer) to `conn`, record by record, moving the
/// plaintext each record yields to `plain` as it comes (rustls holds at most 16 KiB unread, so a
/// large input would otherwise stall). On a TLS error rustls has queued an alert: send
/// [`drain_tls`] before closing. An empty `input` is the peer's end of stream.
pub fn feed<D>(
    conn: &mut ConnectionCommon<D>,
    mut input: &[u8],
    plain: &mut Vec<u8>,
) -> Result<(), rustls::Error> {
    if input.is_empty() {
        // Lets rustls know whether close_notify came first.
        let _ = conn.read_tls(&mut input);
        return Ok(());
    }
    while !input.is_empty() {
        let taken = conn
            .read_tls(&mut input)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        if taken == 0 {
            // The peer's close_notify came: rustls takes nothing after it, so the rest is
            // dropped (looping would never end).
            break;
        }
        let state = conn.process_new_packets()?;
        if state.plaintext_bytes_to_read() > 0 {
            // Errors (a missing close_notify) show on the next read of the caller.
            let _ = take_plaintext(conn, plain);
        }
    }
    Ok(())
}

/// Appends the TLS records `conn` has queued to `out`; returns how many bytes.
pub fn drain_tls<D>(conn: &mut ConnectionCommon<D>, out: &mut Vec<u8>) -> usize {
    let mut n = 0;
    while conn.wants_write() {
        match conn.write_tls(out) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    n
}

/// Appends the plaintext `conn` has decrypted to `out`: `Some(n)` bytes (0: nothing buffered
/// yet), `None` once the peer's close_notify has come and everything before it was taken;
/// `Err(UnexpectedEof)` when the peer closed TCP without close_notify.
pub fn take_plaintext<D>(
    conn: &mut ConnectionCommon<D>,
    out: &mut Vec<u8>,
) -> io::Result<Option<usize>> {
    let mut total = 0;
    loop {
        // Chunk by chunk from rustls' own buffer: one copy, nothing zeroed first.
        let mut reader = conn.reader();
        let got = reader.fill_buf().map(|chunk| {
            out.extend_from_slice(chunk);
            chunk.len()
        });
        match got {
            Ok(0) if total == 0 => return Ok(None),
            Ok(0) => return Ok(Some(total)),
            Ok(n) => {
                reader.consume(n);
                total += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Some(total)),
            Err(e) if total > 0 && e.kind() == io::ErrorKind::UnexpectedEof => {
                return Ok(Some(total))
            }
            Err(e) => return Err(e),
        }
    }
}

/// Queues all of `plaintext` for encryption (rustls buffers what the handshake is not ready for).
pub fn send_plaintext<D>(conn: &mut ConnectionCommon<D>, plaintext: &[u8]) -> io::Result<()> {
    conn.writer().write_all(plaintext)
}
