//! Sending images and files: from the file picker, drag and drop onto the chat, and paste.
//!
//! Images are decoded with their EXIF orientation applied, scaled so the longest side is at
//! most [`MAX_IMAGE_SIDE`], and re-encoded as JPEG on a canvas. The new file has only pixels,
//! so EXIF data such as the GPS position and the camera is gone. Other files go as they are.
//! The content is encrypted in the page (`encryptBytesAsync`), uploaded to `/blob/<channel>`
//! with XMLHttpRequest (fetch reports no upload progress), and announced by an encrypted
//! message with the blob id and the SHA-256 of the uploaded bytes.

use std::rc::Rc;

use js_sys::{Promise, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    CanvasRenderingContext2d, DataTransfer, DragEvent, File, FileList, HtmlCanvasElement,
    HtmlProgressElement, ImageBitmap, ImageBitmapOptions, ImageOrientation, ProgressEvent,
    XmlHttpRequest,
};

use super::dom::{MessageRow, OBJECT_URL_ATTRIBUTE, Piece};
use super::download::{object_url, sha256};
use super::timer::{jitter, sleep};
use super::{App, Room, describe, listen, outbox};
use crate::message::{
    Attachment, BLOB_OVERHEAD, Body, clean_file_name, clean_mime, human_size, size_and_limit,
};
use crate::pacing::retry_delay_millis;

/// Maximum side of a sent image, in pixels.
pub const MAX_IMAGE_SIDE: u32 = 1600;

/// JPEG quality of re-encoded images, from 0 to 1.
const JPEG_QUALITY: f64 = 0.85;

/// Largest content the page sends: the relay's default blob limit of 8 MiB (8,388,608 bytes)
/// less the blob envelope's header and tag. A relay with a lower `--max-blob-bytes` responds
/// with 413, which the page reports.
pub const MAX_FILE_BYTES: u64 = (8 << 20) - BLOB_OVERHEAD as u64;

/// Largest image file the page decodes for re-encoding. Decoding costs memory for every pixel;
/// a photo from a phone is far below this.
const MAX_IMAGE_INPUT_BYTES: f64 = 64.0 * 1024.0 * 1024.0;

/// Image types the page re-encodes. Anything else, SVG included, goes as a file.
const IMAGE_INPUT_TYPES: [&str; 6] = [
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/bmp",
    "image/avif",
];

/// Upload tries, with backoff between them, before a file is given up.
const MAX_UPLOAD_ATTEMPTS: u32 = 5;

/// Installs the file picker, drag and drop, and paste handlers.
pub fn wire(app: &Rc<App>) -> Result<(), JsValue> {
    let picker = app.elements.attach.clone();
    let on_pick = app.clone();
    listen(&picker.clone(), "change", move |_| {
        if let Some(files) = picker.files() {
            send_files(&on_pick, &files);
        }
        picker.set_value("");
    })?;

    let window = app.window.clone();
    let on_drag = app.clone();
    listen(&window, "dragover", move |event| {
        let Some(transfer) = data_transfer(&event) else {
            return;
        };
        if has_files(&transfer) {
            event.prevent_default();
            transfer.set_drop_effect("copy");
            on_drag.elements.drop_overlay.set_hidden(false);
        }
    })?;
    let on_leave = app.clone();
    listen(&window, "dragleave", move |event| {
        // The pointer left the window when the event has no related element to move to.
        let left = event
            .dyn_ref::<DragEvent>()
            .is_some_and(|drag| drag.related_target().is_none());
        if left {
            on_leave.elements.drop_overlay.set_hidden(true);
        }
    })?;
    let on_drop = app.clone();
    listen(&window, "drop", move |event| {
        on_drop.elements.drop_overlay.set_hidden(true);
        let Some(files) = data_transfer(&event).and_then(|transfer| transfer.files()) else {
            return;
        };
        event.prevent_default();
        send_files(&on_drop, &files);
    })?;

    let on_paste = app.clone();
    listen(&app.elements.document, "paste", move |event| {
        let files = event
            .dyn_ref::<web_sys::ClipboardEvent>()
            .and_then(|paste| paste.clipboard_data())
            .and_then(|transfer| transfer.files());
        if let Some(files) = files.filter(|files| files.length() > 0) {
            event.prevent_default();
            send_files(&on_paste, &files);
        }
    })
}

fn data_transfer(event: &web_sys::Event) -> Option<DataTransfer> {
    event.dyn_ref::<DragEvent>()?.data_transfer()
}

fn has_files(transfer: &DataTransfer) -> bool {
    transfer
        .types()
        .iter()
        .any(|t| t.as_string().as_deref() == Some("Files"))
}

