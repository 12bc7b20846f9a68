//! A recording TCP proxy: everything a browser sends to the relay, and everything the relay sends
//! back, passes through it and is kept for the test to search.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Most bytes kept; a test that passes more than this fails instead of growing without bound.
const CAPTURE_LIMIT: usize = 256 << 20;

/// A proxy on a loopback port that forwards to one upstream address and records the traffic.
pub struct CaptureProxy {
    /// The proxy's own address: point browsers here instead of at the relay.
    pub addr: SocketAddr,
    captured: Arc<Mutex<Vec<u8>>>,
    accept_task: JoinHandle<()>,
}

impl CaptureProxy {
    /// Starts a proxy that forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let captured = Arc::new(Mutex::new(Vec::new()));

        let sink = captured.clone();
        let accept_task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pump(client_read, server_write, sink.clone()));
                tokio::spawn(pump(server_read, client_write, sink.clone()));
            }
        });
        Self {
            addr,
            captured,
            accept_task,
        }
    }

    /// Returns `http://<proxy addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Returns a copy of every byte recorded so far, both directions interleaved.
    pub fn captured(&self) -> Vec<u8> {
        self.captured.lock().expect("capture lock").clone()
    }
}

impl Drop for CaptureProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

/// Copies one direction of a connection, recording each chunk before forwarding it.
async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, sink: Arc<Mutex<Vec<u8>>>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        {
            let mut captured = sink.lock().expect("capture lock");
            assert!(
                captured.len() + n <= CAPTURE_LIMIT,
                "the capture proxy recorded more than {CAPTURE_LIMIT} bytes"
            );
            captured.extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Returns whether `needle` occurs anywhere in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
