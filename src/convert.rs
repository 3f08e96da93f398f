//! `uringreplay convert IN... -o OUT.flows`: one format-21 flow file from any inputs (HAR files,
//! flow files of every format version, compressed or not), written through the recorder's writer
//! so a killed run leaves a file that loads up to the last complete flow. A driver.

use std::path::Path;
use std::process::ExitCode;

use crate::capture::{Recorder, SaveTarget};
use crate::cli::ConvertArgs;
use crate::flowfile::writer::{numbered_id, ConnRecord, FlowRecord, MessageRecord};
use crate::flowfile::{ErrorView, FlowView, Headers, LoadOptions};

/// Bytes of encoded flows waiting for the writer while converting.
const PENDING_BYTES: usize = 16 * 1024 * 1024;

/// Runs `convert`; returns the process exit code.
pub fn run(args: &ConvertArgs) -> ExitCode {
    if let Some(input) = args.inputs.iter().find(|i| same_file(i, &args.output)) {
        eprintln!(
            "error: {} is both an input and the output: name another output file",
            input.display()
        );
        return ExitCode::from(2);
    }
    let options = LoadOptions {
        skip_bad_flows: args.skip_bad_flows,
        ..LoadOptions::default()
    };
    let (recording, _) = match crate::inspect::load(&args.inputs, options, &mut |_| {}) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let target = SaveTarget {
        path: args.output.clone(),
        append: false,
    };
    let recorder = match Recorder::start(&target, "regular", PENDING_BYTES) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    for flow in recording.flows() {
        let error = recording.error(flow.id);
        recorder.write_record_waiting(&to_record(&flow, error));
    }
    let stats = recorder.finish();
    if stats.failed > 0 {
        eprintln!(
            "error: {}: {} of {} flows could not be written",
            args.output.display(),
            stats.failed,
            recording.len()
        );
        return ExitCode::from(1);
    }
    eprintln!(
        "wrote {} flows to {} (format 21)",
        stats.written,
        args.output.display()
    );
    ExitCode::SUCCESS
}

/// Whether two paths name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn fields(h: Headers<'_>) -> Vec<(Vec<u8>, Vec<u8>)> {
    h.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect()
}

/// A flow of the recording as a format-21 record: every request and response field and the
/// flow's `error` kept; the connection records, which the recording does not keep, are
/// loopback placeholders.
pub fn to_record(flow: &FlowView<'_>, error: Option<ErrorView<'_>>) -> FlowRecord {
    let r = &flow.request;
    let id = |kind: u64| numbered_id(flow.file as u64, kind << 48 | flow.number);
    FlowRecord {
        id: id(0),
        method: r.method.to_vec(),
        scheme: r.scheme.to_vec(),
        authority: r.authority.to_vec(),
        host: String::from_utf8_lossy(r.host).into_owned(),
        port: r.port,
        path: r.path.to_vec(),
        request: MessageRecord {
            http_version: r.http_version.to_vec(),
            headers: fields(r.headers),
            content: r.content.map(<[u8]>::to_vec),
            trailers: r.trailers.map(fields),
            timestamp_start: r.timestamp_start,
            timestamp_end: r.timestamp_end,
        },
        response: flow.response.as_ref().map(|resp| {
            (
                resp.status_code,
                resp.reason.to_vec(),
                MessageRecord {
                    http_version: resp.http_version.to_vec(),
                    headers: fields(resp.headers),
                    content: resp.content.map(<[u8]>::to_vec),
                    trailers: resp.trailers.map(fields),
                    timestamp_start: resp.timestamp_start,
                    timestamp_end: resp.timestamp_end,
                },
            )
        }),
        client_conn: ConnRecord {
            id: id(1),
            peername: Some(("127.0.0.1".to_string(), 0)),
            sockname: Some(("127.0.0.1".to_string(), 0)),
            timestamp_start: Some(r.timestamp_start),
            proxy_mode: "regular".to_string(),
            ..ConnRecord::default()
        },
        server_conn: ConnRecord {
            id: id(2),
            address: Some((String::from_utf8_lossy(r.host).into_owned(), r.port)),
            ..ConnRecord::default()
        },
        error: error.map(|e| (String::from_utf8_lossy(e.msg).into_owned(), e.timestamp)),
        timestamp_created: r.timestamp_start,
    }
}
