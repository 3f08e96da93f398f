//! Writes a big format-21 recording for benchmarks and load tests, laid out as mitmproxy 12 writes
//! it (so real `mitmdump -S` reads it too).
//!
//! ```sh
//! cargo run --release --example gen_flows -- --flows 200000 --body-bytes 1200 --out big.flows
//! ```
//! Flow `i` is `GET http://127.0.0.1:29411/item/{i % keys}` answered with a 200, a `Date`, a
//! `Content-Length` and `body-bytes` of text; `--keys` below `--flows` repeats keys so consume order
//! has something to do. The origin (`--host`, `--port`) is not uringreplay's default listen
//! address 127.0.0.1:8080, so `uringreplay -S generated.flows` forwards misses to that origin
//! (a 502 while nothing listens there), not to itself.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use uringreplay::flowfile::writer::{write_flow, FlowSpec};

struct Options {
    flows: u64,
    keys: u64,
    body_bytes: usize,
    out: PathBuf,
    host: String,
    port: u16,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        flows: 1000,
        keys: 0,
        body_bytes: 200,
        out: PathBuf::from("generated.flows"),
        host: "127.0.0.1".to_string(),
        port: 29411,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--flows" => options.flows = number(value()?)?,
            "--keys" => options.keys = number(value()?)?,
            "--body-bytes" => options.body_bytes = number(value()?)? as usize,
            "--out" => options.out = PathBuf::from(value()?),
            "--host" => options.host = value()?,
            "--port" => options.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "-h" | "--help" => {
                return Err("usage: gen_flows [--flows N] [--keys K] [--body-bytes B] \
                            [--host H] [--port P] [--out FILE]"
                    .to_string())
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if options.keys == 0 {
        options.keys = options.flows;
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match generate(&options) {
        Ok(bytes) => {
            eprintln!(
                "wrote {} flows ({} keys, {} bytes) to {}",
                options.flows,
                options.keys,
                bytes,
                options.out.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}: {e}", options.out.display());
            ExitCode::from(1)
        }
    }
}

fn generate(options: &Options) -> std::io::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&options.out)?);
    let body: Vec<u8> = (0..options.body_bytes)
        .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789\n"[i % 37])
        .collect();
    let mut buf = Vec::with_capacity(4096);
    let mut total = 0u64;
    let authority = format!("{}:{}", options.host, options.port);
    for i in 0..options.flows {
        let mut spec = FlowSpec::get(&format!("/item/{}", i % options.keys), 200, &body);
        spec.id = format!("00000000-0000-4000-8000-{i:012}");
        spec.host = options.host.clone();
        spec.port = options.port;
        spec.headers = vec![(b"Host".to_vec(), authority.clone().into_bytes())];
        spec.timestamp_start += i as f64 * 0.001;
        if let Some(response) = spec.response.as_mut() {
            response.timestamp_start = spec.timestamp_start + 0.0005;
            let date = httpdate::fmt_http_date(
                std::time::UNIX_EPOCH
                    + std::time::Duration::from_secs(response.timestamp_start as u64),
            );
            response
                .headers
                .insert(0, (b"Date".to_vec(), date.into_bytes()));
            response
                .headers
                .insert(0, (b"Server".to_vec(), b"gen_flows/1".to_vec()));
        }
        buf.clear();
        write_flow(&mut buf, &spec);
        out.write_all(&buf)?;
        total += buf.len() as u64;
    }
    out.flush()?;
    Ok(total)
}
