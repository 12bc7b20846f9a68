use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use serde_json::{Value, json};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

/// A low iteration count keeps these tests fast; the count itself is covered by the limits.
const FAST: u32 = 1000;

fn fast_params() -> Params {
    Params {
        iterations: FAST,
        ..Params::default()
    }
}

fn encrypt_value(password: &str, plaintext: &[u8], params: &Params) -> Value {
    let mut cache = KeyCache::default();
    let text = encrypt(password, plaintext, params, &mut cache).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn decrypt_value(password: &str, envelope: &Value) -> Result<Vec<u8>, EnvelopeError> {
    decrypt(password, &envelope.to_string(), &mut KeyCache::default())
}

#[test]
fn envelope_round_trips_with_defaults() {
    let mut cache = KeyCache::default();
    let text = encrypt("#pw", "grüße 🎉".as_bytes(), &Params::default(), &mut cache).unwrap();
    assert!(text.starts_with(r#"{"iv":""#));
    assert!(text.contains(concat!(
        r#"","v":1,"iter":10000,"ks":128,"ts":64,"mode":"ccm","adata":"","#,
        r#""cipher":"aes","salt":""#
    )));
    assert_eq!(decrypt_text("#pw", &text, &mut cache).unwrap(), "grüße 🎉");

    let value: Value = serde_json::from_str(&text).unwrap();
    let iv = STANDARD.decode(value["iv"].as_str().unwrap()).unwrap();
    let salt = STANDARD.decode(value["salt"].as_str().unwrap()).unwrap();
    let ct = STANDARD.decode(value["ct"].as_str().unwrap()).unwrap();
    assert_eq!(iv.len(), 16);
    assert_eq!(salt.len(), 8);
    assert_eq!(ct.len(), "grüße 🎉".len() + 8);
}

#[test]
fn page_reuses_one_salt_per_password() {
    let mut cache = KeyCache::default();
    let first: Value =
        serde_json::from_str(&encrypt("#pw", b"a", &fast_params(), &mut cache).unwrap()).unwrap();
    let second: Value =
        serde_json::from_str(&encrypt("#pw", b"b", &fast_params(), &mut cache).unwrap()).unwrap();
    assert_eq!(first["salt"], second["salt"]);
    assert_ne!(first["iv"], second["iv"]);
}

#[test]
fn every_key_tag_and_iv_size_round_trips() {
    for key_bits in [128, 192, 256] {
        for tag_bits in [64, 96, 128] {
            for iv_len in MIN_IV_LEN..=MAX_IV_LEN {
                let params = Params {
                    key_bits,
                    tag_bits,
                    iv: Some(vec![0x5A; iv_len]),
                    adata: b"header".to_vec(),
                    ..fast_params()
                };
                let envelope = encrypt_value("#pw", b"some text", &params);
                assert_eq!(envelope["ks"], key_bits);
                assert_eq!(envelope["ts"], tag_bits);
                assert_eq!(
                    decrypt_value("#pw", &envelope).as_deref(),
                    Ok(&b"some text"[..]),
                    "ks {key_bits}, ts {tag_bits}, iv {iv_len}"
                );
            }
        }
    }
}

#[test]
fn wrong_password_cannot_decrypt() {
    let envelope = encrypt_value("#pw", b"hi", &fast_params());
    assert_eq!(
        decrypt_value("#other", &envelope),
        Err(EnvelopeError::CannotDecrypt)
    );
}

#[test]
fn every_flipped_byte_rejected() {
    let params = Params {
        adata: b"adata".to_vec(),
        ..fast_params()
    };
    let envelope = encrypt_value("#pw", b"seventeen bytes!!", &params);
    let mut cache = KeyCache::default();

    for field in ["ct", "iv", "salt", "adata"] {
        let bytes = STANDARD.decode(envelope[field].as_str().unwrap()).unwrap();
        // SJCL's nonce is the first 13 IV bytes for a message this short; the last 3 are unused.
        let used = if field == "iv" { 13 } else { bytes.len() };
        for index in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[index] ^= 0x01;
            let mut altered = envelope.clone();
            altered[field] = STANDARD.encode(&tampered).into();
            let result = decrypt("#pw", &altered.to_string(), &mut cache);
            if index < used {
                assert_eq!(
                    result,
                    Err(EnvelopeError::CannotDecrypt),
                    "{field} byte {index}"
                );
            } else {
                assert_eq!(
                    result.as_deref(),
                    Ok(&b"seventeen bytes!!"[..]),
                    "iv byte {index}"
                );
            }
        }
    }
}

#[test]
fn truncated_or_extended_ciphertext_rejected() {
    let envelope = encrypt_value("#pw", b"message", &fast_params());
    let ct = STANDARD.decode(envelope["ct"].as_str().unwrap()).unwrap();
    for altered_ct in [&ct[..ct.len() - 1], &ct[1..], &ct[..7], &[][..]] {
        let mut altered = envelope.clone();
        altered["ct"] = STANDARD.encode(altered_ct).into();
        assert_eq!(
            decrypt_value("#pw", &altered),
            Err(EnvelopeError::CannotDecrypt)
        );
    }
    let mut longer = ct.clone();
    longer.push(0);
    let mut altered = envelope.clone();
    altered["ct"] = STANDARD.encode(&longer).into();
    assert_eq!(
        decrypt_value("#pw", &altered),
        Err(EnvelopeError::CannotDecrypt)
    );
}

#[test]
fn changed_parameters_rejected_as_wrong_key() {
    let envelope = encrypt_value("#pw", b"message", &fast_params());
    for (field, value) in [
        ("iter", json!(FAST + 1)),
        ("ks", json!(256)),
        ("ts", json!(96)),
    ] {
        let mut altered = envelope.clone();
        altered[field] = value;
        assert_eq!(
            decrypt_value("#pw", &altered),
            Err(EnvelopeError::CannotDecrypt),
            "{field}"
        );
    }
}

#[test]
fn missing_fields_get_sjcl_defaults() {
    let params = Params {
        iterations: DEFAULT_ITERATIONS,
        ..Params::default()
    };
    let full = encrypt_value("#pw", b"defaults", &params);
    let mut minimal = json!({});
    for field in ["iv", "salt", "ct"] {
        minimal[field] = full[field].clone();
    }
    assert_eq!(
        decrypt_value("#pw", &minimal).as_deref(),
        Ok(&b"defaults"[..])
    );
}

#[test]
fn field_order_and_extra_fields_ignored() {
    let envelope = encrypt_value("#pw", b"order", &fast_params());
    let Value::Object(fields) = envelope else {
        panic!("the envelope is a JSON object");
    };
    let mut text = String::from(r#"{"note":"extra","raw":1,"#);
    let reversed: Vec<String> = fields
        .iter()
        .rev()
        .map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), v))
        .collect();
    text.push_str(&reversed.join(" , "));
    text.push_str("}\n");
    assert_eq!(
        decrypt("#pw", &text, &mut KeyCache::default()).as_deref(),
        Ok(&b"order"[..])
    );
}

