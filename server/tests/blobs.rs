//! Blob upload and download over real connections: round trip, headers, every rejection,
//! expiry, the quota, and a restart on the same data directory.

mod common;

use std::time::{Duration, Instant};

use common::{EventReader, TestRelay, client};
use reqwest::StatusCode;

async fn upload(
    client: &reqwest::Client,
    relay: &TestRelay,
    channel: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    client
        .post(relay.url(&format!("/blob/{channel}")))
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// Uploads `body` to `channel`, which must have a subscriber, and returns the blob id.
async fn upload_id(
    client: &reqwest::Client,
    relay: &TestRelay,
    channel: &str,
    body: Vec<u8>,
) -> String {
    let response = upload(client, relay, channel, body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: serde_json::Value = response.json().await.unwrap();
    created["id"].as_str().unwrap().to_owned()
}

/// Returns bytes that are not valid UTF-8 or any known file type, as ciphertext is.
fn ciphertext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + 0x80) as u8).collect()
}

#[actix_rt::test]
async fn blob_round_trips_with_headers() {
    let relay = TestRelay::start(&[]).await;
    let client = client();
    let mut room = EventReader::open(&client, &relay, "room").await;
    room.skip_opening().await;

    let bytes = ciphertext(100_000);
    let response = upload(&client, &relay, "room", bytes.clone()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created: serde_json::Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(created["bytes"], 100_000);
    assert_eq!(location, format!("/blob/{id}"));

    let download = client.get(relay.url(&location)).send().await.unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    let headers = download.headers().clone();
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["content-type"], "application/octet-stream");
    assert_eq!(download.bytes().await.unwrap(), bytes);

    let stats = relay.stats(&client).await;
    assert_eq!(stats["blobs"], 1);
    assert_eq!(stats["blob_bytes"], 100_000);

    // A second upload gets a different id.
    let other = upload_id(&client, &relay, "room", ciphertext(10)).await;
    assert_ne!(other, id);
}

