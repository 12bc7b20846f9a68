//! The complete chat page in headless Chromium against the real relay: images and files,
//! passphrase rooms, reconnecting through relay restarts and lost connections, and hostile
//! room members. Screenshots at phone and desktop widths go to `tests/artifacts/`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use dropthat_client::crypto::blob;
use dropthat_client::crypto::envelope::{self, Params};
use dropthat_client::crypto::kdf::KeyCache;
use dropthat_client::crypto::room::channel_id;
use dropthat_client::message::{Attachment, Body, Message, MessageId};
use dropthat_tests::browser::Browser;
use dropthat_tests::capture::{CaptureProxy, contains};
use dropthat_tests::eventually;
use dropthat_tests::gate::Gate;
use dropthat_tests::page::{
    ENTER, WAIT, contents_of, count_of, open_new_room, screenshot, send_text, text_of, texts_of,
    wait_for_count, wait_for_message, wait_for_notice, wait_for_status,
};
use dropthat_tests::relay::Relay;
use fantoccini::{Client, Locator};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// WebDriver's codes for the Shift key and for releasing held keys.
const SHIFT: &str = "\u{E008}";
const RELEASE_KEYS: &str = "\u{E000}";

/// A phone's viewport and a desktop's, for the screenshots.
const PHONE: (u32, u32) = (360, 740);
const DESKTOP: (u32, u32) = (1280, 800);

/// Text inside the test image's EXIF data, which must not survive the page's re-encoding.
const EXIF_MARKER: &str = "GPS 52.5163N 13.3777E marker-5c0e";

/// Text at the start of the test file, which the relay must never see.
const FILE_MARKER: &[u8] = b"plaintext marker 9f31b7 of the test file";

/// Builds a JPEG of `width` by `height` whose EXIF orientation (6) rotates it 90 degrees
/// clockwise for display, with [`EXIF_MARKER`] as its description.
fn jpeg_with_exif(width: u16, height: u16) -> Vec<u8> {
    let mut pixels = Vec::with_capacity(usize::from(width) * usize::from(height) * 3);
    for y in 0..height {
        for x in 0..width {
            pixels.extend_from_slice(&[
                (x % 256) as u8,
                (y % 256) as u8,
                ((x / 16) ^ (y / 16)) as u8,
            ]);
        }
    }

    // A big-endian TIFF header and one IFD with ImageDescription (0x010E, ASCII) and
    // Orientation (0x0112, SHORT).
    let description = format!("{EXIF_MARKER}\0");
    let text_offset: u32 = 8 + 2 + 2 * 12 + 4;
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\0\x2a");
    tiff.extend_from_slice(&8u32.to_be_bytes());
    tiff.extend_from_slice(&2u16.to_be_bytes());
    tiff.extend_from_slice(&0x010Eu16.to_be_bytes());
    tiff.extend_from_slice(&2u16.to_be_bytes());
    tiff.extend_from_slice(&(description.len() as u32).to_be_bytes());
    tiff.extend_from_slice(&text_offset.to_be_bytes());
    tiff.extend_from_slice(&0x0112u16.to_be_bytes());
    tiff.extend_from_slice(&3u16.to_be_bytes());
    tiff.extend_from_slice(&1u32.to_be_bytes());
    tiff.extend_from_slice(&[0, 6, 0, 0]);
    tiff.extend_from_slice(&0u32.to_be_bytes());
    tiff.extend_from_slice(description.as_bytes());

    let mut jpeg = Vec::new();
    let mut encoder = jpeg_encoder::Encoder::new(&mut jpeg, 90);
    encoder.add_exif_metadata(&tiff).unwrap();
    encoder
        .encode(&pixels, width, height, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    jpeg
}

/// Returns the width and height of a JPEG, decoding only its header.
fn jpeg_size(bytes: &[u8]) -> (u16, u16) {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().expect("a decodable JPEG");
    let info = decoder.info().expect("JPEG info");
    (info.width, info.height)
}

/// Returns the test file: the marker, then bytes of every value in a fixed pseudo-random
/// order.
fn test_file(len: usize) -> Vec<u8> {
    let mut bytes = FILE_MARKER.to_vec();
    let mut state: u32 = 0x9e37_79b9;
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        bytes.push(state as u8);
    }
    bytes
}

/// Returns the `src` of the `index`-th image in the message list, once it is a `blob:` URL.
async fn image_url(client: &Client, who: &str, index: usize) -> String {
    eventually(&format!("{who}'s image {index}"), WAIT, || async {
        let script = "const images = document.querySelectorAll('#messages img.picture'); \
                      const image = images[arguments[0]]; \
                      return image && image.complete && image.naturalWidth > 0 ? image.src : null;";
        let value = client
            .execute(script, vec![Value::from(index)])
            .await
            .ok()?;
        value.as_str().map(str::to_owned)
    })
    .await
}

/// Returns the natural width and height of the image at `url` in the message list.
async fn natural_size(client: &Client, url: &str) -> (u64, u64) {
    let script = "const image = Array.from(document.querySelectorAll('#messages img.picture')) \
                  .find(i => i.src === arguments[0]); \
                  return [image.naturalWidth, image.naturalHeight];";
    let value = client
        .execute(script, vec![Value::from(url)])
        .await
        .unwrap();
    (value[0].as_u64().unwrap(), value[1].as_u64().unwrap())
}

/// Clicks the first element matching `css`, waiting for it to appear.
async fn click(client: &Client, css: &str) {
    let element = eventually(&format!("an element {css:?}"), WAIT, || async {
        client.find(Locator::Css(css)).await.ok()
    })
    .await;
    element.click().await.unwrap();
}

/// Drops a file with `name` and `bytes` onto the page, as a drag from the desktop would.
async fn drop_file(client: &Client, name: &str, bytes: &[u8]) {
    let script = r#"
        const [name, base64] = arguments;
        const bytes = Uint8Array.from(atob(base64), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type: 'application/octet-stream' }));
        const target = document.getElementById('messages');
        for (const type of ['dragover', 'drop']) {
            target.dispatchEvent(new DragEvent(type, {
                dataTransfer: transfer, bubbles: true, cancelable: true }));
        }
    "#;
    client
        .execute(
            script,
            vec![Value::from(name), Value::from(STANDARD.encode(bytes))],
        )
        .await
        .expect("dropping a file on the page");
}

/// Drops a file of `len` zero bytes, made in the page, onto the chat.
async fn drop_generated_file(client: &Client, name: &str, len: usize) {
    let script = r#"
        const [name, len] = arguments;
        const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array(len)], name));
        document.getElementById('messages').dispatchEvent(new DragEvent('drop', {
            dataTransfer: transfer, bubbles: true, cancelable: true }));
    "#;
    client
        .execute(script, vec![Value::from(name), Value::from(len)])
        .await
        .expect("dropping a generated file on the page");
}

