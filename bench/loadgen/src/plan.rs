//! What one run does, from the command-line flags: which subscribers exist, on which channel,
//! from which source address, in which worker process, and which messages go where.
//!
//! Subscriber `j` (of `subscribers + stalled`) lives in worker `j % workers`. The first
//! `subscribers` read their streams; the rest are stalled readers. Message `m` goes to channel
//! `m % channels` with sequence number `m / channels`, so each channel's messages are numbered
//! 0, 1, 2, ... and a subscriber can tell exactly which ones it should receive.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::target::Target;

/// Most subscriber sockets one worker process opens: the machine's per-process limit on open
/// files is 20,000 (hard), and a worker needs a few descriptors of its own.
pub const MAX_PER_WORKER: u32 = 19_000;

/// Most messages one run publishes, which bounds its length at any rate.
pub const MAX_MESSAGES: u64 = 10_000_000;

/// Most subscribers one run holds, across all its workers.
pub const MAX_SUBSCRIBERS: u32 = 1_000_000;

/// Maximum length of a run in seconds, whatever the flags.
pub const MAX_RUN_SECS: u64 = 3_600;

/// Flags of `loadgen run`.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct RunArgs {
    /// Base URL of the relay: http://<loopback address>:<port>. Other addresses are rejected.
    #[arg(long)]
    pub url: Target,

    /// Name of the server in the report, such as dropthat or nchan.
    #[arg(long, default_value = "server")]
    pub server_name: String,

    /// Name of the scenario in the report.
    #[arg(long, default_value = "custom")]
    pub scenario: String,

    /// Number of this run of the scenario, for the report.
    #[arg(long, default_value_t = 1)]
    pub run: u32,

    /// Process id of the server, whose CPU time and memory are read from /proc.
    #[arg(long)]
    pub server_pid: Option<u32>,

    /// Subscribers that read their event streams.
    #[arg(long, default_value_t = 100)]
    pub subscribers: u32,

    /// Subscribers that stop reading their socket after the response head (stalled readers).
    #[arg(long, default_value_t = 0)]
    pub stalled: u32,

    /// Channels the subscribers are spread over, round robin.
    #[arg(long, default_value_t = 1)]
    pub channels: u32,

    /// Messages to publish, spread over the channels round robin.
    #[arg(long, default_value_t = 0)]
    pub messages: u64,

    /// Messages per second across all publishers; 0 sends as fast as the publishers can.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,

    /// Concurrent publisher connections, each sending one request at a time.
    #[arg(long, default_value_t = 4)]
    pub publishers: u32,

    /// Bytes of filler ciphertext in each message's `ct` field.
    #[arg(long, default_value_t = 64)]
    pub ciphertext_bytes: usize,

    /// New subscriber connections per second, across all workers.
    #[arg(long, default_value_t = 1_000.0)]
    pub ramp_rate: f64,

    /// Connection handshakes in flight at once, per worker.
    #[arg(long, default_value_t = 256)]
    pub max_handshakes: u32,

    /// Subscribers per worker process; the workers needed are started.
    #[arg(long, default_value_t = 5_000)]
    pub per_worker: u32,

    /// Source addresses in 127.0.0.0/8 that subscribers bind, round robin, so that no single
    /// address runs out of ephemeral ports.
    #[arg(long, default_value_t = 64)]
    pub source_addresses: u32,

    /// Seconds to hold the connected subscribers before publishing.
    #[arg(long, default_value_t = 0.0)]
    pub hold_secs: f64,

    /// Seconds without a new delivery after which the last publish counts as drained.
    #[arg(long, default_value_t = 5.0)]
    pub drain_secs: f64,

    /// Milliseconds between readings of the server's CPU time and memory.
    #[arg(long, default_value_t = 250)]
    pub sample_ms: u64,

    /// Seconds allowed for one connection and its response head.
    #[arg(long, default_value_t = 10.0)]
    pub connect_timeout_secs: f64,

    /// Seconds the whole run may take; every phase stops by this deadline.
    #[arg(long, default_value_t = 600)]
    pub max_secs: u64,

    /// Prefix of the channel names, followed by the run id and the channel index.
    #[arg(long, default_value = "lg")]
    pub channel_prefix: String,

    /// Writes the report as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,

    /// Exits with status 1 if any connection, publish or delivery failed.
    #[arg(long)]
    pub check: bool,
}

