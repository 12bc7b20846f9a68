//! Blobs that messages announce: fetching them with progress, checking their size and SHA-256,
//! decrypting them, and showing them through `blob:` URLs.
//!
//! Every check comes before the next step's cost: the announced size against the blob limit
//! (when the message is parsed), the response's length against the announced size while it
//! arrives, the SHA-256 of the encrypted bytes before decrypting (so a relay that swaps a
//! blob is caught even if the swapped blob were encrypted with the room key), and the
//! decrypted length. A peer's MIME type reaches the browser only for the raster image types
//! of [`inline_image_type`]; files are saved as `application/octet-stream` under a cleaned
//! name, so no peer file can open as a page of this origin.

use std::cell::Cell;
use std::rc::Rc;

use js_sys::{Array, Reflect, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Blob, BlobPropertyBag, Element, HtmlAnchorElement, HtmlImageElement, HtmlProgressElement,
    ReadableStreamDefaultReader, Response, Url,
};

use super::dom::{MessageRow, OBJECT_URL_ATTRIBUTE, Piece};
use super::timer::sleep;
use super::{App, Room, describe, listen, outbox};
use crate::message::{Attachment, exact_size, human_size, inline_image_type, safe_file_name};

/// Bytes of images a room downloads by itself; later images wait for a click. This bounds the
/// memory that a member posting many large images can make the page use.
pub const AUTO_IMAGE_BYTES: u64 = 256 << 20;

/// Downloads that run at once; more wait for a free place.
const MAX_PARALLEL_DOWNLOADS: u32 = 2;

/// Per-room download state.
#[derive(Default)]
pub struct Downloads {
    /// Bytes of images downloaded without a click so far.
    auto_bytes: Cell<u64>,
    running: Cell<u32>,
}

/// The failure of a download, reported in place of the image or the saved file.
struct Failure {
    /// The reason, as a clause that follows "Could not open <name>: ".
    reason: String,
    /// Whether trying again may succeed: true for transport failures, false when the bytes
    /// themselves are wrong, which no second download changes.
    retry: bool,
}

impl Failure {
    /// Returns a failure of the connection or the server, which a later attempt may not meet.
    fn transient(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            retry: true,
        }
    }

    /// Returns a failure of the content: wrong size, wrong hash, or bytes that do not decrypt
    /// or decode.
    fn permanent(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            retry: false,
        }
    }
}

/// The way a decrypted blob is shown.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Image { width: u32, height: u32 },
    File,
}

/// Shows an image announcement: downloaded and shown inline at once while the room's
/// automatic budget lasts, behind a button after that. An image of a type the page does not
/// show inline is offered as a file.
pub fn offer_image(
    room: &Rc<Room>,
    row: &MessageRow,
    nick: &str,
    attachment: &Attachment,
    width: u32,
    height: u32,
) {
    if inline_image_type(&attachment.mime).is_none() {
        return offer_file(room, row, attachment);
    }
    let _ = row.row.class_list().add_1("image");
    let _ = room.elements.append_line(
        &row.body,
        "p",
        "caption",
        &[
            Piece::Peer(nick),
            Piece::Page(" sent an image: "),
            Piece::Peer(&attachment.name),
        ],
    );
    let kind = Kind::Image { width, height };

    let downloads = &room.downloads;
    let within_budget = downloads.auto_bytes.get() + attachment.size <= AUTO_IMAGE_BYTES;
    if within_budget {
        downloads
            .auto_bytes
            .set(downloads.auto_bytes.get() + attachment.size);
        start(room, row.clone(), attachment.clone(), kind);
    } else {
        let label = format!("Show image ({})", human_size(attachment.size));
        add_button(room, row, attachment, &label);
    }
}

