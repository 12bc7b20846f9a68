//! Harness for dropthat's end-to-end tests: real processes on loopback ports.
//!
//! - [`relay`]: builds and runs the real `dropthat` binary serving the built page.
//! - [`capture`]: a TCP proxy in front of the relay that records every byte both ways, so a test
//!   can prove what the server was and was not sent.
//! - [`gate`]: a forwarder that a test closes and opens to cut one browser off from the relay.
//! - [`browser`]: headless Chromium sessions through chromedriver.
//! - [`page`]: reading and driving the chat page in a browser, and screenshots.
//! - [`eventually`]: polling with a deadline, for conditions a page reaches asynchronously.

pub mod browser;
pub mod capture;
pub mod gate;
pub mod page;
pub mod relay;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Returns the workspace root, the parent of this crate's directory.
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_owned()
}

/// Polls `check` every 100 ms until it returns `Some`, panicking with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