/// Error from checking the flags.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("--{flag} is {value}, above the maximum of {maximum}")]
    TooLarge {
        flag: &'static str,
        value: u64,
        maximum: u64,
    },

    #[error("--{flag} must be at least 1")]
    Zero { flag: &'static str },

    #[error("--{flag} is {value}; it must be a finite number of at least 0")]
    InvalidNumber { flag: &'static str, value: f64 },

    #[error("--channels is {channels}, more than the {subscribers} subscribers")]
    ChannelsExceedSubscribers { channels: u32, subscribers: u32 },

    #[error("--channel-prefix {prefix:?} must be 1 to 8 characters of A-Z, a-z, 0-9 and '_'")]
    InvalidPrefix { prefix: String },
}

/// Checks the flags against their limits before anything starts.
pub fn validate(args: &RunArgs) -> Result<(), PlanError> {
    let at_most = |flag, value: u64, maximum: u64| {
        if value > maximum {
            return Err(PlanError::TooLarge {
                flag,
                value,
                maximum,
            });
        }
        Ok(())
    };
    at_most(
        "subscribers",
        args.subscribers.into(),
        MAX_SUBSCRIBERS.into(),
    )?;
    at_most("stalled", args.stalled.into(), MAX_SUBSCRIBERS.into())?;
    at_most("messages", args.messages, MAX_MESSAGES)?;
    at_most("per-worker", args.per_worker.into(), MAX_PER_WORKER.into())?;
    at_most("max-secs", args.max_secs, MAX_RUN_SECS)?;
    at_most("source-addresses", args.source_addresses.into(), 254 * 254)?;
    at_most("ciphertext-bytes", args.ciphertext_bytes as u64, 24 * 1024)?;

    for (flag, value) in [
        ("channels", args.channels),
        ("publishers", args.publishers),
        ("per-worker", args.per_worker),
        ("source-addresses", args.source_addresses),
        ("max-handshakes", args.max_handshakes),
    ] {
        if value == 0 {
            return Err(PlanError::Zero { flag });
        }
    }
    for (flag, value) in [
        ("rate", args.rate),
        ("hold-secs", args.hold_secs),
        ("drain-secs", args.drain_secs),
        ("connect-timeout-secs", args.connect_timeout_secs),
    ] {
        if !value.is_finite() || value < 0.0 {
            return Err(PlanError::InvalidNumber { flag, value });
        }
    }
    if !args.ramp_rate.is_finite() || args.ramp_rate <= 0.0 {
        return Err(PlanError::InvalidNumber {
            flag: "ramp-rate",
            value: args.ramp_rate,
        });
    }
    let readers = args.subscribers.max(args.stalled);
    if args.channels > readers.max(1) {
        return Err(PlanError::ChannelsExceedSubscribers {
            channels: args.channels,
            subscribers: readers,
        });
    }
    let prefix = &args.channel_prefix;
    if prefix.is_empty()
        || prefix.len() > 8
        || !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(PlanError::InvalidPrefix {
            prefix: prefix.chars().take(16).collect(),
        });
    }
    Ok(())
}

/// Returns the number of worker processes for the run.
pub fn worker_count(args: &RunArgs) -> u32 {
    let total = args.subscribers + args.stalled;
    total.div_ceil(args.per_worker).max(1)
}

/// The part of a run that one worker process carries out, sent to it as JSON on its stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerPlan {
    pub target: Target,
    pub run_id: u64,
    pub channel_prefix: String,
    pub index: u32,
    pub workers: u32,
    pub subscribers: u32,
    pub stalled: u32,
    pub channels: u32,
    pub messages: u64,
    /// New connections per second for this worker alone.
    pub ramp_rate: f64,
    pub max_handshakes: u32,
    pub source_addresses: u32,
    pub connect_timeout: Duration,
    /// Time from the worker's start after which it closes everything and reports.
    pub deadline: Duration,
}

/// One subscriber of a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberSpec {
    /// Index among all subscribers of the run.
    pub index: u32,
    /// Position of this subscriber in its worker's ramp.
    pub local_index: u32,
    pub channel: u32,
    pub source: IpAddr,
    pub stalled: bool,
}

impl WorkerPlan {
    /// Lists this worker's subscribers in ramp order.
    pub fn subscribers(&self) -> Vec<SubscriberSpec> {
        let total = self.subscribers + self.stalled;
        (self.index..total)
            .step_by(self.workers as usize)
            .enumerate()
            .map(|(local, index)| {
                let stalled = index >= self.subscribers;
                let position = if stalled {
                    index - self.subscribers
                } else {
                    index
                };
                SubscriberSpec {
                    index,
                    // A worker has at most MAX_PER_WORKER subscribers, far below u32::MAX.
                    local_index: local as u32,
                    channel: position % self.channels,
                    source: source_address(index, self.source_addresses),
                    stalled,
                }
            })
            .collect()
    }

    /// Returns the name of channel `channel` in this run.
    pub fn channel_name(&self, channel: u32) -> String {
        channel_name(&self.channel_prefix, self.run_id, channel)
    }

