//! Load generator for the relay benchmark: keeps many server-sent event subscribers open on a
//! loopback relay, publishes messages that carry their send time, and measures each delivery
//! and the server's CPU and memory.
//!
//! Data flow of a run:
//! - [`coordinator`] validates the [`plan`], starts [`worker`] processes (one process may open
//!   only so many sockets), and talks to them over stdin and stdout ([`protocol`]).
//! - Each worker runs its [`subscriber`]s: a small HTTP client ([`http`]) and an event stream
//!   parser ([`sse`]), accounting for every delivery by its [`envelope`] probe.
//! - The coordinator's [`publisher`]s post the messages on schedule, and [`procstat`] reads
//!   the server's CPU time and memory from /proc.
//! - The [`report`] comes out as JSON and a summary; [`table`] compares reports of two servers.
//!
//! Only loopback targets are accepted ([`target`]), and every loop is bounded in count and time.

pub mod clock;
pub mod coordinator;
pub mod envelope;
pub mod http;
pub mod limits;
pub mod plan;
pub mod procstat;
pub mod protocol;
pub mod publisher;
pub mod report;
pub mod sse;
pub mod subscriber;
pub mod table;
pub mod target;
pub mod worker;