/// Sends each file in turn, so only one is in memory and on the wire at a time.
fn send_files(app: &Rc<App>, list: &FileList) {
    let Some(room) = app.current_room() else {
        return;
    };
    if room.secret().is_none() {
        app.elements
            .show_notice("Enter the room's passphrase before sending files.");
        return;
    }
    let files: Vec<File> = (0..list.length()).filter_map(|i| list.get(i)).collect();
    wasm_bindgen_futures::spawn_local(async move {
        for file in files {
            if room.closed.get() {
                return;
            }
            send_file(&room, &file).await;
        }
    });
}

/// The content to upload, and the fields of its announcement.
struct Prepared {
    content: Uint8Array,
    mime: String,
    name: String,
    /// Width and height of a re-encoded image; `None` for a file.
    size: Option<(u32, u32)>,
}

async fn send_file(room: &Rc<Room>, file: &File) {
    // Cleaned before anything shows it, as receivers clean it, so every row shows one name.
    let name = clean_file_name(&file.name());
    let mime = clean_mime(&file.type_());
    let prepared = if IMAGE_INPUT_TYPES.contains(&mime.as_str()) {
        match reencode_image(room, file, &name).await {
            Ok(prepared) => Ok(prepared),
            Err(reason) => {
                room.elements.show_notice_pieces(&[
                    Piece::Peer(&name),
                    Piece::Page(&format!(
                        " could not be prepared as an image ({reason}), so it is sent as a file."
                    )),
                ]);
                read_file(file, &name, mime).await
            }
        }
    } else {
        read_file(file, &name, mime).await
    };
    let prepared = match prepared {
        Ok(prepared) => prepared,
        Err(reason) => {
            room.elements.show_notice_pieces(&[
                Piece::Peer(&name),
                Piece::Page(&format!(" was not sent: {reason}.")),
            ]);
            return;
        }
    };

    let size = u64::from(prepared.content.length());
    if size > MAX_FILE_BYTES {
        room.elements.show_notice_pieces(&[
            Piece::Peer(&name),
            Piece::Page(&format!(" was not sent: {}.", too_large(size))),
        ]);
        return;
    }
    let Some(mut message) = room.new_message(Body::Text(String::new())) else {
        return;
    };
    let Some(row) = room.elements.message_row(&message.nick, message.sent, true) else {
        return;
    };
    preview(room, &row, &prepared);
    room.elements.push(&row.row);
    room.receiver.borrow_mut().remember(&message.id);

    let uploaded = encrypt_and_upload(room, &row, &prepared).await;
    let (blob, sha256) = match uploaded {
        Ok(uploaded) => uploaded,
        Err(reason) => {
            row.set_failed(&format!("not sent: {reason}"));
            return;
        }
    };
    let attachment = Attachment {
        blob,
        sha256,
        mime: prepared.mime,
        name: prepared.name,
        size,
    };
    message.body = match prepared.size {
        Some((width, height)) => Body::Image {
            attachment,
            width,
            height,
        },
        None => Body::File(attachment),
    };
    outbox::enqueue(room, message, row);
}

/// Shows what is being sent in its row: the image itself, or the file's name and size.
fn preview(room: &Room, row: &MessageRow, prepared: &Prepared) {
    let body = &row.body;
    if prepared.size.is_some() {
        let _ = row.row.class_list().add_1("image");
        let Ok(url) = object_url(&prepared.content, "image/jpeg") else {
            return;
        };
        if let Ok(image) = room.elements.create("img", "picture") {
            let image: web_sys::HtmlImageElement = image.unchecked_into();
            let _ = image.set_attribute(OBJECT_URL_ATTRIBUTE, &url);
            image.set_alt(&format!("Image: {}", prepared.name));
            if let Some((width, height)) = prepared.size {
                image.set_width(width);
                image.set_height(height);
            }
            image.set_src(&url);
            let _ = body.append_child(&image);
        }
    } else {
        let _ = row.row.class_list().add_1("file");
        let size = u64::from(prepared.content.length());
        let _ = room.elements.append_line(
            body,
            "p",
            "file-name",
            &[
                Piece::Peer(&prepared.name),
                Piece::Page(&format!(" ({})", human_size(size))),
            ],
        );
    }
}

/// Explains that `size` bytes exceed [`MAX_FILE_BYTES`], with exact figures where rounded ones
/// would read the same.
fn too_large(size: u64) -> String {
    let (size, limit) = size_and_limit(size, MAX_FILE_BYTES);
    format!("it is {size}, over the limit of {limit}")
}