#[test]
fn required_fields_reported_missing() {
    let envelope = encrypt_value("#pw", b"x", &fast_params());
    for field in ["iv", "salt", "ct"] {
        let mut altered = envelope.clone();
        altered.as_object_mut().unwrap().remove(field);
        assert_eq!(
            decrypt_value("#pw", &altered),
            Err(EnvelopeError::MissingField { field })
        );
    }
}

#[test]
fn malformed_envelopes_rejected_with_cause() {
    let mut cache = KeyCache::default();
    for text in [
        "",
        "not json",
        "[1,2]",
        r#"{"iv":"#,
        r#"{"iter":"10000"}"#,
        r#"{"ks":-128}"#,
    ] {
        assert!(
            matches!(
                decrypt("#pw", text, &mut cache),
                Err(EnvelopeError::InvalidJson { .. })
            ),
            "{text:?}"
        );
    }

    let envelope = encrypt_value("#pw", b"x", &fast_params());
    let cases = [
        (
            "v",
            json!(2),
            EnvelopeError::UnsupportedVersion { version: 2 },
        ),
        (
            "mode",
            json!("gcm"),
            EnvelopeError::UnsupportedMode { mode: "gcm".into() },
        ),
        (
            "cipher",
            json!("twofish"),
            EnvelopeError::UnsupportedCipher {
                cipher: "twofish".into(),
            },
        ),
        (
            "ks",
            json!(512),
            EnvelopeError::UnsupportedKeySize { bits: 512 },
        ),
        (
            "ts",
            json!(32),
            EnvelopeError::UnsupportedTagSize { bits: 32 },
        ),
        (
            "iv",
            json!("AAAAAAAA"),
            EnvelopeError::InvalidIvLength { bytes: 6 },
        ),
        (
            "iv",
            json!(STANDARD.encode([0; 17])),
            EnvelopeError::InvalidIvLength { bytes: 17 },
        ),
        (
            "iv",
            json!("AAAA-AAAAAAA"),
            EnvelopeError::InvalidBase64 { field: "iv" },
        ),
        (
            "salt",
            json!("AA_A"),
            EnvelopeError::InvalidBase64 { field: "salt" },
        ),
        (
            "adata",
            json!("%%%%"),
            EnvelopeError::InvalidBase64 { field: "adata" },
        ),
        (
            "ct",
            json!("AAAA.AAA"),
            EnvelopeError::InvalidBase64 { field: "ct" },
        ),
        (
            "iter",
            json!(100),
            EnvelopeError::TooFewIterations { iterations: 100 },
        ),
    ];
    for (field, value, expected) in cases {
        let mut altered = envelope.clone();
        altered[field] = value;
        assert_eq!(decrypt_value("#pw", &altered), Err(expected), "{field}");
    }
}

