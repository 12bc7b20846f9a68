//! Builds the relay from a [`Config`]: raises the open-file limit and sizes the stream limit
//! below it, opens the blob store, starts the broker, binds plain HTTP or TLS, and wires the
//! graceful shutdown.
//!
//! The server is actix-server's, with actix-web's HTTP service set up as `actix_web::HttpServer`
//! sets it up. On plain HTTP each connection goes through [`direct`] first, which serves
//! subscriptions and publishes itself and hands the connection to that HTTP service at the
//! first other request.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_server::Server;
use actix_web::App;

use crate::blob::{self, BlobError, BlobSettings, BlobStore};
use crate::broker::{Broker, MemoryBroker};
use crate::config::{Config, ConfigError};
use crate::direct;
use crate::limits::{RateLimiter, StreamLimiter};
use crate::metrics::{Metrics, RejectionCounters};
use crate::routes::{self, AppState};

/// Open files kept free for everything that is not an event stream: listeners, log output,
/// blob files, and connections that publish, upload or get a 503.
const RESERVED_FILES: u64 = 512;

/// Maximum time between two sweeps for expired blobs.
const MAX_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Pending connections the listener queues before the workers accept them: actix-server's
/// default, which `bench/nchan/nginx.conf.in` gives nginx too.
const LISTEN_BACKLOG: i32 = 2048;

/// Time a client has to send a complete request head, and to close its side after the
/// response: actix-web's defaults.
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Builds actix-web's HTTP service around an app, set up as `actix_web::HttpServer` sets it
/// up, for plain or TLS connections (a macro because the two differ in the stream type).
macro_rules! http_service {
    ($app:expr, $graceful:expr) => {{
        use actix_service::{IntoServiceFactory, ServiceFactoryExt, map_config};

        let graceful = $graceful.clone();
        actix_http::HttpService::build()
            // Closes kept-alive connections once a shutdown starts.
            .graceful_shutdown_signal(move || {
                let signal = graceful.clone();
                async move { signal.notified().await }
            })
            .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
            .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
            // A subscriber that closes its end is gone. Without this setting, actix-http
            // treats the EOF as a half-close and notices only when a later keepalive write
            // fails, so counts would lag.
            .h1_allow_half_closed(false)
            .on_connect_ext(|io: &_, data: &mut actix_http::Extensions| {
                crate::connection::record_socket(io as &dyn std::any::Any, data)
            })
            .finish(map_config(
                $app.into_factory()
                    .map_err(|error: actix_web::Error| error.error_response()),
                // The app reads no connection details from its config: client addresses come
                // from the connection's peer address and trusted proxies.
                |_| actix_web::dev::AppConfig::default(),
            ))
    }};
}

/// A bound relay, ready to be awaited.
pub struct Relay {
    /// The server future; it resolves after the stop future given to [`start`] completes
    /// and the graceful shutdown has finished.
    pub server: Server,
    /// The address actually bound, which contains the chosen port when the config requested
    /// port 0.
    pub addr: SocketAddr,
    /// Whether the relay serves HTTPS.
    pub tls: bool,
    /// The overall event stream limit in force.
    pub max_streams: usize,
}

