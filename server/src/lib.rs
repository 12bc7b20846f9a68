//! The dropthat relay: an actix-web server that passes end-to-end encrypted chat messages between
//! the members of a room without being able to read them.
//!
//! A browser subscribes to a channel with server-sent events and publishes ciphertext with a
//! POST; the server fans each message out to the channel's subscribers. The parts, in the order a
//! message flows through them:
//!
//! - [`config`]: command-line flags and environment variables.
//! - [`channel`]: validated channel ids, the only name of a room the server sees.
//! - [`routes`]: the HTTP endpoints, their errors and the security headers on every response.
//! - [`broker`]: fan-out and subscriber counts behind one small interface, so that a broker
//!   shared between processes can stand beside the in-process one.
//! - [`sse`]: encoding of server-sent event frames.
//! - [`server`]: builds and starts the HTTP server from a [`config::Config`].

pub mod broker;
pub mod channel;
pub mod config;
pub mod routes;
pub mod server;
pub mod sse;
