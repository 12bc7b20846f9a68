//! The real `dropthat` binary, built once per test process and run on a free loopback port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// Builds the relay binary with the cargo that runs these tests and returns its path.
pub fn binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(build_binary).clone()
}

fn build_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = std::process::Command::new(cargo)
        .current_dir(super::workspace_root())
        .args(["build", "-p", "dropthat-server", "--bin", "dropthat"])
        .args(["--message-format", "json-render-diagnostics"])
        .stderr(Stdio::inherit())
        .output()
        .expect("failed to run cargo build for the relay");
    assert!(output.status.success(), "cargo build of the relay failed");

    String::from_utf8_lossy(&output.stdout)
        .lines()
        .rev()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|message| message.get("executable")?.as_str().map(PathBuf::from))
        .expect("cargo build reported no executable for the relay")
}

/// Returns the built web page directory: `$DROPTHAT_TEST_WWW`, or `dist/` in the workspace.
pub fn www_dir() -> PathBuf {
    let dir = std::env::var_os("DROPTHAT_TEST_WWW")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::workspace_root().join("dist"));
    assert!(
        dir.join("index.html").is_file(),
        "no built page in {}: run `trunk build` first (scripts/test does)",
        dir.display()
    );
    dir
}

/// A running relay process with its own data directory, killed when dropped.
pub struct Relay {
    child: Child,
    /// The address the relay bound.
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    /// The task that reads the process's log until it closes.
    log_reader: JoinHandle<()>,
    data: tempfile::TempDir,
    args: Vec<String>,
    filter: String,
}

impl Relay {
    /// Starts the relay on `127.0.0.1:0` serving the built page, with extra `args`.
    pub async fn start(args: &[&str]) -> Self {
        Self::start_logging(args, "info").await
    }

    /// Starts the relay with `RUST_LOG` set to `filter`.
    pub async fn start_logging(args: &[&str], filter: &str) -> Self {
        let data = tempfile::tempdir().expect("relay data directory");
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (child, addr, log_reader) =
            spawn("127.0.0.1:0", data.path(), &args, filter, &logs).await;
        Self {
            child,
            addr,
            logs,
            log_reader,
            data,
            args,
            filter: filter.to_owned(),
        }
    }

    /// Stops the relay with SIGTERM, as an operator would, and checks that it exits with 0.
    pub async fn stop(&mut self) {
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(Duration::from_secs(30)).await;
        assert_eq!(status.code(), Some(0), "the relay's exit status on SIGTERM");
    }

    /// Starts a stopped relay again on the same address, with the same data directory and
    /// arguments.
    pub async fn start_again(&mut self) {
        let listen = self.addr.to_string();
        let (child, addr, log_reader) = spawn(
            &listen,
            self.data.path(),
            &self.args,
            &self.filter,
            &self.logs,
        )
        .await;
        assert_eq!(addr, self.addr, "the restarted relay bound another address");
        self.child = child;
        self.log_reader = log_reader;
    }

    /// Returns the relay's data directory; blobs are in its `blobs/` folder.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// Returns `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Returns the relay's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Returns the log lines written so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("log lock").clone()
    }

    /// Sends `signal` to the relay process, which this harness started.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = self.pid().expect("the relay is still running") as libc::pid_t;
        // SAFETY: kill(2) takes a pid and a signal number and touches no memory. The pid is
        // that of the child this struct spawned, which is not reaped before `wait_exit`.
        let result = unsafe { libc::kill(pid, signal) };
        assert_eq!(result, 0, "kill({pid}, {signal}) failed");
    }

    /// Waits up to `timeout` for the relay to exit and returns its status. The log lines it
    /// wrote before it exited are all in [`Relay::logs`] by then.
    pub async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        tokio::time::timeout(timeout, async {
            let status = self.child.wait().await.expect("waiting for the relay");
            // The pipe closes when the process exits, so the reader ends once it has the rest.
            (&mut self.log_reader).await.expect("the log reader task");
            status
        })
        .await
        .unwrap_or_else(|_| panic!("the relay did not exit within {timeout:?}"))
    }

    /// Returns the relay's resident memory in KiB, from `/proc/<pid>/status`.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.pid().expect("the relay is still running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .expect("reading the relay's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS line in /proc status")
    }
}

/// Starts the relay binary on `listen` and waits for its "listening" log line, returning the
/// process and the address it bound. Log lines go to `logs`.
async fn spawn(
    listen: &str,
    data: &Path,
    args: &[String],
    filter: &str,
    logs: &Arc<Mutex<Vec<String>>>,
) -> (Child, SocketAddr, JoinHandle<()>) {
    let mut child = Command::new(binary())
        .args(["--listen", listen, "--www"])
        .arg(www_dir())
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env("RUST_LOG", filter)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("failed to start the relay binary");

    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("reading relay logs") {
            let addr = listening_address(&line);
            logs.lock().expect("log lock").push(line);
            if let Some(addr) = addr {
                return addr;
            }
        }
        panic!("the relay exited before it was listening");
    })
    .await
    .expect("the relay did not report its address within 30 s");

    // Keep draining the log so the relay never blocks on a full pipe.
    let sink = logs.clone();
    let log_reader = tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().expect("log lock").push(line);
        }
    });
    (child, addr, log_reader)
}

/// Parses the address from the relay's "listening" log line.
fn listening_address(line: &str) -> Option<SocketAddr> {
    if !line.contains("listening") {
        return None;
    }
    let start = line.find("address=")? + "address=".len();
    line[start..].split_whitespace().next()?.parse().ok()
}
