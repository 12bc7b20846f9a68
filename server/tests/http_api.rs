//! The relay's HTTP API over real connections: status codes and messages for bad requests,
//! publishing through to subscribers, injection attempts, headers, health and figures.

mod common;

use common::{EventReader, TestRelay, client, envelope, publish};
use dropthat_server::routes::CONTENT_SECURITY_POLICY;
use reqwest::StatusCode;

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header on {}", response.url()))
        .to_str()
        .unwrap()
        .to_owned()
}

#[actix_rt::test]
async fn subscribe_rejects_invalid_channels() {
    let relay = TestRelay::start(&[]).await;
    let client = client();
    let too_long = "a".repeat(65);
    let cases = [
        ("a.b", "'.'"),
        ("a%20b", "' '"),
        ("%C3%A9t%C3%A9", "'é'"),
        (too_long.as_str(), "65 characters"),
    ];
    for (channel, expected) in cases {
        let response = client
            .get(relay.url(&format!("/sub/{channel}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{channel}");
        let text = response.text().await.unwrap();
        assert!(text.starts_with("invalid channel id"), "{channel}: {text}");
        assert!(text.contains(expected), "{channel}: {text}");
    }
    let longest = "a".repeat(64);
    let mut accepted = EventReader::open(&client, &relay, &longest).await;
    assert_eq!(accepted.skip_opening().await, 1);
}

#[actix_rt::test]
async fn event_stream_opens_with_retry_count() {
    let relay = TestRelay::start(&[]).await;
    let response = client().get(relay.url("/sub/room")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "text/event-stream");
    assert_eq!(header(&response, "cache-control"), "no-cache, no-store");
    assert_eq!(header(&response, "x-accel-buffering"), "no");
    assert!(response.headers().get("content-encoding").is_none());

    let mut events = EventReader::from_response(response);
    let retry = events.next().await.unwrap();
    assert_eq!(retry.retry.as_deref(), Some("2000"));
    let count = events.next().await.unwrap();
    assert_eq!(count.event.as_deref(), Some("count"));
    assert_eq!(count.data(), "count=1");
    assert_eq!(count.id, None, "counts carry no id");
}

#[actix_rt::test]
async fn publish_reaches_subscribers_with_id() {
    let relay = TestRelay::start(&[]).await;
    let client = client();
    let mut first = EventReader::open(&client, &relay, "room").await;
    first.skip_opening().await;
    let mut second = EventReader::open(&client, &relay, "room").await;
    second.skip_opening().await;

    let response = publish(&client, &relay, "room", envelope("AAAA")).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: serde_json::Value = response.json().await.unwrap();
    assert_eq!(accepted["queued"], 2);
    let id = accepted["id"].as_str().unwrap().to_owned();

    for reader in [&mut first, &mut second] {
        let mut frame = reader.next_event().await;
        while frame.count().is_some() {
            frame = reader.next_event().await;
        }
        assert_eq!(frame.id.as_deref(), Some(id.as_str()));
        assert_eq!(frame.event, None);
        let data: serde_json::Value = serde_json::from_str(&frame.data()).unwrap();
        let sent: serde_json::Value = serde_json::from_str(&envelope("AAAA")).unwrap();
        assert_eq!(data, sent);
    }

    let nobody = publish(&client, &relay, "empty-room", envelope("AAAA")).await;
    assert_eq!(nobody.status(), StatusCode::ACCEPTED);
    let accepted: serde_json::Value = nobody.json().await.unwrap();
    assert_eq!(accepted["queued"], 0);
}

#[actix_rt::test]
async fn injection_attempt_stays_one_event() {
    let relay = TestRelay::start(&[]).await;
    let client = client();
    let mut events = EventReader::open(&client, &relay, "room").await;
    events.skip_opening().await;

    // Every way to end a line inside a JSON string, followed by fields of a forged event.
    let forged = "x\\n\\nevent: count\\ndata: count=999\\r\\rid: 1\\r\\n\\r\\ndata: forged\\u2028";
    let body = format!(r#"{{"iv":"AAAA","salt":"AAAA","ct":"AAAA","note":"{forged}"}}"#);
    let response = publish(&client, &relay, "room", body.clone()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    let mut frame = events.next_event().await;
    while frame.count().is_some() {
        frame = events.next_event().await;
    }
    assert_eq!(frame.data.len(), 1, "one data line: {frame:?}");
    assert_eq!(frame.event, None);
    let data: serde_json::Value = serde_json::from_str(&frame.data()).unwrap();
    let sent: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(data, sent, "the string arrives intact");

    // Nothing forged follows: the next publish is the very next event.
    publish(&client, &relay, "room", envelope("BBBB")).await;
    let mut next = events.next_event().await;
    while next.count().is_some() {
        assert_ne!(next.count(), Some(999));
        next = events.next_event().await;
    }
    assert!(next.data().contains("BBBB"), "{next:?}");
}

#[actix_rt::test]
async fn publish_rejects_bad_requests() {
    let relay = TestRelay::start(&["--max-publish-bytes", "1024"]).await;
    let client = client();
    let post = |content_type: &'static str, body: String| {
        client
            .post(relay.url("/pub/room"))
            .header("Content-Type", content_type)
            .body(body)
            .send()
    };

    let cases = [
        (
            "application/json",
            "not json".to_owned(),
            400,
            "not a JSON object",
        ),
        (
            "application/json",
            "[1,2]".to_owned(),
            400,
            "not a JSON object",
        ),
        (
            "application/json",
            r#"{"iv":"AA==","salt":"AA=="}"#.to_owned(),
            400,
            "no \"ct\" field",
        ),
        (
            "application/json",
            r#"{"iv":"AA==","salt":"AA==","ct":"%%"}"#.to_owned(),
            400,
            "\"ct\" field must be a base64 string",
        ),
        (
            "application/json",
            r#"{"iv":"AA==","salt":"AA==","ct":"AA==","iter":"x"}"#.to_owned(),
            400,
            "\"iter\" field must be a non-negative integer",
        ),
        ("text/plain", envelope("AAAA"), 415, "application/json"),
        (
            "application/json",
            envelope(&"A".repeat(2000)),
            413,
            "limit of 1024 bytes",
        ),
    ];
    for (content_type, body, status, message) in cases {
        let response = post(content_type, body.clone()).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{body:.80}");
        let text = response.text().await.unwrap();
        assert!(text.contains(message), "{body:.80}: {text}");
    }

    // A chunked body without Content-Length is cut off at the limit too.
    let chunks =
        futures_util::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b' '; 200])));
    let chunked = client
        .post(relay.url("/pub/room"))
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let bad_channel = client
        .post(relay.url("/pub/a.b"))
        .header("Content-Type", "application/json")
        .body(envelope("AAAA"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_channel.status(), StatusCode::BAD_REQUEST);

    let wrong_method = client.get(relay.url("/pub/room")).send().await.unwrap();
    assert_eq!(wrong_method.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[actix_rt::test]
async fn security_headers_on_every_route() {
    let relay = TestRelay::start(&["--publish-burst", "1", "--publish-rate", "0.01"]).await;
    let client = client();
    let blob_id = "0".repeat(32);
    let requests = [
        client.get(relay.url("/")),
        client.get(relay.url("/index.html")),
        client.get(relay.url("/missing")),
        client.get(relay.url("/sub/a.b")),
        client.get(relay.url("/pub/room")),
        client.get(relay.url("/healthz")),
        client.get(relay.url("/stats")),
        client.get(relay.url("/metrics")),
        client.get(relay.url(&format!("/blob/{blob_id}"))),
        client.get(relay.url("/blob/not-an-id")),
        client.post(relay.url("/blob/room")).body("x"),
        client
            .post(relay.url("/pub/room"))
            .header("Content-Type", "application/json")
            .body(envelope("AAAA")),
        // The second publish is over the rate limit: a 429 carries the headers too.
        client
            .post(relay.url("/pub/room"))
            .header("Content-Type", "application/json")
            .body(envelope("AAAA")),
        client.get(relay.url("/sub/room")),
    ];
    let mut statuses = Vec::new();
    for request in requests {
        let response = request.send().await.unwrap();
        let url = response.url().to_string();
        statuses.push(response.status().as_u16());
        assert_eq!(
            header(&response, "content-security-policy"),
            CONTENT_SECURITY_POLICY,
            "{url}"
        );
        assert_eq!(
            header(&response, "x-content-type-options"),
            "nosniff",
            "{url}"
        );
        assert_eq!(header(&response, "referrer-policy"), "no-referrer", "{url}");
        assert!(
            response
                .headers()
                .get("strict-transport-security")
                .is_none(),
            "no HSTS over plain HTTP: {url}"
        );
    }
    assert_eq!(
        statuses,
        [
            200, 200, 404, 400, 405, 200, 200, 200, 404, 400, 404, 202, 429, 200
        ]
    );
}

#[actix_rt::test]
async fn healthz_stats_and_metrics_agree() {
    let relay = TestRelay::start(&[]).await;
    let client = client();
    let health = client.get(relay.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.text().await.unwrap(), "ok\n");

    let mut events = EventReader::open(&client, &relay, "room").await;
    events.skip_opening().await;
    let body = envelope("AAAA");
    publish(&client, &relay, "room", body.clone()).await;
    let mut frame = events.next_event().await;
    while frame.count().is_some() {
        frame = events.next_event().await;
    }

    let stats = relay.stats(&client).await;
    assert_eq!(stats["subscribers"], 1);
    assert_eq!(stats["subscribers_opened"], 1);
    assert_eq!(stats["channels"], 1);
    assert_eq!(stats["events_published"], 1);
    assert_eq!(stats["events_delivered"], 1);
    let compact_len =
        serde_json::to_vec(&serde_json::from_str::<serde_json::Value>(&body).unwrap())
            .unwrap()
            .len();
    assert_eq!(stats["bytes_published"], compact_len);
    assert_eq!(stats["blobs"], 0);

    // A count tick may land between two reads, so read until /stats is the same on both
    // sides of /metrics.
    let mut attempts = 0;
    let (stats, text) = loop {
        let before = relay.stats(&client).await;
        let metrics = client.get(relay.url("/metrics")).send().await.unwrap();
        assert_eq!(metrics.status(), StatusCode::OK);
        assert!(header(&metrics, "content-type").starts_with("text/plain; version=0.0.4"));
        let text = metrics.text().await.unwrap();
        let after = relay.stats(&client).await;
        if before == after {
            break (after, text);
        }
        attempts += 1;
        assert!(attempts < 10, "the figures never held still");
    };
    for (name, value) in stats.as_object().unwrap() {
        let counter = format!("dropthat_{name}_total {value}\n");
        let gauge = format!("dropthat_{name} {value}\n");
        assert!(
            text.contains(&counter) || text.contains(&gauge),
            "{name} = {value} missing from /metrics:\n{text}"
        );
    }
    assert!(text.contains("# TYPE dropthat_subscribers gauge"));
    assert!(text.contains("# TYPE dropthat_events_published counter"));
}

/// A raw HTTP/1.1 connection to the relay, for tests of what goes over the socket.
struct Connection {
    socket: tokio::net::TcpStream,
    /// Bytes received and not yet returned.
    received: Vec<u8>,
}

/// A response head: the status line, and the headers with names in lower case, sorted.
struct Head {
    status: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value.as_str())
    }

    /// Returns the headers without `date`, and with the `content-length` value left out.
    fn comparable(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|(name, _)| name != "date")
            .map(|(name, value)| {
                let value = if name == "content-length" { "" } else { value };
                (name.clone(), value.to_owned())
            })
            .collect()
    }
}

