//! Subscriber counts and their coalescing, freeing of channels, and resuming with
//! `Last-Event-ID`, over real connections.

mod common;

use std::time::{Duration, Instant};

use common::{EventReader, TestRelay, client, envelope, publish};

/// Reads frames until `count=expected` arrives, returning every count seen on the way.
async fn counts_until(reader: &mut EventReader, expected: u64) -> Vec<u64> {
    let mut counts = Vec::new();
    while counts.last() != Some(&expected) {
        let frame = reader.next_event().await;
        if let Some(count) = frame.count() {
            counts.push(count);
        }
    }
    counts
}

/// Publishes `marker` to `channel` and returns the event id.
async fn publish_id(
    client: &reqwest::Client,
    relay: &TestRelay,
    channel: &str,
    marker: &str,
) -> String {
    let response = publish(client, relay, channel, envelope(marker)).await;
    assert_eq!(response.status(), 202);
    let accepted: serde_json::Value = response.json().await.unwrap();
    accepted["id"].as_str().unwrap().to_owned()
}

/// Returns the next frame that is not a count or keepalive.
async fn next_non_count(reader: &mut EventReader) -> common::Frame {
    loop {
        let frame = reader.next_event().await;
        if frame.count().is_none() {
            return frame;
        }
    }
}

#[actix_rt::test]
async fn counts_coalesce_during_join_burst() {
    let interval = Duration::from_millis(200);
    let relay = TestRelay::start(&[
        "--count-interval",
        "200ms",
        "--max-streams-per-client",
        "1000",
    ])
    .await;
    let client = client();
    let mut observer = EventReader::open(&client, &relay, "busy").await;
    assert_eq!(observer.skip_opening().await, 1);

    // 200 more subscribers join as fast as they can connect.
    let started = Instant::now();
    let mut joined = Vec::new();
    for _ in 0..200 {
        joined.push(EventReader::open(&client, &relay, "busy").await);
    }
    let counts = counts_until(&mut observer, 201).await;
    let elapsed = started.elapsed();
    eprintln!("200 joins in {elapsed:?} reached the observer as counts {counts:?}");

    // At most one count per interval, plus one for a tick that began the burst.
    let allowed = (elapsed.as_millis() / interval.as_millis()) as usize + 2;
    assert!(
        counts.len() <= allowed,
        "{} counts in {elapsed:?}: {counts:?}",
        counts.len()
    );
    assert!(counts.len() < 50, "counts were not coalesced: {counts:?}");
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]),
        "joins only: {counts:?}"
    );

    // Everyone leaves, and the last count the observer receives is exact.
    drop(joined);
    let counts = counts_until(&mut observer, 1).await;
    assert_eq!(counts.last(), Some(&1));
    assert!(counts.len() < 20, "{counts:?}");
}

#[actix_rt::test]
async fn each_count_sent_once() {
    let relay = TestRelay::start(&["--count-interval", "50ms"]).await;
    let client = client();
    let quiet = Duration::from_millis(600);

    // A lone subscriber gets count=1 when it joins, and nothing at the ticks that follow.
    let mut first = EventReader::open(&client, &relay, "room").await;
    assert_eq!(first.skip_opening().await, 1);
    let after_join = first.next_within(quiet).await;
    assert!(
        after_join.is_err(),
        "a second frame arrived: {after_join:?}"
    );

    // A second subscriber's join reaches the first once; the joiner gets its count at once.
    let mut second = EventReader::open(&client, &relay, "room").await;
    assert_eq!(second.skip_opening().await, 2);
    assert_eq!(first.next_event().await.count(), Some(2));
    let after_change = first.next_within(quiet).await;
    assert!(after_change.is_err(), "count repeated: {after_change:?}");
    let joiner = second.next_within(quiet).await;
    assert!(
        joiner.is_err(),
        "the joiner got its count again: {joiner:?}"
    );
}

