//! The shape check of a published envelope, and its one-line re-encoding.
//!
//! The relay cannot decrypt an envelope and does not try. It checks that the body is the JSON
//! object that `sjcl.encrypt` writes (byte strings in base64, parameters as numbers or short
//! strings), and writes it back as compact JSON with each value's text as sent. JSON forbids raw
//! control characters inside strings (serde_json rejects them), so the output never contains a
//! raw `\n` or `\r` and fits one `data:` line.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

mod plain;

/// Fields every envelope must have, each a base64 byte string.
pub const REQUIRED_BASE64_FIELDS: [&str; 3] = ["iv", "salt", "ct"];

/// Optional fields that are base64 byte strings when present.
pub const OPTIONAL_BASE64_FIELDS: [&str; 1] = ["adata"];

/// Optional fields that are non-negative integers when present.
pub const INTEGER_FIELDS: [&str; 4] = ["v", "iter", "ks", "ts"];

/// Optional fields that are short names when present.
pub const NAME_FIELDS: [&str; 2] = ["mode", "cipher"];

/// Maximum fields of an envelope. SJCL writes ten; the margin admits a few fields that a
/// newer client adds, which the relay passes on without looking at them.
pub const MAX_FIELDS: usize = 16;

/// Maximum length of a name field or other field value, in bytes.
pub const MAX_SHORT_VALUE: usize = 64;

/// Error from checking an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("the body is not a JSON object: {reason}")]
    NotJsonObject { reason: String },

    #[error("the envelope has {count} fields, more than the maximum of {MAX_FIELDS}")]
    TooManyFields { count: usize },

    #[error("the envelope has no {field:?} field")]
    MissingField { field: &'static str },

    #[error("the envelope's {field:?} field must be a base64 string")]
    NotBase64 { field: String },

    #[error("the envelope's {field:?} field must be a non-negative integer")]
    NotInteger { field: String },

    #[error("the envelope's {field:?} field must be a string of at most {MAX_SHORT_VALUE} bytes")]
    InvalidName { field: String },

    #[error(
        "the envelope's {field:?} field must be a number, boolean or string of at most \
         {MAX_SHORT_VALUE} bytes"
    )]
    InvalidExtraField { field: String },

    #[error(
        "the envelope's {field:?} field has an escape that is no character, such as a lone \
         surrogate; escape only whole characters"
    )]
    InvalidString { field: String },
}

/// A field name, borrowed from the body unless it contains escapes.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
struct Name<'a>(#[serde(borrow)] Cow<'a, str>);

/// The fields of an envelope by name, in sorted order, each value as its JSON text. As with a
/// JSON object parsed into a map, a repeated name keeps its last value.
type Fields<'a> = BTreeMap<Name<'a>, &'a RawValue>;

/// Checks that `body` is a well-formed envelope and returns it as compact single-line JSON,
/// its fields in sorted order.
///
/// Each value is copied as it was sent. Every value the check admits is a single JSON token,
/// and a JSON string token cannot contain a raw line break, so the output is one line.
pub fn check_and_compact(body: &[u8]) -> Result<Bytes, EnvelopeError> {
    if let Some(compact) = plain::compact(body) {
        return Ok(compact);
    }
    check_and_compact_any(body)
}

/// Checks and compacts any body as [`check_and_compact`] does: escaped names and strings,
/// other numbers, repeated fields, and every invalid body with its error. It parses the body
/// into a map.
fn check_and_compact_any(body: &[u8]) -> Result<Bytes, EnvelopeError> {
    let fields: Fields<'_> =
        serde_json::from_slice(body).map_err(|e| EnvelopeError::NotJsonObject {
            reason: e.to_string(),
        })?;
    check_fields(&fields)?;

    let mut compact = Vec::with_capacity(body.len());
    compact.push(b'{');
    for (index, (name, value)) in fields.iter().enumerate() {
        if index > 0 {
            compact.push(b',');
        }
        // serde_json cannot fail to write a string into a Vec (a Vec's writes never fail), but
        // the error is still returned rather than unwrapped.
        serde_json::to_writer(&mut compact, &name.0).map_err(|e| EnvelopeError::NotJsonObject {
            reason: e.to_string(),
        })?;
        compact.push(b':');
        compact.extend_from_slice(value.get().as_bytes());
    }
    compact.push(b'}');
    Ok(Bytes::from(compact))
}

