//! Chat messages inside the encryption: the JSON this page writes, and how a decrypted plaintext
//! becomes a checked, typed [`Message`].
//!
//! Everything here comes from another room member after decryption, so it is checked like any
//! other untrusted input. Every field has a bounded size. An unknown type or a malformed field
//! becomes [`Received::Invalid`] with a reason. Plaintext that is not JSON of ours (for example
//! from a plain SJCL client) is [`Received::Plain`] and shows as text. docs/PROTOCOL.md, "Chat
//! messages", has the format.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::crypto::blob::MAX_PLAINTEXT_LEN;

/// Maximum nick length shown, in characters; longer nicks are cut.
pub const MAX_NICK_CHARS: usize = 40;

/// Maximum text of one message, in UTF-8 bytes. The envelope of a message this long fits the
/// relay's default publish limit of 32,768 bytes with room to spare, because base64 makes
/// 16 KiB of plaintext about 22 KiB.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

/// Maximum decrypted plaintext that is parsed as a message. Larger plaintexts from SJCL peers
/// (up to the envelope limit of 2 MiB) show as plain text, cut for display.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// Maximum file name in an announcement, in UTF-8 bytes: the common file-system limit.
pub const MAX_NAME_BYTES: usize = 255;

/// Maximum MIME type in an announcement, in bytes (RFC 6838 allows 127 per part).
pub const MAX_MIME_BYTES: usize = 255;

/// Maximum width or height that an image announcement may declare, in pixels. This page sends
/// at most 1600; the limit only keeps a peer's numbers sane for layout.
pub const MAX_IMAGE_SIDE: u32 = 16_384;

/// Largest send time accepted, in milliseconds: the largest time a JavaScript `Date` can
/// represent (ECMAScript's time values end 8.64e15 ms after the epoch).
pub const MAX_SENT_MILLIS: u64 = 8_640_000_000_000_000;

/// Nick used when the sender left the field empty.
pub const DEFAULT_NICK: &str = "anonymous";

/// A message's random id: 16 bytes, written as 22 characters of base64url. A receiver shows
/// each id once, so a message that is retried after a lost response appears once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageId(String);

