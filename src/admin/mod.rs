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
                "flows_remaining": t.flows_left,
                "service_answers": s.service.count(),
                "misses_seen": s.misses_seen,
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

/// What the periodic summary line adds: `; hit rate 97.5%; top miss: REASON (FIX)`.
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
    out
}

/// What the end-of-run report adds: the unused flows and the three most frequent miss reasons
/// with their suggested flags, one line each.
pub fn report_lines(control: &dyn Control) -> String {
    let replayer = control.replayer();
    let unused = replayer.unused().len();
    let mut out = format!("unused flows {unused} (never served; GET /unused lists them)");
    for (i, (r, count)) in top_reasons(control, 3).iter().enumerate() {
        out.push_str(&format!("\nmiss reason {}: {} ({count} times)", i + 1, r.reason));
        match &r.fix {
            Some(fix) => out.push_str(&format!("; to match: {fix}")),
            None => out.push_str("; no flag makes it match"),
        }
    }
    out
}
