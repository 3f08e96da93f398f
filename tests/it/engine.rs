//! The connection engine end to end: bounded pipelining, the head deadline that covers the head
//! only, large chunked uploads in small pieces.

use std::io::Write;
use std::time::Duration;

use crate::support::{fixture, Client, FlowFile, Server};
use uringreplay::flowfile::writer::FlowSpec;

/// Four 27 KB bodies, each of one repeated letter, at `/big0` … `/big3`.
fn big_bodies() -> (FlowFile, Vec<Vec<u8>>) {
    let bodies: Vec<Vec<u8>> = (0..4u8).map(|i| vec![b'a' + i; 27 * 1024]).collect();
    let flows: Vec<FlowSpec> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| FlowSpec::get(&format!("/big{i}"), 200, b))
        .collect();
    (FlowFile::new(&flows), bodies)
}

#[test]
fn a_thousand_pipelined_requests_for_27_kb_bodies_in_one_write_are_all_answered_in_order() {
    // Each answer is two iovecs (head, body from the mapping): 1 000 in one writev would be
    // twice what the kernel accepts (IOV_MAX), so the engine must write them in bounded parts.
    // A 200 KB upload first grows the input buffer, so the 1 000 requests behind it are read
    // and parsed in one turn.
    let (file, bodies) = big_bodies();
    let server = Server::start(&[
        "-S",
        file.arg(),
        "--reuse",
        "--extra",
        "404",
        "--mode",
        "reverse:http://127.0.0.1:8080",
    ]);
    let mut all =
        b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Length: 200000\r\n\r\n".to_vec();
    all.resize(all.len() + 200_000, b'u');
    for i in 0..1000 {
        all.extend_from_slice(
            format!("GET /big{} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n", i % 4).as_bytes(),
        );
    }
    let mut c = Client::new(&server);
    let mut writer = c.stream.try_clone().expect("clone the socket");
    // The answers (27 MB) outgrow the socket buffers long before the requests are all read:
    // write from another thread while this one reads.
    let sender = std::thread::spawn(move || writer.write_all(&all).map(|_| writer));
    assert_eq!(c.response(false).status, 404, "the unrecorded upload");
    for i in 0..1000 {
        let r = c.response(false);
        assert_eq!(r.status, 200, "answer {i}");
        assert!(
            r.body == bodies[i % 4],
            "answer {i} has the body of /big{}",
            i % 4
        );
    }
    let _writer = sender.join().unwrap().expect("all requests sent");
}

#[test]
fn a_slow_upload_that_keeps_arriving_outlasts_the_header_timeout() {
    // The header timeout covers the head only: a 40 KB body at ~16 KB/s takes 2.5 s, more than
    // twice --header-timeout 1, and is answered, not cut with 408.
    let path = fixture("demo.flows");
    let server = Server::start(&[
        "-S",
        path.to_str().unwrap(),
        "--extra",
        "404",
        "--header-timeout",
        "1",
    ]);
    let mut c = Client::new(&server);
    c.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 40960\r\n\r\n");
    for _ in 0..10 {
        // Pacing the client, not waiting for the server: each piece is a new arrival.
        std::thread::sleep(Duration::from_millis(250));
        c.send(&[b'u'; 4096]);
    }
    let r = c.response(false);
    assert_eq!(
        r.status, 404,
        "the unrecorded upload gets the policy's answer, not 408"
    );
}

#[test]
fn a_16_mib_chunked_upload_in_pieces_of_1_byte_to_4_kib_is_read_whole() {
    let path = fixture("demo.flows");
    let server = Server::start(&[
        "-S",
        path.to_str().unwrap(),
        "--extra",
        "404",
        "--max-body",
        "17000000",
    ]);
    let mut c = Client::new(&server);
    let mut writer = c.stream.try_clone().expect("clone the socket");
    let sender = std::thread::spawn(move || -> std::io::Result<usize> {
        writer
            .write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")?;
        let total = 16 * 1024 * 1024;
        let data = vec![b'c'; 4096];
        let (mut sent, mut seed, mut chunks) = (0usize, 12345u32, 0usize);
        while sent < total {
            // A fixed pseudo-random sequence of sizes from 1 to 4096.
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let size = ((seed >> 8) as usize % 4096 + 1).min(total - sent);
            writer.write_all(format!("{size:x}\r\n").as_bytes())?;
            writer.write_all(&data[..size])?;
            writer.write_all(b"\r\n")?;
            sent += size;
            chunks += 1;
        }
        writer.write_all(b"0\r\n\r\n")?;
        Ok(chunks)
    });
    let r = c.response(false);
    let chunks = sender.join().unwrap().expect("the whole upload sent");
    assert!(chunks > 4000, "{chunks} chunks");
    assert_eq!(
        r.status, 404,
        "the whole body was read and the request answered"
    );
}

#[test]
fn a_recording_swapped_while_a_large_body_is_sent_keeps_that_body_whole_and_serves_the_next() {
    use uringreplay::config::{Order, ProxyMode, ReplayOptions, ServeOptions};
    use uringreplay::server::Server;

    // 32 MiB, far more than the socket buffers hold: the answer is still being written when the
    // swap comes. A pattern, so a cut or a shifted body shows.
    let old_body: Vec<u8> = (0..32 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let old = FlowFile::new(&[FlowSpec::get("/big", 200, &old_body)]);
    let new = FlowFile::new(&[FlowSpec::get("/big", 200, b"the new recording")]);
    let options = ReplayOptions {
        order: Order::First,
        ..ReplayOptions::default()
    };
    let serve = ServeOptions {
        listen_port: 0,
        threads: 1,
        mode: ProxyMode::Reverse(
            uringreplay::upstream::Origin::parse_reverse_spec("http://127.0.0.1:8080").unwrap(),
        ),
        ..ServeOptions::default()
    };
    let handle = Server::start(serve, crate::support::replayer(&old, &options)).expect("start");
    let mut c = std::net::TcpStream::connect(handle.local_addr()).unwrap();
    c.set_read_timeout(Some(crate::support::PATIENCE)).unwrap();
    c.write_all(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
        .unwrap();
    // Read the first bytes only: the rest of the body is queued in the server.
    let mut got = vec![0u8; 64 * 1024];
    let mut have = 0;
    while have < 1024 {
        match std::io::Read::read(&mut c, &mut got[have..]) {
            Ok(0) => panic!("closed early"),
            Ok(n) => have += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("{e}"),
        }
    }
    got.truncate(have);
    // Swap, and drop every reference this side holds to the old recording, and its file.
    drop(handle.swap_recording(crate::support::replayer(&new, &options)));
    drop(old);
    let mut client = crate::support::Client {
        stream: c,
        pending: got,
    };
    let r = client.response(false);
    assert_eq!(r.status, 200);
    assert!(
        r.body == old_body,
        "the body in flight arrived byte-identical"
    );
    let r = client.exchange(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n");
    assert_eq!(
        r.body, b"the new recording",
        "the next request sees the new recording"
    );
    let (totals, cut) = handle.stop(std::time::Duration::from_secs(5), |_| {
        std::thread::yield_now();
        None
    });
    assert!(cut.is_none(), "{cut:?}");
    assert_eq!(totals.replayed, 2);
}
