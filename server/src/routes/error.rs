//! Errors of the HTTP routes and the status code each maps to, in one place.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::RETRY_AFTER;
use actix_web::{HttpResponse, ResponseError};

use crate::blob::BlobError;
use crate::body::BodyError;
use crate::broker::BrokerError;
use crate::channel::{ChannelId, ChannelIdError};
use crate::envelope::EnvelopeError;
use crate::limits::LimitError;

/// Seconds a client is asked to wait when the relay or a channel is at its stream limit.
const RETRY_AFTER_FULL: Duration = Duration::from_secs(10);

/// Body of every 500 response.
const INTERNAL_ERROR_MESSAGE: &str =
    "the relay failed to handle the request; retry later, and tell its operator if it persists\n";

/// Error returned by a route; its message becomes the plain-text response body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid channel id: {0}")]
    InvalidChannel(#[from] ChannelIdError),

    #[error("the request body has {actual} bytes or more, above the limit of {limit} bytes")]
    PayloadTooLarge { actual: u64, limit: u64 },

    #[error("unsupported Content-Type {content_type:?}: send the envelope as application/json")]
    UnsupportedMediaType { content_type: String },

    #[error("invalid Content-Length header: send the body's length in bytes")]
    InvalidContentLength,

    #[error("invalid envelope: {0}")]
    InvalidEnvelope(#[from] EnvelopeError),

    #[error("{0}")]
    Body(#[from] BodyError),

    #[error("invalid query string: {reason}")]
    InvalidQuery { reason: String },

    #[error("channel {channel} has no subscribers: blobs are only accepted for an open room")]
    NoSubscribers { channel: ChannelId },

    #[error("{0}")]
    Limit(#[from] LimitError),

    #[error("{0}")]
    Blob(#[from] BlobError),

    #[error("{0}")]
    Broker(#[from] BrokerError),

    #[error("failed to encode the figures: {reason}")]
    Metrics { reason: String },
}

impl ApiError {
    /// Returns how long the client should wait before retrying, for the errors that have one.
    fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Limit(LimitError::RateLimited { retry_after, .. }) => Some(*retry_after),
            Self::Blob(BlobError::ClientQuotaExceeded { retry_after, .. }) => *retry_after,
            Self::Limit(LimitError::TooManyStreams { .. })
            | Self::Limit(LimitError::TooManyClientStreams { .. })
            | Self::Broker(BrokerError::ChannelFull { .. })
            | Self::Broker(BrokerError::ShuttingDown) => Some(RETRY_AFTER_FULL),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidChannel(_)
            | Self::InvalidEnvelope(_)
            | Self::InvalidContentLength
            | Self::Body(BodyError::Read { .. })
            | Self::InvalidQuery { .. }
            | Self::Blob(BlobError::InvalidId { .. })
            | Self::Blob(BlobError::Body(BodyError::Read { .. })) => StatusCode::BAD_REQUEST,
            Self::Body(BodyError::Idle { .. } | BodyError::TooSlow { .. })
            | Self::Blob(BlobError::Body(BodyError::Idle { .. } | BodyError::TooSlow { .. })) => {
                StatusCode::REQUEST_TIMEOUT
            }
            Self::PayloadTooLarge { .. } | Self::Blob(BlobError::TooLarge { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NoSubscribers { .. } | Self::Blob(BlobError::NotFound { .. }) => {
                StatusCode::NOT_FOUND
            }
            Self::Limit(LimitError::RateLimited { .. })
            | Self::Limit(LimitError::TooManyClientStreams { .. }) => StatusCode::TOO_MANY_REQUESTS,
            Self::Limit(LimitError::TooManyStreams { .. })
            | Self::Broker(BrokerError::ChannelFull { .. })
            | Self::Broker(BrokerError::ShuttingDown) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Blob(BlobError::QuotaExceeded { .. })
            | Self::Blob(BlobError::ClientQuotaExceeded { .. }) => StatusCode::INSUFFICIENT_STORAGE,
            Self::Blob(BlobError::Io { .. })
            | Self::Blob(BlobError::Random(_))
            | Self::Broker(BrokerError::InvalidPayload(_))
            | Self::Metrics { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            // The details (paths, system errors) go to the log, not to the client.
            tracing::error!(error = %self, "request failed");
            INTERNAL_ERROR_MESSAGE.to_owned()
        } else {
            format!("{self}\n")
        };
        let mut response = HttpResponse::build(status);
        if let Some(wait) = self.retry_after() {
            response.insert_header((RETRY_AFTER, wait.as_secs().max(1).to_string()));
        }
        if status == StatusCode::REQUEST_TIMEOUT {
            // The rest of the body may still arrive, and the next request cannot be separated
            // from it.
            response.force_close();
        }
        response
            .content_type("text/plain; charset=utf-8")
            .body(message)
    }
}
