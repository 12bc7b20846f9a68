//! HTTPS with a certificate generated for the test, and a client that trusts only it.

mod common;

use common::{EventReader, TestRelay, envelope};
use reqwest::StatusCode;

/// Writes a self-signed certificate for 127.0.0.1 and its key as PEM files.
fn self_signed(dir: &std::path::Path) -> (String, String, reqwest::Certificate) {
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert_pem = generated.cert.pem();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, &cert_pem).unwrap();
    std::fs::write(&key_path, generated.signing_key.serialize_pem()).unwrap();
    (
        cert_path.to_str().unwrap().to_owned(),
        key_path.to_str().unwrap().to_owned(),
        reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap(),
    )
}

/// Returns a client that trusts only `trusted`, with a new connection for each request.
fn trusting_client(trusted: reqwest::Certificate) -> reqwest::Client {
    reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(trusted)
        .pool_max_idle_per_host(0)
        .no_proxy()
        .build()
        .unwrap()
}

#[actix_rt::test]
async fn tls_serves_with_hsts() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, trusted) = self_signed(dir.path());
    let data = tempfile::tempdir().unwrap();
    let relay = TestRelay::start_with_scheme(
        "https",
        data.path(),
        &["--tls-cert", &cert, "--tls-key", &key],
    )
    .await;
    let client = trusting_client(trusted);

    let health = client.get(relay.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(
        health.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert_eq!(health.headers()["x-content-type-options"], "nosniff");

    // The event stream and publishing work over TLS too.
    let mut events = EventReader::open(&client, &relay, "room").await;
    assert_eq!(events.skip_opening().await, 1);
    let published = client
        .post(relay.url("/pub/room"))
        .header("Content-Type", "application/json")
        .body(envelope("AAAA"))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), StatusCode::ACCEPTED);
    let mut frame = events.next_event().await;
    while frame.count().is_some() {
        frame = events.next_event().await;
    }
    assert!(frame.data().contains("AAAA"));

    // A client that does not trust the certificate cannot connect.
    let untrusting = reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .build()
        .unwrap();
    assert!(untrusting.get(relay.url("/healthz")).send().await.is_err());

    // Plain HTTP to the TLS port gets no HTTP response.
    let plain = relay.url("/healthz").replacen("https://", "http://", 1);
    let plain_client = common::client();
    assert!(plain_client.get(plain).send().await.is_err());
}

#[actix_rt::test]
async fn tls_rejects_mismatched_key() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, _, _) = self_signed(dir.path());
    let other = tempfile::tempdir().unwrap();
    let (_, other_key, _) = self_signed(other.path());
    let config = <dropthat_server::config::Config as clap::Parser>::try_parse_from([
        "dropthat",
        "--tls-cert",
        &cert,
        "--tls-key",
        &other_key,
    ])
    .unwrap();
    let error = config
        .tls()
        .expect_err("a key of another certificate is rejected");
    assert!(
        error.to_string().contains("cannot be used together"),
        "{error}"
    );
}

#[actix_rt::test]
async fn tls_stalled_body_times_out() {
    use futures_util::StreamExt;

    let dir = tempfile::tempdir().unwrap();
    let (cert, key, trusted) = self_signed(dir.path());
    let data = tempfile::tempdir().unwrap();
    let relay = TestRelay::start_with_scheme(
        "https",
        data.path(),
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--body-idle-timeout",
            "500ms",
        ],
    )
    .await;
    let client = trusting_client(trusted);

    // A body that sends its first bytes and then nothing more.
    let first = futures_util::stream::iter([Ok::<_, std::io::Error>(b"{\"iv\"".to_vec())]);
    let stalled = first.chain(futures_util::stream::pending());
    let response = tokio::time::timeout(
        common::WAIT,
        client
            .post(relay.url("/pub/room"))
            .header("Content-Type", "application/json")
            .body(reqwest::Body::wrap_stream(stalled))
            .send(),
    )
    .await
    .expect("the relay responded within the wait")
    .unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(
        response.text().await.unwrap(),
        "no byte of the request body arrived for 500ms; send the body without pausing\n"
    );
}