impl MessageId {
    /// Draws a new id from the secure random source.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)?;
        Ok(Self(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Parses an id: exactly 22 characters of the base64url alphabet.
    pub fn parse(text: &str) -> Result<Self, MessageError> {
        let valid = text.len() == 22
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(MessageError::invalid(
                "id",
                "it must be 22 base64url characters",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A checked message from a room member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: MessageId,
    /// The sender's nick, without control characters, at most [`MAX_NICK_CHARS`].
    pub nick: String,
    /// Send time in milliseconds since the Unix epoch, by the sender's clock.
    pub sent: u64,
    pub body: Body,
}

/// The content of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    Text(String),
    /// A JPEG (or another raster image) to show inline.
    Image {
        attachment: Attachment,
        width: u32,
        height: u32,
    },
    /// Any file, offered for download.
    File(Attachment),
}

/// An encrypted blob on the relay, as an announcement describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The relay's blob id: 32 lowercase hex digits.
    pub blob: String,
    /// SHA-256 of the blob as uploaded, that is of the encrypted bytes.
    pub sha256: [u8; 32],
    /// The sender's MIME type, checked for syntax and lowercased. Only a display hint: the
    /// page never gives a peer's type to the browser unless it is on [`inline_image_type`]'s
    /// list.
    pub mime: String,
    /// The sender's file name, with control and bidirectional-override characters removed.
    pub name: String,
    /// Size of the decrypted content in bytes, at most the blob limit.
    pub size: u64,
}

impl Attachment {
    /// Returns the exact size the encrypted blob must have: content, header and tag.
    pub fn blob_len(&self) -> u64 {
        self.size + BLOB_OVERHEAD as u64
    }
}

/// Bytes a blob adds to its content: the 25-byte header and the 16-byte tag.
pub const BLOB_OVERHEAD: usize = crate::crypto::blob::HEADER_LEN + crate::crypto::blob::TAG_LEN;

/// The reason a plaintext that looked like one of our messages was rejected. The page shows
/// it in a notice, so it names the field and the problem in words, never in serde's terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("the message of {bytes} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes")]
    TooLarge { bytes: usize },

    #[error("the message is not valid JSON")]
    InvalidJson,

    #[error("the message is not a JSON object")]
    NotObject,

    #[error("{}", unknown_type_text(name.as_deref()))]
    UnknownType {
        /// The type's name when it is short and plain enough to show; `None` otherwise.
        name: Option<String>,
    },

    #[error("the {field:?} field is missing")]
    MissingField { field: &'static str },

    #[error("the {field:?} field must be {expected}, not {found}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },

    #[error("the {field:?} field is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
}

impl MessageError {
    fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field,
            reason: reason.into(),
        }
    }

    /// Builds the error for an unknown `type`, keeping the name only when it is at most 32
    /// ASCII letters, digits, `-` or `_`, because a peer's text goes into the notice only then.
    fn unknown_type(name: &str) -> Self {
        let plain = !name.is_empty()
            && name.len() <= 32
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        Self::UnknownType {
            name: plain.then(|| name.to_owned()),
        }
    }
}

fn unknown_type_text(name: Option<&str>) -> String {
    let known = "this page shows \"text\", \"image\" and \"file\"";
    match name {
        Some(name) => format!("the message type \"{name}\" is unknown: {known}"),
        None => format!("the message type is unknown: {known}"),
    }
}

/// The kind of a decrypted plaintext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    Message(Message),
    /// Text that is not one of our messages, shown as text after [`clean_message_text`].
    Plain(String),
    /// JSON that claims to be a message but does not pass the checks.
    Invalid {
        reason: String,
    },
}

impl Received {
    /// Classifies a decrypted plaintext.
    pub fn classify(plaintext: String) -> Self {
        let looks_like_ours =
            plaintext.trim_start().starts_with('{') && plaintext.contains("\"type\"");
        if !looks_like_ours {
            return Self::Plain(clean_message_text(&plaintext));
        }
        match Message::parse(&plaintext) {
            Ok(message) => Self::Message(message),
            Err(e) => Self::Invalid {
                reason: e.to_string(),
            },
        }
    }
}

/// The JSON form of a message as this page writes it. Reading goes through
/// [`serde_json::Value`] and [`Fields`] instead, so every error names the field in words.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Wire {
    Text {
        id: String,
        nick: String,
        sent: u64,
        text: String,
    },
    Image {
        id: String,
        nick: String,
        sent: u64,
        #[serde(flatten)]
        attachment: WireAttachment,
        width: u32,
        height: u32,
    },
    File {
        id: String,
        nick: String,
        sent: u64,
        #[serde(flatten)]
        attachment: WireAttachment,
    },
}

#[derive(Serialize)]
struct WireAttachment {
    blob: String,
    sha256: String,
    mime: String,
    name: String,
    size: u64,
}

impl Message {
    /// Parses and checks a plaintext as one of our messages. Unknown fields are ignored, so a
    /// later version can add some; an unknown `type` is an error.
    pub fn parse(plaintext: &str) -> Result<Self, MessageError> {
        if plaintext.len() > MAX_MESSAGE_BYTES {
            return Err(MessageError::TooLarge {
                bytes: plaintext.len(),
            });
        }
        // serde_json bounds the nesting depth at 128, and the size is bounded above.
        let value: Value =
            serde_json::from_str(plaintext).map_err(|_| MessageError::InvalidJson)?;
        let Value::Object(object) = value else {
            return Err(MessageError::NotObject);
        };
        let fields = Fields(&object);

        let kind = fields.string("type")?;
        if !matches!(kind, "text" | "image" | "file") {
            return Err(MessageError::unknown_type(kind));
        }
        let id = MessageId::parse(fields.string("id")?)?;
        let nick = clean_nick(fields.string("nick")?);
        let sent = fields.integer("sent")?;
        if sent > MAX_SENT_MILLIS {
            return Err(MessageError::invalid(
                "sent",
                "it is later than the last date JavaScript can represent, in the year 275760",
            ));
        }

        let body = match kind {
            "text" => Body::Text(check_text(fields.string("text")?)?),
            "image" => Body::Image {
                attachment: read_attachment(&fields)?,
                width: check_side("width", fields.integer("width")?)?,
                height: check_side("height", fields.integer("height")?)?,
            },
            _ => Body::File(read_attachment(&fields)?),
        };
        Ok(Self {
            id,
            nick,
            sent,
            body,
        })
    }

