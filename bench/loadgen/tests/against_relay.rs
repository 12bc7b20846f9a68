//! The `loadgen` binary against the real `dropthat` relay on loopback: every delivery counted
//! across worker processes, failures reported by reason, and non-loopback targets rejected.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use dropthat_loadgen::report::Report;

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");

/// A relay process on a free loopback port, killed when dropped.
struct Relay {
    child: Child,
    addr: SocketAddr,
}

impl Relay {
    fn start(www: &Path) -> Self {
        let addr = free_addr();
        let child = Command::new(dropthat_tests::relay::binary())
            .args(["--listen", &addr.to_string(), "--www"])
            .arg(www)
            // The load generator publishes from one address faster than the relay's default
            // per-client rate allows.
            .args(["--publish-rate", "100000", "--publish-burst", "100000"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("failed to start the relay");

        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "the relay did not listen on {addr}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, addr }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Returns a loopback address that was free a moment ago.
fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn loadgen(args: &[&str]) -> Output {
    Command::new(LOADGEN)
        .args(args)
        .output()
        .expect("failed to run loadgen")
}

fn read_report(path: &Path) -> Report {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn workers_count_every_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path());
    let json = dir.path().join("report.json");
    let url = format!("http://{}", relay.addr);
    let pid = relay.child.id().to_string();

    // 50 readers and 1 stalled reader, 30 per worker: two worker processes.
    let output = loadgen(&[
        "run",
        "--url",
        &url,
        "--server-pid",
        &pid,
        "--subscribers",
        "50",
        "--stalled",
        "1",
        "--channels",
        "5",
        "--messages",
        "50",
        "--rate",
        "500",
        "--per-worker",
        "30",
        "--source-addresses",
        "7",
        "--drain-secs",
        "5",
        "--max-secs",
        "60",
        "--check",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "loadgen failed:\n{stdout}");

    let report = read_report(&json);
    assert_eq!(report.workers, 2);
    assert_eq!(report.connections.established, 50);
    assert!(report.connections.failed.is_empty());
    assert_eq!(report.connections.closed_before_publishing, 0);
    assert_eq!(report.publishing.accepted, 50);
    // 10 messages per channel, each to the 10 readers of its channel.
    assert_eq!(report.deliveries.expected, 500);
    assert_eq!(report.deliveries.delivered, 500);
    assert_eq!(report.deliveries.lost, 0);
    assert_eq!(report.deliveries.duplicated, 0);
    assert_eq!(report.deliveries.foreign, 0);
    // The relay announces each join to the channel as a count event.
    assert!(report.deliveries.named_events > 0);
    let latency = report.deliveries.latency_ms.expect("latency was measured");
    assert_eq!(latency.count, 500);
    assert!(latency.p50 <= latency.p99);
    assert!(latency.p99 <= latency.max);
    assert_eq!(report.stalled.established, 1);

    let server = report.server_process.expect("server figures were read");
    assert!(server.before.rss_kib > 0);
    assert!(server.published.rss_kib > 0);
    assert!(server.total_micros_per_delivery.is_some());
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn refused_connections_counted_by_reason() {
    // Nothing listens on this port once the listener is dropped.
    let url = format!("http://{}", free_addr());
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let output = loadgen(&[
        "run",
        "--url",
        &url,
        "--subscribers",
        "3",
        "--max-secs",
        "30",
        "--check",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        !output.status.success(),
        "--check passed a run without a server"
    );

    let report = read_report(&json);
    assert_eq!(report.connections.established, 0);
    let refused: u64 = report
        .connections
        .failed
        .iter()
        .filter(|(reason, _)| reason.starts_with("connect:") && reason.contains("refused"))
        .map(|(_, count)| count)
        .sum();
    assert_eq!(refused, 3, "{:?}", report.connections.failed);
    assert!(!report.problems.is_empty());
}

#[test]
fn remote_target_rejected_before_connecting() {
    for url in ["http://192.0.2.1:80", "http://10.1.2.3:8080"] {
        let output = loadgen(&["run", "--url", url, "--subscribers", "1"]);
        assert!(!output.status.success(), "{url} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("not a loopback address"), "{url}: {stderr}");
    }
}
