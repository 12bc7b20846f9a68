//! The HTTP endpoints of the relay and what every response carries.
//!
//! - `GET /sub/{channel}`: the channel's events as a server-sent event stream ([`events`]).
//! - `POST /pub/{channel}`: publishes an encrypted envelope to the channel ([`publish`]).
//! - everything else: the built web page from the `--www` directory.

pub mod error;
pub mod events;
pub mod publish;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::DefaultHeaders;
use actix_web::web;

use crate::broker::Broker;

/// Content-Security-Policy of every response: scripts only from this origin, WebAssembly
/// compilation allowed, nothing inline, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; \
    script-src 'self' 'wasm-unsafe-eval'; img-src 'self' blob: data:; connect-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

/// State shared by every route, cloned into each HTTP worker.
#[derive(Clone)]
pub struct AppState {
    pub broker: Arc<dyn Broker>,
    pub keepalive: Duration,
}

/// Headers added to every response, unless a route set them itself.
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "no-referrer"))
}

/// Registers the relay's routes, with the web page from `www` as the fallback.
pub fn configure(cfg: &mut web::ServiceConfig, state: AppState, www: &Path) {
    cfg.app_data(web::Data::new(state))
        .service(web::resource("/sub/{channel}").route(web::get().to(events::subscribe)))
        .service(web::resource("/pub/{channel}").route(web::post().to(publish::publish)))
        .service(
            actix_files::Files::new("/", www)
                .index_file("index.html")
                .use_etag(true),
        );
}
