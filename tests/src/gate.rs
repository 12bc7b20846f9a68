//! A TCP forwarder that a test can close and open, to cut one browser off from the relay while
//! the others stay connected.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A loopback port that forwards connections to an upstream address while open. Closing it
/// drops every forwarded connection and closes new ones at once, as a lost network would.
pub struct Gate {
    /// The gate's own address: point a browser here instead of at the relay.
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept_task: JoinHandle<()>,
}

impl Gate {
    /// Starts an open gate on `127.0.0.1` that forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        Self::start_at("127.0.0.1", upstream).await
    }

    /// Starts an open gate on the loopback address `ip` (any of 127.0.0.0/8 on Linux), so a
    /// browser reaches the relay under a host name other than `127.0.0.1`.
    pub async fn start_at(ip: &str, upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind gate");
        let addr = listener.local_addr().expect("gate address");
        let open = Arc::new(AtomicBool::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));

        let accept_open = open.clone();
        let accept_connections = connections.clone();
        let accept_task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !accept_open.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let forward = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = copy_bidirectional(&mut client, &mut server).await;
                });
                let mut connections = accept_connections.lock().expect("gate lock");
                connections.retain(|task| !task.is_finished());
                connections.push(forward);
            }
        });
        Self {
            addr,
            open,
            connections,
            accept_task,
        }
    }

    /// Returns `http://<gate addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Drops every forwarded connection and closes new ones until [`Gate::open`].
    pub fn close(&self) {
        self.open.store(false, Ordering::SeqCst);
        for task in self.connections.lock().expect("gate lock").drain(..) {
            task.abort();
        }
    }

    /// Forwards new connections again.
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.close();
    }
}
