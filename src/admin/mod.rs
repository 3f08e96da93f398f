//! See and steer a running replay (issue 16): the admin endpoints as a small router from method
//! and path to a response, and the lines for people that go with them.
//!
//! The router opens no socket and reads no clock: the engine serves it over HTTP/1.1 on
//! `--admin HOST:PORT` and hands it a [`Control`] (its view of the running server). Everything
//! here runs on the admin path only, never per replayed request.
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /metrics` | Prometheus text ([`metrics`]) |
//! | `GET /status` | JSON: totals, the recording (files, flows, format versions), options |
//! | `GET /misses` | JSON: recent unmatched requests with their nearest flow, reason and fix |
//! | `GET /unused` | JSON lines: recorded flows never served (`flow`, `method`, `url`) |
//! | `POST /reset` | every consume cursor back to the start |
//! | `POST /reload` | the `-S` files read again and swapped in ([`reload`]) |
//!
//! Another path is a 404, another method on a known path a 405 with `Allow`.
#![forbid(unsafe_code)]

pub mod metrics;
pub mod reload;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::config::{Order, Unmatched};
use crate::flowfile::LoadError;
use crate::replay::miss::{self, MissLog, Reason};
use crate::replay::{FlowId, Replayer};
use crate::stats::{Counters, ServiceTotals, Totals};
use reload::Reloader;

/// What the router needs from the running server (implemented by the engine's handle).
pub trait Control {
    /// The recording serving now.
    fn replayer(&self) -> Arc<Replayer>;
    /// Calls `each` with every worker's counters and miss log.
    fn for_each_core(&self, each: &mut dyn FnMut(&Counters, &MissLog));
    /// Client connections open now.
    fn open_connections(&self) -> u64;
    /// Swaps in a new recording: answers in flight finish from the old one.
    fn swap_recording(&self, new: Arc<Replayer>);
    /// Reads the recording again; the default reads the files with [`Reloader::load`].
    fn load(&self, reloader: &Reloader) -> Result<Arc<Replayer>, LoadError> {
        reloader.load()
    }
}

/// An admin answer: status, content type and body (the driver adds the framing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type` value.
    pub content_type: &'static str,
    /// `Allow` value of a 405.
    pub allow: Option<&'static str>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    fn json(status: u16, value: &Value) -> Response {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json",
            allow: None,
            body,
        }
    }

    fn text(status: u16, text: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            allow: None,
            body: format!("{text}\n").into_bytes(),
        }
    }
}

/// The admin state that is not per core: how to reload, and the reload counts.
#[derive(Debug)]
pub struct Admin {
    /// How to read the recording again (and the options, for `/status`).
    reloader: Reloader,
    /// Reloads that swapped in a new recording.
    reloads_ok: AtomicU64,
    /// Reloads that failed.
    reloads_failed: AtomicU64,
}

/// The endpoints: path, method.
const ROUTES: [(&str, &str); 6] = [
    ("/metrics", "GET"),
    ("/status", "GET"),
    ("/misses", "GET"),
    ("/unused", "GET"),
    ("/reset", "POST"),
    ("/reload", "POST"),
];

impl Admin {
    /// The admin of a server started with `reloader`'s files and options.
    pub fn new(reloader: Reloader) -> Admin {
        Admin {
            reloader,
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
        }
    }

    /// Answers `method` on `target` (origin form; a query is ignored).
    pub fn handle(&self, control: &dyn Control, method: &[u8], target: &[u8]) -> Response {
        let path = target.split(|&b| b == b'?').next().unwrap_or_default();
        let Some(&(route, allowed)) = ROUTES.iter().find(|(p, _)| p.as_bytes() == path) else {
            return Response::text(404, "not found: the admin paths are /metrics, /status, /misses, /unused, /reset (POST) and /reload (POST)");
        };
        let head_of_get = method == b"HEAD" && allowed == "GET";
        if method != allowed.as_bytes() && !head_of_get {
            let mut r = Response::text(405, &format!("{route} takes {allowed} only"));
            r.allow = Some(allowed);
            return r;
        }
        match route {
            "/metrics" => Response {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                allow: None,
                body: metrics::render(&self.scrape(control)).into_bytes(),
            },
            "/status" => Response::json(200, &self.status(control)),
            "/misses" => Response::json(200, &misses(control)),
            "/unused" => Response {
                status: 200,
                content_type: "application/x-ndjson",
                allow: None,
                body: unused_lines(&control.replayer()),
            },
            "/reset" => {
                let replayer = control.replayer();
                replayer.reset();
                Response::json(
                    200,
                    &json!({ "reset": true, "flows_remaining": replayer.remaining() }),
                )
            }
            _ => match self.reload(control) {
                Ok(flows) => Response::json(200, &json!({ "reloaded": true, "flows": flows })),
                Err(sentence) => Response::text(422, &sentence),
            },
        }
    }