    /// Returns the JSON plaintext of this message, for encryption.
    pub fn to_json(&self) -> String {
        let id = self.id.0.clone();
        let nick = self.nick.clone();
        let sent = self.sent;
        let wire = match &self.body {
            Body::Text(text) => Wire::Text {
                id,
                nick,
                sent,
                text: text.clone(),
            },
            Body::Image {
                attachment,
                width,
                height,
            } => Wire::Image {
                id,
                nick,
                sent,
                attachment: WireAttachment::from(attachment),
                width: *width,
                height: *height,
            },
            Body::File(attachment) => Wire::File {
                id,
                nick,
                sent,
                attachment: WireAttachment::from(attachment),
            },
        };
        // Serializing these plain structs cannot fail: every field is a string or an integer.
        serde_json::to_string(&wire).unwrap_or_default()
    }
}

/// The fields of a message's JSON object, read with errors that name the field.
struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn get(&self, field: &'static str) -> Result<&'a Value, MessageError> {
        self.0
            .get(field)
            .ok_or(MessageError::MissingField { field })
    }

    fn string(&self, field: &'static str) -> Result<&'a str, MessageError> {
        let value = self.get(field)?;
        value.as_str().ok_or(MessageError::WrongType {
            field,
            expected: "text",
            found: kind_of(value),
        })
    }

    fn integer(&self, field: &'static str) -> Result<u64, MessageError> {
        let value = self.get(field)?;
        value.as_u64().ok_or(MessageError::WrongType {
            field,
            expected: "a whole number",
            found: kind_of(value),
        })
    }
}

/// Names the kind of a JSON value in words, for [`MessageError::WrongType`].
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "true or false",
        Value::Number(number) if number.is_u64() => "a number",
        Value::Number(number) if number.is_i64() => "a negative number",
        Value::Number(_) => "a fraction or an out-of-range number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Reads and checks the fields that announce a blob.
fn read_attachment(fields: &Fields) -> Result<Attachment, MessageError> {
    let blob = fields.string("blob")?;
    let blob_valid =
        blob.len() == 32 && blob.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !blob_valid {
        return Err(MessageError::invalid(
            "blob",
            "it must be 32 lowercase hex digits",
        ));
    }
    let sha256 = parse_sha256(fields.string("sha256")?)
        .ok_or_else(|| MessageError::invalid("sha256", "it must be 64 lowercase hex digits"))?;
    let size = fields.integer("size")?;
    if size > MAX_PLAINTEXT_LEN as u64 {
        return Err(MessageError::invalid(
            "size",
            format!("{size} bytes exceeds the limit of {MAX_PLAINTEXT_LEN} bytes"),
        ));
    }
    let name = fields.string("name")?;
    if name.len() > MAX_NAME_BYTES {
        return Err(MessageError::invalid(
            "name",
            format!("it is longer than {MAX_NAME_BYTES} bytes"),
        ));
    }
    let mime = fields.string("mime")?;
    if mime.len() > MAX_MIME_BYTES {
        return Err(MessageError::invalid(
            "mime",
            format!("it is longer than {MAX_MIME_BYTES} bytes"),
        ));
    }
    Ok(Attachment {
        blob: blob.to_owned(),
        sha256,
        mime: clean_mime(mime),
        name: clean_file_name(name),
        size,
    })
}

impl From<&Attachment> for WireAttachment {
    fn from(attachment: &Attachment) -> Self {
        Self {
            blob: attachment.blob.clone(),
            sha256: hex(&attachment.sha256),
            mime: attachment.mime.clone(),
            name: attachment.name.clone(),
            size: attachment.size,
        }
    }
}

fn check_text(text: &str) -> Result<String, MessageError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(MessageError::invalid(
            "text",
            format!(
                "{} bytes exceeds the limit of {MAX_TEXT_BYTES} bytes",
                text.len()
            ),
        ));
    }
    Ok(clean_message_text(text))
}

