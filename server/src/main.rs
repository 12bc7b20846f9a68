//! The `dropthat` binary: parses flags, sets up logging and runs the relay until SIGTERM or
//! Ctrl-C, then shuts it down gracefully and exits 0.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use dropthat_server::config::Config;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{Directive, LevelFilter};

/// mimalloc rather than glibc's allocator: the relay allocates and frees many small buffers on
/// two or more threads, and glibc's consolidation of freed chunks showed up in the relay's
/// profiles.
/// Measured in docs/BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// actix-http logs each connection whose request cannot be parsed, or that breaks off, at
/// error level ("stream error"). Any client can cause those lines, so they are only shown when
/// `RUST_LOG` enables debug lines.
const QUIET_CONNECTION_ERRORS: &str = "actix_http::h1::dispatcher=off";

/// Returns the log filter from `RUST_LOG`, `info` by default.
fn log_filter() -> EnvFilter {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    if filter
        .max_level_hint()
        .is_some_and(|level| level >= LevelFilter::DEBUG)
    {
        return filter;
    }
    // The constant is a valid `RUST_LOG` directive, so parsing cannot fail. Every start of
    // the relay without debug logging runs this line.
    let quiet: Directive = QUIET_CONNECTION_ERRORS
        .parse()
        .expect("the directive for connection errors parses");
    filter.add_directive(quiet)
}

#[actix_web::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(log_filter())
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let (mut terminate, mut interrupt) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
        (Err(error), _) | (_, Err(error)) => {
            tracing::error!(%error, "cannot install the signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let stop = async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "stop signal received");
    };

    let relay = match dropthat_server::server::start(&config, stop) {
        Ok(relay) => relay,
        Err(error) => {
            tracing::error!(%error, "dropthat relay failed to start");
            return ExitCode::FAILURE;
        }
    };
    let scheme = if relay.tls { "https" } else { "http" };
    tracing::info!(address = %relay.addr, scheme, www = %config.www.display(), "dropthat relay listening");

    if let Err(error) = relay.server.await {
        tracing::error!(%error, "dropthat relay failed");
        return ExitCode::FAILURE;
    }
    tracing::info!("dropthat relay stopped");
    ExitCode::SUCCESS
}