    /// Reloads the recording (`POST /reload`, `SIGHUP`): on success swaps it in, forgets the
    /// recent misses (their flows are gone) and returns its flow count; on failure the current
    /// recording keeps serving and the error is the loader's sentence. Counted either way.
    pub fn reload(&self, control: &dyn Control) -> Result<usize, String> {
        match control.load(&self.reloader) {
            Ok(new) => {
                let flows = new.recording().len();
                control.swap_recording(new);
                control.for_each_core(&mut |_, log| log.clear());
                self.reloads_ok.fetch_add(1, Ordering::Relaxed);
                Ok(flows)
            }
            Err(e) => {
                self.reloads_failed.fetch_add(1, Ordering::Relaxed);
                Err(format!(
                    "reload failed, the current recording keeps serving: {e}"
                ))
            }
        }
    }

    /// Everything a scrape reports, summed over the cores now.
    pub fn scrape(&self, control: &dyn Control) -> metrics::Scrape {
        let replayer = control.replayer();
        let mut service = ServiceTotals::default();
        let mut totals = Totals::default();
        let mut misses_seen = 0;
        control.for_each_core(&mut |c, log| {
            let one = Totals::sum([c], 0);
            add_totals(&mut totals, &one);
            service.add(&c.service);
            misses_seen += log.seen();
        });
        totals.flows_left = replayer.remaining();
        metrics::Scrape {
            totals,
            open_connections: control.open_connections(),
            service,
            reloads_ok: self.reloads_ok.load(Ordering::Relaxed),
            reloads_failed: self.reloads_failed.load(Ordering::Relaxed),
            misses_seen,
        }
    }

    /// The `/status` document.
    pub fn status(&self, control: &dyn Control) -> Value {
        let s = self.scrape(control);
        let replayer = control.replayer();
        let recording = replayer.recording();
        let summary = recording.summary();
        let files: Vec<Value> = (0..summary.files)
            .map(|f| {
                json!({
                    "file": recording.path(f).display().to_string(),
                    "flows": recording.flows_in_file(f),
                })
            })
            .collect();
        let o = &self.reloader.replay;
        let t = &s.totals;
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "totals": {
                "requests": t.requests(),
                "replayed": t.replayed,
                "forwarded": t.forwarded,
                "killed": t.killed,
                "status": t.status_answered,
                "rejected": t.rejected,
                "unmatched": t.unmatched(),
                "upstream_errors": t.upstream_errors,
                "connections_accepted": t.connections,
                "connections_open": s.open_connections,
                "tls_handshake_failures": t.tls_failed,
                "flows_remaining": t.flows_left,
                "service_answers": s.service.count(),
                "misses_seen": s.misses_seen,
                "log_dropped": t.log_dropped,
                "send_timeouts": t.send_timeouts,
                "direct_ring_connections": t.ring_connections,
                "direct_ring_handed_over": t.ring_handed_over,
                "repeat_cache_answers": t.repeats,
                "looked_ahead": t.looked_ahead,
            },
            "hit_rate": hit_rate(t),
            "recording": {
                "files": files,
                "flows": recording.len(),
                "without_response": summary.without_response,
                "keys": replayer.keys(),
                "format_versions": summary.versions.iter().map(|v| v.to_string()).collect::<Vec<_>>(),
                "bytes": summary.bytes,
            },
            "options": {
                "order": order_name(o.order),
                "unmatched": match o.unmatched {
                    Unmatched::Forward => json!("forward"),
                    Unmatched::Kill => json!("kill"),
                    Unmatched::Status(code) => json!({ "status": code }),
                },
                "refresh": o.refresh,
                "keep_alive": o.keep_alive,
                "use_headers": o.use_headers,
                "ignore_content": o.ignore_content,
                "ignore_params": o.ignore_params,
                "ignore_payload_params": o.ignore_payload_params,
                "ignore_host": o.ignore_host,
                "ignore_port": o.ignore_port,
            },
            "reloads": { "ok": s.reloads_ok, "failed": s.reloads_failed },
            "top_miss_reasons": reasons_json(&top_reasons(control, 3)),
        })
    }
}

