//! Configuration from command-line flags, each with an environment-variable fallback.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Settings of one relay process.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "dropthat",
    version,
    about = "Relay for end-to-end encrypted chat rooms"
)]
pub struct Config {
    /// Address and port to listen on; port 0 picks a free port.
    #[arg(long, env = "DROPTHAT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory of the built web page (trunk's output), served at `/`.
    #[arg(long, env = "DROPTHAT_WWW", default_value = "dist")]
    pub www: PathBuf,

    /// Seconds between keepalive comments on idle event streams.
    #[arg(long, env = "DROPTHAT_KEEPALIVE_SECS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub keepalive_secs: u64,
}

impl Config {
    /// Returns the interval between keepalive comments.
    pub fn keepalive(&self) -> Duration {
        Duration::from_secs(self.keepalive_secs)
    }
}
