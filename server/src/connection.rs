//! Per-connection data captured when a connection is accepted, so a route can shut down the
//! socket of a subscriber that stopped reading, or stop reading a body that stopped arriving.
//!
//! actix-web stops polling a response body while the connection's write buffer is full, so a
//! stream cannot end itself once its reader stalls: the socket must be shut down from outside.
//! `shutdown(2)` makes the pending write fail, and actix then drops the connection.

use std::any::Any;
use std::os::fd::{AsRawFd, RawFd};

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;

/// The socket of an accepted connection, stored in the connection's extensions.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionSocket(RawFd);

/// Records the socket of a new plain or TLS connection; passed to `HttpServer::on_connect`.
pub fn record_socket(connection: &dyn Any, data: &mut Extensions) {
    let fd = if let Some(tcp) = connection.downcast_ref::<TcpStream>() {
        tcp.as_raw_fd()
    } else if let Some(tls) = connection.downcast_ref::<TlsStream<TcpStream>>() {
        tls.get_ref().0.as_raw_fd()
    } else {
        return;
    };
    data.insert(ConnectionSocket(fd));
}

impl ConnectionSocket {
    /// Makes a closer for this socket, to be held by the response body of the same request.
    ///
    /// The closer must be dropped no later than the response body: actix-http's h1 dispatcher
    /// drops the response body before the connection's socket, so while the body is alive the
    /// descriptor still belongs to this connection and cannot have been reused.
    pub fn closer(self) -> ConnectionCloser {
        ConnectionCloser(self.0)
    }
}

impl ConnectionSocket {
    /// Shuts down the receiving side of the socket, for a request whose body stopped arriving
    /// and got an error response. actix-http otherwise keeps such a connection open for the
    /// rest of the body, with no timer. After this its next read returns end of file, so it
    /// closes the connection once the response is written.
    ///
    /// Call it only while the request is being handled: the connection, and so the descriptor,
    /// is then still open.
    pub fn stop_reading(self) {
        // SAFETY: shutdown(2) takes a descriptor and a flag and touches no memory. The
        // descriptor is this connection's open socket while its request is handled.
        let result = unsafe { libc::shutdown(self.0, libc::SHUT_RD) };
        if result != 0 {
            let error = std::io::Error::last_os_error();
            tracing::debug!(%error, "shutting down the receiving side of a socket failed");
        }
    }
}

/// Shuts down one connection's socket. Held inside the subscriber queue, which the response
/// body owns and which drops the closer when the body is dropped.
#[derive(Debug)]
pub struct ConnectionCloser(RawFd);

impl ConnectionCloser {
    /// Shuts the socket down in both directions, which ends the connection without closing
    /// the descriptor: actix still owns it and closes it when it drops the connection.
    pub fn shut_down(self) {
        // SAFETY: shutdown(2) takes a descriptor and a flag and touches no memory. The
        // descriptor is this connection's open socket, by the rule on `ConnectionSocket::closer`.
        let result = unsafe { libc::shutdown(self.0, libc::SHUT_RDWR) };
        if result != 0 {
            let error = std::io::Error::last_os_error();
            tracing::debug!(%error, "shutting down a stalled subscriber's socket failed");
        }
    }
}
