//! Measures the relay's resident memory per idle event stream.
//!
//! Starts a relay binary on a loopback port and opens event streams in channels of four
//! subscribers. Once every stream has its opening count, it prints the growth of the relay's
//! VmRSS divided by the number of streams. Usage:
//!
//! ```sh
//! cargo build --release -p dropthat-server --bin dropthat
//! cargo run --release -p dropthat-tests --example idle_rss -- target/release/dropthat 19000
//! ```

use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

/// Subscribers per channel, as in a small chat room.
const ROOM_SIZE: usize = 4;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let binary = args.next().expect("usage: idle_rss RELAY_BINARY [STREAMS]");
    let streams: usize = args
        .next()
        .map_or(1000, |n| n.parse().expect("STREAMS is a number"));
    raise_open_file_limit();

    let data = tempfile::tempdir().expect("data directory");
    let www = tempfile::tempdir().expect("page directory");
    std::fs::write(www.path().join("index.html"), "<!doctype html>").expect("index.html");
    let mut relay = Command::new(&binary)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--max-streams-per-client",
            "100000",
        ])
        .arg("--www")
        .arg(www.path())
        .arg("--data-dir")
        .arg(data.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("failed to start the relay");
    let pid = relay.id().expect("relay pid");
    let mut lines = BufReader::new(relay.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = lines
            .next_line()
            .await
            .expect("relay log")
            .expect("relay exited");
        if let Some(rest) = line.split("address=").nth(1)
            && line.contains("listening")
        {
            break rest.split_whitespace().next().expect("address").to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    // A few streams first, so one-time allocations are in the baseline.
    let mut warm_up = Vec::new();
    for i in 0..ROOM_SIZE * 4 {
        warm_up.push(open(&addr, &format!("warm-{}", i / ROOM_SIZE)).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid);

    let started = Instant::now();
    let mut open_streams = Vec::with_capacity(streams);
    for i in 0..streams {
        open_streams.push(open(&addr, &format!("room-{}", i / ROOM_SIZE)).await);
    }
    let opened_in = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid);

    let per_stream = (after.saturating_sub(before) as f64 * 1024.0) / streams as f64;
    println!(
        "{streams} idle streams opened in {opened_in:.1?}: relay VmRSS {before} KiB -> \
         {after} KiB, {per_stream:.0} bytes per stream"
    );
    drop(open_streams);
    drop(warm_up);
}

/// Opens one event stream and reads until its opening count has arrived.
async fn open(addr: &str, channel: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the relay");
    let request = format!("GET /sub/{channel} HTTP/1.1\r\nHost: relay\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    while !received.windows(6).any(|w| w == b"count=") {
        let n = stream.read(&mut buffer).await.expect("read stream");
        assert!(
            n > 0,
            "the relay closed a stream: {}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buffer[..n]);
    }
    stream
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Raises this process's soft open-file limit to the hard limit, to hold many sockets.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