/// Shows a file announcement with its name, size and a Download button.
pub fn offer_file(room: &Rc<Room>, row: &MessageRow, attachment: &Attachment) {
    let _ = row.row.class_list().add_1("file");
    let _ = room.elements.append_line(
        &row.body,
        "p",
        "file-name",
        &[
            Piece::Peer(&attachment.name),
            Piece::Page(&format!(" ({})", human_size(attachment.size))),
        ],
    );
    add_button(room, row, attachment, "Download");
}

fn add_button(room: &Rc<Room>, row: &MessageRow, attachment: &Attachment, label: &str) {
    let number = room
        .receiver
        .borrow_mut()
        .keep_attachment(attachment.clone(), row.clone());
    let Ok(button) = room.elements.create("button", "download") else {
        return;
    };
    let _ = button.set_attribute("type", "button");
    let _ = button.set_attribute("data-attachment", &number.to_string());
    button.set_text_content(Some(label));
    let _ = row.body.append_child(&button);
}

/// Handles the list's buttons (Download, Show image, Send again) with one listener, so rows
/// need no listeners of their own.
pub fn wire_buttons(app: &Rc<App>) -> Result<(), JsValue> {
    let app = app.clone();
    listen(&app.elements.messages.clone(), "click", move |event| {
        let Some(button) = event
            .target()
            .and_then(|target| target.dyn_into::<Element>().ok())
            .and_then(|target| target.closest("button").ok().flatten())
        else {
            return;
        };
        let Some(room) = app.current_room() else {
            return;
        };
        let number = |name| {
            button
                .get_attribute(name)
                .and_then(|value| value.parse::<u32>().ok())
        };
        if let Some(number) = number("data-attachment") {
            let Some((attachment, row)) = room.receiver.borrow().attachment(number) else {
                return;
            };
            button.remove();
            let kind = if row.row.class_list().contains("image") {
                Kind::Image {
                    width: 0,
                    height: 0,
                }
            } else {
                Kind::File
            };
            start(&room, row, attachment, kind);
        } else if let Some(number) = number("data-resend") {
            outbox::resend(&room, number);
        }
    })
}

fn start(room: &Rc<Room>, row: MessageRow, attachment: Attachment, kind: Kind) {
    let room = room.clone();
    wasm_bindgen_futures::spawn_local(async move {
        while room.downloads.running.get() >= MAX_PARALLEL_DOWNLOADS {
            sleep(250).await;
            if room.closed.get() {
                return;
            }
        }
        room.downloads.running.set(room.downloads.running.get() + 1);
        fetch_and_show(&room, &row, &attachment, kind).await;
        room.downloads.running.set(room.downloads.running.get() - 1);
    });
}

async fn fetch_and_show(room: &Rc<Room>, row: &MessageRow, attachment: &Attachment, kind: Kind) {
    // A new attempt replaces the error line of the one before.
    if let Ok(errors) = row.body.query_selector_all(":scope > p.error") {
        for index in 0..errors.length() {
            if let Some(error) = errors
                .get(index)
                .and_then(|node| node.dyn_into::<Element>().ok())
            {
                error.remove();
            }
        }
    }
    let label = format!("Downloading {}", attachment.name);
    let progress = room.elements.progress(&row.body, &label);
    row.set_state("downloading");
    let result = fetch_verified(room, attachment, progress.as_ref()).await;
    if let Some(progress) = progress {
        progress.remove();
    }
    row.set_state("");
    if room.closed.get() {
        return;
    }

    let shown = match result {
        Ok(content) => match kind {
            Kind::Image { width, height } => {
                show_image(room, row, attachment, &content, width, height).await
            }
            Kind::File => save_file(room, row, attachment, &content),
        }
        .map_err(Failure::permanent),
        Err(failure) => Err(failure),
    };
    if let Err(Failure { reason, retry }) = shown {
        let _ = room.elements.append_line(
            &row.body,
            "p",
            "error",
            &[
                Piece::Page("Could not open "),
                Piece::Peer(&attachment.name),
                Piece::Page(&format!(": {reason}.")),
            ],
        );
        if retry {
            add_button(room, row, attachment, "Try again");
        }
    }
}

