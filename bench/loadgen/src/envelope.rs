//! The messages the benchmark publishes: SJCL-style envelopes that carry a probe.
//!
//! A relay may check that a published body is a well-formed SJCL envelope (the JSON that
//! `sjcl.encrypt` writes: `iv`, `v`, `iter`, `ks`, `ts`, `mode`, `adata`, `cipher`, `salt`,
//! `ct`, byte fields in standard base64 with padding), so every message is one. Nothing is
//! encrypted: the bytes of `ct` are filler of the requested size. The probe travels in `adata`,
//! which SJCL authenticates but leaves in the clear, so a relay has no reason to alter it.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

/// First bytes of every probe, which distinguish it from other data on a channel.
const MAGIC: [u8; 4] = *b"dtlg";

/// Length of an encoded probe: magic, run id, channel, sequence number, send time.
const PROBE_LEN: usize = 4 + 8 + 4 + 4 + 8;

/// The fields a subscriber needs to account for one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// Identifies one benchmark run, so that messages a server kept from an earlier run (in
    /// its history buffer) are not mistaken for this run's.
    pub run: u64,
    /// Index of the channel the message was published to.
    pub channel: u32,
    /// Sequence number of the message within its channel, from 0.
    pub seq: u32,
    /// `CLOCK_MONOTONIC` nanoseconds just before the publish request was written.
    pub sent_nanos: u64,
}

/// Error from reading a probe out of a delivered event's data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("the event data is not a JSON object with a string field \"adata\": {reason}")]
    NotAnEnvelope { reason: String },

    #[error("the envelope's adata is not valid standard base64")]
    InvalidBase64,

    #[error("the envelope's adata has {length} bytes, not the {PROBE_LEN} of a probe")]
    WrongLength { length: usize },

    #[error("the envelope's adata does not start with the probe marker")]
    NotAProbe,
}

impl Probe {
    /// Encodes the probe into its binary form.
    fn to_bytes(self) -> [u8; PROBE_LEN] {
        let mut bytes = [0; PROBE_LEN];
        bytes[..4].copy_from_slice(&MAGIC);
        bytes[4..12].copy_from_slice(&self.run.to_be_bytes());
        bytes[12..16].copy_from_slice(&self.channel.to_be_bytes());
        bytes[16..20].copy_from_slice(&self.seq.to_be_bytes());
        bytes[20..28].copy_from_slice(&self.sent_nanos.to_be_bytes());
        bytes
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, ProbeError> {
        let bytes: &[u8; PROBE_LEN] = bytes.try_into().map_err(|_| ProbeError::WrongLength {
            length: bytes.len(),
        })?;
        if bytes[..4] != MAGIC {
            return Err(ProbeError::NotAProbe);
        }
        // The slices below have the lengths of the integers they are read into, because the
        // array has the fixed length PROBE_LEN.
        let u64_at = |at: usize| u64::from_be_bytes(bytes[at..at + 8].try_into().unwrap());
        let u32_at = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        Ok(Self {
            run: u64_at(4),
            channel: u32_at(12),
            seq: u32_at(16),
            sent_nanos: u64_at(20),
        })
    }

    /// Reads the probe from the data of a delivered event.
    pub fn from_event_data(data: &[u8]) -> Result<Self, ProbeError> {
        #[derive(Deserialize)]
        struct Fields<'a> {
            // Borrowed unless the string has JSON escapes, such as a relay writing `\/`.
            #[serde(borrow)]
            adata: Cow<'a, str>,
        }
        let fields: Fields<'_> =
            serde_json::from_slice(data).map_err(|e| ProbeError::NotAnEnvelope {
                reason: e.to_string(),
            })?;
        let bytes = STANDARD
            .decode(fields.adata.as_bytes())
            .map_err(|_| ProbeError::InvalidBase64)?;
        Self::from_bytes(&bytes)
    }
}

/// Builds the JSON body of a publish request: an SJCL-style envelope with `probe` in `adata`
/// and `ciphertext_len` filler bytes (tag included) in `ct`.
pub fn envelope(probe: Probe, ciphertext_len: usize) -> String {
    // A 16-byte IV unique to the message, as SJCL draws at random for each.
    let mut iv = [0u8; 16];
    iv[..8].copy_from_slice(&probe.run.to_be_bytes());
    iv[8..12].copy_from_slice(&probe.channel.to_be_bytes());
    iv[12..].copy_from_slice(&probe.seq.to_be_bytes());
    let salt = &probe.run.to_be_bytes();
    let ciphertext: Vec<u8> = (0..ciphertext_len).map(|i| i as u8).collect();

    // Every value is a number, a fixed word or base64 text, so none needs JSON escaping.
    format!(
        concat!(
            r#"{{"iv":"{iv}","v":1,"iter":10000,"ks":128,"ts":64,"mode":"ccm","#,
            r#""adata":"{adata}","cipher":"aes","salt":"{salt}","ct":"{ct}"}}"#
        ),
        iv = STANDARD.encode(iv),
        adata = STANDARD.encode(probe.to_bytes()),
        salt = STANDARD.encode(salt),
        ct = STANDARD.encode(ciphertext),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBE: Probe = Probe {
        run: 0x0102_0304_0506_0708,
        channel: 7,
        seq: 42,
        sent_nanos: 123_456_789,
    };

    #[test]
    fn probe_round_trips_through_envelope() {
        let body = envelope(PROBE, 48);
        assert_eq!(Probe::from_event_data(body.as_bytes()), Ok(PROBE));
    }

    #[test]
    fn envelope_has_sjcl_fields() {
        let body = envelope(PROBE, 48);
        let value: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&body).unwrap();
        let keys: Vec<&str> = value.keys().map(String::as_str).collect();
        let mut expected = [
            "iv", "v", "iter", "ks", "ts", "mode", "adata", "cipher", "salt", "ct",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        for field in ["iv", "adata", "salt", "ct"] {
            let text = value[field].as_str().unwrap();
            assert!(STANDARD.decode(text).is_ok(), "{field} is not base64");
        }
        let ct = STANDARD.decode(value["ct"].as_str().unwrap()).unwrap();
        assert_eq!(ct.len(), 48);
        assert!(!body.contains('\n'));
    }

    #[test]
    fn probe_survives_key_reordering() {
        // A relay that re-encodes the JSON may sort its keys.
        let body = envelope(PROBE, 8);
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        let reencoded = serde_json::to_vec(&value).unwrap();
        assert_eq!(Probe::from_event_data(&reencoded), Ok(PROBE));
    }

    #[test]
    fn probe_rejects_foreign_data() {
        assert!(matches!(
            Probe::from_event_data(b"count=3"),
            Err(ProbeError::NotAnEnvelope { .. })
        ));
        assert!(matches!(
            Probe::from_event_data(br#"{"adata":"***"}"#),
            Err(ProbeError::InvalidBase64)
        ));
        assert_eq!(
            Probe::from_event_data(br#"{"adata":"AAAA"}"#),
            Err(ProbeError::WrongLength { length: 3 })
        );
        let wrong_magic = STANDARD.encode([0u8; PROBE_LEN]);
        let data = format!(r#"{{"adata":"{wrong_magic}"}}"#);
        assert_eq!(
            Probe::from_event_data(data.as_bytes()),
            Err(ProbeError::NotAProbe)
        );
    }
}