    /// Returns the number of messages published to `channel`.
    pub fn messages_for(&self, channel: u32) -> u64 {
        messages_for(self.messages, self.channels, channel)
    }
}

/// Returns the name of a channel: the prefix, the run id in hex, and the channel index.
pub fn channel_name(prefix: &str, run_id: u64, channel: u32) -> String {
    format!("{prefix}{run_id:x}-{channel}")
}

/// Returns how many of `messages` go to `channel` when they are spread over `channels`.
pub fn messages_for(messages: u64, channels: u32, channel: u32) -> u64 {
    let channels = u64::from(channels);
    messages / channels + u64::from(u64::from(channel) < messages % channels)
}

/// Returns the source address of subscriber `index`: 127.0.x.y, x and y from 1 to 254.
pub fn source_address(index: u32, addresses: u32) -> IpAddr {
    let slot = index % addresses;
    // slot < 254 * 254 (checked by validate), so both octets stay within 1..=254.
    let third = 1 + (slot / 254) as u8;
    let fourth = 1 + (slot % 254) as u8;
    IpAddr::V4(Ipv4Addr::new(127, 0, third, fourth))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: RunArgs,
    }

    fn args(flags: &[&str]) -> RunArgs {
        let mut argv = vec!["loadgen", "--url", "http://127.0.0.1:1"];
        argv.extend_from_slice(flags);
        Cli::parse_from(argv).args
    }

    fn plan(workers: u32, index: u32, subscribers: u32, stalled: u32, channels: u32) -> WorkerPlan {
        WorkerPlan {
            target: "http://127.0.0.1:1".parse().unwrap(),
            run_id: 0xabc,
            channel_prefix: "lg".into(),
            index,
            workers,
            subscribers,
            stalled,
            channels,
            messages: 10,
            ramp_rate: 10.0,
            max_handshakes: 1,
            source_addresses: 3,
            connect_timeout: Duration::from_secs(1),
            deadline: Duration::from_secs(1),
        }
    }

    #[test]
    fn workers_share_subscribers_exactly() {
        let mut seen = Vec::new();
        for index in 0..3 {
            for spec in plan(3, index, 10, 2, 4).subscribers() {
                seen.push((spec.index, spec.channel, spec.stalled));
            }
        }
        seen.sort_unstable();
        let expected: Vec<_> = (0..12)
            .map(|j| {
                if j < 10 {
                    (j, j % 4, false)
                } else {
                    (j, (j - 10) % 4, true)
                }
            })
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn messages_spread_round_robin() {
        let counts: Vec<u64> = (0..4).map(|c| messages_for(10, 4, c)).collect();
        assert_eq!(counts, [3, 3, 2, 2]);
        assert_eq!(counts.iter().sum::<u64>(), 10);
    }

    #[test]
    fn sources_stay_in_loopback() {
        for index in [0, 1, 253, 254, 255, 64_515] {
            let source = source_address(index, 254 * 254);
            assert!(source.is_loopback(), "{source}");
        }
        assert_eq!(source_address(0, 64).to_string(), "127.0.1.1");
        assert_eq!(source_address(65, 64).to_string(), "127.0.1.2");
        assert_eq!(source_address(300, 1_000).to_string(), "127.0.2.47");
    }

    #[test]
    fn channel_names_fit_relay_rules() {
        let name = channel_name("abcdefgh", u64::MAX, u32::MAX);
        assert!(name.len() <= 64);
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn validate_rejects_out_of_range_flags() {
        assert!(validate(&args(&[])).is_ok());
        assert_eq!(
            validate(&args(&["--per-worker", "19001"])),
            Err(PlanError::TooLarge {
                flag: "per-worker",
                value: 19_001,
                maximum: 19_000
            })
        );
        assert_eq!(
            validate(&args(&["--channels", "0"])),
            Err(PlanError::Zero { flag: "channels" })
        );
        assert!(matches!(
            validate(&args(&["--rate=-1"])),
            Err(PlanError::InvalidNumber { flag: "rate", .. })
        ));
        assert!(matches!(
            validate(&args(&["--subscribers", "5", "--channels", "6"])),
            Err(PlanError::ChannelsExceedSubscribers { .. })
        ));
        assert!(matches!(
            validate(&args(&["--channel-prefix", "a-b"])),
            Err(PlanError::InvalidPrefix { .. })
        ));
    }

    #[test]
    fn worker_count_covers_everyone() {
        assert_eq!(worker_count(&args(&["--subscribers", "19000"])), 4);
        assert_eq!(
            worker_count(&args(&["--subscribers", "5000", "--stalled", "1"])),
            2
        );
        assert_eq!(worker_count(&args(&["--subscribers", "0"])), 1);
    }
}
