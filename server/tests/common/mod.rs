//! A relay started in this test process on `127.0.0.1:0` from real flags, and a small
//! server-sent events reader over reqwest.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use clap::Parser;
use dropthat_server::config::Config;
use dropthat_server::server;
use futures_util::{Stream, StreamExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a test waits for any single expected frame or response.
pub const WAIT: Duration = Duration::from_secs(10);

/// A relay serving on a loopback port, with its own page and data directories.
pub struct TestRelay {
    pub base: String,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
    _www: tempfile::TempDir,
    _data: Option<tempfile::TempDir>,
}

impl TestRelay {
    /// Starts a relay with `args` added to the listen address, page and data directory flags.
    pub async fn start(args: &[&str]) -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut relay = Self::start_in(data.path(), args).await;
        relay._data = Some(data);
        relay
    }

    /// Starts a relay whose blobs live in `data_dir`, which the caller keeps.
    pub async fn start_in(data_dir: &Path, args: &[&str]) -> Self {
        Self::start_with_scheme("http", data_dir, args).await
    }

    /// Starts a relay and names its URLs with `scheme`.
    pub async fn start_with_scheme(scheme: &str, data_dir: &Path, args: &[&str]) -> Self {
        Self::launch(scheme, "127.0.0.1:0", data_dir, args).await
    }

    /// Starts a relay on `listen`, such as the address of a relay that was shut down, whose
    /// blobs live in `data_dir`.
    pub async fn start_at(listen: &str, data_dir: &Path, args: &[&str]) -> Self {
        Self::launch("http", listen, data_dir, args).await
    }

    async fn launch(scheme: &str, listen: &str, data_dir: &Path, args: &[&str]) -> Self {
        let www = tempfile::tempdir().unwrap();
        std::fs::write(
            www.path().join("index.html"),
            "<!doctype html><title>t</title>",
        )
        .unwrap();
        let www_path = www.path().to_str().unwrap().to_owned();
        let data_path = data_dir.to_str().unwrap().to_owned();
        let mut argv = vec![
            "dropthat",
            "--listen",
            listen,
            "--workers",
            "1",
            "--www",
            &www_path,
            "--data-dir",
            &data_path,
        ];
        argv.extend_from_slice(args);
        let config = Config::try_parse_from(argv).unwrap();

        let (stop, stopped) = oneshot::channel::<()>();
        let relay = server::start(&config, async move {
            let _ = stopped.await;
        })
        .unwrap();
        let base = format!("{scheme}://{}", relay.addr);
        let server = tokio::spawn(relay.server);
        Self {
            base,
            data_dir: data_dir.to_owned(),
            stop: Some(stop),
            server: Some(server),
            _www: www,
            _data: None,
        }
    }

    /// Returns the address the relay listens on.
    pub fn addr(&self) -> &str {
        self.base
            .split_once("://")
            .map_or(&self.base, |(_, addr)| addr)
    }

    /// Returns the URL of `path` on this relay.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Shuts the relay down as a stop signal would, and waits until it has stopped.
    pub async fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(30), server)
                .await
                .expect("the relay stopped within 30 s")
                .unwrap()
                .unwrap();
        }
    }

    /// Returns the relay's `/stats` figures.
    pub async fn stats(&self, client: &reqwest::Client) -> serde_json::Value {
        let response = client.get(self.url("/stats")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Builds a plain HTTP client that keeps no idle connections, so each stream has its own.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .no_proxy()
        .build()
        .unwrap()
}

/// Returns an envelope with SJCL's fields and `marker` in its ciphertext field.
pub fn envelope(marker: &str) -> String {
    format!(
        r#"{{"iv":"tjp81jkAzUpW1bI9gLDDpg==","v":1,"iter":10000,"ks":128,"ts":64,"mode":"ccm","adata":"","cipher":"aes","salt":"Adsr7JkbK8A=","ct":"{marker}"}}"#
    )
}

/// Publishes `body` as JSON and returns the response.
pub async fn publish(
    client: &reqwest::Client,
    relay: &TestRelay,
    channel: &str,
    body: String,
) -> reqwest::Response {
    client
        .post(relay.url(&format!("/pub/{channel}")))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// One parsed server-sent event frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Vec<String>,
    pub retry: Option<String>,
    pub comment: bool,
}

impl Frame {
    /// Returns the data lines joined as the browser would.
    pub fn data(&self) -> String {
        self.data.join("\n")
    }

    /// Returns whether this is a `count` event with `count=N`.
    pub fn count(&self) -> Option<u64> {
        if self.event.as_deref() != Some("count") {
            return None;
        }
        self.data().strip_prefix("count=")?.parse().ok()
    }
}

/// Reads frames from an event stream response.
pub struct EventReader {
    body: std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buffer: BytesMut,
}

impl EventReader {
    /// Opens `/sub/{channel}` and checks that it is an event stream.
    pub async fn open(client: &reqwest::Client, relay: &TestRelay, channel: &str) -> Self {
        Self::open_with(client.get(relay.url(&format!("/sub/{channel}")))).await
    }

    /// Sends `request` and checks that the response is an event stream.
    pub async fn open_with(request: reqwest::RequestBuilder) -> Self {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "event stream status");
        Self::from_response(response)
    }

    /// Wraps a response that the caller already checked.
    pub fn from_response(response: reqwest::Response) -> Self {
        Self {
            body: Box::pin(response.bytes_stream()),
            buffer: BytesMut::new(),
        }
    }

    /// Returns the next frame, or `None` when the stream ended cleanly. Panics on a transport
    /// error or after [`WAIT`].
    pub async fn next(&mut self) -> Option<Frame> {
        self.next_within(WAIT)
            .await
            .expect("a frame within the wait")
    }

    /// Returns the next frame within `timeout`: `Err` on timeout, `Ok(None)` at a clean end.
    pub async fn next_within(&mut self, timeout: Duration) -> Result<Option<Frame>, ()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(end) = find_blank_line(&self.buffer) {
                let block = self.buffer.split_to(end + 2);
                return Ok(Some(parse_frame(&block[..end])));
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .map_err(|_| ())?;
            match chunk {
                Some(Ok(bytes)) => self.buffer.extend_from_slice(&bytes),
                Some(Err(error)) => panic!("event stream failed: {error}"),
                None => return Ok(None),
            }
        }
    }

    /// Returns the next frame that is not a keepalive comment.
    pub async fn next_event(&mut self) -> Frame {
        loop {
            let frame = self.next().await.expect("the stream is still open");
            if !frame.comment {
                return frame;
            }
        }
    }

    /// Skips the opening `retry:` hint and first count, checking both.
    pub async fn skip_opening(&mut self) -> u64 {
        let retry = self.next_event().await;
        assert!(
            retry.retry.is_some(),
            "first frame is the retry hint: {retry:?}"
        );
        self.next_event()
            .await
            .count()
            .expect("second frame is a count")
    }
}

fn find_blank_line(buffer: &[u8]) -> Option<usize> {
    buffer.windows(2).position(|w| w == b"\n\n")
}

fn parse_frame(block: &[u8]) -> Frame {
    let text = std::str::from_utf8(block).expect("frames are UTF-8");
    let mut frame = Frame::default();
    for line in text.split('\n') {
        if line.starts_with(':') {
            frame.comment = true;
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
        match field {
            "id" => frame.id = Some(value),
            "event" => frame.event = Some(value),
            "data" => frame.data.push(value),
            "retry" => frame.retry = Some(value),
            other => panic!("unexpected field {other:?} in frame {text:?}"),
        }
    }
    frame
}
