//! Configuration from command-line flags, each with an environment-variable fallback, and the
//! checks and file loading (TLS certificate and key) that turn it into settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use ipnet::IpNet;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::broker::BrokerSettings;
use crate::client::TrustedProxies;

/// Settings of one relay process.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "dropthat",
    version,
    about = "Relay for end-to-end encrypted chat rooms",
    long_about = "Relay for end-to-end encrypted chat rooms. Durations take a unit, as in \
                  370ms, 20s, 5m or 24h. Every flag can also be set by the environment \
                  variable shown with it."
)]
pub struct Config {
    /// Address and port to listen on; port 0 picks a free port.
    #[arg(long, env = "DROPTHAT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory of the built web page (trunk's output), served at `/`.
    #[arg(long, env = "DROPTHAT_WWW", default_value = "dist")]
    pub www: PathBuf,

    /// Directory for blobs; created if missing.
    #[arg(long, env = "DROPTHAT_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// HTTP worker threads; the default is one per CPU available to the process.
    #[arg(long, env = "DROPTHAT_WORKERS", value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: Option<u16>,

    /// PEM file with the TLS certificate chain, leaf first. Serves HTTPS when set with
    /// --tls-key; without both, the relay serves plain HTTP for a TLS-terminating proxy.
    #[arg(long, env = "DROPTHAT_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file with the TLS private key (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "DROPTHAT_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Proxies whose X-Forwarded-For header names the client, as comma-separated addresses or
    /// CIDR networks. Without it, the client is always the connection's peer.
    #[arg(long, env = "DROPTHAT_TRUSTED_PROXIES", value_delimiter = ',', value_parser = parse_network)]
    pub trusted_proxies: Vec<IpNet>,

    /// Include client addresses in log lines.
    #[arg(long, env = "DROPTHAT_LOG_CLIENT_ADDRESSES")]
    pub log_client_addresses: bool,

    /// Time between keepalive comments on event streams.
    #[arg(long, env = "DROPTHAT_KEEPALIVE", default_value = "20s", value_parser = parse_positive_duration)]
    pub keepalive: Duration,

    /// Shortest time between two count events of a channel.
    #[arg(long, env = "DROPTHAT_COUNT_INTERVAL", default_value = "370ms", value_parser = parse_positive_duration)]
    pub count_interval: Duration,

    /// Events each channel keeps so that reconnecting subscribers get what they missed.
    #[arg(long, env = "DROPTHAT_HISTORY_LEN", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub history_len: u32,

