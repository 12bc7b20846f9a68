//! The dropthat relay: an actix-web server that passes end-to-end encrypted chat messages between
//! the members of a room without being able to read them.
//!
//! A browser subscribes to a channel with server-sent events and publishes ciphertext with a
//! POST; the server fans each message out to the channel's subscribers and keeps a short history
//! for those that reconnect. Encrypted files go through the blob store. The parts, in the order
//! a message flows through them:
//!
//! - [`config`]: command-line flags, environment variables, and the TLS files they name.
//! - [`connection`]: the socket of each accepted connection that actix-web serves, to
//!   disconnect stalled readers.
//! - [`client`]: the client address behind trusted proxies, and the key limits count against.
//! - [`limits`]: concurrent stream limits and per-client token buckets.
//! - [`direct`]: subscriptions and publishes on plain HTTP, served straight from the socket.
//!   At the first other request, the connection goes on to actix-web.
//! - [`routes`]: the HTTP endpoints, their errors and the security headers on every response.
//! - [`body`]: request bodies read with an idle timeout and a time limit.
//! - [`channel`]: validated channel ids, the only name of a room the server receives.
//! - [`envelope`]: the shape check and one-line re-encoding of a published envelope.
//! - [`broker`]: fan-out, history, subscriber counts and delivery figures behind one small
//!   interface, so that a broker shared between processes can stand beside the in-process one.
//! - [`sse`]: encoding of server-sent event frames.
//! - [`blob`]: encrypted blobs on disk, with expiry and a quota.
//! - [`metrics`]: the figures behind `/stats` and `/metrics`.
//! - [`server`]: builds and starts the HTTP server from a [`config::Config`].

pub mod blob;
pub mod body;
pub mod broker;
pub mod channel;
pub mod client;
pub mod config;
pub mod connection;
pub mod direct;
pub mod envelope;
pub mod limits;
pub mod metrics;
pub mod routes;
pub mod server;
pub mod sse;
