//! Two headless Chromium pages chat through the real relay, and the relay never sees a key or
//! a word of plaintext.

use dropthat_tests::browser::Browser;
use dropthat_tests::capture::{CaptureProxy, contains};
use dropthat_tests::eventually;
use dropthat_tests::page::{ENTER, WAIT, text_of, texts_of, wait_for_count, wait_for_message};
use dropthat_tests::relay::Relay;
use fantoccini::Locator;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_chat_end_to_end() {
    let relay = Relay::start(&[]).await;
    let proxy = CaptureProxy::start(relay.addr).await;
    let alice = Browser::launch(1024, 768).await;
    let bob = Browser::launch(1024, 768).await;

    // Alice opens the bare address; the page creates a room and puts its key in the fragment.
    alice.client.goto(&proxy.url("/")).await.unwrap();
    let room_url = eventually("a room fragment in Alice's address", WAIT, || async {
        let url = alice.client.current_url().await.ok()?;
        let has_room = url.fragment().is_some_and(|f| f.len() == 22);
        has_room.then_some(url)
    })
    .await;
    let fragment = room_url.fragment().unwrap().to_owned();

    bob.client.goto(room_url.as_str()).await.unwrap();
    wait_for_count(&alice.client, "Alice", "2 here").await;
    wait_for_count(&bob.client, "Bob", "2 here").await;
    assert_eq!(
        text_of(&alice.client, "#status").await.as_deref(),
        Some("connected")
    );
    assert_eq!(
        text_of(&bob.client, "#status").await.as_deref(),
        Some("connected")
    );

    // Alice types a message with non-ASCII text and markup, and sends it with Enter.
    let typed = "Grüße aus Köln — 你好 <b>fett</b> & \"marker-7d1f3c\"";
    let nick = alice.client.find(Locator::Id("nick")).await.unwrap();
    nick.send_keys("alice").await.unwrap();
    let text = alice.client.find(Locator::Id("text")).await.unwrap();
    text.send_keys(typed).await.unwrap();
    text.send_keys(ENTER).await.unwrap();

    wait_for_message(&bob.client, "Bob", typed).await;
    wait_for_message(&alice.client, "Alice", typed).await;
    assert_eq!(
        texts_of(&bob.client, "#messages .message .nick").await,
        vec!["alice".to_owned()]
    );

    // WebDriver cannot type characters outside the Basic Multilingual Plane, so this message
    // with emoji is placed in the field by script and sent with the Send button.
    let emoji = "party 🎉🦀 marker-a94e02";
    alice
        .client
        .execute(
            "document.getElementById('text').value = arguments[0];",
            vec![serde_json::Value::from(emoji)],
        )
        .await
        .unwrap();
    alice
        .client
        .find(Locator::Css("#composer button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_message(&bob.client, "Bob", emoji).await;

    // Markup in a message stays text: no <b> element reached either page.
    for (who, client) in [("Alice", &alice.client), ("Bob", &bob.client)] {
        let bold = client.find_all(Locator::Css("#messages b")).await.unwrap();
        assert!(
            bold.is_empty(),
            "{who}'s page turned message text into markup"
        );
    }

    // The proxy saw all traffic: ciphertext went through, plaintext and the key did not.
    let captured = proxy.captured();
    assert!(
        contains(&captured, b"POST /pub/"),
        "no publish in the capture"
    );
    assert!(
        contains(&captured, b"GET /sub/"),
        "no subscription in the capture"
    );
    assert!(
        contains(&captured, b"\"ct\":"),
        "no envelope in the capture"
    );
    for secret in [
        typed,
        emoji,
        "marker-7d1f3c",
        "marker-a94e02",
        "Köln",
        "你好",
    ] {
        assert!(
            !contains(&captured, secret.as_bytes()),
            "the server saw plaintext {secret:?}"
        );
    }
    assert!(
        !contains(&captured, fragment.as_bytes()),
        "the server saw the room key"
    );
    assert!(
        !contains(&captured, &fragment.as_bytes()[..16]),
        "the server saw part of the room key"
    );

    alice.client.clone().close().await.unwrap();
    bob.client.clone().close().await.unwrap();
}