    /// Maximum bytes of event frames kept in memory over all channels. Beyond it, the history
    /// of idle channels is dropped, oldest first, and then channels keep only what their
    /// subscribers have still to send.
    #[arg(long, env = "DROPTHAT_MAX_HISTORY_BYTES", default_value_t = 256 << 20,
          value_parser = clap::value_parser!(u64).range(64 * 1024..=1 << 40))]
    pub max_history_bytes: u64,

    /// How long a channel keeps its history after its last subscriber leaves.
    #[arg(long, env = "DROPTHAT_HISTORY_RETENTION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub history_retention: Duration,

    /// Events a subscriber may have waiting (published, not yet written to its connection)
    /// before it counts as stalled and is disconnected. Waiting events are shared with the
    /// channel's other subscribers, so a high limit costs memory only while one falls behind.
    #[arg(long, env = "DROPTHAT_QUEUE_LEN", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(2..=1 << 16))]
    pub queue_len: u32,

    /// Bytes of event frames a subscriber may have waiting before it counts as stalled and is
    /// disconnected. This bounds what a stalled subscriber keeps in its channel's memory.
    #[arg(long, env = "DROPTHAT_QUEUE_BYTES", default_value_t = 1 << 20,
          value_parser = clap::value_parser!(u32).range(64 * 1024..=1 << 30))]
    pub queue_bytes: u32,

    /// Maximum publish body size, in bytes.
    #[arg(long, env = "DROPTHAT_MAX_PUBLISH_BYTES", default_value_t = 32 * 1024,
          value_parser = clap::value_parser!(u32).range(64..=1 << 20))]
    pub max_publish_bytes: u32,

    /// Maximum pause between two parts of a request body. A body that pauses longer gets
    /// 408, and an unfinished blob is deleted.
    #[arg(long, env = "DROPTHAT_BODY_IDLE_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub body_idle_timeout: Duration,

    /// Maximum time a whole publish body may take to arrive. A slower one gets 408.
    #[arg(long, env = "DROPTHAT_PUBLISH_BODY_TIMEOUT", default_value = "30s", value_parser = parse_positive_duration)]
    pub publish_body_timeout: Duration,

    /// Maximum blob size, in bytes.
    #[arg(long, env = "DROPTHAT_MAX_BLOB_BYTES", default_value_t = 8 << 20,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_blob_bytes: u64,

    /// Maximum bytes of all blobs together on disk; uploads beyond it get 507.
    #[arg(long, env = "DROPTHAT_BLOB_QUOTA_BYTES", default_value_t = 1 << 30)]
    pub blob_quota_bytes: u64,

    /// Maximum bytes of the blobs of one client address (an IPv6 client counts by its /64).
    /// Uploads beyond it get 507. The default is a quarter of --blob-quota-bytes.
    #[arg(long, env = "DROPTHAT_BLOB_QUOTA_PER_CLIENT_BYTES")]
    pub blob_quota_per_client_bytes: Option<u64>,

    /// How long a blob is kept after its upload.
    #[arg(long, env = "DROPTHAT_BLOB_EXPIRY", default_value = "24h", value_parser = parse_positive_duration)]
    pub blob_expiry: Duration,

    /// Maximum event streams overall; the default, and the upper bound, come from the
    /// open-file limit.
    #[arg(long, env = "DROPTHAT_MAX_STREAMS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams: Option<u32>,

    /// Maximum event streams per client address (an IPv6 client counts by its /64).
    #[arg(long, env = "DROPTHAT_MAX_STREAMS_PER_CLIENT", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams_per_client: u32,

    /// Maximum subscribers per channel.
    #[arg(long, env = "DROPTHAT_MAX_SUBSCRIBERS_PER_CHANNEL", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_subscribers_per_channel: u32,

    /// Publishes per second each client may sustain.
    #[arg(long, env = "DROPTHAT_PUBLISH_RATE", default_value_t = 5.0, value_parser = parse_rate)]
    pub publish_rate: f64,

    /// Publishes a client may send at once before the rate applies.
    #[arg(long, env = "DROPTHAT_PUBLISH_BURST", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub publish_burst: u32,

    /// Blob uploads per second each client may sustain.
    #[arg(long, env = "DROPTHAT_UPLOAD_RATE", default_value_t = 0.2, value_parser = parse_rate)]
    pub upload_rate: f64,

    /// Blob uploads a client may send at once before the rate applies.
    #[arg(long, env = "DROPTHAT_UPLOAD_BURST", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub upload_burst: u32,

    /// How long a shutdown waits for requests in progress, such as blob uploads.
    #[arg(long, env = "DROPTHAT_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

/// Error from checking the configuration or loading the files it names.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--tls-cert is set but --tls-key is not: pass both to serve HTTPS, or neither")]
    MissingTlsKey,

    #[error("--tls-key is set but --tls-cert is not: pass both to serve HTTPS, or neither")]
    MissingTlsCert,

    #[error("failed to read {}: {reason}", path.display())]
    UnreadablePem { path: PathBuf, reason: String },

    #[error("{} contains no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },

    #[error("the TLS certificate and key cannot be used together: {reason}")]
    TlsRejected { reason: String },
}

impl Config {
    /// Returns the broker settings these flags select.
    pub fn broker_settings(&self) -> BrokerSettings {
        BrokerSettings {
            history_len: self.history_len as usize,
            // Every u64 fits in a 64-bit usize. On a 32-bit target a larger value saturates
            // to usize::MAX, which is more than its address space.
            max_history_bytes: usize::try_from(self.max_history_bytes).unwrap_or(usize::MAX),
            history_retention: self.history_retention,
            count_interval: self.count_interval,
            keepalive: self.keepalive,
            max_waiting_events: self.queue_len as usize,
            max_waiting_bytes: self.queue_bytes as usize,
            max_subscribers_per_channel: self.max_subscribers_per_channel as usize,
        }
    }