impl Connection {
    async fn open(relay: &TestRelay) -> Self {
        let addr = relay.base.trim_start_matches("http://");
        let socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        socket.set_nodelay(true).unwrap();
        Self {
            socket,
            received: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.socket.write_all(bytes).await.unwrap();
    }

    /// Reads more bytes, failing if the relay closes the connection or sends nothing.
    async fn read_more(&mut self, waiting_for: &str) {
        use tokio::io::AsyncReadExt;
        let mut buffer = [0u8; 4096];
        let read = tokio::time::timeout(common::WAIT, self.socket.read(&mut buffer))
            .await
            .unwrap_or_else(|_| panic!("no {waiting_for} within the wait"))
            .unwrap();
        assert!(
            read > 0,
            "the relay closed the connection before {waiting_for}"
        );
        self.received.extend_from_slice(&buffer[..read]);
    }

    /// Returns the next response head.
    async fn head(&mut self) -> Head {
        let end = loop {
            if let Some(end) = self.received.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            self.read_more("response head").await;
        };
        let text = String::from_utf8(self.received[..end].to_vec()).unwrap();
        self.received.drain(..end + 4);
        let mut lines = text.split("\r\n");
        let status = lines.next().unwrap().to_owned();
        let mut headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.to_ascii_lowercase(), value.trim().to_owned())
            })
            .collect();
        headers.sort();
        Head { status, headers }
    }

    /// Returns the next response, whose body has a `Content-Length`.
    async fn response(&mut self) -> (Head, String) {
        let head = self.head().await;
        let length: usize = head
            .header("content-length")
            .expect("a content-length header")
            .parse()
            .unwrap();
        while self.received.len() < length {
            self.read_more("response body").await;
        }
        let body = self.received.drain(..length).collect::<Vec<u8>>();
        (head, String::from_utf8(body).unwrap())
    }

    /// Reads until `marker` has arrived, and drops what came before it and the marker.
    async fn skip_past(&mut self, marker: &str) {
        loop {
            if let Some(at) = self
                .received
                .windows(marker.len())
                .position(|w| w == marker.as_bytes())
            {
                self.received.drain(..at + marker.len());
                return;
            }
            self.read_more(marker).await;
        }
    }
}

