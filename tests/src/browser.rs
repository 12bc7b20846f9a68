//! Headless Chromium driven through chromedriver, one chromedriver process per browser.

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::process::{Child, Command};

/// Path of chromedriver, overridable with `$CHROMEDRIVER`.
fn chromedriver_path() -> String {
    std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned())
}

/// Path of Chromium, overridable with `$CHROMIUM`.
fn chromium_path() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

/// A headless Chromium session. Dropping it ends chromedriver and the browser it started.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
    downloads: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a browser window of `width` by `height`.
    /// Widths below Chromium's smallest window (500 pixels) use mobile emulation, so that the
    /// page's viewport has the width asked for.
    pub async fn launch(width: u32, height: u32) -> Self {
        Self::launch_with(width, height, false, &[]).await
    }

    /// Starts a browser like [`Browser::launch`] whose pages prefer a dark color scheme.
    pub async fn launch_dark(width: u32, height: u32) -> Self {
        Self::launch_with(width, height, true, &[]).await
    }

    /// Starts a browser like [`Browser::launch`] that resolves the host name `host` to
    /// 127.0.0.1, so a page can be loaded from a name that is not this machine's while every
    /// connection stays on loopback. Chromium still treats the page as coming from `host`.
    pub async fn launch_resolving(width: u32, height: u32, host: &str) -> Self {
        let rule = format!("--host-resolver-rules=MAP {host} 127.0.0.1");
        Self::launch_with(width, height, false, &[rule]).await
    }

    async fn launch_with(width: u32, height: u32, dark: bool, extra_args: &[String]) -> Self {
        let port = free_port();
        let driver = Command::new(chromedriver_path())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so dropping the browser can end Chromium too.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .expect("failed to start chromedriver; install chromium-driver");

        let profile = tempfile::tempdir().expect("browser profile directory");
        let downloads = tempfile::tempdir().expect("browser download directory");
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "binary": chromium_path(),
                "prefs": {
                    "download.default_directory": downloads.path(),
                    "download.prompt_for_download": false,
                },
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.path().display()),
                    format!("--window-size={width},{height}"),
                ],
            }
        });
        let mut capabilities = capabilities;
        let args = capabilities["goog:chromeOptions"]["args"].as_array_mut();
        let args = args.expect("the options above have an argument list");
        args.extend(extra_args.iter().cloned().map(serde_json::Value::from));
        if dark {
            // Blink's preferred color scheme 0 is dark: the page's prefers-color-scheme.
            args.push("--blink-settings=preferredColorScheme=0".into());
        }
        if width < 500 {
            capabilities["goog:chromeOptions"]["mobileEmulation"] = serde_json::json!({
                "deviceMetrics": { "width": width, "height": height, "pixelRatio": 1.0, "touch": true },
            });
        }
        let capabilities = match capabilities {
            serde_json::Value::Object(map) => map,
            _ => unreachable!("the literal above is an object"),
        };

        let url = format!("http://127.0.0.1:{port}");
        let client = connect_with_retry(&url, capabilities).await;
        Self {
            client,
            driver,
            _profile: profile,
            downloads,
        }
    }

    /// Returns the directory where this browser saves downloads.
    pub fn downloads_dir(&self) -> &Path {
        self.downloads.path()
    }

    /// Waits until a download named `name` has finished and returns its bytes.
    pub async fn downloaded(&self, name: &str) -> Vec<u8> {
        let path = self.downloads.path().join(name);
        crate::eventually(
            &format!("the download {name:?}"),
            Duration::from_secs(30),
            || async { self.finished_download(&path) },
        )
        .await
    }

    /// Reads a download once Chromium has finished it. Chromium creates the final file empty
    /// before it writes the content to a `.crdownload` file and renames that over it, so an
    /// empty file or any `.crdownload` file means the download is still running.
    fn finished_download(&self, path: &Path) -> Option<Vec<u8>> {
        let running = std::fs::read_dir(self.downloads.path())
            .ok()?
            .filter_map(Result::ok)
            .any(|entry| entry.path().extension().is_some_and(|e| e == "crdownload"));
        if running {
            return None;
        }
        std::fs::read(path).ok().filter(|bytes| !bytes.is_empty())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(pid) = self.driver.id() {
            // SAFETY: kill(2) with a negative pid signals the process group this struct created
            // for chromedriver; it touches no memory.
            unsafe {
                libc::kill(-(pid as i32), libc::SIGKILL);
            }
        }
    }
}

async fn connect_with_retry(
    url: &str,
    capabilities: serde_json::Map<String, serde_json::Value>,
) -> Client {
    let mut last_error = None;
    for _ in 0..100 {
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities.clone());
        match builder.connect(url).await {
            Ok(client) => return client,
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("could not start a Chromium session through chromedriver: {last_error:?}");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