#[actix_rt::test]
async fn blob_requests_rejected_with_reasons() {
    let relay = TestRelay::start(&["--max-blob-bytes", "1000"]).await;
    let client = client();

    let no_room = upload(&client, &relay, "nobody-here", ciphertext(10)).await;
    assert_eq!(no_room.status(), StatusCode::NOT_FOUND);
    assert!(no_room.text().await.unwrap().contains("no subscribers"));

    let mut room = EventReader::open(&client, &relay, "room").await;
    room.skip_opening().await;

    let too_big = upload(&client, &relay, "room", ciphertext(1001)).await;
    assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        too_big
            .text()
            .await
            .unwrap()
            .contains("limit of 1000 bytes")
    );

    // Without a Content-Length the body is counted as it arrives.
    let chunks =
        futures_util::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(ciphertext(300))));
    let chunked = client
        .post(relay.url("/blob/room"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let bad_channel = upload(&client, &relay, "a.b", ciphertext(10)).await;
    assert_eq!(bad_channel.status(), StatusCode::BAD_REQUEST);

    let unknown = client
        .get(relay.url(&format!("/blob/{}", "ab".repeat(16))))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(
        unknown
            .text()
            .await
            .unwrap()
            .contains("does not exist or has expired")
    );

    for malformed in [
        "xyz",
        "ABABABABABABABABABABABABABABABAB",
        "..%2F..%2Fetc%2Fpasswd",
    ] {
        let response = client
            .get(relay.url(&format!("/blob/{malformed}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{malformed}");
        assert!(response.text().await.unwrap().contains("invalid blob id"));
    }

    let tmp = std::fs::read_dir(relay.data_dir.join("tmp"))
        .unwrap()
        .count();
    assert_eq!(tmp, 0, "rejected uploads leave no temporary files");
    assert_eq!(relay.stats(&client).await["blobs"], 0);
}

#[actix_rt::test]
async fn quota_rejects_with_insufficient_storage() {
    let relay = TestRelay::start(&[
        "--blob-quota-bytes",
        "2500",
        "--blob-quota-per-client-bytes",
        "2500",
    ])
    .await;
    let client = client();
    let mut room = EventReader::open(&client, &relay, "room").await;
    room.skip_opening().await;

    upload_id(&client, &relay, "room", ciphertext(1000)).await;
    upload_id(&client, &relay, "room", ciphertext(1000)).await;
    let full = upload(&client, &relay, "room", ciphertext(1000)).await;
    assert_eq!(full.status(), StatusCode::INSUFFICIENT_STORAGE);
    assert!(full.text().await.unwrap().contains("storage is full"));

    // What still fits is accepted.
    upload_id(&client, &relay, "room", ciphertext(500)).await;
    assert_eq!(relay.stats(&client).await["blob_bytes"], 2500);
}

#[actix_rt::test]
async fn client_share_limits_one_client() {
    let relay = TestRelay::start(&[
        "--blob-quota-bytes",
        "10000",
        "--blob-quota-per-client-bytes",
        "2500",
        "--trusted-proxies",
        "127.0.0.1",
        "--upload-burst",
        "20",
    ])
    .await;
    let client = client();
    let mut room = EventReader::open(&client, &relay, "room").await;
    room.skip_opening().await;
    let upload_as = |forwarded_for: &'static str, len: usize| {
        client
            .post(relay.url("/blob/room"))
            .header("X-Forwarded-For", forwarded_for)
            .body(ciphertext(len))
            .send()
    };

    for _ in 0..2 {
        let stored = upload_as("192.0.2.1", 1000).await.unwrap();
        assert_eq!(stored.status(), StatusCode::CREATED);
    }
    let over = upload_as("192.0.2.1", 1000).await.unwrap();
    assert_eq!(over.status(), StatusCode::INSUFFICIENT_STORAGE);
    let wait: u64 = over.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        wait > 3600,
        "the oldest blob expires in about a day: {wait}"
    );
    let message = over.text().await.unwrap();
    assert!(
        message.contains("2000 bytes of its 2500-byte share"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 1, "{message}");

    // What is left of the share, and other clients, still get their uploads stored.
    let rest = upload_as("192.0.2.1", 500).await.unwrap();
    assert_eq!(rest.status(), StatusCode::CREATED);
    let other = upload_as("192.0.2.2", 1000).await.unwrap();
    assert_eq!(other.status(), StatusCode::CREATED);

    // An IPv6 client's share covers its /64.
    for (address, expected) in [
        ("2001:db8:0:1::a", StatusCode::CREATED),
        ("2001:db8:0:1::b", StatusCode::CREATED),
        ("2001:db8:0:1::c", StatusCode::INSUFFICIENT_STORAGE),
    ] {
        let response = upload_as(address, 1000).await.unwrap();
        assert_eq!(response.status(), expected, "{address}");
    }
    assert_eq!(relay.stats(&client).await["blob_bytes"], 5500);
}

#[actix_rt::test]
async fn stalled_upload_times_out_and_deletes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let relay = TestRelay::start(&["--body-idle-timeout", "500ms"]).await;
    let client = client();
    let mut room = EventReader::open(&client, &relay, "room").await;
    room.skip_opening().await;

    let mut socket = tokio::net::TcpStream::connect(relay.addr()).await.unwrap();
    socket
        .write_all(b"POST /blob/room HTTP/1.1\r\nHost: relay\r\nContent-Length: 100000\r\n\r\n")
        .await
        .unwrap();
    socket.write_all(&ciphertext(1000)).await.unwrap();
    // The upload has begun: its temporary file exists.
    let tmp = relay.data_dir.join("tmp");
    let deadline = Instant::now() + common::WAIT;
    while std::fs::read_dir(&tmp).unwrap().count() == 0 {
        assert!(Instant::now() < deadline, "no temporary file appeared");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut response = Vec::new();
    tokio::time::timeout(common::WAIT, socket.read_to_end(&mut response))
        .await
        .expect("the relay answered and closed the connection")
        .unwrap();
    let response = String::from_utf8(response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 408 Request Timeout\r\n"),
        "{response}"
    );
    assert!(
        response.ends_with(
            "\r\n\r\nno byte of the request body arrived for 500ms; send the body without pausing\n"
        ),
        "{response}"
    );
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "temporary file left"
    );
    let stats = relay.stats(&client).await;
    assert_eq!(stats["requests_timed_out"], 1);
    assert_eq!(stats["blobs"], 0);
}

#[actix_rt::test]
async fn expired_blob_is_gone_and_deleted() {
    let relay = TestRelay::start(&["--blob-expiry", "500ms"]).await;
    let client = client();
    let mut room = EventReader::open(&client, &relay, "room").await;
    room.skip_opening().await;
    let id = upload_id(&client, &relay, "room", ciphertext(64)).await;
    let url = relay.url(&format!("/blob/{id}"));
    assert_eq!(
        client.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );

    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        client.get(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // The sweeper deletes the file, then records the figures once its walk is over.
    let blob_path = relay.data_dir.join("blobs").join(&id);
    let deadline = Instant::now() + common::WAIT;
    while blob_path.exists() || relay.stats(&client).await["blobs"] != 0 {
        assert!(
            Instant::now() < deadline,
            "expired blob never deleted and uncounted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(relay.stats(&client).await["blob_bytes"], 0);
}

#[actix_rt::test]
async fn blobs_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let client = client();
    let bytes = ciphertext(5000);

    let mut first = TestRelay::start_in(data.path(), &[]).await;
    let mut room = EventReader::open(&client, &first, "room").await;
    room.skip_opening().await;
    let id = upload_id(&client, &first, "room", bytes.clone()).await;
    drop(room);
    first.shut_down().await;

    // A crash during an upload leaves a temporary file; the next start removes it.
    std::fs::write(data.path().join("tmp").join("interrupted.part"), b"half").unwrap();

    let second = TestRelay::start_in(data.path(), &[]).await;
    let download = client
        .get(second.url(&format!("/blob/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(download.bytes().await.unwrap(), bytes);
    let stats = second.stats(&client).await;
    assert_eq!(stats["blobs"], 1);
    assert_eq!(stats["blob_bytes"], 5000);
    assert_eq!(
        std::fs::read_dir(data.path().join("tmp")).unwrap().count(),
        0
    );
}
