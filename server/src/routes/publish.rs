//! `POST /pub/{channel}`: publishes an encrypted envelope to a channel's subscribers.
//!
//! The relay cannot decrypt the envelope; it only checks that the body is a JSON object and
//! re-encodes it compactly, which puts it on one line so it fits one `data:` field.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use crate::channel::ChannelId;

/// Largest request body accepted, in bytes: a chat message envelope is far smaller.
pub const MAX_BODY: usize = 32 * 1024;

/// The 202 response body.
#[derive(Serialize)]
struct Accepted {
    /// Number of subscribers the event was queued for.
    queued: usize,
}

/// Validates and publishes one envelope.
pub async fn publish(
    state: web::Data<AppState>,
    channel: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let channel = ChannelId::parse(&channel)?;
    check_content_type(&request)?;
    let body = read_body(payload, MAX_BODY).await?;
    let event = compact_json_object(&body)?;

    let published = state.broker.publish(channel, event).await?;
    Ok(HttpResponse::Accepted().json(Accepted {
        queued: published.queued,
    }))
}

fn check_content_type(request: &HttpRequest) -> Result<(), ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    Err(ApiError::UnsupportedMediaType {
        content_type: content_type.chars().take(64).collect(),
    })
}

/// Reads the body, stopping as soon as it exceeds `limit` bytes.
async fn read_body(mut payload: web::Payload, limit: usize) -> Result<Bytes, ApiError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| ApiError::BodyRead {
            reason: e.to_string(),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge {
                actual: body.len() + chunk.len(),
                limit,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Parses `body` as a JSON object and returns it re-encoded without whitespace. serde_json
/// escapes control characters inside strings, so the result never contains a raw line break.
fn compact_json_object(body: &[u8]) -> Result<Bytes, ApiError> {
    let value: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| ApiError::InvalidEnvelope {
            reason: format!("the body is not a JSON object: {e}"),
        })?;
    let compact = serde_json::to_vec(&value).map_err(|e| ApiError::InvalidEnvelope {
        reason: e.to_string(),
    })?;
    Ok(Bytes::from(compact))
}
