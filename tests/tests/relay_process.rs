//! The real `dropthat` binary as a process: graceful shutdown on signals, a stalled reader
//! with the relay's memory measured, and what its log lines leave out.

use std::time::{Duration, Instant};

use dropthat_tests::relay::Relay;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const WAIT: Duration = Duration::from_secs(15);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .no_proxy()
        .build()
        .unwrap()
}

/// Returns an envelope with SJCL's fields whose ciphertext field is `ct`.
fn envelope(ct: &str) -> String {
    format!(
        r#"{{"iv":"tjp81jkAzUpW1bI9gLDDpg==","v":1,"iter":10000,"ks":128,"ts":64,"mode":"ccm","adata":"","cipher":"aes","salt":"Adsr7JkbK8A=","ct":"{ct}"}}"#
    )
}

async fn stats(client: &reqwest::Client, relay: &Relay) -> serde_json::Value {
    let response = client.get(relay.url("/stats")).send().await.unwrap();
    response.json().await.unwrap()
}

/// Opens an event stream and waits for its first bytes, so the subscription is registered.
async fn open_stream(
    client: &reqwest::Client,
    relay: &Relay,
    channel: &str,
) -> impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin + use<> {
    let response = client
        .get(relay.url(&format!("/sub/{channel}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = Box::pin(response.bytes_stream());
    let first = tokio::time::timeout(WAIT, body.next()).await.unwrap();
    assert!(first.unwrap().unwrap().starts_with(b"retry:"));
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_streams_finishes_uploads() {
    let mut relay = Relay::start(&["--shutdown-timeout", "10s"]).await;
    let client = client();
    let mut stream = open_stream(&client, &relay, "room").await;

    // An upload whose body arrives in two parts, with the signal in between.
    let (parts, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let body = reqwest::Body::wrap_stream(tokio_stream_of(receiver));
    let upload = {
        let request = client
            .post(relay.url("/blob/room"))
            .header("Content-Length", "2000")
            .body(body);
        tokio::spawn(request.send())
    };
    parts.send(Ok(vec![7u8; 1000])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    relay.signal(libc::SIGTERM);

    // The event stream ends cleanly, without a transport error, so a browser reconnects.
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(chunk) = stream.next().await {
            chunk.expect("the stream ends without an error");
        }
    })
    .await;
    assert!(ended.is_ok(), "the event stream did not end after SIGTERM");

    // New connections are no longer accepted.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = client.get(relay.url("/healthz")).send().await;
    assert!(refused.is_err(), "a new request was served after SIGTERM");

    // The upload in progress still completes.
    parts.send(Ok(vec![7u8; 1000])).await.unwrap();
    drop(parts);
    let response = upload.await.unwrap().unwrap();
    assert_eq!(response.status(), 201);

    let status = relay.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    let logs = relay.logs().join("\n");
    assert!(logs.contains("signal=\"SIGTERM\""), "{logs}");
    assert!(logs.contains("dropthat relay stopped"), "{logs}");
}

/// Adapts an mpsc receiver to a stream of body parts.
fn tokio_stream_of(
    mut receiver: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_with_exit_zero() {
    let mut relay = Relay::start(&[]).await;
    let client = client();
    let mut stream = open_stream(&client, &relay, "room").await;
    relay.signal(libc::SIGINT);
    let ended = tokio::time::timeout(WAIT, async { while stream.next().await.is_some() {} }).await;
    assert!(ended.is_ok(), "the event stream did not end after SIGINT");
    let status = relay.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "exit status after SIGINT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_reader_dropped_memory_flat() {
    let relay = Relay::start(&["--publish-rate", "100000", "--publish-burst", "100000"]).await;
    let client = client();

    // A subscriber that sends its request and then never reads.
    let mut stalled = TcpStream::connect(relay.addr).await.unwrap();
    stalled
        .write_all(b"GET /sub/room HTTP/1.1\r\nHost: relay\r\n\r\n")
        .await
        .unwrap();

    // A subscriber that keeps reading, counting the events it gets.
    let mut healthy = open_stream(&client, &relay, "room").await;
    let reader = tokio::spawn(async move {
        let mut events = 0usize;
        let mut tail = Vec::new();
        while let Some(Ok(chunk)) = healthy.next().await {
            tail.extend_from_slice(&chunk);
            while let Some(end) = tail.windows(2).position(|w| w == b"\n\n") {
                if tail.starts_with(b"id: ") {
                    events += 1;
                }
                tail.drain(..end + 2);
            }
        }
        events
    });

    let deadline = Instant::now() + WAIT;
    while stats(&client, &relay).await["subscribers"] != 2 {
        assert!(Instant::now() < deadline, "both subscribers never joined");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 16 KiB envelopes: 200 to warm up, then 3000 more, 48 MiB in all.
    let ct = "A".repeat(16 * 1024);
    let body = envelope(&ct);
    let send = |body: String| {
        client
            .post(relay.url("/pub/room"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    for _ in 0..200 {
        assert_eq!(send(body.clone()).await.unwrap().status(), 202);
    }
    let rss_before = relay.rss_kib();
    for _ in 0..3000 {
        assert_eq!(send(body.clone()).await.unwrap().status(), 202);
    }
    let rss_after = relay.rss_kib();

    let figures = stats(&client, &relay).await;
    assert_eq!(figures["slow_subscribers_dropped"], 1, "{figures}");
    assert_eq!(figures["subscribers"], 1, "{figures}");
    let growth = rss_after.saturating_sub(rss_before);
    eprintln!("relay RSS {rss_before} KiB before, {rss_after} KiB after 3000 more events");
    assert!(
        growth < 16 * 1024,
        "relay memory grew by {growth} KiB while 48 MiB went past a stalled reader \
         ({rss_before} KiB before, {rss_after} KiB after)"
    );

    // The stalled connection was shut down: reading it now reaches the end.
    let mut buffer = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match stalled.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the stalled connection was never closed");

    // The reader that kept up got every event.
    drop(client);
    let relay_addr = relay.addr;
    drop(relay);
    let events = tokio::time::timeout(WAIT, reader).await.unwrap().unwrap();
    assert_eq!(
        events, 3200,
        "events the healthy reader got from {relay_addr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_omit_bodies_and_addresses() {
    let marker = "c2VjcmV0LW1hcmtlci0xNzM5";
    for log_addresses in [false, true] {
        let args: &[&str] = if log_addresses {
            &["--log-client-addresses"]
        } else {
            &[]
        };
        let relay = Relay::start_logging(args, "debug").await;
        let client = client();
        let stream = open_stream(&client, &relay, "room").await;
        let published = client
            .post(relay.url("/pub/room"))
            .header("Content-Type", "application/json")
            .body(envelope(marker))
            .send()
            .await
            .unwrap();
        assert_eq!(published.status(), 202);
        let rejected = client
            .post(relay.url("/pub/room"))
            .header("Content-Type", "application/json")
            .body(format!("{{\"ct\":\"{marker}\"}}"))
            .send()
            .await
            .unwrap();
        assert_eq!(rejected.status(), 400);
        let uploaded = client
            .post(relay.url("/blob/room"))
            .body(marker.as_bytes().to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(uploaded.status(), 201);
        drop(stream);
        tokio::time::sleep(Duration::from_millis(300)).await;

        let logs = relay.logs();
        let text = logs.join("\n");
        assert!(!text.contains(marker), "a body reached the log:\n{text}");
        let lines_with_address = logs
            .iter()
            .filter(|line| line.contains("127.0.0.1") && !line.contains("listening"))
            .count();
        if log_addresses {
            assert!(
                lines_with_address > 0,
                "no client address with the flag:\n{text}"
            );
        } else {
            assert_eq!(
                lines_with_address, 0,
                "a client address without the flag:\n{text}"
            );
        }
    }
}