#[test]
fn long_mode_name_shortened_in_error() {
    let envelope = json!({"mode": "x".repeat(10_000), "iv": "AAAAAAAAAAAAAAAAAAAAAA==",
                          "salt": "", "ct": ""});
    let Err(EnvelopeError::UnsupportedMode { mode }) = decrypt_value("#pw", &envelope) else {
        panic!("expected UnsupportedMode");
    };
    assert_eq!(mode.chars().count(), 25);
}

#[test]
fn excessive_iterations_rejected_before_work() {
    let mut cache = KeyCache::default();
    for iterations in [u64::from(MAX_ITERATIONS) + 1, 2_000_000_000, u64::MAX] {
        let text = format!(
            r#"{{"iv":"AAAAAAAAAAAAAAAAAAAAAA==","iter":{iterations},"salt":"AAAAAAAAAAA=","ct":"AAAAAAAAAAA="}}"#
        );
        assert_eq!(
            decrypt("#pw", &text, &mut cache),
            Err(EnvelopeError::TooManyIterations { iterations })
        );
    }
    let params = Params {
        iterations: MAX_ITERATIONS + 1,
        ..Params::default()
    };
    assert_eq!(
        encrypt("#pw", b"", &params, &mut cache),
        Err(EnvelopeError::TooManyIterations {
            iterations: (MAX_ITERATIONS + 1).into()
        })
    );
}