#[actix_rt::test]
async fn kept_alive_connection_still_subscribes() {
    let relay = TestRelay::start(&[]).await;

    // A first request that subscribes is served by the relay's own stream writer.
    let mut direct = Connection::open(&relay).await;
    direct
        .send(b"GET /sub/room HTTP/1.1\r\nHost: relay\r\n\r\n")
        .await;
    let direct_head = direct.head().await;
    assert_eq!(direct_head.status, "HTTP/1.1 200 OK");

    // A subscription after another request on the same connection is served by actix-web.
    let mut reused = Connection::open(&relay).await;
    reused
        .send(b"GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n")
        .await;
    let (health, body) = reused.response().await;
    assert_eq!(health.status, "HTTP/1.1 200 OK");
    assert_eq!(body, "ok\n");
    reused
        .send(b"GET /sub/room HTTP/1.1\r\nHost: relay\r\n\r\n")
        .await;
    let reused_head = reused.head().await;
    assert_eq!(reused_head.status, "HTTP/1.1 200 OK");
    assert_eq!(direct_head.comparable(), reused_head.comparable());

    // Both get the same chunked frames.
    direct.skip_past("D\r\nretry: 2000\n\n\r\n").await;
    reused.skip_past("D\r\nretry: 2000\n\n\r\n").await;
    let client = client();
    let response = publish(&client, &relay, "room", envelope("QUFBQQ")).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    direct.skip_past("QUFBQQ").await;
    reused.skip_past("QUFBQQ").await;
}

