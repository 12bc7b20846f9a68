//! Reading and driving the chat page in a browser: texts of elements, waiting for messages,
//! bytes behind `blob:` URLs, room links, and screenshots for a person to look at.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use fantoccini::{Client, Locator};

use crate::eventually;

/// How long a test waits for something the page does asynchronously.
pub const WAIT: Duration = Duration::from_secs(30);

/// WebDriver's code for the Enter key.
pub const ENTER: &str = "\u{E007}";

/// Returns the text of the first element matching `css`.
pub async fn text_of(client: &Client, css: &str) -> Option<String> {
    client.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

/// Returns the texts of every element matching `css`, in document order.
pub async fn texts_of(client: &Client, css: &str) -> Vec<String> {
    let mut texts = Vec::new();
    for element in client.find_all(Locator::Css(css)).await.unwrap_or_default() {
        texts.push(element.text().await.unwrap_or_default());
    }
    texts
}

/// Returns the `textContent` of every element matching `css`, including hidden ones.
pub async fn contents_of(client: &Client, css: &str) -> Vec<String> {
    let script =
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.textContent);";
    let value = client
        .execute(script, vec![serde_json::Value::from(css)])
        .await
        .expect("querying the page");
    serde_json::from_value(value).expect("a list of strings")
}

/// Counts the elements matching `css`.
pub async fn count_of(client: &Client, css: &str) -> usize {
    let script = "return document.querySelectorAll(arguments[0]).length;";
    let value = client
        .execute(script, vec![serde_json::Value::from(css)])
        .await
        .expect("querying the page");
    value.as_u64().expect("a count") as usize
}

/// Waits until the connection indicator shows `status`.
pub async fn wait_for_status(client: &Client, who: &str, status: &str) {
    eventually(
        &format!("{who}'s status to be {status:?}"),
        WAIT,
        || async { (text_of(client, "#status").await.as_deref() == Some(status)).then_some(()) },
    )
    .await;
}

/// Waits until the subscriber count shows `expected`, such as "2 here".
pub async fn wait_for_count(client: &Client, who: &str, expected: &str) {
    eventually(&format!("{who} to show {expected:?}"), WAIT, || async {
        (text_of(client, "#count").await.as_deref() == Some(expected)).then_some(())
    })
    .await;
}

/// Waits until a message row shows `text`.
pub async fn wait_for_message(client: &Client, who: &str, text: &str) {
    eventually(
        &format!("{who} to show the message {text:?}"),
        WAIT,
        || async {
            texts_of(client, "#messages .message .text")
                .await
                .iter()
                .any(|t| t == text)
                .then_some(())
        },
    )
    .await;
}

/// Waits until a notice containing `part` is in the list, and returns its text.
pub async fn wait_for_notice(client: &Client, who: &str, part: &str) -> String {
    eventually(
        &format!("{who} to show a notice with {part:?}"),
        WAIT,
        || async {
            contents_of(client, "#messages .notice")
                .await
                .into_iter()
                .find(|t| t.contains(part))
        },
    )
    .await
}

/// Opens `url` and waits until the page has put a room in the address; returns the address.
pub async fn open_new_room(client: &Client, url: &str) -> url::Url {
    client.goto(url).await.expect("opening the page");
    eventually("a room fragment in the address", WAIT, || async {
        let url = client.current_url().await.ok()?;
        let has_room = url.fragment().is_some_and(|f| f.len() >= 22);
        has_room.then_some(url)
    })
    .await
}

/// Types `text` into the message field and presses Enter.
pub async fn send_text(client: &Client, text: &str) {
    let field = client
        .find(Locator::Id("text"))
        .await
        .expect("message field");
    field.send_keys(text).await.expect("typing a message");
    field.send_keys(ENTER).await.expect("pressing Enter");
}

/// Returns the bytes behind a `blob:` URL of the page, read in the page itself.
pub async fn blob_bytes(client: &Client, url: &str) -> Vec<u8> {
    let script = r#"
        const [url, done] = arguments;
        fetch(url)
            .then(response => response.arrayBuffer())
            .then(buffer => {
                const bytes = new Uint8Array(buffer);
                let text = '';
                for (let i = 0; i < bytes.length; i += 0x8000) {
                    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
                }
                done(btoa(text));
            })
            .catch(error => done('error: ' + error));
    "#;
    let value = client
        .execute_async(script, vec![serde_json::Value::from(url)])
        .await
        .expect("reading a blob: URL in the page");
    let text = value.as_str().expect("a string from the page");
    assert!(!text.starts_with("error:"), "{text}");
    STANDARD.decode(text).expect("base64 from the page")
}

/// Returns the directory for screenshots, `tests/artifacts/`, creating it.
pub fn artifacts_dir() -> PathBuf {
    let dir = crate::workspace_root().join("tests").join("artifacts");
    std::fs::create_dir_all(&dir).expect("creating tests/artifacts");
    dir
}

/// Saves a screenshot of the browser's viewport as `tests/artifacts/<name>.png`.
pub async fn screenshot(client: &Client, name: &str) -> PathBuf {
    let png = client.screenshot().await.expect("taking a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
    let path = artifacts_dir().join(format!("{name}.png"));
    std::fs::write(&path, png).expect("writing the screenshot");
    path
}