fn check_side(field: &'static str, pixels: u64) -> Result<u32, MessageError> {
    if pixels == 0 || pixels > u64::from(MAX_IMAGE_SIDE) {
        return Err(MessageError::invalid(
            field,
            format!("{pixels} is outside 1 to {MAX_IMAGE_SIDE} pixels"),
        ));
    }
    // The check above keeps `pixels` within MAX_IMAGE_SIDE, which fits a u32.
    Ok(pixels as u32)
}

/// Returns a nick fit to show: control characters removed, trimmed, cut to
/// [`MAX_NICK_CHARS`], and [`DEFAULT_NICK`] when nothing is left.
pub fn clean_nick(nick: &str) -> String {
    let cleaned: String = clean_display_text(nick)
        .trim()
        .chars()
        .take(MAX_NICK_CHARS)
        .collect();
    if cleaned.is_empty() {
        DEFAULT_NICK.to_owned()
    } else {
        cleaned
    }
}

/// Removes control characters and the Unicode characters that reorder text (bidirectional
/// marks, embeddings, overrides and isolates), which can make `photo_gpj.exe` read as
/// `photo_exe.jpg`.
pub fn clean_display_text(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c))
        .collect()
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Returns a file name fit to announce and to show: [`clean_display_text`], cut to at most
/// [`MAX_NAME_BYTES`] on a character boundary. The sender's own row and every receiver show
/// this same name.
pub fn clean_file_name(name: &str) -> String {
    let mut cleaned = clean_display_text(name);
    if cleaned.len() > MAX_NAME_BYTES {
        let mut end = MAX_NAME_BYTES;
        while !cleaned.is_char_boundary(end) {
            end -= 1;
        }
        cleaned.truncate(end);
    }
    cleaned
}

/// Returns message text fit to send and to show: without the bidirectional override
/// characters LRO and RLO (U+202D, U+202E), which display the characters after them in
/// reverse: `abc \u{202E}dcba` would read `abc abcd`.
///
/// Embeddings, isolates and marks stay, because mixed left-to-right and right-to-left
/// writing needs them and they cannot reverse a run of letters. They are not balanced here
/// either: the page shows each text as its own isolated paragraph (`dir="auto"`), where an
/// unclosed embedding ends with the text and a stray closing character is ignored.
pub fn clean_message_text(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, '\u{202D}' | '\u{202E}'))
        .collect()
}

/// Checks a MIME type's syntax (`type/subtype` of RFC 6838 name characters, parameters
/// dropped) and lowercases it; anything else becomes `application/octet-stream`.
pub fn clean_mime(mime: &str) -> String {
    const FALLBACK: &str = "application/octet-stream";
    let essence = mime.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return FALLBACK.to_owned();
    };
    let is_name = |part: &str| {
        !part.is_empty()
            && part.len() <= 127
            && part.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || matches!(
                        b,
                        b'!' | b'#' | b'$' | b'&' | b'-' | b'^' | b'_' | b'.' | b'+'
                    )
            })
    };
    if !is_name(kind) || !is_name(subtype) {
        return FALLBACK.to_owned();
    }
    essence.to_ascii_lowercase()
}