/// Downloads the blob and returns its decrypted content after every check.
async fn fetch_verified(
    room: &Room,
    attachment: &Attachment,
    progress: Option<&HtmlProgressElement>,
) -> Result<Uint8Array, Failure> {
    let secret = room
        .secret()
        .ok_or_else(|| Failure::transient("the room is locked"))?;
    let expected = attachment.blob_len();
    let url = format!("/blob/{}", attachment.blob);
    let response: Response = JsFuture::from(room.window.fetch_with_str(&url))
        .await
        .map_err(|_| Failure::transient("the server could not be reached"))?
        .unchecked_into();
    match response.status() {
        200 => {}
        404 => {
            return Err(Failure::permanent(
                "the server no longer has it (files are kept for a limited time, \
                 24 hours by default)",
            ));
        }
        status => return Err(Failure::transient(format!("the server answered {status}"))),
    }
    let declared = response
        .headers()
        .get("Content-Length")
        .ok()
        .flatten()
        .and_then(|value| value.trim().parse::<u64>().ok());
    if let Some(declared) = declared.filter(|declared| *declared != expected) {
        return Err(Failure::permanent(format!(
            "the server has {}, where the announced {} encrypt to {}",
            exact_size(declared),
            exact_size(attachment.size),
            exact_size(expected)
        )));
    }

    let sealed = read_body(&response, expected, progress).await?;
    let digest = sha256(&sealed).await.map_err(Failure::transient)?;
    if digest != attachment.sha256 {
        return Err(Failure::permanent(
            "its SHA-256 does not match the message, so it was changed after it was \
             sent; it was not decrypted",
        ));
    }
    let content = crate::api::decrypt_bytes_async(secret.expose().to_owned(), sealed)
        .await
        .map_err(|e| Failure::permanent(describe(&e.into())))?;
    if u64::from(content.length()) != attachment.size {
        return Err(Failure::permanent(format!(
            "it decrypted to {}, where the message announced {}",
            exact_size(content.length().into()),
            exact_size(attachment.size)
        )));
    }
    Ok(content)
}

/// Reads a response body of exactly `expected` bytes, updating `progress`, and stops as soon as
/// it grows past that.
async fn read_body(
    response: &Response,
    expected: u64,
    progress: Option<&HtmlProgressElement>,
) -> Result<Uint8Array, Failure> {
    // `expected` is at most the blob limit plus overhead (checked when the message was
    // parsed), so it fits a u32.
    let buffer = Uint8Array::new_with_length(expected as u32);
    let Some(stream) = response.body() else {
        return Err(Failure::transient("the server sent no content"));
    };
    let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
    let mut received: u64 = 0;
    loop {
        let chunk = JsFuture::from(reader.read())
            .await
            .map_err(|e| Failure::transient(format!("the download broke off: {}", describe(&e))))?;
        let done = Reflect::get(&chunk, &"done".into())
            .ok()
            .and_then(|done| done.as_bool())
            .unwrap_or(true);
        if done {
            break;
        }
        let Ok(value) = Reflect::get(&chunk, &"value".into()) else {
            break;
        };
        let bytes: Uint8Array = value.unchecked_into();
        let length = u64::from(bytes.length());
        if received + length > expected {
            let _ = reader.cancel();
            return Err(Failure::permanent(format!(
                "the server sent more than the {} the message calls for",
                exact_size(expected)
            )));
        }
        buffer.set(&bytes, received as u32);
        received += length;
        if let Some(progress) = progress {
            progress.set_value(received as f64 / expected.max(1) as f64);
        }
    }
    if received != expected {
        return Err(Failure::transient(format!(
            "the server sent {} of the {} the message calls for",
            exact_size(received),
            exact_size(expected)
        )));
    }
    Ok(buffer)
}

