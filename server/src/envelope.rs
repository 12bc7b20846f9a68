//! The shape check of a published envelope, and its one-line re-encoding.
//!
//! The relay cannot decrypt an envelope and does not try: it checks that the body is the JSON
//! object that `sjcl.encrypt` writes (byte strings in base64, parameters as numbers or short
//! strings) and writes it back as compact JSON. serde_json escapes every control character
//! inside strings, so the output never contains a raw `\n` or `\r` and fits one `data:` line.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use serde_json::{Map, Value};

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
}

/// Checks that `body` is a well-formed envelope and returns it as compact single-line JSON.
pub fn check_and_compact(body: &[u8]) -> Result<Bytes, EnvelopeError> {
    let object: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| EnvelopeError::NotJsonObject {
            reason: e.to_string(),
        })?;
    check_fields(&object)?;

    // Serializing a map of JSON values fails only for non-string map keys, which a parsed
    // object cannot have. The error is still returned rather than unwrapped.
    let compact = serde_json::to_vec(&object).map_err(|e| EnvelopeError::NotJsonObject {
        reason: e.to_string(),
    })?;
    Ok(Bytes::from(compact))
}

fn check_fields(object: &Map<String, Value>) -> Result<(), EnvelopeError> {
    if object.len() > MAX_FIELDS {
        return Err(EnvelopeError::TooManyFields {
            count: object.len(),
        });
    }
    for field in REQUIRED_BASE64_FIELDS {
        if !object.contains_key(field) {
            return Err(EnvelopeError::MissingField { field });
        }
    }

    for (field, value) in object {
        let name = field.as_str();
        if REQUIRED_BASE64_FIELDS.contains(&name) || OPTIONAL_BASE64_FIELDS.contains(&name) {
            check_base64(name, value)?;
        } else if INTEGER_FIELDS.contains(&name) {
            if value.as_u64().is_none() {
                return Err(EnvelopeError::NotInteger {
                    field: shorten(name),
                });
            }
        } else if NAME_FIELDS.contains(&name) {
            let valid = value.as_str().is_some_and(|s| s.len() <= MAX_SHORT_VALUE);
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

/// Standard base64, with or without `=` padding: SJCL writes padding, other encoders may not.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn check_base64(field: &str, value: &Value) -> Result<(), EnvelopeError> {
    let valid = value.as_str().is_some_and(|s| BASE64.decode(s).is_ok());
    if valid {
        return Ok(());
    }
    Err(EnvelopeError::NotBase64 {
        field: field.to_owned(),
    })
}

fn is_short_scalar(value: &Value) -> bool {
    match value {
        Value::Number(_) | Value::Bool(_) => true,
        Value::String(s) => s.len() <= MAX_SHORT_VALUE,
        Value::Null | Value::Array(_) | Value::Object(_) => false,
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
    use super::*;

    const SJCL_ENVELOPE: &str = r#"{"iv":"tjp81jkAzUpW1bI9gLDDpg==","v":1,"iter":10000,"ks":128,"ts":64,"mode":"ccm","adata":"","cipher":"aes","salt":"Adsr7JkbK8A=","ct":"HXn3o7PVP3xPvrhAFYX+MA=="}"#;

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
        let cases: [(&str, EnvelopeError); 7] = [
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
                r#"{"iv":"AA==","salt":"AA==","ct":"AA==","a":1,"b":1,"c":1,"d":1,"e":1,"f":1,"g":1,"h":1,"i":1,"j":1,"k":1,"l":1,"m":1,"n":1}"#,
                EnvelopeError::TooManyFields { count: 17 },
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(check_and_compact(body.as_bytes()), Err(expected), "{body}");
        }
    }

    #[test]
    fn non_objects_are_rejected() {
        for body in ["[1,2]", "\"text\"", "not json", "{\"iv\":", ""] {
            let result = check_and_compact(body.as_bytes());
            assert!(
                matches!(result, Err(EnvelopeError::NotJsonObject { .. })),
                "{body}: {result:?}"
            );
        }
    }
}