/// Returns the type under which the page may show an image inline, or `None` when the type is
/// not a raster format the page trusts the browser to show. SVG is never on the list: opened
/// from a `blob:` URL it runs scripts with the page's origin.
pub fn inline_image_type(mime: &str) -> Option<&'static str> {
    match mime {
        "image/jpeg" => Some("image/jpeg"),
        "image/png" => Some("image/png"),
        "image/gif" => Some("image/gif"),
        "image/webp" => Some("image/webp"),
        "image/avif" => Some("image/avif"),
        _ => None,
    }
}

/// Maximum length of a download name, in characters, extension included.
pub const MAX_DOWNLOAD_NAME_CHARS: usize = 100;

/// Returns a name to save a peer's file under. It is the last path component without control,
/// reordering or reserved characters (Windows' and `/`), and without leading dots (hidden
/// files) or trailing dots and spaces. It has at most [`MAX_DOWNLOAD_NAME_CHARS`] characters
/// with the extension kept, and is `file` when nothing is left.
pub fn safe_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let replaced: String = clean_display_text(last)
        .chars()
        .map(|c| match c {
            '<' | '>' | ':' | '"' | '|' | '?' | '*' => '_',
            c => c,
        })
        .collect();
    let trimmed = replaced
        .trim_start_matches(['.', ' '])
        .trim_end_matches(['.', ' ']);
    if trimmed.is_empty() {
        return "file".to_owned();
    }

    let total = trimmed.chars().count();
    if total <= MAX_DOWNLOAD_NAME_CHARS {
        return trimmed.to_owned();
    }
    // Keep a short extension and cut the stem, so the saved file still opens with the right
    // program.
    let (stem, extension) = match trimmed.rsplit_once('.') {
        Some((stem, extension)) if extension.chars().count() <= 10 && !stem.is_empty() => {
            (stem, Some(extension))
        }
        _ => (trimmed, None),
    };
    let room = MAX_DOWNLOAD_NAME_CHARS - extension.map_or(0, |e| e.chars().count() + 1);
    let mut cut: String = stem.chars().take(room).collect();
    if let Some(extension) = extension {
        cut.push('.');
        cut.push_str(extension);
    }
    cut
}

/// Formats a byte count for people: `812 bytes`, `4.2 KiB`, `7.9 MiB`.
pub fn human_size(bytes: u64) -> String {
    const KIB: f64 = 1024.0;
    let value = bytes as f64;
    if bytes < 1024 {
        format!("{bytes} bytes")
    } else if value < KIB * KIB {
        format!("{:.1} KiB", value / KIB)
    } else {
        format!("{:.1} MiB", value / (KIB * KIB))
    }
}

/// Formats an exact byte count with thousands separators: `16,386 bytes`.
pub fn exact_size(bytes: u64) -> String {
    let digits = bytes.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let unit = if bytes == 1 { "byte" } else { "bytes" };
    format!("{grouped} {unit}")
}

/// Formats a size and the limit it is measured against, for messages such as "`size`, and
/// the limit is `limit`". Both are rounded by [`human_size`] while that keeps them apart, and
/// given as [`exact_size`] when rounding would show the same figure for both.
pub fn size_and_limit(size: u64, limit: u64) -> (String, String) {
    let (size_text, limit_text) = (human_size(size), human_size(limit));
    if size != limit && size_text == limit_text {
        return (exact_size(size), exact_size(limit));
    }
    (size_text, limit_text)
}