/// Error from starting the relay.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),

    #[error("cannot open the blob store: {0}")]
    Blob(#[from] BlobError),

    #[error("the operating system's random source failed: {0}")]
    Random(#[from] getrandom::Error),

    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
}

/// Binds the listener and builds the server, without starting to serve yet. Must be called
/// inside an actix system. When `stop` completes, every event stream ends, the listener
/// closes, and requests in progress (blob uploads among them) get `--shutdown-timeout` to
/// finish.
pub fn start(
    config: &Config,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<Relay, StartError> {
    if !config.www.join("index.html").is_file() {
        tracing::warn!(
            www = %config.www.display(),
            "no index.html in the web page directory; build the page with trunk or pass --www"
        );
    }

    let open_files = raise_open_file_limit();
    let max_streams = stream_limit(config.max_streams, open_files);
    let workers = config.workers.map_or_else(default_workers, usize::from);
    // Per worker, so that all workers together stay below the open-file limit but still
    // accept connections beyond the stream limit, which then get a 503 instead of waiting.
    let connections_per_worker = (open_files.saturating_sub(64) as usize / workers).max(1);
    tracing::info!(open_files, max_streams, workers, "limits set");

    let tls = config.tls()?;
    let broker: Arc<dyn Broker> = Arc::new(MemoryBroker::new(config.broker_settings())?);
    let blobs = BlobStore::open(BlobSettings {
        dir: config.data_dir.clone(),
        max_size: config.max_blob_bytes,
        quota: config.blob_quota_bytes,
        client_quota: config.blob_client_quota(),
        expiry: config.blob_expiry,
    })?;
    let sweep_interval =
        (config.blob_expiry / 4).clamp(Duration::from_millis(100), MAX_SWEEP_INTERVAL);
    tokio::spawn(blob::sweep_periodically(blobs.clone(), sweep_interval));

    let rejections = Arc::new(RejectionCounters::default());
    let state = AppState {
        broker: broker.clone(),
        blobs: blobs.clone(),
        streams: Arc::new(StreamLimiter::new(
            max_streams,
            config.max_streams_per_client as usize,
        )),
        publish_rate: Arc::new(RateLimiter::new(
            "publish",
            config.publish_rate,
            config.publish_burst,
        )),
        upload_rate: Arc::new(RateLimiter::new(
            "upload",
            config.upload_rate,
            config.upload_burst,
        )),
        proxies: config.trusted_proxies(),
        rejections: rejections.clone(),
        metrics: Metrics::new(broker.clone(), blobs, rejections),
        max_publish_bytes: config.max_publish_bytes as usize,
        body_timeouts: routes::BodyTimeouts {
            idle: config.body_idle_timeout,
            publish: config.publish_body_timeout,
        },
        log_client_addresses: config.log_client_addresses,
    };

    let serves_tls = tls.is_some();
    let www = config.www.clone();
    let direct_state = state.clone();
    let shutdown = async move {
        stop.await;
        tracing::info!("shutting down: closing event streams and the listener");
        broker.close();
    };
    let builder = Server::build()
        .workers(workers)
        .max_concurrent_connections(connections_per_worker)
        .shutdown_signal(shutdown)
        .shutdown_timeout(config.shutdown_timeout.as_secs().max(1));
    let graceful = builder.graceful_shutdown_signal();

    let bind_error = |source| StartError::Bind {
        addr: config.listen,
        source,
    };
    let listener = bind(config.listen).map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    let app = move || {
        App::new()
            .wrap(routes::fallback::error_bodies())
            .wrap(routes::security_headers(serves_tls))
            .configure(|cfg| routes::configure(cfg, state.clone(), &www))
    };
    let builder = match tls {
        None => builder.listen("dropthat", listener, move || {
            let http = http_service!(app(), graceful);
            direct::service_factory(http, direct_state.clone(), graceful.clone())
        }),
        Some(tls) => builder.listen("dropthat-tls", listener, move || {
            http_service!(app(), graceful).rustls_0_23(tls.clone())
        }),
    }
    .map_err(bind_error)?;

    Ok(Relay {
        server: builder.run(),
        addr,
        tls: serves_tls,
        max_streams,
    })
}

/// Binds a listening socket with [`LISTEN_BACKLOG`], reusing the address of a socket in
/// TIME_WAIT as actix-server does.
fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Raises the soft limit on open files to the hard limit and returns the limit in force.
fn raise_open_file_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::info!(limit, "open-file limit raised to the hard limit");
            limit
        }
        Err(error) => {
            let current = rlimit::Resource::NOFILE
                .get()
                .map_or(1024, |(soft, _)| soft);
            tracing::warn!(%error, limit = current, "cannot raise the open-file limit");
            current
        }
    }
}

/// Returns the overall stream limit: the configured one, capped so that streams leave
/// [`RESERVED_FILES`] descriptors free (half the limit, when it is small).
fn stream_limit(configured: Option<u32>, open_files: u64) -> usize {
    let reserve = RESERVED_FILES.min(open_files / 2);
    let ceiling = usize::try_from(open_files - reserve)
        .unwrap_or(usize::MAX)
        .max(1);
    match configured {
        Some(wanted) if wanted as usize > ceiling => {
            tracing::warn!(
                wanted,
                ceiling,
                "--max-streams is above what the open-file limit allows; using the ceiling"
            );
            ceiling
        }
        Some(wanted) => wanted as usize,
        None => ceiling,
    }
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_limit_stays_below_open_files() {
        assert_eq!(stream_limit(None, 20_000), 19_488);
        assert_eq!(stream_limit(Some(100), 20_000), 100);
        assert_eq!(stream_limit(Some(50_000), 20_000), 19_488);
        assert_eq!(stream_limit(None, 256), 128);
    }
}
