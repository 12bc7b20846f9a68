//! `GET /healthz`, `/stats` and `/metrics`: liveness and the relay's figures.

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use super::AppState;
use super::error::ApiError;

/// Content type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Returns 200 while the relay serves requests.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body("ok\n")
}

/// Returns every figure as a JSON object.
pub async fn stats(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(state.metrics.figures().to_json())
}

/// Returns every figure in the Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = state
        .metrics
        .prometheus_text()
        .map_err(|e| ApiError::Metrics {
            reason: e.to_string(),
        })?;
    Ok(HttpResponse::Ok()
        .content_type(PROMETHEUS_TEXT)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(text))
}
