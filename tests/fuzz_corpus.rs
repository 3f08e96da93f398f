//! The fuzz targets of `uringreplay::fuzzing` on stable, inside `cargo test`: each over its
//! committed corpus (`fuzz/corpus/<target>/`, seeds and inputs cargo-fuzz found) and over 500–1000
//! generated inputs, so a regression shows in CI without a nightly fuzz run.
#![allow(clippy::disallowed_methods)] // the corpus is read from files

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use uringreplay::fuzzing;

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Every file of a target's corpus, sorted by name.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).expect("corpus file");
            (path, bytes)
        })
        .collect()
}

/// Runs `target` over its corpus, naming the input that fails.
fn run_corpus(target: &str) {
    let files = corpus(target);
    assert!(
        files.len() >= 10,
        "{target}: only {} corpus files",
        files.len()
    );
    for (path, bytes) in files {
        let outcome = std::panic::catch_unwind(|| fuzzing::run(target, &bytes));
        assert!(
            outcome.is_ok(),
            "{target} fails on {} (hex {})",
            path.display(),
            hex(&bytes)
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn every_target_has_a_corpus() {
    for target in fuzzing::TARGETS {
        assert!(corpus_dir(target).is_dir(), "{target}");
    }
}

#[test]
fn tnetstring_corpus() {
    run_corpus("tnetstring");
}

#[test]
fn flow_reader_corpus() {
    run_corpus("flow_reader");
}

#[test]
fn http1_request_corpus() {
    run_corpus("http1_request");
}

#[test]
fn http1_conn_corpus() {
    run_corpus("http1_conn");
}

#[test]
fn upstream_response_corpus() {
    run_corpus("upstream_response");
}

#[test]
fn http2_conn_corpus() {
    run_corpus("http2_conn");
}

#[test]
fn hpack_corpus() {
    run_corpus("hpack");
}

/// Seeds of a target (its corpus files) for mutation.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    corpus(target).into_iter().map(|(_, bytes)| bytes).collect()
}

/// A seed with a few bytes overwritten, a slice cut out and the end cut off: the mutations that
/// reach framing arithmetic (length prefixes, sizes, offsets).
fn mutated(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = seeds(target);
    let count = seeds.len();
    (
        0..count,
        proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
        0usize..8,
        any::<prop::sample::Index>(),
    )
        .prop_map(move |(seed, writes, cut_at, cut_len, end)| {
            let mut bytes = seeds[seed].clone();
            if bytes.is_empty() {
                return bytes;
            }
            for (at, byte) in writes {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            let start = cut_at.index(bytes.len());
            let stop = (start + cut_len).min(bytes.len());
            bytes.drain(start..stop);
            let keep = end.index(bytes.len() + 1).max(bytes.len() / 2);
            bytes.truncate(keep);
            bytes
        })
}

/// A byte that often matters to a framing parser.
fn framing_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(b'\r'),
        Just(b'\n'),
        Just(b':'),
        Just(b','),
        Just(b';'),
        Just(b'0'),
        Just(b'9'),
        Just(b'F'),
        Just(b']'),
        Just(b'}'),
        any::<u8>(),
    ]
}

/// Generated input for `target`: mostly mutated seeds, some raw framing bytes.
fn input(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => mutated(target),
        1 => proptest::collection::vec(framing_byte(), 0..200),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn tnetstring_generated(data in input("tnetstring")) {
        fuzzing::tnetstring(&data);
    }

    #[test]
    fn http1_request_generated(data in input("http1_request")) {
        fuzzing::http1_request(&data);
    }

}

proptest! {
    // These do more work per input (a replayer build; a parse per split point).
    #![proptest_config(ProptestConfig { cases: 500, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn flow_reader_generated(data in input("flow_reader")) {
        fuzzing::flow_reader(&data);
    }

    #[test]
    fn http1_conn_generated(data in input("http1_conn")) {
        fuzzing::http1_conn(&data);
    }

    #[test]
    fn upstream_response_generated(data in input("upstream_response")) {
        fuzzing::upstream_response(&data);
    }

    #[test]
    fn http2_conn_generated(data in input("http2_conn")) {
        fuzzing::http2_conn(&data);
    }

    #[test]
    fn hpack_generated(data in input("hpack")) {
        fuzzing::hpack(&data);
    }
}