#[test]
fn oversized_envelope_rejected_before_parsing() {
    let mut cache = KeyCache::default();
    let text = format!(r#"{{"ct":"{}"}}"#, "A".repeat(MAX_ENVELOPE_LEN));
    assert_eq!(
        decrypt("#pw", &text, &mut cache),
        Err(EnvelopeError::TooLarge { bytes: text.len() })
    );
}

#[test]
fn size_limit_is_exact_on_encrypt() {
    let mut cache = KeyCache::default();
    let params = Params {
        iv: Some(vec![1; 16]),
        salt: Some(vec![2; 8]),
        ..fast_params()
    };
    // The largest plaintext that fits: solve the envelope length for the ciphertext length.
    let empty = encrypt("#pw", b"", &params, &mut cache).unwrap().len();
    let ct_chars_free = MAX_ENVELOPE_LEN - (empty - base64_len(8));
    let largest = ct_chars_free / 4 * 3 - 8;

    let text = encrypt("#pw", &vec![0x61; largest], &params, &mut cache).unwrap();
    assert!(text.len() <= MAX_ENVELOPE_LEN);
    assert_eq!(decrypt("#pw", &text, &mut cache).unwrap().len(), largest);

    let too_large = vec![0x61; largest + 3];
    assert!(matches!(
        encrypt("#pw", &too_large, &params, &mut cache),
        Err(EnvelopeError::TooLarge { .. })
    ));
}

#[test]
fn base64_decoded_as_leniently_as_sjcl() {
    let decode = |text: &str| decode_sjcl_base64("ct", text);
    assert_eq!(decode("aGVsbG8="), Ok(b"hello".to_vec()));
    assert_eq!(decode("aGVsbG8"), Ok(b"hello".to_vec()));
    assert_eq!(decode("aGV=sbG8==="), Ok(b"hello".to_vec()));
    assert_eq!(decode(" aGVs\nbG8\t= "), Ok(b"hello".to_vec()));
    assert_eq!(
        decode("aGVsbG9"),
        Ok(b"hello".to_vec()),
        "stray trailing bits"
    );
    assert_eq!(
        decode("aGVsbG8hA"),
        Ok(b"hello!".to_vec()),
        "one leftover character"
    );
    assert_eq!(decode(""), Ok(Vec::new()));
    assert_eq!(decode("===="), Ok(Vec::new()));
    assert_eq!(decode("A"), Ok(Vec::new()));
    for bad in [
        "aGVs-bG8",
        "aGVs_bG8",
        "aGVsbG8\u{85}",
        "aGVsbG8é",
        "aGVs.bG8",
    ] {
        assert_eq!(
            decode(bad),
            Err(EnvelopeError::InvalidBase64 { field: "ct" }),
            "{bad:?}"
        );
    }
}

#[test]
fn not_utf8_reported_for_text() {
    let mut cache = KeyCache::default();
    let text = encrypt("#pw", &[0xFF, 0xFE], &fast_params(), &mut cache).unwrap();
    assert_eq!(decrypt("#pw", &text, &mut cache), Ok(vec![0xFF, 0xFE]));
    assert_eq!(
        decrypt_text("#pw", &text, &mut cache),
        Err(EnvelopeError::NotUtf8)
    );
}

#[test]
fn invalid_encrypt_parameters_rejected() {
    let mut cache = KeyCache::default();
    let cases = [
        (
            Params {
                key_bits: 64,
                ..fast_params()
            },
            EnvelopeError::UnsupportedKeySize { bits: 64 },
        ),
        (
            Params {
                tag_bits: 32,
                ..fast_params()
            },
            EnvelopeError::UnsupportedTagSize { bits: 32 },
        ),
        (
            Params {
                iterations: 100,
                ..fast_params()
            },
            EnvelopeError::TooFewIterations { iterations: 100 },
        ),
        (
            Params {
                iv: Some(vec![0; 6]),
                ..fast_params()
            },
            EnvelopeError::InvalidIvLength { bytes: 6 },
        ),
        (
            Params {
                iv: Some(vec![0; 17]),
                ..fast_params()
            },
            EnvelopeError::InvalidIvLength { bytes: 17 },
        ),
    ];
    for (params, expected) in cases {
        assert_eq!(encrypt("#pw", b"x", &params, &mut cache), Err(expected));
    }
}

fn params_strategy() -> impl Strategy<Value = Params> {
    (
        prop::sample::select(vec![128u32, 192, 256]),
        prop::sample::select(vec![64u32, 96, 128]),
        prop::collection::vec(any::<u8>(), 0..40),
        prop::collection::vec(any::<u8>(), MIN_IV_LEN..=MAX_IV_LEN),
        prop::collection::vec(any::<u8>(), 0..20),
    )
        .prop_map(|(key_bits, tag_bits, adata, iv, salt)| Params {
            iterations: MIN_ITERATIONS,
            key_bits,
            tag_bits,
            adata,
            iv: Some(iv),
            salt: Some(salt),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn round_trip_any_params(
        params in params_strategy(),
        plaintext in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut cache = KeyCache::default();
        let text = encrypt("#room", &plaintext, &params, &mut cache).unwrap();
        prop_assert_eq!(decrypt("#room", &text, &mut cache).unwrap(), plaintext);
    }

    #[test]
    fn tampered_ciphertext_never_decrypts(
        params in params_strategy(),
        plaintext in prop::collection::vec(any::<u8>(), 0..100),
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut cache = KeyCache::default();
        let mut envelope: Value =
            serde_json::from_str(&encrypt("#room", &plaintext, &params, &mut cache).unwrap())
                .unwrap();
        let mut ct = STANDARD.decode(envelope["ct"].as_str().unwrap()).unwrap();
        let index = position.index(ct.len());
        ct[index] ^= flip;
        envelope["ct"] = STANDARD.encode(&ct).into();
        prop_assert_eq!(
            decrypt("#room", &envelope.to_string(), &mut cache),
            Err(EnvelopeError::CannotDecrypt)
        );
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        let _ = decrypt("#room", &text, &mut KeyCache::default());
    }
}