/// Writes bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_sha256(text: &str) -> Option<[u8; 32]> {
    let valid = text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !valid {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn id() -> MessageId {
        MessageId::parse("AAAAAAAAAAAAAAAAAAAAAA").unwrap()
    }

    fn attachment() -> Attachment {
        Attachment {
            blob: "0123456789abcdef0123456789abcdef".into(),
            sha256: [7; 32],
            mime: "image/jpeg".into(),
            name: "photo.jpg".into(),
            size: 1234,
        }
    }

    #[test]
    fn text_message_round_trips() {
        let message = Message {
            id: id(),
            nick: "ada".into(),
            sent: 1,
            body: Body::Text("<b>hi</b>".into()),
        };
        let json = message.to_json();
        assert!(json.contains(r#""type":"text""#), "{json}");
        assert_eq!(Received::classify(json), Received::Message(message));
    }

    #[test]
    fn image_and_file_round_trip() {
        let image = Message {
            id: id(),
            nick: "ada".into(),
            sent: 1_700_000_000_000,
            body: Body::Image {
                attachment: attachment(),
                width: 1600,
                height: 900,
            },
        };
        let file = Message {
            body: Body::File(Attachment {
                mime: "application/pdf".into(),
                ..attachment()
            }),
            ..image.clone()
        };
        for message in [image, file] {
            let json = message.to_json();
            assert_eq!(Message::parse(&json), Ok(message), "{json}");
        }
    }

    #[test]
    fn foreign_plaintext_is_plain() {
        assert_eq!(
            Received::classify("hello".into()),
            Received::Plain("hello".into())
        );
        assert_eq!(
            Received::classify(r#"{"not":"ours"}"#.into()),
            Received::Plain(r#"{"not":"ours"}"#.into())
        );
    }

    #[test]
    fn unknown_type_is_invalid() {
        let received = Received::classify(
            r#"{"type":"video","id":"AAAAAAAAAAAAAAAAAAAAAA","nick":"x","sent":1}"#.into(),
        );
        let Received::Invalid { reason } = received else {
            panic!("expected Invalid, got {received:?}");
        };
        assert_eq!(
            reason,
            r#"the message type "video" is unknown: this page shows "text", "image" and "file""#
        );

        let odd = Received::classify(r#"{"type":"<b>\u202e</b>"}"#.into());
        let Received::Invalid { reason } = odd else {
            panic!("expected Invalid, got {odd:?}");
        };
        assert!(
            reason.starts_with("the message type is unknown"),
            "{reason}"
        );
    }

    /// Words of serde's and Rust's that must never reach a notice.
    const PARSER_WORDS: [&str; 8] = [
        "invalid type",
        "expected",
        "variant",
        "identifier",
        "line 1",
        "column",
        "u64",
        "u32",
    ];

    #[test]
    fn malformed_fields_are_invalid() {
        let valid = Message {
            id: id(),
            nick: "n".into(),
            sent: 5,
            body: Body::Image {
                attachment: attachment(),
                width: 10,
                height: 10,
            },
        }
        .to_json();
        let cases = [
            (
                "\"AAAAAAAAAAAAAAAAAAAAAA\"",
                "\"short\"",
                r#"the "id" field is invalid: it must be 22 base64url characters"#,
            ),
            (
                "\"sent\":5",
                "\"sent\":8640000000000001",
                r#"the "sent" field is invalid: it is later than the last date JavaScript can represent, in the year 275760"#,
            ),
            (
                "\"sent\":5",
                "\"sent\":\"5\"",
                r#"the "sent" field must be a whole number, not text"#,
            ),
            (
                "\"sent\":5",
                "\"sent\":-5",
                r#"the "sent" field must be a whole number, not a negative number"#,
            ),
            (
                "\"sent\":5",
                "\"sent\":5.5",
                r#"the "sent" field must be a whole number, not a fraction or an out-of-range number"#,
            ),
            (
                "\"type\":\"image\"",
                "\"type\":5",
                r#"the "type" field must be text, not a number"#,
            ),
            (
                "\"nick\":\"n\"",
                "\"nick\":null",
                r#"the "nick" field must be text, not null"#,
            ),
            (
                "0123456789abcdef0123456789abcdef",
                "0123456789ABCDEF0123456789ABCDEF",
                r#"the "blob" field is invalid: it must be 32 lowercase hex digits"#,
            ),
            (
                &hex(&[7; 32]),
                "zz",
                r#"the "sha256" field is invalid: it must be 64 lowercase hex digits"#,
            ),
            (
                "\"size\":1234",
                "\"size\":8388609",
                r#"the "size" field is invalid: 8388609 bytes exceeds the limit of 8388608 bytes"#,
            ),
            (
                "\"size\":1234",
                "\"size\":[1234]",
                r#"the "size" field must be a whole number, not a list"#,
            ),
            (
                "\"width\":10",
                "\"width\":0",
                r#"the "width" field is invalid: 0 is outside 1 to 16384 pixels"#,
            ),
            (
                "\"height\":10",
                "\"height\":16385",
                r#"the "height" field is invalid: 16385 is outside 1 to 16384 pixels"#,
            ),
            (",\"height\":10", "", r#"the "height" field is missing"#),
            ("}", "", "the message is not valid JSON"),
        ];
        for (from, to, expected) in cases {
            let json = valid.replacen(from, to, 1);
            assert_ne!(json, valid, "the case {from:?} changed nothing");
            let Received::Invalid { reason } = Received::classify(json.clone()) else {
                panic!("{json} was accepted");
            };
            assert_eq!(reason, expected, "for {json}");
            for word in PARSER_WORDS {
                assert!(!reason.contains(word), "{reason:?} contains {word:?}");
            }
        }
    }

    #[test]
    fn oversized_fields_are_invalid() {
        let long_name = "n".repeat(MAX_NAME_BYTES + 1);
        let json = Message {
            id: id(),
            nick: "n".into(),
            sent: 5,
            body: Body::File(Attachment {
                name: long_name,
                ..attachment()
            }),
        }
        .to_json();
        assert!(matches!(
            Message::parse(&json),
            Err(MessageError::InvalidField { field: "name", .. })
        ));

        let text = "x".repeat(MAX_TEXT_BYTES + 1);
        let json = format!(
            r#"{{"type":"text","id":"AAAAAAAAAAAAAAAAAAAAAA","nick":"n","sent":1,"text":"{text}"}}"#
        );
        assert!(matches!(
            Message::parse(&json),
            Err(MessageError::InvalidField { field: "text", .. })
        ));

        let huge = format!(
            r#"{{"type":"text","pad":"{}"}}"#,
            "x".repeat(MAX_MESSAGE_BYTES)
        );
        assert!(matches!(
            Message::parse(&huge),
            Err(MessageError::TooLarge { .. })
        ));
    }

    #[test]
    fn nick_is_cleaned_and_cut() {
        assert_eq!(clean_nick("  \u{202E}ada\u{0007} "), "ada");
        assert_eq!(clean_nick(""), DEFAULT_NICK);
        assert_eq!(clean_nick(&"é".repeat(50)).chars().count(), MAX_NICK_CHARS);
    }

    #[test]
    fn mime_is_checked_and_lowercased() {
        assert_eq!(clean_mime("Image/JPEG; q=1"), "image/jpeg");
        assert_eq!(clean_mime("text/html<script>"), "application/octet-stream");
        assert_eq!(clean_mime("nonsense"), "application/octet-stream");
        assert_eq!(clean_mime("/x"), "application/octet-stream");
        assert_eq!(inline_image_type("image/png"), Some("image/png"));
        assert_eq!(inline_image_type("image/svg+xml"), None);
        assert_eq!(inline_image_type("text/html"), None);
    }

    #[test]
    fn safe_file_name_removes_danger() {
        let cases = [
            ("report.pdf", "report.pdf"),
            ("../../etc/passwd", "passwd"),
            ("C:\\Users\\x\\evil.bat", "evil.bat"),
            (".bashrc", "bashrc"),
            ("photo\u{202E}gpj.exe", "photogpj.exe"),
            ("a<b>:c|d?.txt", "a_b__c_d_.txt"),
            ("name. . ", "name"),
            ("...", "file"),
            ("", "file"),
            (
                "<img src=x onerror=alert(1)>",
                "_img src=x onerror=alert(1)_",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(safe_file_name(input), expected, "{input:?}");
        }
        let long = format!("{}.tar.gz", "x".repeat(300));
        let cut = safe_file_name(&long);
        assert_eq!(cut.chars().count(), MAX_DOWNLOAD_NAME_CHARS);
        assert!(cut.ends_with(".gz"), "{cut}");
    }

    #[test]
    fn sizes_read_for_people() {
        assert_eq!(human_size(812), "812 bytes");
        assert_eq!(human_size(4300), "4.2 KiB");
        assert_eq!(human_size(8 << 20), "8.0 MiB");
    }

    #[test]
    fn exact_sizes_group_thousands() {
        assert_eq!(exact_size(0), "0 bytes");
        assert_eq!(exact_size(1), "1 byte");
        assert_eq!(exact_size(999), "999 bytes");
        assert_eq!(exact_size(16_386), "16,386 bytes");
        assert_eq!(exact_size(8_388_567), "8,388,567 bytes");
        assert_eq!(exact_size(u64::MAX), "18,446,744,073,709,551,615 bytes");
    }

    #[test]
    fn size_and_limit_never_read_equal() {
        let cases = [
            (16_386, 16_384, "16,386 bytes", "16,384 bytes"),
            (8_388_568, 8_388_567, "8,388,568 bytes", "8,388,567 bytes"),
            (20 << 20, 8 << 20, "20.0 MiB", "8.0 MiB"),
            (1_500, 1_024, "1.5 KiB", "1.0 KiB"),
            (2_000, 1_000, "2.0 KiB", "1000 bytes"),
        ];
        for (size, limit, size_text, limit_text) in cases {
            let (shown_size, shown_limit) = size_and_limit(size, limit);
            assert_eq!(shown_size, size_text, "size {size} against {limit}");
            assert_eq!(shown_limit, limit_text, "limit {limit} against {size}");
        }
    }

    #[test]
    fn file_name_cleaned_and_cut() {
        assert_eq!(
            clean_file_name(".hidden..\u{202E}gpj.exe"),
            ".hidden..gpj.exe"
        );
        assert_eq!(clean_file_name("a\u{2067}b\u{200F}c\u{0007}"), "abc");
        let long = "é".repeat(200);
        let cut = clean_file_name(&long);
        assert_eq!(cut.len(), 254, "cut on a character boundary");
        assert!(long.starts_with(&cut));

        let message = Message {
            id: id(),
            nick: "n".into(),
            sent: 1,
            body: Body::File(Attachment {
                name: ".hidden..\u{202E}gpj.exe".into(),
                ..attachment()
            }),
        };
        let Ok(Message {
            body: Body::File(received),
            ..
        }) = Message::parse(&message.to_json())
        else {
            panic!("the file message did not parse");
        };
        assert_eq!(received.name, clean_file_name(".hidden..\u{202E}gpj.exe"));
    }

    #[test]
    fn message_text_loses_overrides() {
        assert_eq!(
            clean_message_text("abc \u{202E}dcba\u{202C} after"),
            "abc dcba\u{202C} after"
        );
        assert_eq!(clean_message_text("\u{202D}x"), "x");
        // Embeddings, isolates and marks of right-to-left writing stay.
        let mixed = "\u{2067}\u{05E9}\u{05DC}\u{05D5}\u{05DD}\u{2069} \u{202B}a\u{202C}\u{200F}";
        assert_eq!(clean_message_text(mixed), mixed);

        let json = format!(
            r#"{{"type":"text","id":"AAAAAAAAAAAAAAAAAAAAAA","nick":"n","sent":1,"text":"{}"}}"#,
            "abc \u{202E}dcba after"
        );
        let Ok(Message {
            body: Body::Text(text),
            ..
        }) = Message::parse(&json)
        else {
            panic!("the text message did not parse");
        };
        assert_eq!(text, "abc dcba after");
    }

    #[test]
    fn random_ids_parse_and_differ() {
        let a = MessageId::random().unwrap();
        let b = MessageId::random().unwrap();
        assert_ne!(a, b);
        assert_eq!(MessageId::parse(a.as_str()), Ok(a));
    }
}