/// Reads a file's bytes as they are; `name` is the file's cleaned name.
async fn read_file(file: &File, name: &str, mime: String) -> Result<Prepared, String> {
    if file.size() > MAX_FILE_BYTES as f64 {
        return Err(too_large(file.size() as u64));
    }
    let buffer = JsFuture::from(file.array_buffer())
        .await
        .map_err(|e| format!("it could not be read: {}", describe(&e)))?;
    Ok(Prepared {
        content: Uint8Array::new(&buffer),
        mime,
        name: name.to_owned(),
        size: None,
    })
}

/// Decodes an image with its orientation applied, scales it to at most [`MAX_IMAGE_SIDE`],
/// and encodes it as JPEG; `name` is the file's cleaned name.
async fn reencode_image(room: &Room, file: &File, name: &str) -> Result<Prepared, String> {
    if file.size() > MAX_IMAGE_INPUT_BYTES {
        let (size, limit) = size_and_limit(file.size() as u64, MAX_IMAGE_INPUT_BYTES as u64);
        return Err(format!(
            "it is {size}, and this page decodes images of at most {limit}"
        ));
    }
    let options = ImageBitmapOptions::new();
    options.set_image_orientation(ImageOrientation::FromImage);
    let promise = room
        .window
        .create_image_bitmap_with_blob_and_image_bitmap_options(file, &options)
        .map_err(|e| describe(&e))?;
    // The browser's own message for this ("The source image cannot be decoded.") adds
    // nothing to these words.
    let bitmap: ImageBitmap = JsFuture::from(promise)
        .await
        .map_err(|_| "the browser cannot decode it".to_owned())?
        .unchecked_into();

    let (width, height) = scaled_size(bitmap.width(), bitmap.height());
    let result = draw_jpeg(room, &bitmap, width, height).await;
    bitmap.close();
    let content = result?;
    Ok(Prepared {
        content,
        mime: "image/jpeg".to_owned(),
        name: clean_file_name(&jpeg_name(name)),
        size: Some((width, height)),
    })
}

/// Returns the size that fits `width` by `height` within [`MAX_IMAGE_SIDE`], keeping the
/// aspect ratio; images already small enough keep their size.
fn scaled_size(width: u32, height: u32) -> (u32, u32) {
    let longest = width.max(height).max(1);
    if longest <= MAX_IMAGE_SIDE {
        return (width.max(1), height.max(1));
    }
    let scale = f64::from(MAX_IMAGE_SIDE) / f64::from(longest);
    let fit = |side: u32| ((f64::from(side) * scale).round() as u32).clamp(1, MAX_IMAGE_SIDE);
    (fit(width), fit(height))
}

async fn draw_jpeg(
    room: &Room,
    bitmap: &ImageBitmap,
    width: u32,
    height: u32,
) -> Result<Uint8Array, String> {
    let canvas: HtmlCanvasElement = room
        .elements
        .document
        .create_element("canvas")
        .map_err(|e| describe(&e))?
        .unchecked_into();
    canvas.set_width(width);
    canvas.set_height(height);
    let context: CanvasRenderingContext2d = canvas
        .get_context("2d")
        .map_err(|e| describe(&e))?
        .ok_or("the browser has no 2D canvas")?
        .unchecked_into();

    // JPEG has no transparency: transparent pixels of a PNG would turn black without this.
    context.set_fill_style_str("#ffffff");
    context.fill_rect(0.0, 0.0, width.into(), height.into());
    let _ = js_sys::Reflect::set(&context, &"imageSmoothingQuality".into(), &"high".into());
    context
        .draw_image_with_image_bitmap_and_dw_and_dh(bitmap, 0.0, 0.0, width.into(), height.into())
        .map_err(|e| describe(&e))?;

    let blob = Promise::new(&mut |resolve, reject| {
        let quality = JsValue::from_f64(JPEG_QUALITY);
        if let Err(e) =
            canvas.to_blob_with_type_and_encoder_options(&resolve, "image/jpeg", &quality)
        {
            let _ = reject.call1(&JsValue::UNDEFINED, &e);
        }
    });
    let blob = JsFuture::from(blob).await.map_err(|e| describe(&e))?;
    let blob: web_sys::Blob = blob
        .dyn_into()
        .map_err(|_| "the browser could not encode the image as JPEG".to_owned())?;
    let buffer = JsFuture::from(blob.array_buffer())
        .await
        .map_err(|e| describe(&e))?;
    Ok(Uint8Array::new(&buffer))
}

/// Replaces the extension of an image's name with `.jpg`.
fn jpeg_name(name: &str) -> String {
    let stem = match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => name,
    };
    format!("{stem}.jpg")
}

