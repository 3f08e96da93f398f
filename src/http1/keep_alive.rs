//! The keep-alive rule (spec §f.5), in one place: whether a connection closes after a message,
//! for requests from clients, recorded responses we replay, and upstream responses we relay.
//! Callers find the `Connection` tokens (each with the comparison its spec rule asks for) and
//! the facts of the message; the decision is made here.
#![forbid(unsafe_code)]

/// Spec §f.5 rules 2 and 3: a message asks to close its connection when it carries a `close`
/// token, or carries no `keep-alive` token and its version is not persistent by default
/// (`persistent_version`: HTTP/1.1, or HTTP/2 for a recorded response).
pub fn message_closes(persistent_version: bool, close: bool, keep_alive: bool) -> bool {
    close || (!keep_alive && !persistent_version)
}

/// Whether the connection closes after the answer to a request that asked to close
/// (`wants_close`, [`message_closes`]): `--keep-alive` keeps an HTTP/1.0 client that asked for
/// keep-alive in any case (`ab -k` sends `Keep-Alive`, which rule 2 reads as a close).
pub fn client_closes(wants_close: bool, http10_keep_alive: bool, keep_alive_option: bool) -> bool {
    wants_close && !(keep_alive_option && http10_keep_alive)
}

/// Whether the connection closes after a response (spec §f.5): its body runs until the close
/// (rule 1; not for a HEAD request, whose answer has no body), the request asked to close, or
/// the response itself asks to.
pub fn response_closes(
    body_until_close: bool,
    is_head: bool,
    request_closes: bool,
    response_closes: bool,
) -> bool {
    (!is_head && body_until_close) || request_closes || response_closes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_wins_then_keep_alive_then_the_version() {
        assert!(message_closes(true, true, true));
        assert!(!message_closes(false, false, true));
        assert!(message_closes(false, false, false));
        assert!(!message_closes(true, false, false));
    }

    #[test]
    fn keep_alive_option_keeps_only_http10_clients_that_asked() {
        assert!(!client_closes(true, true, true));
        assert!(client_closes(true, true, false));
        assert!(client_closes(true, false, true));
        assert!(!client_closes(false, false, false));
    }

    #[test]
    fn a_body_until_close_closes_except_for_head() {
        assert!(response_closes(true, false, false, false));
        assert!(!response_closes(true, true, false, false));
        assert!(response_closes(false, true, true, false));
        assert!(response_closes(false, false, false, true));
        assert!(!response_closes(false, false, false, false));
    }
}
