//! Errors of the HTTP routes and the status code each maps to, in one place.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::broker::BrokerError;
use crate::channel::ChannelIdError;

/// Error returned by a route; its message becomes the plain-text response body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid channel id: {0}")]
    InvalidChannel(#[from] ChannelIdError),

    #[error("the request body has {actual} bytes or more, above the limit of {limit} bytes")]
    PayloadTooLarge { actual: usize, limit: usize },

    #[error("unsupported Content-Type {content_type:?}: send the envelope as application/json")]
    UnsupportedMediaType { content_type: String },

    #[error("invalid envelope: {reason}")]
    InvalidEnvelope { reason: String },

    #[error("failed to read the request body: {reason}")]
    BodyRead { reason: String },

    #[error("broker failure: {0}")]
    Broker(#[from] BrokerError),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::InvalidChannel(_) | Self::InvalidEnvelope { .. } | Self::BodyRead { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Broker(BrokerError::InvalidPayload(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .content_type("text/plain; charset=utf-8")
            .body(format!("{self}\n"))
    }
}
