//! `GET /metrics`: the Prometheus text exposition format (version 0.0.4), written by hand.
//!
//! Every family has its `# HELP` and `# TYPE` lines; label values are escaped (`\\`, `\"`,
//! `\n`); a histogram has cumulative `_bucket` series ending with `le="+Inf"`, then `_sum` and
//! `_count`, whose value equals the `+Inf` bucket (both come from one sum of the buckets).
#![forbid(unsafe_code)]

use std::fmt::Write as _;

use crate::stats::{ServiceTimes, ServiceTotals, Totals, SERVICE_BUCKETS};

/// What a scrape reports, summed over the cores at scrape time.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// The workers' counters added up (with the replayer's flows left).
    pub totals: Totals,
    /// Connections open now.
    pub open_connections: u64,
    /// Service times added up.
    pub service: ServiceTotals,
    /// Reloads that swapped in a new recording.
    pub reloads_ok: u64,
    /// Reloads that failed (the recording kept serving).
    pub reloads_failed: u64,
    /// Unmatched requests seen by the miss logs.
    pub misses_seen: u64,
}

/// Escapes a label value (`\`, `"`, newline).
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Writes one family header.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// The exposition text of `scrape`.
pub fn render(scrape: &Scrape) -> String {
    let t = &scrape.totals;
    let mut out = String::with_capacity(4096);
    family(
        &mut out,
        "uringreplay_requests_total",
        "counter",
        "Requests handled, by outcome.",
    );
    for (outcome, n) in [
        ("replayed", t.replayed),
        ("forwarded", t.forwarded),
        ("killed", t.killed),
        ("status", t.status_answered),
        ("rejected", t.rejected),
    ] {
        let _ = writeln!(
            out,
            "uringreplay_requests_total{{outcome=\"{}\"}} {n}",
            escape_label(outcome)
        );
    }
    family(
        &mut out,
        "uringreplay_flows_remaining",
        "gauge",
        "Recorded flows not yet consumed (consume order; constant otherwise).",
    );
    let _ = writeln!(out, "uringreplay_flows_remaining {}", t.flows_left);
    family(
        &mut out,
        "uringreplay_connections_open",
        "gauge",
        "Client connections open now.",
    );
    let _ = writeln!(
        out,
        "uringreplay_connections_open {}",
        scrape.open_connections
    );
    family(
        &mut out,
        "uringreplay_connections_total",
        "counter",
        "Client connections accepted.",
    );
    let _ = writeln!(out, "uringreplay_connections_total {}", t.connections);
    family(
        &mut out,
        "uringreplay_tls_handshake_failures_total",
        "counter",
        "Client connections whose TLS handshake failed.",
    );
    let _ = writeln!(
        out,
        "uringreplay_tls_handshake_failures_total {}",
        t.tls_failed
    );
    family(
        &mut out,
        "uringreplay_send_timeouts_total",
        "counter",
        "Client connections reset because the client took nothing for --send-timeout.",
    );
    let _ = writeln!(out, "uringreplay_send_timeouts_total {}", t.send_timeouts);
    family(
        &mut out,
        "uringreplay_direct_ring_connections_total",
        "counter",
        "Client connections served on a worker's direct ring (plain HTTP/1 and h2c on io_uring), \
         at least until a forward, CONNECT or TLS handed them to monoio.",
    );
    let _ = writeln!(
        out,
        "uringreplay_direct_ring_connections_total {}",
        t.ring_connections
    );
    family(
        &mut out,
        "uringreplay_direct_ring_handed_over_total",
        "counter",
        "Connections a worker's direct ring handed to monoio to be served there (a forward, a \
         CONNECT, a TLS ClientHello, a timer that fired, the stop, a kernel that refuses \
         multishot receives).",
    );
    let _ = writeln!(
        out,
        "uringreplay_direct_ring_handed_over_total {}",
        t.ring_handed_over
    );
    family(
        &mut out,
        "uringreplay_repeat_cache_answers_total",
        "counter",
        "Replayed requests answered from a worker's repeat cache: byte-identical to a request \
         answered before, so neither parsed nor matched again (also counted as replayed).",
    );
    let _ = writeln!(out, "uringreplay_repeat_cache_answers_total {}", t.repeats);
    family(
        &mut out,
        "uringreplay_looked_ahead_total",
        "counter",
        "Requests whose likely flow the direct ring's look-ahead found and started to load \
         before serving its turn (--look-ahead).",
    );
    let _ = writeln!(out, "uringreplay_looked_ahead_total {}", t.looked_ahead);
    family(
        &mut out,
        "uringreplay_upstream_errors_total",
        "counter",
        "Forwarded requests that failed upstream (502/504 or cut off).",
    );
    let _ = writeln!(
        out,
        "uringreplay_upstream_errors_total {}",
        t.upstream_errors
    );
    family(
        &mut out,
        "uringreplay_reloads_total",
        "counter",
        "Recording reloads (POST /reload, SIGHUP), by result.",
    );
    let _ = writeln!(
        out,
        "uringreplay_reloads_total{{result=\"ok\"}} {}",
        scrape.reloads_ok
    );
    let _ = writeln!(
        out,
        "uringreplay_reloads_total{{result=\"failed\"}} {}",
        scrape.reloads_failed
    );
    family(
        &mut out,
        "uringreplay_misses_total",
        "counter",
        "Unmatched requests noted for /misses (explained or only counted).",
    );
    let _ = writeln!(out, "uringreplay_misses_total {}", scrape.misses_seen);
    family(
        &mut out,
        "uringreplay_log_dropped_total",
        "counter",
        "--log-json lines dropped because the log writer fell behind.",
    );
    let _ = writeln!(out, "uringreplay_log_dropped_total {}", t.log_dropped);
    let name = "uringreplay_service_seconds";
    family(
        &mut out,
        name,
        "histogram",
        "Time from a request's last byte to its answer handed to the kernel.",
    );
    let mut cumulative = 0u64;
    for i in 0..SERVICE_BUCKETS {
        cumulative += scrape.service.buckets[i];
        let le = ServiceTimes::bound_nanos(i) as f64 / 1e9;
        let _ = writeln!(out, "{name}_bucket{{le=\"{le:e}\"}} {cumulative}");
    }
    cumulative += scrape.service.buckets[SERVICE_BUCKETS];
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(
        out,
        "{name}_sum {:e}",
        scrape.service.sum_nanos as f64 / 1e9
    );
    let _ = writeln!(out, "{name}_count {cumulative}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Counters;

    /// The families and samples, parsed by a real exposition-format parser.
    fn parse(text: &str) -> prometheus_parse::Scrape {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        prometheus_parse::Scrape::parse(lines).expect("valid exposition text")
    }

    fn value(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> f64 {
        let sample = scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .unwrap_or_else(|| panic!("no sample {name} {label:?}"));
        match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn the_exposition_parses_and_its_counts_are_the_sums_over_cores() {
        let cores = [Counters::default(), Counters::default()];
        for _ in 0..3 {
            Counters::bump(&cores[0].replayed);
        }
        Counters::bump(&cores[1].replayed);
        Counters::bump(&cores[1].forwarded);
        Counters::bump(&cores[1].upstream_errors);
        Counters::bump(&cores[0].killed);
        Counters::bump(&cores[0].rejected);
        Counters::bump(&cores[1].status_answered);
        cores[0].service.record(1_500); // 2.048 µs bucket
        cores[1].service.record(1_000_000); // 1.048576 ms bucket
        cores[1].service.record(u64::MAX / 4); // over every bound
        let mut service = ServiceTotals::default();
        cores.iter().for_each(|c| service.add(&c.service));
        let text = render(&Scrape {
            totals: Totals::sum(&cores, 7),
            open_connections: 2,
            service,
            reloads_ok: 1,
            reloads_failed: 2,
            misses_seen: 3,
        });
        let s = parse(&text);
        let outcome = |o| value(&s, "uringreplay_requests_total", Some(("outcome", o)));
        assert_eq!(outcome("replayed"), 4.0);
        assert_eq!(outcome("forwarded"), 1.0);
        assert_eq!(outcome("killed"), 1.0);
        assert_eq!(outcome("status"), 1.0);
        assert_eq!(outcome("rejected"), 1.0);
        assert_eq!(value(&s, "uringreplay_flows_remaining", None), 7.0);
        assert_eq!(value(&s, "uringreplay_connections_open", None), 2.0);
        assert_eq!(value(&s, "uringreplay_upstream_errors_total", None), 1.0);
        assert_eq!(
            value(&s, "uringreplay_reloads_total", Some(("result", "failed"))),
            2.0
        );
        assert_eq!(
            value(&s, "uringreplay_reloads_total", Some(("result", "ok"))),
            1.0
        );
        let hist = s
            .samples
            .iter()
            .find(|x| x.metric == "uringreplay_service_seconds")
            .expect("the histogram");
        let prometheus_parse::Value::Histogram(buckets) = &hist.value else {
            panic!("not a histogram: {:?}", hist.value);
        };
        let count_le = |le: f64| {
            buckets
                .iter()
                .find(|b| (b.less_than - le).abs() < le * 1e-9)
                .map(|b| b.count)
        };
        assert_eq!(count_le(2.048e-6), Some(1.0));
        assert_eq!(count_le(1.048576e-3), Some(2.0));
        assert_eq!(buckets.last().map(|b| b.less_than), Some(f64::INFINITY));
        assert_eq!(buckets.last().map(|b| b.count), Some(3.0));
        assert!(text.contains("uringreplay_service_seconds_count 3\n"));
        strict_grammar(&text);
    }

    /// Checks every line against the text format's grammar (the parser above is lenient): a
    /// `# HELP`/`# TYPE` line, or `name{label="value",…} value`; every sample after its family's
    /// `# TYPE`, each family typed once; the text ends with a newline.
    fn strict_grammar(text: &str) {
        let is_name = |n: &str, colon: bool| {
            let mut chars = n.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
        };
        assert!(text.ends_with('\n'));
        let mut typed: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect("HELP name text");
                assert!(is_name(name, true) && !help.is_empty(), "{line}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
                assert!(is_name(name, true), "{line}");
                assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind));
                assert!(typed.iter().all(|(n, _)| n != name), "typed twice: {line}");
                typed.push((name.to_string(), kind.to_string()));
            } else {
                let (series, value) = line.rsplit_once(' ').expect("a sample");
                assert!(value.parse::<f64>().is_ok(), "{line}");
                let (name, labels) = match series.split_once('{') {
                    Some((n, l)) => (n, l.strip_suffix('}').expect("labels end with }")),
                    None => (series, ""),
                };
                assert!(is_name(name, true), "{line}");
                let mut rest = labels;
                while !rest.is_empty() {
                    let (label, after) = rest.split_once("=\"").expect("label=\"value\"");
                    assert!(is_name(label, false), "{line}");
                    let mut end = None;
                    let mut escaped = false;
                    for (i, c) in after.char_indices() {
                        match (escaped, c) {
                            (true, '\\' | '"' | 'n') => escaped = false,
                            (true, _) => panic!("bad escape: {line}"),
                            (false, '\\') => escaped = true,
                            (false, '"') => {
                                end = Some(i);
                                break;
                            }
                            _ => {}
                        }
                    }
                    let end = end.expect("closing quote");
                    rest = after[end + 1..]
                        .strip_prefix(',')
                        .unwrap_or(&after[end + 1..]);
                }
                let (family, kind) = typed.last().expect("a sample before any TYPE");
                let base = if kind == "histogram" {
                    ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|s| name.strip_suffix(s))
                        .unwrap_or(name)
                } else {
                    name
                };
                assert_eq!(base, family, "{line}");
            }
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
