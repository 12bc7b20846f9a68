//! `POST /pub/{channel}`: publishes an encrypted envelope to a channel's subscribers.
//!
//! The relay cannot decrypt the envelope. It checks the envelope's shape and re-encodes it as
//! compact JSON, which is one line and so fits one `data:` field (see [`crate::envelope`]).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use crate::body::TimedBody;
use crate::channel::ChannelId;
use crate::envelope;

/// The 202 response body.
#[derive(Serialize)]
struct Accepted {
    /// The event's id, as subscribers see it in the `id:` field.
    id: String,
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
    state.check_rate(&state.publish_rate, &request)?;
    check_content_type(&request)?;
    let limit = state.max_publish_bytes;
    if let Some(declared) = content_length(&request)?
        && declared > limit as u64
    {
        return Err(ApiError::PayloadTooLarge {
            actual: declared,
            limit: limit as u64,
        });
    }
    let timed = TimedBody::new(
        payload,
        state.body_timeouts.idle,
        Some(state.body_timeouts.publish),
    );
    let body = read_body(timed, limit)
        .await
        .map_err(|e| state.body_failed(&request, e))?;
    let event = envelope::check_and_compact(&body)?;

    let published = state.broker.publish(channel, event).await?;
    Ok(HttpResponse::Accepted().json(Accepted {
        id: published.id,
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

/// Returns the request's Content-Length, if it sent one.
pub(super) fn content_length(request: &HttpRequest) -> Result<Option<u64>, ApiError> {
    let Some(value) = request.headers().get(header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .map(Some)
        .ok_or(ApiError::InvalidContentLength)
}

/// Reads the body, stopping as soon as it exceeds `limit` bytes.
async fn read_body(mut payload: TimedBody<web::Payload>, limit: usize) -> Result<Bytes, ApiError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge {
                actual: (body.len() + chunk.len()) as u64,
                limit: limit as u64,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}
