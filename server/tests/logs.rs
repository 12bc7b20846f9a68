//! Log lines of the real `dropthat` binary under hostile and ordinary requests: nothing a
//! client sends reaches the log at error level, and no line contains a body.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// How long the test waits for the relay to start, respond or stop.
const WAIT: Duration = Duration::from_secs(10);

/// A marker inside published ciphertext, looked for in the log.
const BODY_MARKER: &str = "Qm9keU1hcmtlcg";

/// The relay binary running with `rust_log`, and its standard error.
struct Relay {
    child: Child,
    addr: String,
    lines: tokio::task::JoinHandle<Vec<String>>,
    _dir: tempfile::TempDir,
}

impl Relay {
    async fn start(rust_log: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<!doctype html>").unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_dropthat"));
        command
            .args(["--listen", "127.0.0.1:0", "--workers", "1", "--www"])
            .arg(dir.path())
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(level) = rust_log {
            command.env("RUST_LOG", level);
        }
        let mut child = command.spawn().unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();

        let mut seen = Vec::new();
        let addr = tokio::time::timeout(WAIT, async {
            loop {
                let line = stderr
                    .next_line()
                    .await
                    .unwrap()
                    .expect("the relay started");
                seen.push(line.clone());
                if let Some((_, rest)) = line.split_once("address=") {
                    break rest.split_whitespace().next().unwrap().to_owned();
                }
            }
        })
        .await
        .expect("the relay logged its address");
        let lines = tokio::spawn(async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                seen.push(line);
            }
            seen
        });
        Self {
            child,
            addr,
            lines,
            _dir: dir,
        }
    }

    /// Sends `request` on a new connection and returns everything the relay sends back.
    async fn exchange(&self, request: &[u8]) -> String {
        let mut socket = TcpStream::connect(&self.addr).await.unwrap();
        socket.write_all(request).await.unwrap();
        let mut response = Vec::new();
        let read = tokio::time::timeout(WAIT, socket.read_to_end(&mut response)).await;
        assert!(read.is_ok(), "the relay closed the connection");
        String::from_utf8_lossy(&response).into_owned()
    }

    /// Stops the relay with SIGTERM and returns its log lines.
    async fn stop(mut self) -> Vec<String> {
        let pid = self.child.id().expect("the relay is running");
        // SAFETY: kill(2) touches no memory; the pid is this test's own child, not yet reaped.
        let sent = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0);
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the relay stopped")
            .unwrap();
        assert!(status.success(), "{status}");
        self.lines.await.unwrap()
    }
}

fn publish_request(channel: &str) -> String {
    let body = format!(
        r#"{{"iv":"AAAAAAAAAAAAAAAAAAAAAA==","salt":"AAAAAAAAAAA=","ct":"{BODY_MARKER}"}}"#
    );
    format!(
        "POST /pub/{channel} HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn hostile_requests_stay_below_error() {
    let relay = Relay::start(None).await;

    // Malformed heads on a new connection, and after a request that actix-web served.
    relay
        .exchange(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
        .await;
    let kept_alive = "GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n\
                      GET / HTTP/1.1\r\nBad Header\r\n\r\n";
    let response = relay.exchange(kept_alive.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains("HTTP/1.1 400 Bad Request"), "{response}");
    relay
        .exchange(b"POST /pub/room HTTP/1.1\r\nHost: relay\r\nContent-Length: x\r\n\r\n")
        .await;
    relay
        .exchange(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        .await;
    relay.exchange(publish_request("room").as_bytes()).await;

    let lines = relay.stop().await;
    for line in &lines {
        assert!(!line.contains("ERROR"), "{line}");
        assert!(!line.contains("WARN"), "{line}");
        assert!(!line.contains(BODY_MARKER), "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|line| line.contains("dropthat relay stopped"))
    );
}

#[tokio::test]
async fn debug_logs_each_publish() {
    let relay = Relay::start(Some("debug")).await;
    let response = relay.exchange(publish_request("room").as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 202"), "{response}");
    let accepted: serde_json::Value =
        serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let id = accepted["id"].as_str().unwrap();

    let lines = relay.stop().await;
    let published: Vec<&String> = lines
        .iter()
        .filter(|line| line.contains("event published"))
        .collect();
    assert_eq!(published.len(), 1, "{lines:#?}");
    assert!(
        published[0].contains(&format!("id={id}")),
        "{}",
        published[0]
    );
    assert!(published[0].contains("bytes="), "{}", published[0]);
    assert!(published[0].contains("queued=0"), "{}", published[0]);
    for line in &lines {
        assert!(!line.contains(BODY_MARKER), "{line}");
    }
}