/// Adds `b` into `a` (every count; `flows_left` is set by the caller).
fn add_totals(a: &mut Totals, b: &Totals) {
    a.replayed += b.replayed;
    a.forwarded += b.forwarded;
    a.upstream_errors += b.upstream_errors;
    a.killed += b.killed;
    a.status_answered += b.status_answered;
    a.rejected += b.rejected;
    a.connections += b.connections;
    a.tls_failed += b.tls_failed;
    a.log_dropped += b.log_dropped;
    a.send_timeouts += b.send_timeouts;
    a.ring_connections += b.ring_connections;
    a.ring_handed_over += b.ring_handed_over;
    a.repeats += b.repeats;
    a.looked_ahead += b.looked_ahead;
}

/// The `--reuse`/order name used in `/status`.
fn order_name(order: Order) -> &'static str {
    match order {
        Order::Consume => "consume",
        Order::First => "first",
        Order::Cycle => "cycle",
        Order::Last => "last",
    }
}

/// Replayed requests among those that were matched or unmatched (rejects left out); `None`
/// before any.
pub fn hit_rate(t: &Totals) -> Option<f64> {
    let asked = t.replayed + t.unmatched();
    (asked > 0).then(|| t.replayed as f64 / asked as f64)
}

/// The `n` most frequent miss reasons over every core.
pub fn top_reasons(control: &dyn Control, n: usize) -> Vec<(Reason, u64)> {
    let mut per_core = Vec::new();
    control.for_each_core(&mut |_, log| per_core.push(log.reasons().0));
    miss::top_reasons(per_core, n)
}

fn reasons_json(reasons: &[(Reason, u64)]) -> Value {
    reasons
        .iter()
        .map(|(r, count)| json!({ "reason": r.reason, "fix": r.fix, "count": count }))
        .collect()
}

/// The `/misses` document: every core's recent misses, oldest first, and the top reasons.
fn misses(control: &dyn Control) -> Value {
    let mut all: Vec<(u64, String)> = Vec::new();
    let mut seen = 0;
    control.for_each_core(&mut |_, log| {
        seen += log.seen();
        all.extend(log.recent());
    });
    all.sort_by_key(|(t, _)| *t);
    let list: Vec<Value> = all
        .iter()
        .filter_map(|(_, j)| serde_json::from_str(j).ok())
        .collect();
    json!({
        "seen": seen,
        "kept": list.len(),
        "misses": list,
        "top_reasons": reasons_json(&top_reasons(control, 10)),
    })
}