fn check_fields(fields: &Fields<'_>) -> Result<(), EnvelopeError> {
    if fields.len() > MAX_FIELDS {
        return Err(EnvelopeError::TooManyFields {
            count: fields.len(),
        });
    }
    for field in REQUIRED_BASE64_FIELDS {
        if !fields.contains_key(&Name(Cow::Borrowed(field))) {
            return Err(EnvelopeError::MissingField { field });
        }
    }

    for (name, value) in fields {
        let name = name.0.as_ref();
        // A string token that JSON's grammar allows can still hold an escape that names no
        // character, such as a lone surrogate `\ud800`.
        if value.get().starts_with('"') && string(value).is_none() {
            return Err(EnvelopeError::InvalidString {
                field: shorten(name),
            });
        }
        if REQUIRED_BASE64_FIELDS.contains(&name) || OPTIONAL_BASE64_FIELDS.contains(&name) {
            check_base64(name, value)?;
        } else if INTEGER_FIELDS.contains(&name) {
            let number = serde_json::from_str::<serde_json::Number>(value.get()).ok();
            if number.and_then(|n| n.as_u64()).is_none() {
                return Err(EnvelopeError::NotInteger {
                    field: shorten(name),
                });
            }
        } else if NAME_FIELDS.contains(&name) {
            let valid = string(value).is_some_and(|s| s.len() <= MAX_SHORT_VALUE);
            if !valid {
                return Err(EnvelopeError::InvalidName {
                    field: shorten(name),
                });
            }
        } else if !is_short_scalar(value) {
            return Err(EnvelopeError::InvalidExtraField {
                field: shorten(name),
            });
        }
    }
    Ok(())
}

/// Returns the text of a JSON string value, or `None` for any other kind of value.
fn string(value: &RawValue) -> Option<Cow<'_, str>> {
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    serde_json::from_str::<Text<'_>>(value.get())
        .ok()
        .map(|text| text.0)
}

/// Standard base64, with or without `=` padding: SJCL writes padding, other encoders may not.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