#[actix_rt::test]
async fn empty_channel_is_freed() {
    let relay = TestRelay::start(&["--count-interval", "50ms"]).await;
    let client = client();
    let mut reader = EventReader::open(&client, &relay, "short").await;
    reader.skip_opening().await;
    assert_eq!(relay.stats(&client).await["channels"], 1);
    drop(reader);

    let deadline = Instant::now() + common::WAIT;
    loop {
        let stats = relay.stats(&client).await;
        if stats["channels"] == 0 && stats["subscribers"] == 0 {
            assert_eq!(stats["subscribers_closed"], 1);
            break;
        }
        assert!(Instant::now() < deadline, "channel never freed: {stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[actix_rt::test]
async fn resume_delivers_missed_events_once() {
    let relay = TestRelay::start(&[]).await;
    let client = client();
    let mut keeper = EventReader::open(&client, &relay, "room").await;
    keeper.skip_opening().await;

    let first = publish_id(&client, &relay, "room", "AAAA").await;
    let second = publish_id(&client, &relay, "room", "BBBB").await;
    let third = publish_id(&client, &relay, "room", "CCCC").await;

    // As a browser reconnects: the Last-Event-ID header.
    let request = client
        .get(relay.url("/sub/room"))
        .header("Last-Event-ID", &first);
    let mut resumed = EventReader::open_with(request).await;
    resumed.skip_opening().await;
    assert_eq!(next_non_count(&mut resumed).await.id, Some(second.clone()));
    assert_eq!(next_non_count(&mut resumed).await.id, Some(third.clone()));

    // Live events follow the replay without a gap or a repeat.
    let fourth = publish_id(&client, &relay, "room", "DDDD").await;
    let live = next_non_count(&mut resumed).await;
    assert_eq!(live.id, Some(fourth.clone()));
    assert!(live.data().contains("DDDD"));

    // As a page that opens a new EventSource: the lastEventId query parameter.
    let url = relay.url(&format!("/sub/room?lastEventId={third}"));
    let mut by_query = EventReader::open_with(client.get(url)).await;
    by_query.skip_opening().await;
    assert_eq!(next_non_count(&mut by_query).await.id, Some(fourth));

    // The header wins over the query parameter. Resuming from the latest id replays nothing,
    // so the next event is a new one, where the query's older id would replay three.
    let latest = publish_id(&client, &relay, "room", "EEEE").await;
    let request = client
        .get(relay.url("/sub/room"))
        .header("Last-Event-ID", &latest)
        .query(&[("lastEventId", &first)]);
    let mut header_wins = EventReader::open_with(request).await;
    header_wins.skip_opening().await;
    let sixth = publish_id(&client, &relay, "room", "FFFF").await;
    assert_eq!(next_non_count(&mut header_wins).await.id, Some(sixth));
}

#[actix_rt::test]
async fn resume_reports_unknown_and_evicted() {
    let relay = TestRelay::start(&["--history-len", "2"]).await;
    let client = client();
    let mut keeper = EventReader::open(&client, &relay, "room").await;
    keeper.skip_opening().await;

    let mut ids = Vec::new();
    for marker in ["AAAA", "BBBB", "CCCC", "DDDD"] {
        ids.push(publish_id(&client, &relay, "room", marker).await);
    }

    // The history keeps the last two events, so the first id is too old: a reset notice,
    // then every event still kept.
    let request = client
        .get(relay.url("/sub/room"))
        .header("Last-Event-ID", &ids[0]);
    let mut old = EventReader::open_with(request).await;
    old.skip_opening().await;
    let notice = next_non_count(&mut old).await;
    assert_eq!(notice.event.as_deref(), Some("reset"));
    assert_eq!(notice.data(), "reason=too-old");
    assert_eq!(next_non_count(&mut old).await.id, Some(ids[2].clone()));
    assert_eq!(next_non_count(&mut old).await.id, Some(ids[3].clone()));

    // Ids from another relay run, or not ids at all, are unknown.
    let epoch = ids[0].split_once('-').unwrap().0;
    let other_epoch = if epoch == "0000000000000000" {
        "0000000000000001"
    } else {
        "0000000000000000"
    };
    let foreign = format!("{other_epoch}-3");
    let future = format!("{epoch}-999");
    for unknown in [foreign.as_str(), future.as_str(), "not-an-id", "1"] {
        let request = client
            .get(relay.url("/sub/room"))
            .header("Last-Event-ID", unknown);
        let mut reader = EventReader::open_with(request).await;
        reader.skip_opening().await;
        let notice = next_non_count(&mut reader).await;
        assert_eq!(notice.event.as_deref(), Some("reset"), "{unknown}");
        assert_eq!(notice.data(), "reason=unknown-id", "{unknown}");
        // The whole history follows: the last two events.
        assert_eq!(next_non_count(&mut reader).await.id.as_ref(), Some(&ids[2]));
        assert_eq!(next_non_count(&mut reader).await.id.as_ref(), Some(&ids[3]));
    }
}

#[actix_rt::test]
async fn resume_after_restart_replays_history() {
    let data = tempfile::tempdir().unwrap();
    let client = client();
    let mut before = TestRelay::start_in(data.path(), &[]).await;
    let mut reader = EventReader::open(&client, &before, "room").await;
    reader.skip_opening().await;
    let last_seen = publish_id(&client, &before, "room", "AAAA").await;
    assert_eq!(
        next_non_count(&mut reader).await.id,
        Some(last_seen.clone())
    );
    before.shut_down().await;
    assert_eq!(reader.next().await, None, "the stream ends at the shutdown");

    // A second relay process on the same address. Another member reconnects first, and
    // two messages are published before the first reader is back.
    let addr = before.addr().to_owned();
    let after = TestRelay::start_at(&addr, data.path(), &[]).await;
    let mut other = EventReader::open(&client, &after, "room").await;
    other.skip_opening().await;
    let first_new = publish_id(&client, &after, "room", "BBBB").await;
    let second_new = publish_id(&client, &after, "room", "CCCC").await;
    assert_ne!(first_new.split_once('-'), last_seen.split_once('-'));

    // The reader resumes with an id of the previous process: a notice, then both messages
    // in order, then live events, each once.
    let request = client
        .get(after.url("/sub/room"))
        .header("Last-Event-ID", &last_seen);
    let mut resumed = EventReader::open_with(request).await;
    resumed.skip_opening().await;
    let notice = next_non_count(&mut resumed).await;
    assert_eq!(notice.event.as_deref(), Some("reset"));
    assert_eq!(notice.data(), "reason=unknown-id");
    let replayed = next_non_count(&mut resumed).await;
    assert_eq!(replayed.id, Some(first_new));
    assert!(replayed.data().contains("BBBB"), "{replayed:?}");
    assert_eq!(next_non_count(&mut resumed).await.id, Some(second_new));
    let live = publish_id(&client, &after, "room", "DDDD").await;
    assert_eq!(next_non_count(&mut resumed).await.id, Some(live));
}

#[actix_rt::test]
async fn history_expires_after_retention() {
    let relay =
        TestRelay::start(&["--history-retention", "300ms", "--count-interval", "50ms"]).await;
    let client = client();
    let mut reader = EventReader::open(&client, &relay, "room").await;
    reader.skip_opening().await;
    let id = publish_id(&client, &relay, "room", "AAAA").await;
    next_non_count(&mut reader).await;
    drop(reader);

    // Within the retention time the channel and its history are kept.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(relay.stats(&client).await["channels"], 1);

    let deadline = Instant::now() + common::WAIT;
    while relay.stats(&client).await["channels"] != 0 {
        assert!(Instant::now() < deadline, "history never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let request = client
        .get(relay.url("/sub/room"))
        .header("Last-Event-ID", &id);
    let mut late = EventReader::open_with(request).await;
    late.skip_opening().await;
    let notice = next_non_count(&mut late).await;
    assert_eq!(notice.event.as_deref(), Some("reset"));
    assert_eq!(notice.data(), "reason=unknown-id");
}
