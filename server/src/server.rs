//! Builds the HTTP server from a [`Config`] and binds it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{App, HttpServer};

use crate::broker::MemoryBroker;
use crate::config::Config;
use crate::routes::{self, AppState};

/// Seconds the server waits for open connections after a stop signal before closing them.
const SHUTDOWN_TIMEOUT_SECS: u64 = 5;

/// A bound relay, ready to be awaited.
pub struct Relay {
    /// The server future; it resolves after a stop signal or [`actix_web::dev::ServerHandle::stop`].
    pub server: Server,
    /// The address actually bound, which tells the port when the config asked for port 0.
    pub addr: SocketAddr,
}

/// Binds the listener and builds the server, without starting to serve yet.
pub fn start(config: &Config) -> io::Result<Relay> {
    if !config.www.join("index.html").is_file() {
        tracing::warn!(
            www = %config.www.display(),
            "no index.html in the web page directory; build the page with trunk or pass --www"
        );
    }

    let state = AppState {
        broker: Arc::new(MemoryBroker::new()),
        keepalive: config.keepalive(),
    };
    let www = config.www.clone();
    let http = HttpServer::new(move || {
        App::new()
            .wrap(routes::security_headers())
            .configure(|cfg| routes::configure(cfg, state.clone(), &www))
    })
    .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
    .bind(config.listen)?;

    let addr = http.addrs()[0];
    Ok(Relay {
        server: http.run(),
        addr,
    })
}
