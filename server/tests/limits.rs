//! Stream and rate limits over real connections, and client addresses behind trusted proxies.

mod common;

use common::{EventReader, TestRelay, client, envelope};
use reqwest::StatusCode;

fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[actix_rt::test]
async fn stream_limits_reject_beyond_maximum() {
    let relay = TestRelay::start(&[
        "--max-streams",
        "4",
        "--max-streams-per-client",
        "3",
        "--max-subscribers-per-channel",
        "2",
        "--trusted-proxies",
        "127.0.0.1",
    ])
    .await;
    let client = client();
    let open_as = |channel: &str, forwarded_for: &'static str| {
        client
            .get(relay.url(&format!("/sub/{channel}")))
            .header("X-Forwarded-For", forwarded_for)
            .send()
    };

    // Per channel: the third subscriber of one channel gets 503.
    let a1 = open_as("one", "192.0.2.1").await.unwrap();
    let a2 = open_as("one", "192.0.2.1").await.unwrap();
    assert_eq!(a1.status(), StatusCode::OK);
    assert_eq!(a2.status(), StatusCode::OK);
    let full_channel = open_as("one", "192.0.2.2").await.unwrap();
    assert_eq!(full_channel.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(retry_after(&full_channel) > 0);
    assert!(
        full_channel
            .text()
            .await
            .unwrap()
            .contains("maximum per channel")
    );

    // Per client: a fourth stream from 192.0.2.1 gets 429.
    let a3 = open_as("two", "192.0.2.1").await.unwrap();
    assert_eq!(a3.status(), StatusCode::OK);
    let too_many = open_as("three", "192.0.2.1").await.unwrap();
    assert_eq!(too_many.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&too_many) > 0);
    assert!(
        too_many
            .text()
            .await
            .unwrap()
            .contains("maximum per client")
    );

    // Overall: the fifth stream of the relay gets 503, from any client.
    let b1 = open_as("two", "192.0.2.2").await.unwrap();
    assert_eq!(b1.status(), StatusCode::OK);
    let overall = open_as("four", "192.0.2.3").await.unwrap();
    assert_eq!(overall.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        overall
            .text()
            .await
            .unwrap()
            .contains("maximum of 4 event streams")
    );
    assert_eq!(
        relay.stats(&client).await["streams_rejected"],
        3,
        "one rejection each by the channel, client and overall limits"
    );

    // A closed stream frees its place.
    drop(a3);
    let deadline = std::time::Instant::now() + common::WAIT;
    loop {
        let retry = open_as("four", "192.0.2.3").await.unwrap();
        if retry.status() == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the place was never freed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        relay.stats(&client).await["streams_rejected"]
            .as_u64()
            .unwrap()
            >= 3
    );
    drop((a1, a2, b1));
}

#[actix_rt::test]
async fn publish_rate_limited_per_client() {
    let relay = TestRelay::start(&[
        "--publish-rate",
        "0.5",
        "--publish-burst",
        "3",
        "--trusted-proxies",
        "127.0.0.0/8",
    ])
    .await;
    let client = client();
    let send_as = |forwarded_for: &'static str| {
        client
            .post(relay.url("/pub/room"))
            .header("Content-Type", "application/json")
            .header("X-Forwarded-For", forwarded_for)
            .body(envelope("AAAA"))
            .send()
    };

    for _ in 0..3 {
        assert_eq!(
            send_as("198.51.100.1").await.unwrap().status(),
            StatusCode::ACCEPTED
        );
    }
    let limited = send_as("198.51.100.1").await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&limited), 2);
    assert!(
        limited
            .text()
            .await
            .unwrap()
            .contains("too many publish requests")
    );

    // Another client behind the same proxy has its own bucket.
    assert_eq!(
        send_as("198.51.100.2").await.unwrap().status(),
        StatusCode::ACCEPTED
    );
    // IPv6 clients share a bucket per /64.
    for _ in 0..3 {
        let status = send_as("2001:db8:0:1::a").await.unwrap().status();
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let same_64 = send_as("2001:db8:0:1::b").await.unwrap();
    assert_eq!(same_64.status(), StatusCode::TOO_MANY_REQUESTS);

    assert_eq!(relay.stats(&client).await["requests_rate_limited"], 2);
}