/// Pastes an image file into the message field, as pasting a copied image would.
async fn paste_image(client: &Client, name: &str, bytes: &[u8]) {
    let script = r#"
        const [name, base64] = arguments;
        const bytes = Uint8Array.from(atob(base64), c => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], name, { type: 'image/jpeg' }));
        document.getElementById('text').dispatchEvent(new ClipboardEvent('paste', {
            clipboardData: transfer, bubbles: true, cancelable: true }));
    "#;
    client
        .execute(
            script,
            vec![Value::from(name), Value::from(STANDARD.encode(bytes))],
        )
        .await
        .expect("pasting an image into the page");
}

/// Returns every blob file the relay stored.
fn stored_blobs(relay: &Relay) -> Vec<Vec<u8>> {
    let dir = relay.data_dir().join("blobs");
    let mut blobs = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the relay's blob directory") {
        blobs.push(std::fs::read(entry.unwrap().path()).unwrap());
    }
    blobs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_and_files_cross_encrypted() {
    let relay = Relay::start(&[]).await;
    let alice = Browser::launch(DESKTOP.0, DESKTOP.1).await;
    let bob = Browser::launch(PHONE.0, PHONE.1).await;
    let room = open_new_room(&alice.client, &relay.url("/")).await;
    bob.client.goto(room.as_str()).await.unwrap();
    wait_for_count(&alice.client, "Alice", "2 here").await;
    wait_for_count(&bob.client, "Bob", "2 here").await;
    alice
        .client
        .find(Locator::Id("nick"))
        .await
        .unwrap()
        .send_keys("alice")
        .await
        .unwrap();

    // Alice picks a 2400 x 1200 photo whose EXIF data rotates it to portrait.
    let photo = jpeg_with_exif(2400, 1200);
    assert!(
        contains(&photo, EXIF_MARKER.as_bytes()),
        "the test image lacks its EXIF"
    );
    let photo_dir = tempfile::tempdir().unwrap();
    let photo_path = photo_dir.path().join("holiday photo.jpeg");
    std::fs::write(&photo_path, &photo).unwrap();
    let picker = alice.client.find(Locator::Id("attach")).await.unwrap();
    picker
        .send_keys(&photo_path.display().to_string())
        .await
        .unwrap();

    // Bob's page shows the re-encoded JPEG: rotated, scaled to 1600 px, without EXIF.
    let received_url = image_url(&bob.client, "Bob", 0).await;
    assert!(received_url.starts_with("blob:"), "{received_url}");
    assert_eq!(natural_size(&bob.client, &received_url).await, (800, 1600));
    image_url(&alice.client, "Alice", 0).await;
    assert_eq!(
        texts_of(&bob.client, "#messages .message .nick").await,
        ["alice"]
    );
    click(&bob.client, "#messages li.image a.save").await;
    let received = bob.downloaded("holiday photo.jpg").await;
    assert!(received.starts_with(&[0xFF, 0xD8, 0xFF]), "not a JPEG");
    assert_ne!(received, photo, "the image was not re-encoded");
    assert_eq!(jpeg_size(&received), (800, 1600), "orientation or scaling");
    assert!(
        !contains(&received, EXIF_MARKER.as_bytes()),
        "EXIF data survived the re-encoding"
    );
    assert!(
        !contains(&received, b"Exif\0\0"),
        "an EXIF segment survived"
    );

    // Bob drops a file on the chat; it travels as it is, byte for byte.
    let file = test_file(300_000);
    drop_file(&bob.client, "report <script>.bin", &file).await;
    let download = eventually("Alice's Download button", WAIT, || async {
        alice
            .client
            .find(Locator::Css("#messages li.file button.download"))
            .await
            .ok()
    })
    .await;
    assert_eq!(
        texts_of(&alice.client, "#messages li.file .file-name").await,
        ["report <script>.bin (293.0 KiB)"]
    );
    download.click().await.unwrap();
    let save = eventually("Alice's saved file link", WAIT, || async {
        alice
            .client
            .find(Locator::Css("#messages li.file a.save"))
            .await
            .ok()
    })
    .await;
    let href = save.attr("href").await.unwrap().unwrap();
    assert!(href.starts_with("blob:"), "{href}");
    assert_eq!(
        save.attr("download").await.unwrap().as_deref(),
        Some("report _script_.bin"),
        "the download name was not cleaned"
    );
    assert_eq!(
        alice.downloaded("report _script_.bin").await,
        file,
        "file bytes differ"
    );
    for (who, client) in [("Alice", &alice.client), ("Bob", &bob.client)] {
        assert_eq!(
            count_of(client, "#messages script").await,
            0,
            "{who}: markup from a name"
        );
    }

    // Bob pastes a small image; it arrives as a JPEG of the same size, turned upright.
    let pasted = jpeg_with_exif(120, 80);
    paste_image(&bob.client, "clip.jpg", &pasted).await;
    let pasted_url = image_url(&alice.client, "Alice", 1).await;
    assert_eq!(natural_size(&alice.client, &pasted_url).await, (80, 120));

    // The relay stored three blobs, all ciphertext.
    let blobs = stored_blobs(&relay);
    assert_eq!(blobs.len(), 3, "stored blobs");
    for blob in &blobs {
        assert_eq!(blob[0], 1, "blob version byte");
        assert!(
            !contains(blob, FILE_MARKER),
            "a stored blob contains the file's plaintext"
        );
        assert!(
            !contains(blob, &file[1000..1064]),
            "a stored blob contains file bytes"
        );
        assert!(
            !contains(blob, &received[200..264]),
            "a stored blob contains image bytes"
        );
        assert!(
            !contains(blob, &[0xFF, 0xD8, 0xFF]),
            "a stored blob contains a JPEG header"
        );
    }

    // Decrypted with the room key, the stored blobs are what the pages showed and saved.
    let fragment = format!("#{}", room.fragment().unwrap());
    let mut keys = KeyCache::default();
    let contents: Vec<Vec<u8>> = blobs
        .iter()
        .map(|blob| blob::decrypt(&fragment, blob, &mut keys).expect("a blob of this room"))
        .collect();
    assert!(
        contents.contains(&received),
        "Bob's saved image is not what Alice uploaded"
    );
    assert!(
        contents.contains(&file),
        "the stored file is not what Bob dropped"
    );
    assert!(
        contents
            .iter()
            .any(|content| content.starts_with(&[0xFF, 0xD8]) && jpeg_size(content) == (80, 120)),
        "the pasted image is not among the stored blobs"
    );

    // Screenshots for a person to look at: the chat at both widths, and the invite panel.
    screenshot(&alice.client, "chat-1280").await;
    screenshot(&bob.client, "chat-360").await;
    bob.client
        .find(Locator::Id("invite-button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let qr_paths = count_of(&bob.client, "#qr svg path").await;
    assert_eq!(qr_paths, 1, "the QR code's SVG path");

    // Copy link either copies, or (where the browser refuses the Clipboard API) selects the
    // whole link and says how to copy it.
    click(&bob.client, "#copy-link").await;
    let copy_result = eventually("the copy result", WAIT, || async {
        text_of(&bob.client, "#copy-result")
            .await
            .filter(|t| !t.is_empty())
    })
    .await;
    if copy_result != "Link copied." {
        assert!(copy_result.contains("selected"), "{copy_result}");
        let selection = bob
            .client
            .execute(
                "const input = document.getElementById('room-link'); \
                 return [input.selectionStart, input.selectionEnd, input.value];",
                vec![],
            )
            .await
            .unwrap();
        let link = selection[2].as_str().unwrap();
        assert_eq!(selection[0], 0, "selection start");
        assert_eq!(
            selection[1].as_u64(),
            Some(link.len() as u64),
            "selection end"
        );
        assert_eq!(link, room.as_str(), "the link in the invite panel");
    }
    screenshot(&bob.client, "invite-360").await;

    // On the phone, the open privacy panel leaves the message list most of its room: the
    // panel's text scrolls within a bounded height instead.
    click(&bob.client, "#invite-button").await;
    let closed_height = element_height(&bob.client, "#messages").await;
    click(&bob.client, "#privacy summary").await;
    let open_height = element_height(&bob.client, "#messages").await;
    assert!(
        open_height >= 0.5 * closed_height,
        "the open panel shrank the list from {closed_height} to {open_height} pixels"
    );
    screenshot(&bob.client, "privacy-360").await;
    click(&bob.client, "#privacy summary").await;
    let closed_again = element_height(&bob.client, "#messages").await;
    assert_eq!(
        closed_again, closed_height,
        "the list after closing the panel"
    );

    alice.client.clone().close().await.unwrap();
    bob.client.clone().close().await.unwrap();
}

/// Returns the rendered height of the first element matching `css`, in CSS pixels.
async fn element_height(client: &Client, css: &str) -> f64 {
    let script = "return document.querySelector(arguments[0]).getBoundingClientRect().height;";
    let value = client
        .execute(script, vec![Value::from(css)])
        .await
        .unwrap();
    value.as_f64().expect("a height")
}

/// Types `text` into the element with `id`.
async fn type_into(client: &Client, id: &str, text: &str) {
    let field = client.find(Locator::Id(id)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

/// Returns whether the element with `id` has the `hidden` attribute.
async fn is_hidden(client: &Client, id: &str) -> bool {
    let script = "return document.getElementById(arguments[0]).hidden;";
    let value = client.execute(script, vec![Value::from(id)]).await.unwrap();
    value.as_bool().unwrap()
}

/// Returns whether the element with `id` is rendered: neither it nor an ancestor is hidden
/// by an attribute or by CSS.
async fn is_shown(client: &Client, id: &str) -> bool {
    let script = "return document.getElementById(arguments[0]).checkVisibility();";
    let value = client.execute(script, vec![Value::from(id)]).await.unwrap();
    value.as_bool().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passphrase_room_reads_and_refuses() {
    const PASSPHRASE: &str = "velvet otter 7 lantern";
    let relay = Relay::start(&[]).await;
    let proxy = CaptureProxy::start(relay.addr).await;
    let alice = Browser::launch(DESKTOP.0, DESKTOP.1).await;
    let bob = Browser::launch_dark(PHONE.0, PHONE.1).await;

    // Alice creates a passphrase room from the invite panel.
    open_new_room(&alice.client, &proxy.url("/")).await;
    click(&alice.client, "#invite-button").await;
    click(&alice.client, "#new-passphrase-room").await;
    type_into(&alice.client, "new-passphrase", PASSPHRASE).await;
    type_into(&alice.client, "new-passphrase-repeat", PASSPHRASE).await;
    click(&alice.client, "#passphrase-form button[type=submit]").await;
    let room = eventually("a passphrase room in Alice's address", WAIT, || async {
        let url = alice.client.current_url().await.ok()?;
        url.fragment()
            .is_some_and(|f| f.contains('.'))
            .then_some(url)
    })
    .await;
    let fragment = room.fragment().unwrap().to_owned();
    assert_eq!(fragment.len(), 22 + 1 + 8, "{fragment}");
    wait_for_status(&alice.client, "Alice", "connected").await;
    wait_for_count(&alice.client, "Alice", "1 here").await;
    assert!(!is_hidden(&alice.client, "passphrase-note").await);
    let link = alice
        .client
        .find(Locator::Id("room-link"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(link, room.as_str(), "the invite panel shows another link");

    // Bob opens the link: the page prompts for the passphrase before joining.
    bob.client.goto(room.as_str()).await.unwrap();
    wait_for_status(&bob.client, "Bob", "locked").await;
    assert!(
        !is_hidden(&bob.client, "unlock").await,
        "no passphrase prompt"
    );
    screenshot(&bob.client, "unlock-dark-360").await;
    assert!(
        is_hidden(&bob.client, "composer").await,
        "composer shown while locked"
    );

    // A wrong passphrase is reported as wrong, and Bob does not join.
    type_into(&bob.client, "unlock-passphrase", "velvet otter 7 lanterns").await;
    click(&bob.client, "#unlock button[type=submit]").await;
    eventually("Bob's wrong-passphrase error", WAIT, || async {
        let error = text_of(&bob.client, "#unlock-error").await?;
        error.contains("wrong").then_some(())
    })
    .await;
    assert_eq!(
        text_of(&bob.client, "#status").await.as_deref(),
        Some("locked")
    );
    assert!(is_hidden(&bob.client, "composer").await);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        text_of(&alice.client, "#count").await.as_deref(),
        Some("1 here"),
        "Bob subscribed with a wrong passphrase"
    );

    // The right one opens the room, and both read each other.
    type_into(&bob.client, "unlock-passphrase", PASSPHRASE).await;
    click(&bob.client, "#unlock button[type=submit]").await;
    wait_for_status(&bob.client, "Bob", "connected").await;
    wait_for_count(&alice.client, "Alice", "2 here").await;
    assert!(is_hidden(&bob.client, "unlock").await);
    send_text(&alice.client, "secret plans marker-31e8").await;
    wait_for_message(&bob.client, "Bob", "secret plans marker-31e8").await;
    eventually("Bob's screen-reader announcement", WAIT, || async {
        let announced = contents_of(&bob.client, "#announcer").await;
        (announced == ["anonymous: secret plans marker-31e8"]).then_some(())
    })
    .await;
    send_text(&bob.client, "agreed marker-77a0").await;
    wait_for_message(&alice.client, "Alice", "agreed marker-77a0").await;

    // Shift+Enter starts a new line; Enter sends both lines as one message.
    let field = bob.client.find(Locator::Id("text")).await.unwrap();
    field.send_keys("first line").await.unwrap();
    field
        .send_keys(&format!("{SHIFT}{ENTER}{RELEASE_KEYS}"))
        .await
        .unwrap();
    field.send_keys("second line").await.unwrap();
    field.send_keys(ENTER).await.unwrap();
    wait_for_message(&alice.client, "Alice", "first line\nsecond line").await;
    let dark = bob
        .client
        .execute(
            "return matchMedia('(prefers-color-scheme: dark)').matches;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        dark,
        Value::Bool(true),
        "Bob's browser does not prefer dark"
    );

    // Neither the passphrase nor the key went over the wire, and neither page stored them.
    let captured = proxy.captured();

    // The page links its own icon, so the browsers fetch that instead of a missing
    // /favicon.ico, and the relay serves it as an image that the CSP's img-src allows.
    assert!(
        contains(&captured, b"GET /favicon-"),
        "no browser requested the page's icon"
    );
    assert!(
        !contains(&captured, b"GET /favicon.ico"),
        "a browser requested /favicon.ico"
    );
    let icon = alice
        .client
        .execute(
            "return document.querySelector('link[rel=icon]').href;",
            vec![],
        )
        .await
        .unwrap();
    let response = reqwest::get(icon.as_str().unwrap()).await.unwrap();
    assert_eq!(response.status(), 200, "the icon's status");
    let header = |name: &str| {
        let value = response.headers().get(name).map(|v| v.to_str().unwrap());
        value.unwrap_or_default().to_owned()
    };
    assert_eq!(header("content-type"), "image/svg+xml", "the icon's type");
    let policy = header("content-security-policy");
    assert!(policy.contains("img-src 'self'"), "{policy}");
    assert!(response.text().await.unwrap().starts_with("<svg"));
    assert!(
        contains(&captured, b"POST /pub/"),
        "no publish in the capture"
    );
    for secret in [PASSPHRASE, "velvet otter", &fragment[..22], "marker-31e8"] {
        assert!(
            !contains(&captured, secret.as_bytes()),
            "the relay saw {secret:?}"
        );
    }
    for (who, client) in [("Alice", &alice.client), ("Bob", &bob.client)] {
        let stored = client
            .execute(
                "return JSON.stringify(Object.assign({}, localStorage));",
                vec![],
            )
            .await
            .unwrap();
        let stored = stored.as_str().unwrap().to_owned();
        assert!(
            !stored.contains("velvet"),
            "{who} stored the passphrase: {stored}"
        );
        assert!(
            !stored.contains(&fragment[..22]),
            "{who} stored the key: {stored}"
        );
    }
    screenshot(&bob.client, "passphrase-dark-360").await;

    alice.client.clone().close().await.unwrap();
    bob.client.clone().close().await.unwrap();
}

/// Publishes an envelope to a channel as a room member's page would, returning the status.
async fn publish(relay: &Relay, channel: &str, envelope: &str) -> u16 {
    let response = reqwest::Client::new()
        .post(relay.url(&format!("/pub/{channel}")))
        .header("Content-Type", "application/json")
        .body(envelope.to_owned())
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

/// Uploads `bytes` to the channel as a room member's page would, and returns the blob's id.
async fn upload_blob(relay: &Relay, channel: &str, bytes: Vec<u8>) -> String {
    let response = reqwest::Client::new()
        .post(relay.url(&format!("/blob/{channel}")))
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let uploaded: Value = response.json().await.unwrap();
    uploaded["id"].as_str().unwrap().to_owned()
}

/// Encrypts `plaintext` for the room as a hostile member could: with the given iterations and
/// a fresh random salt.
fn hostile_envelope(password: &str, plaintext: &str, iterations: u32) -> String {
    let mut salt = [0u8; 8];
    getrandom::fill(&mut salt).unwrap();
    let params = Params {
        iterations,
        salt: Some(salt.to_vec()),
        ..Params::default()
    };
    envelope::encrypt(
        password,
        plaintext.as_bytes(),
        &params,
        &mut KeyCache::default(),
    )
    .unwrap()
}

/// Encrypts `plaintext` with the real `sjcl` npm package (installed in tests/node by
/// `scripts/setup --test`), as a plain SJCL client in the room would.
fn sjcl_encrypt(password: &str, plaintext: &str) -> String {
    let node_dir = dropthat_tests::workspace_root().join("tests").join("node");
    let output = std::process::Command::new("node")
        .current_dir(&node_dir)
        .args([
            "-e",
            "process.stdout.write(require('sjcl').encrypt(process.argv[1], process.argv[2]))",
            password,
            plaintext,
        ])
        .output()
        .expect("running node; scripts/setup --test installs it");
    assert!(
        output.status.success(),
        "sjcl.encrypt failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("an envelope in UTF-8")
}

/// Returns a message from `nick` with a new id and `body`.
fn message(nick: &str, body: Body) -> Message {
    Message {
        id: MessageId::random().unwrap(),
        nick: nick.to_owned(),
        sent: 1_700_000_000_000,
        body,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_leave_page_working() {
    // Low size limits, so the page meets the relay's 413 answers.
    let relay = Relay::start(&[
        "--publish-rate",
        "1000",
        "--publish-burst",
        "1000",
        "--max-publish-bytes",
        "4096",
        "--max-blob-bytes",
        "200000",
    ])
    .await;
    let alice = Browser::launch(DESKTOP.0, DESKTOP.1).await;
    let room = open_new_room(&alice.client, &relay.url("/")).await;
    wait_for_status(&alice.client, "Alice", "connected").await;
    let password = format!("#{}", room.fragment().unwrap());
    let channel = channel_id(&password);
    let mut keys = KeyCache::default();
    let seal = |keys: &mut KeyCache, plaintext: &str| {
        envelope::encrypt(&password, plaintext.as_bytes(), &Params::default(), keys).unwrap()
    };

    // Markup in every field a member controls stays text.
    let markup = "<img src=x onerror=\"window.pwned=1\"><script>window.pwned=2</script><b>bold</b>";
    let html = message("<i>mallory</i>", Body::Text(markup.to_owned()));
    let html_envelope = seal(&mut keys, &html.to_json());
    assert_eq!(publish(&relay, &channel, &html_envelope).await, 202);
    wait_for_message(&alice.client, "Alice", markup).await;

    // The same message again, as a retried publish would send it, is shown once.
    assert_eq!(publish(&relay, &channel, &html_envelope).await, 202);

    // A text with 1,000 combining marks (as many as fit the relay's publish limit here) paints
    // only inside its own row. The row above it looks the same before and after it arrives,
    // and the marked row stays a normal height.
    let above = message("m", Body::Text("above the marks marker-5d2c".to_owned()));
    assert_eq!(
        publish(&relay, &channel, &seal(&mut keys, &above.to_json())).await,
        202
    );
    wait_for_message(&alice.client, "Alice", "above the marks marker-5d2c").await;
    let above_row = Locator::XPath("//li[.//p[text()='above the marks marker-5d2c']]");
    let before = alice.client.find(above_row).await.unwrap();
    let before = before.screenshot().await.unwrap();
    let marks = format!("marks{}", "\u{0300}".repeat(1000));
    let marked = message("m", Body::Text(marks.clone()));
    assert_eq!(
        publish(&relay, &channel, &seal(&mut keys, &marked.to_json())).await,
        202
    );
    eventually("the text with combining marks", WAIT, || async {
        contents_of(&alice.client, "#messages .message .text")
            .await
            .contains(&marks)
            .then_some(())
    })
    .await;
    let after = alice.client.find(above_row).await.unwrap();
    let after = after.screenshot().await.unwrap();
    if before != after {
        let dir = dropthat_tests::page::artifacts_dir();
        std::fs::write(dir.join("marks-above-before.png"), &before).unwrap();
        std::fs::write(dir.join("marks-above-after.png"), &after).unwrap();
        panic!("the combining marks drew over the row above (see tests/artifacts/marks-*.png)");
    }
    let marked_height = element_height(&alice.client, "#messages li:last-child").await;
    assert!(
        marked_height < 100.0,
        "the marked row is {marked_height} pixels high"
    );
    // NOTE: this machine's fonts (DejaVu, Liberation) draw all the marks on one spot, so the
    // screenshots above only catch a spill where a font stacks them. The row's clipping is
    // therefore checked directly too.
    let script = "const row = document.querySelector('#messages li:last-child'); \
                  const style = getComputedStyle(row); \
                  return [style.overflowX, style.overflowY, style.contain];";
    let clipping = alice.client.execute(script, vec![]).await.unwrap();
    assert_eq!(clipping[0], "clip", "the row's horizontal overflow");
    assert_eq!(clipping[1], "clip", "the row's vertical overflow");
    assert_eq!(clipping[2], "paint", "the row's containment");

    // Malformed and unknown messages become notices.
    let cases = [
        (
            r#"{"type":"text","id":"bad","nick":"m","sent":1,"text":"x"}"#,
            "A message could not be shown: the \"id\" field is invalid: it must be 22 base64url \
             characters.",
        ),
        (
            r#"{"type":"video","id":"AAAAAAAAAAAAAAAAAAAAAA","nick":"m","sent":1}"#,
            "A message could not be shown: the message type \"video\" is unknown: this page \
             shows \"text\", \"image\" and \"file\".",
        ),
        (
            r#"{"type":"file","id":"AAAAAAAAAAAAAAAAAAAAAB","nick":"m","sent":1,"blob":"0123456789abcdef0123456789abcdef","sha256":"00","mime":"x/y","name":"n","size":1}"#,
            "A message could not be shown: the \"sha256\" field is invalid: it must be 64 \
             lowercase hex digits.",
        ),
        (
            r#"{"type":"text","id":"AAAAAAAAAAAAAAAAAAAAAC","nick":"m","sent":"noon","text":"x"}"#,
            "A message could not be shown: the \"sent\" field must be a whole number, not text.",
        ),
        (
            r#"{"type":5,"id":"AAAAAAAAAAAAAAAAAAAAAD","nick":"m","sent":1,"text":"x"}"#,
            "A message could not be shown: the \"type\" field must be text, not a number.",
        ),
    ];
    for (plaintext, _) in &cases {
        assert_eq!(
            publish(&relay, &channel, &seal(&mut keys, plaintext)).await,
            202
        );
    }
    for (_, expected) in &cases {
        let notice = wait_for_notice(&alice.client, "Alice", expected).await;
        assert_eq!(notice, *expected);
    }

    // Text from a plain SJCL peer shows as text; a foreign key and an iteration count above
    // the cap are reported, in one notice that counts them.
    let plain = "hello from a plain sjcl peer";
    assert_eq!(
        publish(&relay, &channel, &sjcl_encrypt(&password, plain)).await,
        202
    );
    eventually("the plain text", WAIT, || async {
        contents_of(&alice.client, "#messages .plain .text")
            .await
            .contains(&plain.to_owned())
            .then_some(())
    })
    .await;
    let foreign = envelope::encrypt("#other", b"x", &Params::default(), &mut keys).unwrap();
    assert_eq!(publish(&relay, &channel, &foreign).await, 202);
    let notice = wait_for_notice(&alice.client, "Alice", "could not be decrypted").await;
    assert_eq!(
        notice,
        "A message could not be decrypted: the key is wrong or the message was altered."
    );
    let too_costly = seal(&mut keys, "x").replace("\"iter\":10000", "\"iter\":1000000");
    assert_eq!(publish(&relay, &channel, &too_costly).await, 202);
    let notice = wait_for_notice(&alice.client, "Alice", "2 messages could not be read").await;
    assert!(
        notice.contains("The latest could not be read: ")
            && notice.contains("exceeds the limit of 100000"),
        "{notice}"
    );

    // Anyone with the channel id can publish: a flood of envelopes with an altered ciphertext
    // and this sender's salt, whose key Alice's page has cached (so each costs one AES-CCM).
    // They are counted in the same notice instead of taking a row each.
    let altered = |keys: &mut KeyCache| {
        let mut json: Value = serde_json::from_str(&seal(keys, "x")).unwrap();
        let ct = json["ct"].as_str().unwrap();
        let first = if ct.starts_with('A') { "B" } else { "A" };
        json["ct"] = format!("{first}{}", &ct[1..]).into();
        json.to_string()
    };
    for _ in 0..30 {
        assert_eq!(publish(&relay, &channel, &altered(&mut keys)).await, 202);
    }
    // One more with a key the page must derive first, which shows a placeholder row while
    // it derives: the placeholder goes when the failure joins the count.
    let foreign = envelope::encrypt("#other2", b"x", &Params::default(), &mut keys).unwrap();
    assert_eq!(publish(&relay, &channel, &foreign).await, 202);
    let notice = wait_for_notice(&alice.client, "Alice", "33 messages could not be read").await;
    assert_eq!(
        notice,
        "33 messages could not be read or decrypted. The latest could not be decrypted: the key \
         is wrong or the message was altered."
    );
    let placeholders = contents_of(&alice.client, "#messages .notice")
        .await
        .into_iter()
        .filter(|t| t.starts_with("Decrypting"))
        .count();
    assert_eq!(placeholders, 0, "placeholder rows left in the list");
    let failure_notices = contents_of(&alice.client, "#messages .notice")
        .await
        .into_iter()
        .filter(|t| t.contains("could not be read") || t.contains("could not be decrypted"))
        .count();
    assert_eq!(failure_notices, 1, "notices of unreadable messages");
    assert!(
        contents_of(&alice.client, "#messages .plain .text")
            .await
            .contains(&plain.to_owned()),
        "the plain text left the list"
    );

    // A flood of messages that each need a new derivation at the cap: the page decrypts what
    // its budget allows and skips the rest with one notice.
    let flood: Vec<String> = (0..40)
        .map(|i| {
            let text = message("flood", Body::Text(format!("costly {i}")));
            hostile_envelope(&password, &text.to_json(), 100_000)
        })
        .collect();
    for envelope in &flood {
        assert_eq!(publish(&relay, &channel, envelope).await, 202);
    }
    let notice = wait_for_notice(&alice.client, "Alice", "skipped").await;
    assert!(notice.contains("message(s) skipped"), "{notice}");
    let costly_shown = eventually("the budgeted messages", WAIT, || async {
        let decrypting = contents_of(&alice.client, "#messages .notice")
            .await
            .iter()
            .filter(|t| t.starts_with("Decrypting"))
            .count();
        let shown = texts_of(&alice.client, "#messages .message .text")
            .await
            .into_iter()
            .filter(|t| t.starts_with("costly "))
            .count();
        (decrypting == 0).then_some(shown)
    })
    .await;
    assert!(
        costly_shown >= 10,
        "only {costly_shown} costly messages were shown"
    );
    assert!(costly_shown < 40, "all 40 costly messages were derived");

    // A blob whose SHA-256 does not match its announcement is caught before decryption.
    let swapped = vec![7u8; 1000 + 41];
    let swapped_id = upload_blob(&relay, &channel, swapped).await;
    let announcement = message(
        "mallory",
        Body::File(Attachment {
            blob: swapped_id.clone(),
            sha256: [0x11; 32],
            mime: "text/html".to_owned(),
            name: "../../invoice.html".to_owned(),
            size: 1000,
        }),
    );
    let announced = seal(&mut keys, &announcement.to_json());
    assert_eq!(publish(&relay, &channel, &announced).await, 202);
    click(&alice.client, "#messages li.file button.download").await;
    eventually("the hash mismatch", WAIT, || async {
        contents_of(&alice.client, "#messages li.file .error")
            .await
            .iter()
            .find(|t| t.contains("SHA-256 does not match"))
            .cloned()
    })
    .await;
    assert_eq!(count_of(&alice.client, "#messages a.save").await, 0);
    // Downloading the same bytes again cannot help, so the row offers no "Try again".
    let buttons = alice
        .client
        .execute(
            r#"const row = Array.from(document.querySelectorAll('#messages li.file'))
                   .find(row => row.textContent.includes('SHA-256 does not match'));
               return row.querySelectorAll('button').length;"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(buttons, Value::from(0));

    // A blob of another size than its announcement is reported with exact byte counts.
    let short_id = upload_blob(&relay, &channel, vec![9u8; 500]).await;
    let announcement = message(
        "mallory",
        Body::File(Attachment {
            blob: short_id,
            sha256: [0x44; 32],
            mime: "application/octet-stream".to_owned(),
            name: "short.bin".to_owned(),
            size: 1000,
        }),
    );
    let announced = seal(&mut keys, &announcement.to_json());
    assert_eq!(publish(&relay, &channel, &announced).await, 202);
    alice
        .client
        .execute(
            r#"Array.from(document.querySelectorAll('#messages li.file'))
                   .find(row => row.textContent.includes('short.bin'))
                   .querySelector('button.download').click();"#,
            vec![],
        )
        .await
        .unwrap();
    let error = eventually("the size mismatch", WAIT, || async {
        contents_of(&alice.client, "#messages li.file .error")
            .await
            .into_iter()
            .find(|t| t.starts_with("Could not open short.bin"))
    })
    .await;
    assert_eq!(
        error,
        "Could not open short.bin: the server has 500 bytes, where the announced 1,000 bytes \
         encrypt to 1,041 bytes."
    );

    // An image announcement of a type the page does not show inline is offered as a file.
    let svg = message(
        "mallory",
        Body::Image {
            attachment: Attachment {
                blob: swapped_id.clone(),
                sha256: [0x22; 32],
                mime: "image/svg+xml".to_owned(),
                name: "drawing.svg".to_owned(),
                size: 1000,
            },
            width: 10,
            height: 10,
        },
    );
    assert_eq!(
        publish(&relay, &channel, &seal(&mut keys, &svg.to_json())).await,
        202
    );
    eventually("the SVG offered as a file", WAIT, || async {
        contents_of(&alice.client, "#messages li.file .file-name")
            .await
            .iter()
            .any(|t| t.starts_with("drawing.svg"))
            .then_some(())
    })
    .await;
    assert_eq!(count_of(&alice.client, "#messages img").await, 0);

    // Bidirectional controls from a member reorder nothing. Text loses its overrides, a nick
    // and a file name lose every reordering character, and each is isolated from the words
    // around it. Alice's own row shows a file name cleaned the same way.
    let overridden = message(
        "m\u{202E}allory",
        Body::Text("abc \u{202E}dcba\u{202C} after".to_owned()),
    );
    let named = message(
        "mallory",
        Body::File(Attachment {
            blob: "0123456789abcdef0123456789abcdef".to_owned(),
            sha256: [0x33; 32],
            mime: "application/octet-stream".to_owned(),
            name: ".hidden..\u{202E}gpj.exe".to_owned(),
            size: 1000,
        }),
    );
    for plaintext in [overridden.to_json(), named.to_json()] {
        assert_eq!(
            publish(&relay, &channel, &seal(&mut keys, &plaintext)).await,
            202
        );
    }
    drop_file(
        &alice.client,
        ".hidden..\u{202E}gpj.exe",
        b"not really a program",
    )
    .await;
    let pieces = eventually("the rows with bidirectional controls", WAIT, || async {
        let script = r#"
            const rows = Array.from(document.querySelectorAll('#messages li.message'));
            const text = rows.find(row => row.textContent.includes('dcba'));
            const theirs = rows.find(row => !row.matches('.own') && row.textContent.includes('gpj'));
            const mine = rows.find(row => row.matches('.own') && row.textContent.includes('gpj'));
            if (!text || !theirs || !mine) return null;
            return [
                text.querySelector('.nick'),
                text.querySelector('.text'),
                theirs.querySelector('.file-name bdi'),
                mine.querySelector('.file-name bdi'),
            ].map(e => [e.textContent, getComputedStyle(e).unicodeBidi]);
        "#;
        let value = alice.client.execute(script, vec![]).await.ok()?;
        serde_json::from_value::<Vec<(String, String)>>(value).ok()
    })
    .await;
    let expected = [
        "mallory",
        "abc dcba\u{202C} after",
        ".hidden..gpj.exe",
        ".hidden..gpj.exe",
    ];
    for ((text, bidi), expected) in pieces.iter().zip(expected) {
        assert_eq!(text, expected);
        assert_eq!(bidi, "isolate", "{text:?} is not isolated");
    }

    // An image whose content the browser cannot decode is reported in one plain sentence.
    let not_image = b"these bytes are no PNG marker-e1f4";
    let sealed = blob::encrypt(&password, not_image, &mut keys).unwrap();
    let sha256: [u8; 32] = Sha256::digest(&sealed).into();
    let broken_id = upload_blob(&relay, &channel, sealed).await;
    let broken = message(
        "mallory",
        Body::Image {
            attachment: Attachment {
                blob: broken_id,
                sha256,
                mime: "image/png".to_owned(),
                name: "broken.png".to_owned(),
                size: not_image.len() as u64,
            },
            width: 10,
            height: 10,
        },
    );
    assert_eq!(
        publish(&relay, &channel, &seal(&mut keys, &broken.to_json())).await,
        202
    );
    let error = eventually("the undecodable image's error", WAIT, || async {
        contents_of(&alice.client, "#messages li.image .error")
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(
        error,
        "Could not open broken.png: the browser cannot decode it as an image."
    );

    // Text just over the limit is refused with exact byte counts, which rounding to KiB
    // would show as equal.
    alice
        .client
        .execute(
            "document.getElementById('text').value = arguments[0];",
            vec![Value::from("x".repeat(16_386))],
        )
        .await
        .unwrap();
    click(&alice.client, "#composer button[type=submit]").await;
    let notice = wait_for_notice(&alice.client, "Alice", "too long to send").await;
    assert_eq!(
        notice,
        "This message is too long to send: 16,386 bytes of text, and the limit is 16,384 \
         bytes. Shorten it, or send it as a file."
    );

    // Sending what the relay refuses says why: a message over its publish limit stays with a
    // "Send again" button, and a file over its blob limit is reported.
    let long_text = "x".repeat(5000);
    alice
        .client
        .execute(
            "document.getElementById('text').value = arguments[0];",
            vec![Value::from(long_text)],
        )
        .await
        .unwrap();
    click(&alice.client, "#composer button[type=submit]").await;
    let state = eventually("the refused message's state", WAIT, || async {
        contents_of(&alice.client, "#messages li.own .state")
            .await
            .into_iter()
            .find(|t| t.starts_with("not sent"))
    })
    .await;
    assert!(state.contains("413"), "{state}");
    assert_eq!(count_of(&alice.client, "#messages button.resend").await, 1);
    drop_file(&alice.client, "big.bin", &test_file(300_000)).await;
    let state = eventually("the refused file's state", WAIT, || async {
        contents_of(&alice.client, "#messages li.file.own .state")
            .await
            .into_iter()
            .find(|t| t.starts_with("not sent"))
    })
    .await;
    assert!(state.contains("larger than this server accepts"), "{state}");
    drop_generated_file(&alice.client, "huge.bin", 8_388_568).await;
    let notice = wait_for_notice(&alice.client, "Alice", "huge.bin").await;
    assert_eq!(
        notice,
        "huge.bin was not sent: it is 8,388,568 bytes, over the limit of 8,388,567 bytes."
    );

    // No notice, error or state shows a parser's wording or doubled punctuation in the page's
    // own words (a member's file name, isolated in a <bdi>, may contain anything).
    let script = "return Array.from(document.querySelectorAll( \
                  '#messages .notice, #messages .error, #messages .state')).map(e => { \
                  const own = e.cloneNode(true); \
                  own.querySelectorAll('bdi').forEach(b => b.remove()); \
                  return own.textContent; });";
    let shown = alice.client.execute(script, vec![]).await.unwrap();
    let shown: Vec<String> = serde_json::from_value(shown).unwrap();
    for text in &shown {
        for word in [
            "invalid type",
            "expected",
            "variant",
            "line 1",
            "column",
            "u64",
            "..",
        ] {
            assert!(!text.contains(word), "{text:?} contains {word:?}");
        }
    }

    // Nothing became markup, no script ran, and the page still sends and shows messages.
    let inserted = count_of(
        &alice.client,
        "#messages img, #messages script, #messages b, #messages i",
    )
    .await;
    assert_eq!(inserted, 0, "a member's markup became elements");
    let pwned = alice
        .client
        .execute("return window.pwned === undefined;", vec![])
        .await
        .unwrap();
    assert_eq!(pwned, Value::Bool(true), "a member's script ran");
    let markup_rows = texts_of(&alice.client, "#messages .message .text")
        .await
        .into_iter()
        .filter(|t| t == markup)
        .count();
    assert_eq!(markup_rows, 1, "the repeated message was shown again");
    assert_eq!(
        contents_of(&alice.client, "#messages .nick")
            .await
            .iter()
            .filter(|n| *n == "<i>mallory</i>")
            .count(),
        1
    );
    send_text(&alice.client, "still working marker-0b4d").await;
    wait_for_message(&alice.client, "Alice", "still working marker-0b4d").await;
    eventually("Alice's message to be sent", WAIT, || async {
        (count_of(&alice.client, "#messages li.pending").await == 0).then_some(())
    })
    .await;
    assert_eq!(
        text_of(&alice.client, "#status").await.as_deref(),
        Some("connected")
    );
    assert!(
        is_hidden(&alice.client, "insecure-warning").await,
        "warning on 127.0.0.1"
    );
    screenshot(&alice.client, "hostile-1280").await;
    click(&alice.client, "#privacy summary").await;
    screenshot(&alice.client, "privacy-1280").await;

    // Plain HTTP from any loopback address is this machine too, so the page does not warn.
    let loopback = Gate::start_at("127.0.0.2", relay.addr).await;
    alice.client.goto(&loopback.url("/")).await.unwrap();
    wait_for_status(&alice.client, "Alice", "connected").await;
    assert!(
        is_hidden(&alice.client, "insecure-warning").await,
        "warning on 127.0.0.2"
    );
    alice.client.clone().close().await.unwrap();

    // From a host name that is not this machine's, it warns. Carol's browser resolves the
    // name to the relay's loopback address, so nothing leaves the machine.
    let carol = Browser::launch_resolving(PHONE.0, PHONE.1, "chat.example").await;
    let elsewhere = format!("http://chat.example:{}/", relay.addr.port());
    carol.client.goto(&elsewhere).await.unwrap();
    wait_for_status(&carol.client, "Carol", "connected").await;
    assert!(
        !is_hidden(&carol.client, "insecure-warning").await,
        "no warning on chat.example"
    );
    let warning = text_of(&carol.client, "#insecure-warning").await.unwrap();
    assert!(warning.contains("plain HTTP"), "{warning}");
    screenshot(&carol.client, "insecure-360").await;
    carol.client.clone().close().await.unwrap();
}

/// Returns how many pixels of the message list lie below its visible part.
async fn gap_below_view(client: &Client) -> f64 {
    let script = "const list = document.getElementById('messages'); \
                  return list.scrollHeight - list.scrollTop - list.clientHeight;";
    let gap = client.execute(script, vec![]).await.unwrap();
    gap.as_f64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_rows_keep_list_at_end() {
    let relay = Relay::start(&["--publish-rate", "1000", "--publish-burst", "1000"]).await;
    let browser = Browser::launch(PHONE.0, PHONE.1).await;
    let client = &browser.client;
    let room = open_new_room(client, &relay.url("/")).await;
    wait_for_status(client, "the page", "connected").await;
    let password = format!("#{}", room.fragment().unwrap());
    let channel = channel_id(&password);

    let mut keys = KeyCache::default();
    let seal = |keys: &mut KeyCache, message: &Message| {
        let plaintext = message.to_json();
        envelope::encrypt(&password, plaintext.as_bytes(), &Params::default(), keys).unwrap()
    };

    // Enough rows under one key to overflow the list, which follows its end.
    for index in 0..30 {
        let filler = message("m", Body::Text(format!("filler {index} marker-2b7e")));
        assert_eq!(
            publish(&relay, &channel, &seal(&mut keys, &filler)).await,
            202
        );
    }
    wait_for_message(client, "the page", "filler 29 marker-2b7e").await;

    // A message under a new salt shows a one-line placeholder while its key is derived, then
    // a taller row in its place. The list still ends at the new row.
    let lines = "new key marker-e41f\nsecond line\nthird line\nfourth line";
    let plaintext = message("m", Body::Text(lines.to_owned())).to_json();
    let sealed = hostile_envelope(&password, &plaintext, 10_000);
    assert_eq!(publish(&relay, &channel, &sealed).await, 202);
    wait_for_message(client, "the page", lines).await;
    let gap = gap_below_view(client).await;
    assert!(gap <= 1.0, "the list ends {gap} pixels below its view");

    // An image grows its row twice after the row is shown: when the picture is added, and
    // when its save link follows the decoding.
    let picture = jpeg_with_exif(160, 120);
    let sealed_picture = blob::encrypt(&password, &picture, &mut keys).unwrap();
    let sha256: [u8; 32] = Sha256::digest(&sealed_picture).into();
    let picture_id = upload_blob(&relay, &channel, sealed_picture).await;
    let announcement = message(
        "m",
        Body::Image {
            attachment: Attachment {
                blob: picture_id,
                sha256,
                mime: "image/jpeg".to_owned(),
                name: "tall.jpg".to_owned(),
                size: picture.len() as u64,
            },
            width: 120,
            height: 160,
        },
    );
    let sealed = seal(&mut keys, &announcement);
    assert_eq!(publish(&relay, &channel, &sealed).await, 202);
    eventually("the image's save link", WAIT, || async {
        (count_of(client, "#messages li.image a.save").await == 1).then_some(())
    })
    .await;
    let gap = gap_below_view(client).await;
    assert!(
        gap <= 1.0,
        "after the image, the list ends {gap} pixels below its view"
    );

    browser.client.clone().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_link_offers_new_room() {
    let relay = Relay::start(&[]).await;
    let browser = Browser::launch(PHONE.0, PHONE.1).await;
    let client = &browser.client;

    // A fragment that is no room key: the page reports it instead of "offline", with the link
    // parser's reason, and neither connects nor offers to send.
    client.goto(&relay.url("/#notavalidkey")).await.unwrap();
    wait_for_status(client, "the page", "invalid link").await;
    assert!(is_shown(client, "link-error").await, "no link error shown");
    let reason = text_of(client, "#link-error-reason").await.unwrap();
    assert!(
        reason.starts_with("The room key has 12 characters"),
        "{reason}"
    );
    assert!(!is_shown(client, "composer").await, "composer shown");
    assert!(!is_shown(client, "invite-button").await, "Invite shown");
    assert_eq!(text_of(client, "#count").await.as_deref(), Some(""));
    screenshot(client, "invalid-link-360").await;

    // Its button starts a new room, which works as any other.
    click(client, "#link-error-new-room").await;
    eventually("a room in the address", WAIT, || async {
        let url = client.current_url().await.ok()?;
        url.fragment().is_some_and(|f| f.len() == 22).then_some(())
    })
    .await;
    wait_for_status(client, "the page", "connected").await;
    assert!(
        !is_shown(client, "link-error").await,
        "the link error stayed"
    );
    assert!(
        is_shown(client, "composer").await,
        "no composer in the new room"
    );
    assert!(
        is_shown(client, "invite-button").await,
        "no Invite in the new room"
    );
    send_text(client, "a fresh start marker-c7d2").await;
    wait_for_message(client, "the page", "a fresh start marker-c7d2").await;

    browser.client.clone().close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_and_outage_lose_nothing() {
    let mut relay = Relay::start(&[]).await;
    let alice_gate = Gate::start(relay.addr).await;
    let bob_gate = Gate::start(relay.addr).await;
    let alice = Browser::launch(DESKTOP.0, DESKTOP.1).await;
    let bob = Browser::launch(PHONE.0, PHONE.1).await;
    let room = open_new_room(&alice.client, &alice_gate.url("/")).await;
    let bob_room = format!("{}#{}", bob_gate.url("/"), room.fragment().unwrap());
    bob.client.goto(&bob_room).await.unwrap();
    wait_for_count(&alice.client, "Alice", "2 here").await;
    wait_for_count(&bob.client, "Bob", "2 here").await;
    alice
        .client
        .find(Locator::Id("nick"))
        .await
        .unwrap()
        .send_keys("alice")
        .await
        .unwrap();
    send_text(&alice.client, "before anything marker-1").await;
    wait_for_message(&bob.client, "Bob", "before anything marker-1").await;
    let stored_nick = alice
        .client
        .execute("return localStorage.getItem('dropthat.nick');", vec![])
        .await
        .unwrap();
    assert_eq!(
        stored_nick,
        Value::from("alice"),
        "the nick was not remembered"
    );

    // Bob loses his connection; a message sent meanwhile arrives once when he is back,
    // resumed from his last event id without a gap.
    bob_gate.close();
    eventually("Bob to notice the outage", WAIT, || async {
        let status = text_of(&bob.client, "#status").await?;
        (status == "reconnecting" || status == "offline").then_some(())
    })
    .await;
    send_text(&alice.client, "while Bob was away marker-2").await;
    wait_for_message(&alice.client, "Alice", "while Bob was away marker-2").await;
    bob_gate.open();
    wait_for_status(&bob.client, "Bob", "connected").await;
    wait_for_message(&bob.client, "Bob", "while Bob was away marker-2").await;
    let missing = contents_of(&bob.client, "#messages .notice").await;
    assert!(
        !missing.iter().any(|t| t.contains("missing")),
        "a resume within the history reported missing messages: {missing:?}"
    );

    // The relay restarts. Alice writes while it is down; her message waits, shown as pending,
    // and goes out once she is connected again. Her gate stays closed until Bob is back, so
    // the message reaches a relay that Bob subscribes to.
    relay.stop().await;
    for (who, client) in [("Alice", &alice.client), ("Bob", &bob.client)] {
        eventually(&format!("{who} to notice the stop"), WAIT, || async {
            let status = text_of(client, "#status").await?;
            (status != "connected").then_some(())
        })
        .await;
    }
    send_text(&alice.client, "written offline marker-3").await;
    eventually("Alice's pending message", WAIT, || async {
        contents_of(&alice.client, "#messages li.pending .state")
            .await
            .into_iter()
            .find(|t| t.contains("waiting for the connection"))
    })
    .await;
    alice_gate.close();
    relay.start_again().await;
    wait_for_status(&bob.client, "Bob", "connected").await;
    wait_for_notice(&bob.client, "Bob", "may be missing").await;
    alice_gate.open();
    wait_for_status(&alice.client, "Alice", "connected").await;
    wait_for_message(&bob.client, "Bob", "written offline marker-3").await;
    eventually("Alice's message to be sent", WAIT, || async {
        (count_of(&alice.client, "#messages li.pending").await == 0).then_some(())
    })
    .await;
    wait_for_count(&alice.client, "Alice", "2 here").await;

    // Every message is on each page exactly once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let expected = [
        "before anything marker-1",
        "while Bob was away marker-2",
        "written offline marker-3",
    ];
    for (who, client) in [("Alice", &alice.client), ("Bob", &bob.client)] {
        let texts = texts_of(client, "#messages .message .text").await;
        assert_eq!(texts, expected, "{who}'s messages");
    }

    // A message after the restart flows both ways.
    send_text(&bob.client, "after the restart marker-4").await;
    wait_for_message(&alice.client, "Alice", "after the restart marker-4").await;
    screenshot(&bob.client, "reconnected-360").await;

    alice.client.clone().close().await.unwrap();
    bob.client.clone().close().await.unwrap();
}
