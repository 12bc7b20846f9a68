//! The HTTP endpoints of the relay and what every response carries.
//!
//! - `GET /sub/{channel}`: the channel's events as a server-sent event stream ([`events`]).
//! - `POST /pub/{channel}`: publishes an encrypted envelope to the channel ([`publish`]).
//! - `POST /blob/{channel}` and `GET /blob/{id}`: stores and serves encrypted blobs ([`blob`]).
//! - `GET /healthz`, `/stats` and `/metrics`: liveness and figures ([`ops`]).
//! - everything else: the built web page from the `--www` directory.
//!
//! The GET routes also take HEAD. Errors that actix-web sends itself get a one-line body
//! from [`fallback`].

pub mod blob;
pub mod error;
pub mod events;
pub mod fallback;
pub mod ops;
pub mod publish;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix_web::middleware::DefaultHeaders;
use actix_web::{HttpRequest, web};

use crate::blob::{BlobError, BlobStore};
use crate::broker::{Broker, BrokerError};
use crate::client::{ClientKey, TrustedProxies};
use crate::connection::ConnectionSocket;
use crate::limits::{LimitError, RateLimiter, StreamLimiter};
use crate::metrics::{Metrics, RejectionCounters};
use error::ApiError;

/// Content-Security-Policy of every response: scripts only from this origin, WebAssembly
/// compilation allowed, nothing inline, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; \
    script-src 'self' 'wasm-unsafe-eval'; img-src 'self' blob: data:; connect-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

/// Strict-Transport-Security when the relay serves TLS itself: browsers use HTTPS for this
/// host for a year. Subdomains are left out, as they may be served by others.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// State shared by every route. Each HTTP worker has a clone, and the parts inside are shared.
#[derive(Clone)]
pub struct AppState {
    pub broker: Arc<dyn Broker>,
    pub blobs: BlobStore,
    pub streams: Arc<StreamLimiter>,
    pub publish_rate: Arc<RateLimiter>,
    pub upload_rate: Arc<RateLimiter>,
    pub proxies: TrustedProxies,
    pub rejections: Arc<RejectionCounters>,
    pub metrics: Metrics,
    /// Maximum publish body size, in bytes.
    pub max_publish_bytes: usize,
    pub body_timeouts: BodyTimeouts,
    /// Whether log lines may name client addresses.
    pub log_client_addresses: bool,
}

impl AppState {
    /// Returns the client address of `request`, after trusted proxies.
    pub fn client_address(&self, request: &HttpRequest) -> Option<IpAddr> {
        self.proxies.client_address(request)
    }

    /// Takes a token from `limiter` for the client of `request`, counting a rejection.
    fn check_rate(&self, limiter: &RateLimiter, request: &HttpRequest) -> Result<(), ApiError> {
        let Some(address) = self.client_address(request) else {
            return Ok(());
        };
        limiter
            .check(ClientKey::of(address), Instant::now())
            .map_err(|e| self.rejected(e.into(), Some(address)))
    }

    /// Counts and logs a request whose body did not arrive in time, and stops reading its
    /// connection. Returns every body error unchanged.
    fn body_failed<E: Into<ApiError>>(&self, request: &HttpRequest, error: E) -> ApiError {
        let error = error.into();
        let timed_out = match &error {
            ApiError::Body(body) | ApiError::Blob(BlobError::Body(body)) => body.is_timeout(),
            _ => false,
        };
        if timed_out {
            self.rejections
                .requests_timed_out
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%error, "request body timed out");
            if let Some(socket) = request.conn_data::<ConnectionSocket>() {
                socket.stop_reading();
            }
        }
        error
    }

    /// Counts and logs a request rejected by a limit, and returns the error unchanged. Other
    /// errors are returned as they are.
    fn rejected(&self, error: ApiError, address: Option<IpAddr>) -> ApiError {
        // The log line names the limit rather than quoting the error, whose text may contain
        // a channel id.
        let rejections = &self.rejections;
        let (counter, limit) = match &error {
            ApiError::Limit(LimitError::RateLimited { action, .. }) => {
                (&rejections.requests_rate_limited, *action)
            }
            ApiError::Limit(LimitError::TooManyStreams { .. }) => {
                (&rejections.streams_rejected, "event streams overall")
            }
            ApiError::Limit(LimitError::TooManyClientStreams { .. }) => {
                (&rejections.streams_rejected, "event streams per client")
            }
            ApiError::Broker(BrokerError::ChannelFull { .. }) => {
                (&rejections.streams_rejected, "subscribers per channel")
            }
            _ => return error,
        };
        let previous = counter.fetch_add(1, Ordering::Relaxed);
        // The first rejection and then every thousandth is logged, so a flood cannot flood
        // the log too.
        if previous % 1000 == 0 {
            match address {
                Some(client) if self.log_client_addresses => {
                    tracing::info!(limit, %client, rejected = previous + 1, "request rejected by a limit");
                }
                _ => tracing::info!(
                    limit,
                    rejected = previous + 1,
                    "request rejected by a limit"
                ),
            }
        }
        error
    }
}

/// How long the relay waits for request bodies.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeouts {
    /// Maximum pause between two parts of any body.
    pub idle: Duration,
    /// Maximum time for a whole publish body.
    pub publish: Duration,
}

/// Headers of every response over plain HTTP, as name and value.
pub const SECURITY_HEADERS: [(&str, &str); 3] = [
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
];

/// Headers added to every response, unless a route set them itself; `tls` adds HSTS.
pub fn security_headers(tls: bool) -> DefaultHeaders {
    let headers = SECURITY_HEADERS
        .into_iter()
        .fold(DefaultHeaders::new(), DefaultHeaders::add);
    if tls {
        return headers.add(("Strict-Transport-Security", STRICT_TRANSPORT_SECURITY));
    }
    headers
}

/// Registers the relay's routes, with the web page from `www` as the fallback.
///
/// The patterns take everything after `/sub/`, `/pub/` and `/blob/`, including an empty rest
/// or one with more slashes. So the route rejects such a path with the reason, rather than the
/// web page responding with 404 or 405.
pub fn configure(cfg: &mut web::ServiceConfig, state: AppState, www: &Path) {
    cfg.app_data(web::Data::new(state))
        .service(web::resource("/sub/{channel:.*}").route(web::get().to(events::subscribe)))
        .service(web::resource("/pub/{channel:.*}").route(web::post().to(publish::publish)))
        .service(
            web::resource("/blob/{name:.*}")
                .route(web::post().to(blob::upload))
                .route(web::get().to(blob::download))
                .route(web::head().to(blob::download)),
        )
        .service(
            web::resource("/healthz")
                .route(web::get().to(ops::healthz))
                .route(web::head().to(ops::healthz)),
        )
        .service(
            web::resource("/stats")
                .route(web::get().to(ops::stats))
                .route(web::head().to(ops::stats)),
        )
        .service(
            web::resource("/metrics")
                .route(web::get().to(ops::metrics))
                .route(web::head().to(ops::metrics)),
        )
        .service(
            actix_files::Files::new("/", www)
                .index_file("index.html")
                .use_etag(true),
        );
}
