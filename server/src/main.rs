//! The `dropthat` binary: parses flags, sets up logging and runs the relay until a signal.

use std::io::IsTerminal;

use clap::Parser;
use dropthat_server::config::Config;
use tracing_subscriber::EnvFilter;

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();

    let relay = dropthat_server::server::start(&config)?;
    tracing::info!(address = %relay.addr, www = %config.www.display(), "dropthat relay listening");
    relay.server.await?;
    tracing::info!("dropthat relay stopped");
    Ok(())
}
