//! The `Via` field this process adds to every request it forwards (RFC 9110 §7.6.3), and the
//! loop check: a request that arrives carrying our own entry went round back to us.
#![forbid(unsafe_code)]

/// This process's `Via` entry: `received-by` is `uringreplay-` and a random token fixed at
/// start-up, so two copies of uringreplay (a chain of them) are told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    received_by: Box<str>,
}

impl Via {
    /// The entry for the process whose random token is `token`.
    pub fn new(token: u64) -> Via {
        Via {
            received_by: format!("uringreplay-{token:016x}").into(),
        }
    }

    /// The `received-by` pseudonym, e.g. `uringreplay-0123456789abcdef`.
    pub fn received_by(&self) -> &str {
        &self.received_by
    }

    /// Appends `Via: 1.MINOR RECEIVED-BY` (the protocol of the request as received). Written
    /// after the client's fields, so an existing `Via` keeps its entries first, as §7.6.3 asks.
    pub fn write_field(&self, out: &mut Vec<u8>, client_minor: u8) {
        out.extend_from_slice(b"Via: 1.");
        out.push(b'0' + client_minor.min(9));
        out.push(b' ');
        out.extend_from_slice(self.received_by.as_bytes());
        out.extend_from_slice(b"\r\n");
    }

    /// Whether some `Via` entry of `headers` is ours: the request was forwarded by this very
    /// process and came back to it.
    pub fn seen_in(&self, headers: &[httparse::Header<'_>]) -> bool {
        headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("via"))
            .flat_map(|h| h.value.split(|&b| b == b','))
            .any(|entry| {
                entry
                    .split(|b| b.is_ascii_whitespace())
                    .filter(|word| !word.is_empty())
                    .nth(1)
                    .is_some_and(|by| by.eq_ignore_ascii_case(self.received_by.as_bytes()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn via(value: &str) -> httparse::Header<'_> {
        httparse::Header {
            name: "Via",
            value: value.as_bytes(),
        }
    }

    #[test]
    fn the_field_names_the_client_protocol_and_this_process() {
        let v = Via::new(0xabc);
        let mut out = Vec::new();
        v.write_field(&mut out, 0);
        assert_eq!(out, b"Via: 1.0 uringreplay-0000000000000abc\r\n");
    }

    #[test]
    fn only_our_own_entry_is_a_loop() {
        let v = Via::new(7);
        let ours = v.received_by().to_string();
        assert!(v.seen_in(&[via(&format!("1.1 {ours}"))]));
        assert!(v.seen_in(&[via(&format!("1.0 fred, 1.1  {ours} (comment)"))]));
        assert!(!v.seen_in(&[via("1.1 uringreplay-0000000000000008")]));
        assert!(!v.seen_in(&[via(&ours)]));
        assert!(!v.seen_in(&[httparse::Header {
            name: "X-Via",
            value: format!("1.1 {ours}").as_bytes(),
        }]));
    }
}