#[actix_rt::test]
async fn forwarded_for_ignored_without_trust() {
    let relay = TestRelay::start(&["--publish-rate", "0.5", "--publish-burst", "2"]).await;
    let client = client();
    // Every request claims a fresh address, but the relay trusts no proxy, so all of them
    // count against the loopback peer.
    let mut statuses = Vec::new();
    for i in 0..3 {
        let response = client
            .post(relay.url("/pub/room"))
            .header("Content-Type", "application/json")
            .header("X-Forwarded-For", format!("203.0.113.{i}"))
            .body(envelope("AAAA"))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [202, 202, 429]);
}

#[actix_rt::test]
async fn upload_rate_limited_per_client() {
    let relay = TestRelay::start(&["--upload-rate", "0.1", "--upload-burst", "1"]).await;
    let client = client();
    let mut room = EventReader::open(&client, &relay, "room").await;
    room.skip_opening().await;
    let post = || {
        client
            .post(relay.url("/blob/room"))
            .body(vec![1u8; 16])
            .send()
    };

    assert_eq!(post().await.unwrap().status(), StatusCode::CREATED);
    let limited = post().await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&limited), 10);
    assert!(
        limited
            .text()
            .await
            .unwrap()
            .contains("too many upload requests")
    );
}

/// Publishes `body` to `channel` and returns the event id.
async fn publish_id(
    client: &reqwest::Client,
    relay: &TestRelay,
    channel: &str,
    body: String,
) -> String {
    let response = common::publish(client, relay, channel, body).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: serde_json::Value = response.json().await.unwrap();
    accepted["id"].as_str().unwrap().to_owned()
}

/// Opens `channel` with `Last-Event-ID: last_seen` and returns the first frame after the
/// opening count.
async fn first_after_resume(
    client: &reqwest::Client,
    relay: &TestRelay,
    channel: &str,
    last_seen: &str,
) -> common::Frame {
    let request = client
        .get(relay.url(&format!("/sub/{channel}")))
        .header("Last-Event-ID", last_seen);
    let mut reader = EventReader::open_with(request).await;
    reader.skip_opening().await;
    reader.next_event().await
}

#[actix_rt::test]
async fn history_budget_frees_idle_channels() {
    let budget = 64 * 1024;
    let relay = TestRelay::start(&[
        "--max-history-bytes",
        &budget.to_string(),
        "--history-retention",
        "1h",
        "--publish-burst",
        "100",
    ])
    .await;
    let client = client();
    let large = |marker: char| envelope(&marker.to_string().repeat(8 * 1024));

    // Eight rooms each keep two events of 8 KiB after their member leaves: twice the budget.
    let mut first_ids = Vec::new();
    for room in 0..8 {
        let channel = format!("room-{room}");
        let mut member = EventReader::open(&client, &relay, &channel).await;
        member.skip_opening().await;
        first_ids.push(publish_id(&client, &relay, &channel, large('A')).await);
        publish_id(&client, &relay, &channel, large('B')).await;
        drop(member);
    }
    let stats = relay.stats(&client).await;
    assert!(
        stats["history_bytes"].as_u64().unwrap() <= budget,
        "{stats}"
    );
    assert!(stats["history_evictions"].as_u64().unwrap() >= 1, "{stats}");

    // The oldest room lost its history, the newest kept it.
    let oldest = first_after_resume(&client, &relay, "room-0", &first_ids[0]).await;
    assert_eq!(oldest.event.as_deref(), Some("reset"));
    assert_eq!(oldest.data(), "reason=unknown-id");
    let newest = first_after_resume(&client, &relay, "room-7", &first_ids[7]).await;
    assert_eq!(newest.event, None, "no reset: {newest:?}");
    assert!(newest.data().contains("BBBB"), "the second event follows");

    // A room with a member still gets every event once the budget is spent.
    let mut live = EventReader::open(&client, &relay, "live").await;
    live.skip_opening().await;
    for marker in ['C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L'] {
        let id = publish_id(&client, &relay, "live", large(marker)).await;
        let mut frame = live.next_event().await;
        while frame.count().is_some() {
            frame = live.next_event().await;
        }
        assert_eq!(frame.id, Some(id));
    }
    let stats = relay.stats(&client).await;
    assert!(
        stats["history_bytes"].as_u64().unwrap() <= budget,
        "{stats}"
    );
}