thread_local! {
    /// The buffer that base64 values are decoded into to be checked. It is reused, because
    /// the decoded bytes are not kept.
    static DECODED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn check_base64(field: &str, value: &RawValue) -> Result<(), EnvelopeError> {
    let valid = string(value).is_some_and(|text| is_base64(text.as_bytes()));
    if valid {
        return Ok(());
    }
    Err(EnvelopeError::NotBase64 {
        field: field.to_owned(),
    })
}

/// Returns whether `text` is base64 in the one spelling that [`BASE64`] decodes.
fn is_base64(text: &[u8]) -> bool {
    DECODED.with_borrow_mut(|decoded| {
        // Grown only when a longer text comes, rather than cleared and refilled each time.
        let needed = base64::decoded_len_estimate(text.len());
        if decoded.len() < needed {
            decoded.resize(needed, 0);
        }
        BASE64.decode_slice(text, decoded).is_ok()
    })
}

fn is_short_scalar(value: &RawValue) -> bool {
    match value.get().as_bytes().first() {
        Some(b'"') => string(value).is_some_and(|s| s.len() <= MAX_SHORT_VALUE),
        Some(b't' | b'f' | b'-' | b'0'..=b'9') => true,
        _ => false,
    }
}

/// Keeps a client-chosen field name short enough for an error message.
fn shorten(name: &str) -> String {
    match name.char_indices().nth(MAX_SHORT_VALUE) {
        Some((cut, _)) => format!("{}…", &name[..cut]),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// An envelope as `sjcl.encrypt` writes it.
    pub(super) const SJCL_ENVELOPE: &str = r#"{"iv":"tjp81jkAzUpW1bI9gLDDpg==","v":1,"iter":10000,"ks":128,"ts":64,"mode":"ccm","adata":"","cipher":"aes","salt":"Adsr7JkbK8A=","ct":"HXn3o7PVP3xPvrhAFYX+MA=="}"#;

    #[test]
    fn sjcl_envelope_is_accepted_compact() {
        let pretty = SJCL_ENVELOPE.replace(',', ",\n  ");
        let compact = check_and_compact(pretty.as_bytes()).unwrap();
        assert!(!compact.contains(&b'\n'));
        let reparsed: Value = serde_json::from_slice(&compact).unwrap();
        let original: Value = serde_json::from_str(SJCL_ENVELOPE).unwrap();
        assert_eq!(reparsed, original);
    }

    #[test]
    fn line_breaks_in_strings_stay_escaped() {
        let body = "{\"iv\":\"AA==\",\"salt\":\"AA==\",\"ct\":\"AA==\",\"note\":\"a\\r\\nb\"}";
        let compact = check_and_compact(body.as_bytes()).unwrap();
        assert!(!compact.iter().any(|b| *b == b'\n' || *b == b'\r'));
        assert!(compact.ends_with(br#""note":"a\r\nb","salt":"AA=="}"#));
    }

    #[test]
    fn malformed_envelopes_name_the_problem() {
        let cases: [(&str, EnvelopeError); 8] = [
            (
                r#"{"salt":"AA==","ct":"AA=="}"#,
                EnvelopeError::MissingField { field: "iv" },
            ),
            (
                r#"{"iv":"A*A=","salt":"AA==","ct":"AA=="}"#,
                EnvelopeError::NotBase64 { field: "iv".into() },
            ),
            (
                r#"{"iv":"AA==","salt":"AA==","ct":7}"#,
                EnvelopeError::NotBase64 { field: "ct".into() },
            ),
            (
                r#"{"iv":"AA==","salt":"AA==","ct":"AA==","iter":-1}"#,
                EnvelopeError::NotInteger {
                    field: "iter".into(),
                },
            ),
            (
                r#"{"iv":"AA==","salt":"AA==","ct":"AA==","mode":1}"#,
                EnvelopeError::InvalidName {
                    field: "mode".into(),
                },
            ),
            (
                r#"{"iv":"AA==","salt":"AA==","ct":"AA==","x":{"y":1}}"#,
                EnvelopeError::InvalidExtraField { field: "x".into() },
            ),
            (
                r#"{"iv":"AA==","salt":"AA==","ct":"AA==","note":"\ud800"}"#,
                EnvelopeError::InvalidString {
                    field: "note".into(),
                },
            ),
            (
                r#"{"iv":"AA==","salt":"AA==","ct":"AA==","a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1,"j":1,"k":1,"l":1,"m":1,"n":1}"#,
                EnvelopeError::TooManyFields { count: 17 },
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(check_and_compact(body.as_bytes()), Err(expected), "{body}");
        }
    }

    #[test]
    fn base64_has_one_spelling() {
        // SJCL's spelling, padded or not, is accepted.
        for ct in ["AA==", "AA", "AAEC", "+/8="] {
            let body = format!(r#"{{"iv":"AA==","salt":"AA==","ct":"{ct}"}}"#);
            assert!(check_and_compact(body.as_bytes()).is_ok(), "{ct}");
        }
        // Nonzero unused bits and whitespace decode to bytes too, but are other spellings.
        for ct in ["BB", "AB==", "AA AA", "AAAA\\n", "-_8="] {
            let body = format!(r#"{{"iv":"AA==","salt":"AA==","ct":"{ct}"}}"#);
            assert_eq!(
                check_and_compact(body.as_bytes()),
                Err(EnvelopeError::NotBase64 { field: "ct".into() }),
                "{ct}"
            );
        }
    }

    #[test]
    fn values_keep_their_text_compact() {
        let body = "{ \"ct\" : \"AA==\" ,\n\t\"iv\":\"AA==\", \"salt\":\"AA==\",\
                    \"n\\u0061me\": \"caf\\u00e9\\u2028\", \"x\": 1e2, \"y\" : true ,\
                    \"iv\": \"AQ==\" }";
        let compact = check_and_compact(body.as_bytes()).unwrap();
        assert_eq!(
            std::str::from_utf8(&compact).unwrap(),
            r#"{"ct":"AA==","iv":"AQ==","name":"caf\u00e9\u2028","salt":"AA==","x":1e2,"y":true}"#,
            "sorted, whitespace dropped, values as sent, the last of a repeated field"
        );
    }

    #[test]
    fn non_objects_are_rejected() {
        let raw_line_break = "{\"iv\":\"AA==\",\"salt\":\"AA==\",\"ct\":\"AA==\",\"x\":\"a\nb\"}";
        for body in [
            "[1,2]",
            "\"text\"",
            "not json",
            "{\"iv\":",
            "",
            raw_line_break,
        ] {
            let result = check_and_compact(body.as_bytes());
            assert!(
                matches!(result, Err(EnvelopeError::NotJsonObject { .. })),
                "{body}: {result:?}"
            );
        }
    }
}
