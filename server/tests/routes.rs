//! Route tests through actix-web's test service: status codes, messages, streams and headers.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::{App, test};
use bytes::Bytes;
use dropthat_server::broker::MemoryBroker;
use dropthat_server::routes::{self, AppState, CONTENT_SECURITY_POLICY};

struct Fixture {
    www: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let www = tempfile::tempdir().unwrap();
        std::fs::write(
            www.path().join("index.html"),
            "<!doctype html><title>t</title>",
        )
        .unwrap();
        Self { www }
    }

    async fn service(
        &self,
    ) -> impl Service<actix_http::Request, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>
    {
        let state = AppState {
            broker: Arc::new(MemoryBroker::new()),
            keepalive: Duration::from_secs(20),
        };
        let www = self.www.path().to_owned();
        test::init_service(
            App::new()
                .wrap(routes::security_headers())
                .configure(move |cfg| routes::configure(cfg, state, &www)),
        )
        .await
    }
}

fn header<'a>(response: &'a ServiceResponse<BoxBody>, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header"))
}

/// Reads the next chunk of a streaming body, failing the test if none comes within a second.
async fn next_chunk(body: &mut BoxBody) -> Bytes {
    let chunk = tokio::time::timeout(
        Duration::from_secs(1),
        std::future::poll_fn(|cx| Pin::new(&mut *body).poll_next(cx)),
    )
    .await
    .expect("no chunk within a second");
    chunk.expect("stream ended").expect("body error")
}

async fn body_text(response: ServiceResponse<BoxBody>) -> String {
    let bytes = test::read_body(response).await;
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn publish_request(channel: &str, body: &'static str) -> actix_http::Request {
    test::TestRequest::post()
        .uri(&format!("/pub/{channel}"))
        .insert_header(("Content-Type", "application/json"))
        .set_payload(body)
        .to_request()
}

#[actix_rt::test]
async fn subscribe_rejects_invalid_channel() {
    let fixture = Fixture::new();
    let app = fixture.service().await;
    let request = test::TestRequest::get().uri("/sub/a.b").to_request();
    let response = test::call_service(&app, request).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let text = body_text(response).await;
    assert!(text.contains("'.'"), "message names the character: {text}");
}

#[actix_rt::test]
async fn subscribe_streams_retry_then_count() {
    let fixture = Fixture::new();
    let app = fixture.service().await;
    let request = test::TestRequest::get().uri("/sub/room").to_request();
    let response = test::call_service(&app, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), "text/event-stream");

    let mut body = response.into_body();
    assert_eq!(next_chunk(&mut body).await, "retry: 2000\n\n");
    assert_eq!(
        next_chunk(&mut body).await,
        "event: count\ndata: count=1\n\n"
    );
}

#[actix_rt::test]
async fn publish_reaches_subscriber_on_one_line() {
    let fixture = Fixture::new();
    let app = fixture.service().await;
    let request = test::TestRequest::get().uri("/sub/room").to_request();
    let mut events = test::call_service(&app, request).await.into_body();
    next_chunk(&mut events).await;
    next_chunk(&mut events).await;

    let body = "{ \"ct\": \"line\\nbreak\",\n  \"iv\": \"AA==\" }";
    let response = test::call_service(&app, publish_request("room", body)).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(body_text(response).await, r#"{"queued":1}"#);

    let frame = next_chunk(&mut events).await;
    assert_eq!(frame, "data: {\"ct\":\"line\\nbreak\",\"iv\":\"AA==\"}\n\n");
}

#[actix_rt::test]
async fn publish_rejects_bad_requests() {
    let fixture = Fixture::new();
    let app = fixture.service().await;

    let response = test::call_service(&app, publish_request("room", "not json")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(body_text(response).await.contains("not a JSON object"));

    let response = test::call_service(&app, publish_request("room", "[1,2]")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let text_plain = test::TestRequest::post()
        .uri("/pub/room")
        .insert_header(("Content-Type", "text/plain"))
        .set_payload("{}")
        .to_request();
    let response = test::call_service(&app, text_plain).await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let huge = test::TestRequest::post()
        .uri("/pub/room")
        .insert_header(("Content-Type", "application/json"))
        .set_payload(vec![b' '; 40 * 1024])
        .to_request();
    let response = test::call_service(&app, huge).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

#[actix_rt::test]
async fn security_headers_on_every_route() {
    let fixture = Fixture::new();
    let app = fixture.service().await;
    for uri in ["/", "/index.html", "/missing", "/sub/a.b"] {
        let request = test::TestRequest::get().uri(uri).to_request();
        let response = test::call_service(&app, request).await;
        let csp = header(&response, "content-security-policy");
        assert_eq!(csp, CONTENT_SECURITY_POLICY, "{uri}");
        assert_eq!(
            header(&response, "x-content-type-options"),
            "nosniff",
            "{uri}"
        );
        assert_eq!(header(&response, "referrer-policy"), "no-referrer", "{uri}");
    }
}