/// Encrypts the content, uploads it once the page is connected, and returns the blob id and
/// the SHA-256 of the uploaded bytes.
async fn encrypt_and_upload(
    room: &Rc<Room>,
    row: &MessageRow,
    prepared: &Prepared,
) -> Result<(String, [u8; 32]), String> {
    row.set_state("encrypting");
    let secret = room.secret().ok_or("the room is locked")?;
    let sealed =
        crate::api::encrypt_bytes_async(secret.expose().to_owned(), prepared.content.clone())
            .await
            .map_err(|e| format!("encryption failed: {}", describe(&e.into())))?;
    let digest = sha256(&sealed).await?;

    let progress = room.elements.progress(&row.body, "Upload progress");
    let mut attempts = 0;
    let result = loop {
        while !room.connection.is_connected() {
            row.set_state("waiting for the connection");
            sleep(500).await;
            if room.closed.get() {
                break;
            }
        }
        if room.closed.get() {
            break Err("the page left the room".to_owned());
        }
        row.set_state("uploading");
        match upload(room, &sealed, progress.as_ref()).await {
            Ok(id) => break Ok(id),
            Err(UploadError::Reject(reason)) => break Err(reason),
            Err(UploadError::Retry {
                reason,
                after_millis,
            }) => {
                if !room.connection.is_connected() {
                    continue;
                }
                attempts += 1;
                if attempts >= MAX_UPLOAD_ATTEMPTS {
                    break Err(outbox::stopped_after(attempts, &reason));
                }
                let delay =
                    after_millis.unwrap_or_else(|| retry_delay_millis(attempts - 1, jitter()));
                row.set_state(&outbox::retrying_in(&reason, delay));
                sleep(delay).await;
            }
        }
    };
    if let Some(progress) = progress {
        progress.remove();
    }
    result.map(|id| (id, digest))
}

enum UploadError {
    Retry {
        reason: String,
        after_millis: Option<u32>,
    },
    Reject(String),
}

/// Posts the encrypted bytes to `/blob/<channel>` and returns the blob id.
async fn upload(
    room: &Room,
    sealed: &Uint8Array,
    progress: Option<&HtmlProgressElement>,
) -> Result<String, UploadError> {
    let reject = |e: JsValue| UploadError::Reject(describe(&e));
    let request = XmlHttpRequest::new().map_err(reject)?;
    request
        .open("POST", &format!("/blob/{}", room.channel))
        .map_err(reject)?;
    request
        .set_request_header("Content-Type", "application/octet-stream")
        .map_err(reject)?;

    // Both closures must outlive the request; they are dropped after it finished, once the
    // handlers are unset.
    let on_progress = progress.cloned().map(|progress| {
        Closure::<dyn FnMut(ProgressEvent)>::new(move |event: ProgressEvent| {
            if event.length_computable() && event.total() > 0.0 {
                progress.set_value(event.loaded() / event.total());
            }
        })
    });
    let upload = request.upload().map_err(reject)?;
    upload.set_onprogress(on_progress.as_ref().map(|c| c.as_ref().unchecked_ref()));

    let finished = Promise::new(&mut |resolve, _reject| {
        request.set_onloadend(Some(&resolve));
    });
    request
        .send_with_opt_buffer_source(Some(sealed))
        .map_err(reject)?;
    let _ = JsFuture::from(finished).await;
    request.set_onloadend(None);
    upload.set_onprogress(None);
    drop(on_progress);

    let status = request.status().unwrap_or(0);
    let body = request.response_text().ok().flatten().unwrap_or_default();
    match status {
        201 => blob_id(&body).ok_or_else(|| {
            UploadError::Reject("the server's response had no valid blob id".to_owned())
        }),
        0 => Err(UploadError::Retry {
            reason: "the server could not be reached".to_owned(),
            after_millis: None,
        }),
        413 => Err(UploadError::Reject(format!(
            "it is larger than this server accepts ({})",
            body.trim()
        ))),
        507 => Err(UploadError::Reject(
            "the server's storage for files is full".to_owned(),
        )),
        429 | 503 => {
            let after_millis = request
                .get_response_header("Retry-After")
                .ok()
                .flatten()
                .and_then(|value| value.trim().parse::<u32>().ok())
                .map(|seconds| seconds.min(120) * 1000);
            Err(UploadError::Retry {
                reason: outbox::refusal(status, &body),
                after_millis,
            })
        }
        status if status >= 500 => Err(UploadError::Retry {
            reason: format!("the server answered {status}"),
            after_millis: None,
        }),
        status => Err(UploadError::Reject(outbox::refusal(status, &body))),
    }
}

/// Reads the blob id from the relay's `{"id":…,"bytes":…}` and checks its form.
fn blob_id(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let id = value.get("id")?.as_str()?;
    let valid = id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    valid.then(|| id.to_owned())
}