/// Returns the SHA-256 of `bytes`, through WebCrypto where the page has it.
pub async fn sha256(bytes: &Uint8Array) -> Result<[u8; 32], String> {
    let mut digest = [0u8; 32];
    let Some(subtle) = crate::webcrypto::subtle() else {
        use sha2::Digest;
        digest.copy_from_slice(&sha2::Sha256::digest(bytes.to_vec()));
        return Ok(digest);
    };
    let promise = subtle
        .digest_with_str_and_buffer_source("SHA-256", bytes)
        .map_err(|e| describe(&e))?;
    let buffer = JsFuture::from(promise).await.map_err(|e| describe(&e))?;
    let array = Uint8Array::new(&buffer);
    if array.length() != 32 {
        return Err(format!("SHA-256 returned {} bytes", array.length()));
    }
    array.copy_to(&mut digest);
    Ok(digest)
}

/// Creates a `blob:` URL for `content` with the given type. The element that uses it carries
/// [`OBJECT_URL_ATTRIBUTE`], so removing its row revokes the URL.
pub fn object_url(content: &Uint8Array, mime: &str) -> Result<String, String> {
    let parts = Array::of1(content);
    let options = BlobPropertyBag::new();
    options.set_type(mime);
    let blob =
        Blob::new_with_u8_array_sequence_and_options(&parts, &options).map_err(|e| describe(&e))?;
    Url::create_object_url_with_blob(&blob).map_err(|e| describe(&e))
}

/// Shows decrypted image bytes inline, with a link to save them. `width` and `height` are the
/// announced size, which reserves the space while the image decodes (0 when unknown).
pub async fn show_image(
    room: &Room,
    row: &MessageRow,
    attachment: &Attachment,
    content: &Uint8Array,
    width: u32,
    height: u32,
) -> Result<(), String> {
    let mime = inline_image_type(&attachment.mime).unwrap_or("application/octet-stream");
    let url = object_url(content, mime)?;
    let image: HtmlImageElement = room
        .elements
        .create("img", "picture")
        .map_err(|e| describe(&e))?
        .unchecked_into();
    let _ = image.set_attribute(OBJECT_URL_ATTRIBUTE, &url);
    image.set_alt(&format!("Image: {}", attachment.name));
    if width > 0 && height > 0 {
        image.set_width(width);
        image.set_height(height);
    }
    image.set_src(&url);
    room.elements.keep_at_end(|_| {
        let _ = row.body.append_child(&image);
    });

    // The browser's reason ("The source image cannot be decoded.") adds nothing to this.
    if JsFuture::from(image.decode()).await.is_err() {
        image.remove();
        let _ = Url::revoke_object_url(&url);
        return Err("the browser cannot decode it as an image".to_owned());
    }
    append_save_link(room, row, attachment, &url, "Save image");
    Ok(())
}

/// Offers decrypted file bytes as a download and starts it.
fn save_file(
    room: &Room,
    row: &MessageRow,
    attachment: &Attachment,
    content: &Uint8Array,
) -> Result<(), String> {
    let url = object_url(content, "application/octet-stream")?;
    let link = append_save_link(room, row, attachment, &url, "Save file");
    let Some(link) = link else {
        let _ = Url::revoke_object_url(&url);
        return Err("the page could not add the download link".to_owned());
    };
    let _ = link.set_attribute(OBJECT_URL_ATTRIBUTE, &url);
    link.click();
    Ok(())
}

fn append_save_link(
    room: &Room,
    row: &MessageRow,
    attachment: &Attachment,
    url: &str,
    label: &str,
) -> Option<HtmlAnchorElement> {
    let link: HtmlAnchorElement = room.elements.create("a", "save").ok()?.dyn_into().ok()?;
    link.set_href(url);
    link.set_download(&safe_file_name(&attachment.name));
    room.elements
        .set_pieces(
            &link,
            &[
                Piece::Page(&format!("{label}: ")),
                Piece::Peer(&attachment.name),
            ],
        )
        .ok()?;
    let mut appended = false;
    room.elements
        .keep_at_end(|_| appended = row.body.append_child(&link).is_ok());
    appended.then_some(link)
}