/// The `/unused` body: one JSON object per line per recorded flow never served.
pub fn unused_lines(replayer: &Replayer) -> Vec<u8> {
    let mut out = Vec::new();
    for FlowId(f) in replayer.unused() {
        let r = replayer.recording().request(f as usize);
        let line = json!({
            "flow": f,
            "method": miss::shown(r.method),
            "url": miss::recorded_url(replayer.recording(), FlowId(f)),
        });
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// What the periodic summary line adds: `; hit rate 97.5%; top miss: REASON (FIX)`, and
/// `; 120 log lines dropped` once `--log-json` lines were dropped.
pub fn summary_suffix(control: &dyn Control, totals: &Totals) -> String {
    let mut out = String::new();
    if let Some(rate) = hit_rate(totals) {
        out.push_str(&format!("; hit rate {:.1}%", rate * 100.0));
    }
    if let Some((r, _)) = top_reasons(control, 1).first() {
        out.push_str(&format!("; top miss: {}", r.reason));
        if let Some(fix) = &r.fix {
            out.push_str(&format!(" ({fix})"));
        }
    }
    if totals.log_dropped > 0 {
        out.push_str(&format!("; {} log lines dropped", totals.log_dropped));
    }
    out
}

/// What the end-of-run report adds: the unused flows and the three most frequent miss reasons
/// with their suggested flags, one line each.
pub fn report_lines(control: &dyn Control) -> String {
    let replayer = control.replayer();
    let unused = replayer.unused().len();
    let mut out = format!("unused flows {unused} (never served; GET /unused lists them)");
    for (i, (r, count)) in top_reasons(control, 3).iter().enumerate() {
        out.push_str(&format!(
            "\nmiss reason {}: {} ({count} times)",
            i + 1,
            r.reason
        ));
        match &r.fix {
            Some(fix) => out.push_str(&format!("; to match: {fix}")),
            None => out.push_str("; no flag makes it match"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Mutex;
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::config::ReplayOptions;
    use crate::flowfile::writer::{write_flow, FlowSpec};
    use crate::flowfile::LoadOptions;
    use crate::replay::{Decision, LiveRequest};

    /// A server as the router sees it: a swappable replayer, two cores.
    struct Fake {
        replayer: Mutex<Arc<Replayer>>,
        cores: [(Counters, MissLog); 2],
    }

    impl Control for Fake {
        fn replayer(&self) -> Arc<Replayer> {
            self.replayer.lock().unwrap().clone()
        }
        fn for_each_core(&self, each: &mut dyn FnMut(&Counters, &MissLog)) {
            self.cores.iter().for_each(|(c, m)| each(c, m));
        }
        fn open_connections(&self) -> u64 {
            5
        }
        fn swap_recording(&self, new: Arc<Replayer>) {
            *self.replayer.lock().unwrap() = new;
        }
    }

    /// Writes a recording of GETs of `paths` as a new file renamed over `path`: a file being
    /// served is a mapping, so a recording is replaced, never rewritten in place.
    fn write_file(path: &Path, paths: &[&str]) {
        let mut bytes = Vec::new();
        for p in paths {
            write_flow(&mut bytes, &FlowSpec::get(p, 200, p.as_bytes()));
        }
        replace(path, &bytes);
    }

    fn replace(path: &Path, bytes: &[u8]) {
        let new = path.with_extension("new");
        std::fs::write(&new, bytes).unwrap();
        std::fs::rename(&new, path).unwrap();
    }

    fn setup(dir: &Path, paths: &[&str]) -> (Admin, Fake) {
        let file = dir.join("rec.flows");
        write_file(&file, paths);
        let reloader = Reloader {
            files: vec![file],
            load: LoadOptions::default(),
            replay: ReplayOptions::default(),
        };
        let replayer = reloader.load().expect("the recording loads");
        let fake = Fake {
            replayer: Mutex::new(replayer),
            cores: Default::default(),
        };
        (Admin::new(reloader), fake)
    }

    /// Decides a GET of `target` to 127.0.0.1:8080 on `core`, counting it there as the
    /// worker would, and noting a miss in its log.
    fn request(fake: &Fake, core: usize, target: &str, at_ms: u64) -> Decision {
        let replayer = fake.replayer();
        let headers = [httparse::Header {
            name: "Host",
            value: b"127.0.0.1:8080",
        }];
        let live = LiveRequest {
            scheme: b"http",
            method: b"GET",
            target: target.as_bytes(),
            host: b"127.0.0.1",
            port: 8080,
            headers: &headers,
            body: b"",
        };
        let (counters, log) = &fake.cores[core];
        let d = replayer.decide(&live);
        match d {
            Decision::Replay(_) => Counters::bump(&counters.replayed),
            _ => {
                Counters::bump(&counters.forwarded);
                log.record(&replayer, &live, UNIX_EPOCH + Duration::from_millis(at_ms));
            }
        }
        counters.service.record(2_000);
        d
    }

    fn json_of(r: &Response) -> Value {
        assert_eq!(r.content_type, "application/json");
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn unknown_paths_are_404_and_wrong_methods_405_with_allow() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, fake) = setup(dir.path(), &["/a"]);
        let r = admin.handle(&fake, b"GET", b"/nope");
        assert_eq!(r.status, 404);
        let r = admin.handle(&fake, b"POST", b"/metrics");
        assert_eq!((r.status, r.allow), (405, Some("GET")));
        let r = admin.handle(&fake, b"GET", b"/reset");
        assert_eq!((r.status, r.allow), (405, Some("POST")));
        // A query does not change the route.
        assert_eq!(admin.handle(&fake, b"GET", b"/status?x=1").status, 200);
    }

    #[test]
    fn status_misses_unused_and_reset_tell_what_happened() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, fake) = setup(dir.path(), &["/a?page=1", "/b", "/c"]);
        assert!(matches!(request(&fake, 0, "/b", 0), Decision::Replay(_)));
        assert!(matches!(
            request(&fake, 1, "/a?page=2", 10),
            Decision::Forward
        ));

        let status = json_of(&admin.handle(&fake, b"GET", b"/status"));
        assert_eq!(status["totals"]["replayed"], 1);
        assert_eq!(status["totals"]["forwarded"], 1);
        assert_eq!(status["totals"]["connections_open"], 5);
        assert_eq!(status["totals"]["flows_remaining"], 2);
        assert_eq!(status["hit_rate"], 0.5);
        assert_eq!(status["recording"]["flows"], 3);
        assert_eq!(status["recording"]["files"][0]["flows"], 3);
        assert!(status["recording"]["files"][0]["file"]
            .as_str()
            .unwrap()
            .ends_with("rec.flows"));
        assert_eq!(status["recording"]["format_versions"], json!(["21"]));
        assert_eq!(status["options"]["order"], "consume");
        assert_eq!(status["options"]["unmatched"], "forward");
        assert_eq!(status["top_miss_reasons"][0]["fix"], "--ignore-param page");

        let misses = json_of(&admin.handle(&fake, b"GET", b"/misses"));
        assert_eq!(misses["seen"], 1);
        let m = &misses["misses"][0];
        assert_eq!(m["url"], "http://127.0.0.1:8080/a?page=2");
        assert_eq!(m["nearest"]["flow"], 0);
        assert_eq!(m["nearest"]["url"], "http://127.0.0.1:8080/a?page=1");
        assert_eq!(m["nearest"]["query_params"], json!(["page"]));
        assert_eq!(m["nearest"]["fix"], "--ignore-param page");

        let unused = admin.handle(&fake, b"GET", b"/unused");
        assert_eq!(unused.content_type, "application/x-ndjson");
        let lines: Vec<Value> = std::str::from_utf8(&unused.body)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            json!({"flow": 0, "method": "GET", "url": "http://127.0.0.1:8080/a?page=1"})
        );
        assert_eq!(lines[1]["flow"], 2);

        let reset = json_of(&admin.handle(&fake, b"POST", b"/reset"));
        assert_eq!(reset["flows_remaining"], 3);
        assert_eq!(
            admin
                .handle(&fake, b"GET", b"/unused")
                .body
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
            3
        );
        assert!(matches!(request(&fake, 0, "/b", 20), Decision::Replay(_)));

        let suffix = summary_suffix(&fake, &admin.scrape(&fake).totals);
        assert_eq!(
            suffix,
            "; hit rate 66.7%; top miss: query parameter page differs (--ignore-param page)"
        );
        let report = report_lines(&fake);
        assert_eq!(
            report,
            "unused flows 2 (never served; GET /unused lists them)\n\
             miss reason 1: query parameter page differs (1 times); to match: --ignore-param page"
        );
    }

    #[test]
    fn reload_swaps_a_changed_file_in_and_a_failed_one_keeps_serving() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, fake) = setup(dir.path(), &["/old"]);
        let file = dir.path().join("rec.flows");
        assert!(matches!(request(&fake, 0, "/new", 0), Decision::Forward));
        write_file(&file, &["/new", "/new2"]);
        let r = admin.handle(&fake, b"POST", b"/reload");
        assert_eq!(r.status, 200);
        assert_eq!(json_of(&r)["flows"], 2);
        assert!(matches!(request(&fake, 0, "/new", 5), Decision::Replay(_)));
        // The old misses named flows of the old recording: forgotten.
        assert_eq!(json_of(&admin.handle(&fake, b"GET", b"/misses"))["kept"], 0);

        replace(&file, b"12:not a flow");
        let r = admin.handle(&fake, b"POST", b"/reload");
        assert_eq!(r.status, 422);
        let body = String::from_utf8(r.body).unwrap();
        assert!(
            body.starts_with("reload failed, the current recording keeps serving: "),
            "{body}"
        );
        assert!(body.contains("rec.flows"), "{body}");
        assert!(matches!(
            request(&fake, 0, "/new2", 10),
            Decision::Replay(_)
        ));
        std::fs::remove_file(&file).unwrap();
        assert!(admin.reload(&fake).is_err());

        let text = String::from_utf8(admin.handle(&fake, b"GET", b"/metrics").body).unwrap();
        assert!(
            text.contains("uringreplay_reloads_total{result=\"ok\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("uringreplay_reloads_total{result=\"failed\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("uringreplay_flows_remaining 0\n"), "{text}");
    }
}