#[actix_rt::test]
async fn split_request_head_subscribes() {
    let relay = TestRelay::start(&[]).await;
    let mut connection = Connection::open(&relay).await;
    for part in ["GE", "T /sub/ro", "om HTTP/1.1\r\nHost: re", "lay\r\n\r\n"] {
        connection.send(part.as_bytes()).await;
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    let head = connection.head().await;
    assert_eq!(head.status, "HTTP/1.1 200 OK");
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    connection.skip_past("count=1").await;
}

fn post_request(body: &str) -> Vec<u8> {
    format!(
        "POST /pub/room HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[actix_rt::test]
async fn publishes_share_kept_alive_connection() {
    let relay = TestRelay::start(&[]).await;
    let client = client();
    let mut events = EventReader::open(&client, &relay, "room").await;
    events.skip_opening().await;
    let mut connection = Connection::open(&relay).await;

    // The relay responds to valid publishes itself and keeps the connection open. Two sent at
    // once get their responses in order.
    connection.send(&post_request(&envelope("AQ"))).await;
    let (direct_head, body) = connection.response().await;
    assert_eq!(direct_head.status, "HTTP/1.1 202 Accepted");
    let first: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(first["queued"], 1);
    let pipelined = [post_request(&envelope("Ag")), post_request(&envelope("Aw"))].concat();
    connection.send(&pipelined).await;
    for _ in 0..2 {
        let (head, _) = connection.response().await;
        assert_eq!(head.status, "HTTP/1.1 202 Accepted");
    }

    // An invalid envelope goes to actix-web, which responds to it and serves the rest of the
    // connection.
    connection.send(&post_request("[1]")).await;
    let (head, body) = connection.response().await;
    assert_eq!(head.status, "HTTP/1.1 400 Bad Request");
    assert!(body.contains("not a JSON object"), "{body}");
    connection.send(&post_request(&envelope("BA"))).await;
    let (actix_head, _) = connection.response().await;
    assert_eq!(actix_head.status, "HTTP/1.1 202 Accepted");
    assert_eq!(direct_head.comparable(), actix_head.comparable());

    // The subscriber got the four accepted events, in order.
    for marker in ["AQ", "Ag", "Aw", "BA"] {
        let mut frame = events.next_event().await;
        while frame.count().is_some() {
            frame = events.next_event().await;
        }
        assert!(
            frame.data().contains(&format!("\"ct\":\"{marker}\"")),
            "{frame:?}"
        );
    }
}

#[actix_rt::test]
async fn connection_close_ends_publish_connection() {
    use tokio::io::AsyncReadExt;

    let relay = TestRelay::start(&[]).await;
    let mut connection = Connection::open(&relay).await;
    let body = envelope("AQ");
    let request = format!(
        "POST /pub/room HTTP/1.1\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    connection.send(request.as_bytes()).await;
    let (head, _) = connection.response().await;
    assert_eq!(head.status, "HTTP/1.1 202 Accepted");
    assert_eq!(head.header("connection"), Some("close"));
    let mut rest = Vec::new();
    let read = tokio::time::timeout(common::WAIT, connection.socket.read_to_end(&mut rest)).await;
    assert_eq!(read.unwrap().unwrap(), 0, "the relay closed the connection");
}

/// Reads the rest of what the relay sends until it closes the connection.
async fn read_to_close(connection: &mut Connection) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut rest = std::mem::take(&mut connection.received);
    tokio::time::timeout(common::WAIT, connection.socket.read_to_end(&mut rest))
        .await
        .expect("the relay closed the connection within the wait")
        .unwrap();
    rest
}

#[actix_rt::test]
async fn stalled_publish_body_times_out() {
    let relay = TestRelay::start(&["--body-idle-timeout", "1s"]).await;
    let client = client();

    // A body that stops after its first bytes. With Content-Length, the relay's own reader
    // waits 5 s for the whole request and then hands it to the route. A chunked body goes
    // to the route at once.
    let body = envelope("AQ");
    let heads = [
        format!(
            "POST /pub/room HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{}",
            body.len(),
            &body[..10]
        ),
        format!(
            "POST /pub/room HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\nA\r\n{}\r\n",
            &body[..10]
        ),
    ];
    let mut connections = Vec::new();
    for head in &heads {
        let mut connection = Connection::open(&relay).await;
        connection.send(head.as_bytes()).await;
        connections.push(connection);
    }
    for mut connection in connections {
        let (head, message) = connection.response().await;
        assert_eq!(head.status, "HTTP/1.1 408 Request Timeout");
        assert_eq!(head.header("connection"), Some("close"));
        assert_eq!(
            message,
            "no byte of the request body arrived for 1s; send the body without pausing\n"
        );
        assert!(read_to_close(&mut connection).await.is_empty());
    }
    assert_eq!(relay.stats(&client).await["requests_timed_out"], 2);
}

#[actix_rt::test]
async fn trickled_publish_body_times_out() {
    use tokio::io::AsyncReadExt;

    let relay = TestRelay::start(&["--publish-body-timeout", "1s"]).await;
    let mut connection = Connection::open(&relay).await;
    connection
        .send(
            b"POST /pub/room HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n\
              Transfer-Encoding: chunked\r\n\r\n",
        )
        .await;

    // One byte every 100 ms never pauses for long, but the whole body takes too long. The
    // relay responds after about a second, and 50 bytes would take five.
    let started = std::time::Instant::now();
    let mut answered = false;
    for _ in 0..50 {
        connection.send(b"1\r\n \r\n").await;
        let mut buffer = [0u8; 1024];
        let wait = std::time::Duration::from_millis(100);
        if let Ok(read) = tokio::time::timeout(wait, connection.socket.read(&mut buffer)).await {
            connection
                .received
                .extend_from_slice(&buffer[..read.unwrap()]);
            answered = true;
            break;
        }
    }
    assert!(answered, "no response while the body trickled in");
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    let (head, message) = connection.response().await;
    assert_eq!(head.status, "HTTP/1.1 408 Request Timeout");
    assert_eq!(
        message,
        "the request body took longer than 1s, the limit for this request\n"
    );
}

/// Checks that `body` is one line of plain text that contains `expected`.
fn assert_one_line(body: &str, expected: &str) {
    assert!(body.contains(expected), "{body:?} lacks {expected:?}");
    assert!(body.ends_with('\n'), "{body:?}");
    assert_eq!(body.matches('\n').count(), 1, "{body:?}");
}

#[actix_rt::test]
async fn default_errors_get_one_line() {
    let relay = TestRelay::start(&[]).await;
    let client = client();
    let blob_id = {
        let mut room = EventReader::open(&client, &relay, "room").await;
        room.skip_opening().await;
        let stored = client
            .post(relay.url("/blob/room"))
            .body(vec![7u8; 10])
            .send()
            .await
            .unwrap();
        let created: serde_json::Value = stored.json().await.unwrap();
        created["id"].as_str().unwrap().to_owned()
    };
    let blob = relay.url(&format!("/blob/{blob_id}"));

    let cases = [
        (
            client.post(relay.url("/healthz")),
            405,
            "use GET or HEAD",
            Some("GET, HEAD"),
        ),
        (
            client.delete(relay.url("/")),
            405,
            "use GET or HEAD",
            Some("GET, HEAD"),
        ),
        (
            client.get(relay.url("/pub/room")),
            405,
            "use POST to publish",
            Some("POST"),
        ),
        (
            client.post(relay.url("/sub/room")),
            405,
            "GET /sub/<channel> only",
            Some("GET"),
        ),
        (
            client.put(relay.url("/blob/room")),
            405,
            "POST /blob/<channel>",
            None,
        ),
        (
            client.get(relay.url("/nothing")),
            404,
            "not found: the relay serves",
            None,
        ),
        (
            client
                .post(relay.url("/pub/"))
                .header("Content-Type", "application/json")
                .body(envelope("AAAA")),
            400,
            "invalid channel id: the channel id is empty",
            None,
        ),
        (client.get(relay.url("/sub/a/b")), 400, "contains '/'", None),
        (
            client.get(relay.url("/blob/")),
            400,
            "invalid blob id",
            None,
        ),
        (
            client.get(blob.clone()).header("Range", "bytes=100-200"),
            416,
            "range not satisfiable",
            None,
        ),
    ];
    for (request, status, expected, allow) in cases {
        let response = request.send().await.unwrap();
        let url = response.url().to_string();
        assert_eq!(response.status().as_u16(), status, "{url}");
        assert_eq!(
            header(&response, "content-type"),
            "text/plain; charset=utf-8",
            "{url}"
        );
        if let Some(allow) = allow {
            assert_eq!(header(&response, "allow"), allow, "{url}");
        }
        assert_one_line(&response.text().await.unwrap(), expected);
    }

    // Heads that actix-web's dispatcher would reject with an empty body.
    let long_value = "b".repeat(20 * 1024);
    let heads = [
        (
            "GET / HTTP/1.1\r\nHost: relay\r\nBad Header\r\n\r\n".to_owned(),
            "HTTP/1.1 400 Bad Request",
            "invalid HTTP request: invalid header name",
        ),
        (
            format!("GET / HTTP/1.1\r\nHost: relay\r\nA: {long_value}\r\n\r\n"),
            "HTTP/1.1 431 Request Header Fields Too Large",
            "the request head is over 16384 bytes",
        ),
        (
            "POST /blob/room HTTP/1.1\r\nHost: relay\r\nContent-Length: 3\r\n\
             Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                .to_owned(),
            "HTTP/1.1 400 Bad Request",
            "the request has both Content-Length and Transfer-Encoding",
        ),
        (
            "POST /pub/room HTTP/1.1\r\nHost: relay\r\nContent-Length: 2\r\n\
             Content-Length: 3\r\n\r\n{}"
                .to_owned(),
            "HTTP/1.1 400 Bad Request",
            "the request has Content-Length values that differ",
        ),
    ];
    for (request, status, expected) in heads {
        let mut connection = Connection::open(&relay).await;
        connection.send(request.as_bytes()).await;
        let (head, body) = connection.response().await;
        assert_eq!(head.status, status);
        assert_eq!(head.header("connection"), Some("close"));
        assert_eq!(
            head.header("x-content-type-options"),
            Some("nosniff"),
            "{status}"
        );
        assert_one_line(&body, expected);
        assert!(read_to_close(&mut connection).await.is_empty());
    }
}

#[actix_rt::test]
async fn broken_chunked_body_is_explained() {
    let relay = TestRelay::start(&[]).await;
    let mut connection = Connection::open(&relay).await;
    connection
        .send(
            b"POST /pub/room HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n\
              Transfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n",
        )
        .await;
    let (head, body) = connection.response().await;
    assert_eq!(head.status, "HTTP/1.1 400 Bad Request");
    assert_one_line(&body, "a chunk size was invalid; send the whole body");
    assert!(!body.contains("None"), "{body:?}");
}

#[actix_rt::test]
async fn slow_request_head_times_out() {
    let relay = TestRelay::start(&[]).await;
    let mut connection = Connection::open(&relay).await;
    connection.send(b"GET /healthz HTTP/1.1\r\nHo").await;
    let (head, body) = connection.response().await;
    assert_eq!(head.status, "HTTP/1.1 408 Request Timeout");
    assert_one_line(&body, "the request head did not arrive within 5s");
    assert!(read_to_close(&mut connection).await.is_empty());
    assert_eq!(relay.stats(&client()).await["requests_timed_out"], 1);
}

#[actix_rt::test]
async fn head_serves_get_routes() {
    let relay = TestRelay::start(&[]).await;
    let client = client();
    let mut room = EventReader::open(&client, &relay, "room").await;
    room.skip_opening().await;
    let stored = client
        .post(relay.url("/blob/room"))
        .body(vec![7u8; 10])
        .send()
        .await
        .unwrap();
    let created: serde_json::Value = stored.json().await.unwrap();
    let blob = format!("/blob/{}", created["id"].as_str().unwrap());

    for path in ["/healthz", "/stats", "/metrics", "/", &blob] {
        let get = client.get(relay.url(path)).send().await.unwrap();
        assert_eq!(get.status(), StatusCode::OK, "GET {path}");
        let get_type = header(&get, "content-type");
        let get_body = get.bytes().await.unwrap();

        let head = client.head(relay.url(path)).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::OK, "HEAD {path}");
        assert_eq!(header(&head, "content-type"), get_type, "HEAD {path}");
        if path != "/stats" && path != "/metrics" {
            // The figures may change between the two requests.
            assert_eq!(
                header(&head, "content-length"),
                get_body.len().to_string(),
                "HEAD {path}"
            );
        }
        assert!(head.bytes().await.unwrap().is_empty(), "HEAD {path}");
    }
}