    /// Returns the blob bytes one client may store.
    pub fn blob_client_quota(&self) -> u64 {
        self.blob_quota_per_client_bytes
            .unwrap_or(self.blob_quota_bytes / 4)
    }

    /// Returns the proxies whose `X-Forwarded-For` is believed.
    pub fn trusted_proxies(&self) -> TrustedProxies {
        TrustedProxies::new(self.trusted_proxies.clone())
    }

    /// Loads the TLS certificate and key, or returns `None` when the relay serves plain HTTP.
    pub fn tls(&self) -> Result<Option<rustls::ServerConfig>, ConfigError> {
        let (cert_path, key_path) = match (&self.tls_cert, &self.tls_key) {
            (None, None) => return Ok(None),
            (Some(_), None) => return Err(ConfigError::MissingTlsKey),
            (None, Some(_)) => return Err(ConfigError::MissingTlsCert),
            (Some(cert), Some(key)) => (cert, key),
        };

        let certificates = load_certificates(cert_path)?;
        let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| unreadable(key_path, e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| {
                builder
                    .with_no_client_auth()
                    .with_single_cert(certificates, key)
            })
            .map_err(|e| ConfigError::TlsRejected {
                reason: e.to_string(),
            })?;
        Ok(Some(config))
    }
}

fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(path, e))?;
    if certificates.is_empty() {
        return Err(ConfigError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certificates)
}

fn unreadable(path: &Path, error: impl std::fmt::Display) -> ConfigError {
    ConfigError::UnreadablePem {
        path: path.to_owned(),
        reason: error.to_string(),
    }
}

fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(network) = text.parse::<IpNet>() {
        return Ok(network);
    }
    text.parse::<std::net::IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{text:?} is neither an IP address nor a CIDR network"))
}

fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.is_zero() {
        return Err("must be longer than zero".to_owned());
    }
    Ok(duration)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if !(rate.is_finite() && rate > 0.0) {
        return Err("must be a number above zero".to_owned());
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("dropthat").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_match_documentation() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.keepalive, Duration::from_secs(20));
        assert_eq!(config.count_interval, Duration::from_millis(370));
        assert_eq!(config.history_len, 100);
        assert_eq!(config.max_history_bytes, 256 << 20);
        assert_eq!(config.max_publish_bytes, 32 * 1024);
        assert_eq!(config.max_blob_bytes, 8 << 20);
        assert_eq!(config.blob_expiry, Duration::from_secs(24 * 3600));
        assert_eq!(config.blob_client_quota(), 256 << 20);
        assert!(config.trusted_proxies.is_empty());
        assert!(config.tls().unwrap().is_none());
    }

    #[test]
    fn flags_parse_units_and_lists() {
        let config = parse(&[
            "--count-interval",
            "50ms",
            "--trusted-proxies",
            "10.0.0.0/8,192.0.2.1,::1",
        ])
        .unwrap();
        assert_eq!(config.count_interval, Duration::from_millis(50));
        assert_eq!(config.trusted_proxies.len(), 3);
        assert_eq!(config.trusted_proxies[1].to_string(), "192.0.2.1/32");
    }

    #[test]
    fn invalid_flags_are_rejected() {
        for args in [
            &["--keepalive", "0s"][..],
            &["--count-interval", "fast"],
            &["--trusted-proxies", "example.com"],
            &["--publish-rate", "-1"],
            &["--queue-len", "1"],
            &["--queue-bytes", "1000"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn tls_needs_cert_and_key() {
        let only_cert = parse(&["--tls-cert", "cert.pem"]).unwrap();
        assert!(matches!(only_cert.tls(), Err(ConfigError::MissingTlsKey)));
        let only_key = parse(&["--tls-key", "key.pem"]).unwrap();
        assert!(matches!(only_key.tls(), Err(ConfigError::MissingTlsCert)));
        let missing = parse(&[
            "--tls-cert",
            "/nonexistent/c.pem",
            "--tls-key",
            "/nonexistent/k.pem",
        ])
        .unwrap();
        assert!(matches!(
            missing.tls(),
            Err(ConfigError::UnreadablePem { .. })
        ));
    }
}
