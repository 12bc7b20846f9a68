//! Storage of encrypted blobs (images and files) in a data directory, with expiry and a quota.
//!
//! Layout: `<data dir>/blobs/<id>` contains finished blobs, named by 32 lowercase hex digits of a
//! random 128-bit id, and `<data dir>/tmp/` contains uploads in progress. An upload is written to
//! a temporary file, synced, and renamed into `blobs/`, so a crash leaves at most a stray
//! temporary file (removed at the next start) and never a partial blob under a real id.
//!
//! A blob expires a fixed time after it was written, by its modification time, so expiry
//! survives restarts. Reads treat an expired blob as gone at once; [`BlobStore::sweep`]
//! deletes the files. The quota counts finished blobs plus the bytes that uploads in progress
//! have written so far. Each client may take a share of it, counted the same way over the
//! blobs it uploaded since the relay started, until they expire.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::body::BodyError;
use crate::client::ClientKey;

/// Settings of a [`BlobStore`].
#[derive(Debug, Clone)]
pub struct BlobSettings {
    pub dir: PathBuf,
    /// Maximum blob size, in bytes.
    pub max_size: u64,
    /// Maximum bytes of all blobs together, uploads in progress included.
    pub quota: u64,
    /// Maximum bytes of the blobs of one client, uploads in progress included, so that one
    /// client cannot fill the whole quota for everyone.
    pub client_quota: u64,
    /// How long a blob is kept after it was written.
    pub expiry: Duration,
}

/// A blob's id: 128 random bits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobId([u8; 16]);

impl BlobId {
    /// Draws a new id from the operating system's random source.
    pub fn random() -> Result<Self, BlobError> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(BlobError::Random)?;
        Ok(Self(bytes))
    }

    /// Parses 32 lowercase hex digits.
    pub fn parse(text: &str) -> Result<Self, BlobError> {
        let valid =
            text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            return Err(BlobError::InvalidId {
                id: text.chars().take(40).collect(),
            });
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            // The check above admits only hex digits, so every pair parses.
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|_| {
                BlobError::InvalidId {
                    id: text.to_owned(),
                }
            })?;
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({self})")
    }
}

/// Error from the blob store.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("invalid blob id {id:?}: expected 32 lowercase hex digits")]
    InvalidId { id: String },

    #[error("blob {id} does not exist or has expired")]
    NotFound { id: BlobId },

    #[error("the blob has {actual} bytes or more, above the limit of {limit} bytes")]
    TooLarge { actual: u64, limit: u64 },

    #[error("the relay's blob storage is full ({quota} bytes); retry after older blobs expire")]
    QuotaExceeded { quota: u64 },

    #[error(
        "this client's blobs already take {used} bytes of its {limit}-byte share of the relay's \
         storage; retry after its older blobs expire"
    )]
    ClientQuotaExceeded {
        used: u64,
        limit: u64,
        /// Time until the client's oldest blob expires, when it has one.
        retry_after: Option<Duration>,
    },

    #[error("{0}")]
    Body(#[from] BodyError),

    #[error("failed to {operation} {}: {source}", path.display())]
    Io {
        operation: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[error("the operating system's random source failed: {0}")]
    Random(getrandom::Error),
}

/// A blob just stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBlob {
    pub id: BlobId,
    pub bytes: u64,
}

/// The figures of a blob store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BlobStats {
    /// Blobs stored now.
    pub blobs: u64,
    /// Bytes of the blobs stored now.
    pub blob_bytes: u64,
}

/// Blobs in a data directory. Cheap to clone.
#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<Inner>,
}

struct Inner {
    settings: BlobSettings,
    blobs_dir: PathBuf,
    tmp_dir: PathBuf,
    /// A std mutex suits: it guards three counters and is never held across an await.
    usage: Mutex<Usage>,
}

#[derive(Debug, Default)]
struct Usage {
    blobs: u64,
    bytes: u64,
    /// Bytes written by uploads still in progress.
    reserved: u64,
    /// The share of each client that has a blob or an upload in progress. The sweeper removes
    /// clients whose blobs have all expired.
    clients: HashMap<ClientKey, ClientShare>,
}

/// The part of the quota that one client's blobs take. It starts empty at every start of the
/// relay, because blob files do not record who uploaded them.
#[derive(Debug, Default)]
struct ClientShare {
    /// The client's finished blobs, oldest first, each as its expiry time and its bytes.
    blobs: VecDeque<(Instant, u64)>,
    /// Bytes of `blobs`.
    stored: u64,
    /// Bytes written by the client's uploads in progress.
    reserved: u64,
}

impl ClientShare {
    fn forget_expired(&mut self, now: Instant) {
        while let Some(&(expires, bytes)) = self.blobs.front() {
            if expires > now {
                break;
            }
            self.blobs.pop_front();
            self.stored -= bytes;
        }
    }

    fn is_empty(&self) -> bool {
        self.blobs.is_empty() && self.reserved == 0
    }
}

impl Usage {
    /// Checks that `more` bytes fit in the quota and in `client`'s share, and reserves them
    /// for an upload in progress.
    fn reserve(
        &mut self,
        settings: &BlobSettings,
        client: Option<ClientKey>,
        more: u64,
    ) -> Result<(), BlobError> {
        self.check(settings, client, more)?;
        self.reserved += more;
        if let Some(client) = client {
            self.clients.entry(client).or_default().reserved += more;
        }
        Ok(())
    }

    fn check(
        &mut self,
        settings: &BlobSettings,
        client: Option<ClientKey>,
        more: u64,
    ) -> Result<(), BlobError> {
        if self.bytes + self.reserved + more > settings.quota {
            return Err(BlobError::QuotaExceeded {
                quota: settings.quota,
            });
        }
        let Some(client) = client else {
            return Ok(());
        };
        let now = Instant::now();
        let (used, oldest) = match self.clients.get_mut(&client) {
            Some(share) => {
                share.forget_expired(now);
                let oldest = share.blobs.front().map(|(expires, _)| *expires);
                (share.stored + share.reserved, oldest)
            }
            None => (0, None),
        };
        if used + more > settings.client_quota {
            return Err(BlobError::ClientQuotaExceeded {
                used,
                limit: settings.client_quota,
                retry_after: oldest.map(|expires| expires.saturating_duration_since(now)),
            });
        }
        Ok(())
    }

    /// Releases the bytes an upload reserved. When the upload was stored, `stored` is its
    /// blob's expiry time, and the bytes move to the finished blobs.
    fn release(&mut self, client: Option<ClientKey>, bytes: u64, stored: Option<Instant>) {
        self.reserved -= bytes;
        if stored.is_some() {
            self.bytes += bytes;
            self.blobs += 1;
        }
        let Some(client) = client else {
            return;
        };
        let Some(share) = self.clients.get_mut(&client) else {
            return;
        };
        share.reserved -= bytes;
        if let Some(expires) = stored {
            share.blobs.push_back((expires, bytes));
            share.stored += bytes;
        }
        if share.is_empty() {
            self.clients.remove(&client);
        }
    }
}

impl BlobStore {
    /// Opens the store: creates the directories, removes uploads a crash left behind, and
    /// counts the blobs already there, deleting those that expired while the relay was down.
    pub fn open(settings: BlobSettings) -> Result<Self, BlobError> {
        let blobs_dir = settings.dir.join("blobs");
        let tmp_dir = settings.dir.join("tmp");
        for dir in [&blobs_dir, &tmp_dir] {
            std::fs::create_dir_all(dir).map_err(|source| BlobError::Io {
                operation: "create the directory",
                path: dir.clone(),
                source,
            })?;
        }
        let leftovers = remove_all_in(&tmp_dir)?;
        if leftovers > 0 {
            tracing::info!(
                files = leftovers,
                "removed unfinished uploads from before a restart"
            );
        }

        let store = Self {
            inner: Arc::new(Inner {
                settings,
                blobs_dir,
                tmp_dir,
                usage: Mutex::default(),
            }),
        };
        let (current, expired) = store.scan()?;
        tracing::info!(
            blobs = current.blobs,
            bytes = current.blob_bytes,
            expired,
            dir = %store.inner.settings.dir.display(),
            "blob store opened"
        );
        Ok(store)
    }

    /// Returns the settings the store was opened with.
    pub fn settings(&self) -> &BlobSettings {
        &self.inner.settings
    }

    /// Returns the blobs stored now and their bytes.
    pub fn stats(&self) -> BlobStats {
        let usage = self.inner.lock();
        BlobStats {
            blobs: usage.blobs,
            blob_bytes: usage.bytes,
        }
    }

    /// Stores the bytes of `body` as a new blob, counted in `client`'s share. `declared_len`
    /// is the request's Content-Length, checked against the limits before any byte is
    /// written.
    pub async fn store<S>(
        &self,
        mut body: S,
        declared_len: Option<u64>,
        client: Option<ClientKey>,
    ) -> Result<StoredBlob, BlobError>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
    {
        let limit = self.inner.settings.max_size;
        if let Some(declared) = declared_len {
            if declared > limit {
                return Err(BlobError::TooLarge {
                    actual: declared,
                    limit,
                });
            }
            self.inner
                .lock()
                .check(&self.inner.settings, client, declared)?;
        }

        let id = BlobId::random()?;
        let mut upload = Upload::create(self.inner.clone(), &id, client).await?;
        while let Some(chunk) = body.next().await {
            upload.write(&chunk?).await?;
        }
        upload.finish(id).await
    }

    /// Returns the path of a blob that exists and has not expired.
    pub async fn path(&self, id: BlobId) -> Result<PathBuf, BlobError> {
        let path = self.inner.blobs_dir.join(id.to_string());
        let metadata = match tokio::fs::metadata(&path).await {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BlobError::NotFound { id });
            }
            Err(source) => {
                return Err(BlobError::Io {
                    operation: "read the metadata of",
                    path,
                    source,
                });
            }
        };
        if self.inner.is_expired(&metadata, SystemTime::now()) {
            return Err(BlobError::NotFound { id });
        }
        Ok(path)
    }

    /// Deletes expired blobs. Blocking: call it from a blocking thread.
    pub fn sweep(&self) -> Result<u64, BlobError> {
        let (_, expired) = self.scan()?;
        if expired > 0 {
            tracing::info!(expired, "deleted expired blobs");
        }
        Ok(expired)
    }

    /// Walks `blobs/`, deleting expired blobs and recounting the rest. Returns the figures
    /// after the walk and the number of blobs deleted.
    fn scan(&self) -> Result<(BlobStats, u64), BlobError> {
        let dir = &self.inner.blobs_dir;
        let read_error = |source| BlobError::Io {
            operation: "list",
            path: dir.clone(),
            source,
        };
        let now = SystemTime::now();
        let (mut blobs, mut bytes, mut expired) = (0u64, 0u64, 0u64);

        for entry in std::fs::read_dir(dir).map_err(read_error)? {
            let entry = entry.map_err(read_error)?;
            let is_blob = entry
                .file_name()
                .to_str()
                .is_some_and(|name| BlobId::parse(name).is_ok());
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            if !is_blob || !metadata.is_file() {
                continue;
            }
            if !self.inner.is_expired(&metadata, now) {
                blobs += 1;
                bytes += metadata.len();
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => expired += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(%error, path = %entry.path().display(), "failed to delete an expired blob");
                    blobs += 1;
                    bytes += metadata.len();
                }
            }
        }

        // Uploads that finish during the walk may or may not have been seen by it; the
        // recount is exact again after the next sweep.
        let mut usage = self.inner.lock();
        usage.blobs = blobs;
        usage.bytes = bytes;
        let now = Instant::now();
        usage.clients.retain(|_, share| {
            share.forget_expired(now);
            !share.is_empty()
        });
        Ok((
            BlobStats {
                blobs,
                blob_bytes: bytes,
            },
            expired,
        ))
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Usage> {
        // Every critical section is a few additions that cannot stop halfway.
        self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_expired(&self, metadata: &std::fs::Metadata, now: SystemTime) -> bool {
        let Ok(written) = metadata.modified() else {
            return false;
        };
        now.duration_since(written)
            .is_ok_and(|age| age >= self.settings.expiry)
    }
}

/// An upload in progress: its temporary file and the bytes it reserved against the quota.
/// Dropping it before [`Upload::finish`], as happens when the client disconnects and the
/// request is dropped, deletes the file and releases the bytes.
struct Upload {
    store: Arc<Inner>,
    /// The client whose share the upload counts in.
    client: Option<ClientKey>,
    file: Option<tokio::fs::File>,
    tmp_path: PathBuf,
    written: u64,
    finished: bool,
}

impl Upload {
    async fn create(
        store: Arc<Inner>,
        id: &BlobId,
        client: Option<ClientKey>,
    ) -> Result<Self, BlobError> {
        let tmp_path = store.tmp_dir.join(format!("{id}.part"));
        let file = tokio::fs::File::create(&tmp_path)
            .await
            .map_err(|source| BlobError::Io {
                operation: "create",
                path: tmp_path.clone(),
                source,
            })?;
        Ok(Self {
            store,
            client,
            file: Some(file),
            tmp_path,
            written: 0,
            finished: false,
        })
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        let more = chunk.len() as u64;
        let limit = self.store.settings.max_size;
        if self.written + more > limit {
            return Err(BlobError::TooLarge {
                actual: self.written + more,
                limit,
            });
        }
        self.store
            .lock()
            .reserve(&self.store.settings, self.client, more)?;
        self.written += more;

        let Some(file) = self.file.as_mut() else {
            return Err(self.io_error("write", io::ErrorKind::BrokenPipe.into()));
        };
        file.write_all(chunk)
            .await
            .map_err(|e| self.io_error("write", e))
    }

    async fn finish(mut self, id: BlobId) -> Result<StoredBlob, BlobError> {
        let Some(mut file) = self.file.take() else {
            return Err(self.io_error("write", io::ErrorKind::BrokenPipe.into()));
        };
        file.flush().await.map_err(|e| self.io_error("write", e))?;
        file.sync_all()
            .await
            .map_err(|e| self.io_error("sync", e))?;
        drop(file);

        let final_path = self.store.blobs_dir.join(id.to_string());
        tokio::fs::rename(&self.tmp_path, &final_path)
            .await
            .map_err(|e| self.io_error("rename", e))?;
        self.finished = true;

        let expires = Instant::now() + self.store.settings.expiry;
        self.store
            .lock()
            .release(self.client, self.written, Some(expires));
        Ok(StoredBlob {
            id,
            bytes: self.written,
        })
    }

    fn io_error(&self, operation: &'static str, source: io::Error) -> BlobError {
        BlobError::Io {
            operation,
            path: self.tmp_path.clone(),
            source,
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.finished {
            // Dropping the tokio file first closes its descriptor on the blocking pool; the
            // unlink does not need to wait for that on Linux.
            self.file = None;
            if let Err(error) = std::fs::remove_file(&self.tmp_path)
                && error.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(%error, path = %self.tmp_path.display(), "failed to delete an unfinished upload");
            }
            self.store.lock().release(self.client, self.written, None);
        }
    }
}

/// Deletes every file in `dir`, returning how many there were.
fn remove_all_in(dir: &Path) -> Result<u64, BlobError> {
    let io_error = |operation, source| BlobError::Io {
        operation,
        path: dir.to_owned(),
        source,
    };
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| io_error("list", e))? {
        let entry = entry.map_err(|e| io_error("list", e))?;
        std::fs::remove_file(entry.path()).map_err(|e| io_error("clean up", e))?;
        removed += 1;
    }
    Ok(removed)
}

/// Deletes expired blobs of `store` every `interval`, on the blocking thread pool, until the
/// store's last other handle is dropped.
pub async fn sweep_periodically(store: BlobStore, interval: Duration) {
    let weak = Arc::downgrade(&store.inner);
    drop(store);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let store = BlobStore { inner };
        match tokio::task::spawn_blocking(move || store.sweep()).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, "blob sweep failed"),
            Err(error) => tracing::warn!(%error, "blob sweep task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::stream;

    use super::*;

    fn settings(dir: &Path) -> BlobSettings {
        BlobSettings {
            dir: dir.to_owned(),
            max_size: 100,
            quota: 250,
            client_quota: 150,
            expiry: Duration::from_secs(3600),
        }
    }

    fn body(chunks: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, BodyError>> + Unpin {
        stream::iter(
            chunks
                .iter()
                .map(|c| Ok(Bytes::from_static(c)))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn blob_id_round_trips_hex() {
        let id = BlobId::random().unwrap();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(BlobId::parse(&text).unwrap(), id);
        for bad in [
            "",
            "xyz",
            &text.to_uppercase(),
            &format!("{text}0"),
            "../../etc/passwd",
        ] {
            assert!(BlobId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn stored_blob_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(settings(dir.path())).unwrap();
        let stored = store
            .store(body(&[b"abc", b"def"]), None, None)
            .await
            .unwrap();
        assert_eq!(stored.bytes, 6);
        let path = store.path(stored.id).await.unwrap();
        assert_eq!(std::fs::read(path).unwrap(), b"abcdef");
        assert_eq!(
            store.stats(),
            BlobStats {
                blobs: 1,
                blob_bytes: 6
            }
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn oversized_and_over_quota_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(settings(dir.path())).unwrap();
        let declared = store.store(body(&[]), Some(101), None).await;
        assert!(matches!(
            declared,
            Err(BlobError::TooLarge {
                actual: 101,
                limit: 100
            })
        ));
        let streamed = store.store(body(&[&[0; 60], &[0; 60]]), None, None).await;
        assert!(matches!(
            streamed,
            Err(BlobError::TooLarge {
                actual: 120,
                limit: 100
            })
        ));

        store.store(body(&[&[0; 100]]), None, None).await.unwrap();
        store.store(body(&[&[0; 100]]), None, None).await.unwrap();
        let full = store.store(body(&[&[0; 60]]), None, None).await;
        assert!(matches!(full, Err(BlobError::QuotaExceeded { quota: 250 })));
        assert_eq!(store.stats().blob_bytes, 200);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn client_share_limits_one_client() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(settings(dir.path())).unwrap();
        let client = |text: &str| Some(ClientKey::of(text.parse().unwrap()));
        let first = client("192.0.2.1");

        store.store(body(&[&[0; 100]]), None, first).await.unwrap();
        let declared = store.store(body(&[]), Some(60), first).await;
        assert!(matches!(
            declared,
            Err(BlobError::ClientQuotaExceeded {
                used: 100,
                limit: 150,
                retry_after: Some(_)
            })
        ));
        let streamed = store.store(body(&[&[0; 30], &[0; 30]]), None, first).await;
        assert!(matches!(
            streamed,
            Err(BlobError::ClientQuotaExceeded { used: 130, .. })
        ));
        store.store(body(&[&[0; 50]]), None, first).await.unwrap();

        // Another client, and uploads without a known client, still have room.
        store
            .store(body(&[&[0; 50]]), None, client("192.0.2.2"))
            .await
            .unwrap();
        store.store(body(&[&[0; 40]]), None, None).await.unwrap();
        assert_eq!(store.stats().blob_bytes, 240);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn client_share_frees_on_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let short = BlobSettings {
            expiry: Duration::from_millis(100),
            ..settings(dir.path())
        };
        let store = BlobStore::open(short).unwrap();
        let client = Some(ClientKey::of("192.0.2.1".parse().unwrap()));
        store.store(body(&[&[0; 100]]), None, client).await.unwrap();
        assert!(store.store(body(&[&[0; 100]]), None, client).await.is_err());
        tokio::time::sleep(Duration::from_millis(150)).await;
        store.sweep().unwrap();
        assert!(store.inner.lock().clients.is_empty());
        store.store(body(&[&[0; 100]]), None, client).await.unwrap();
    }

    #[tokio::test]
    async fn reopened_store_counts_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(settings(dir.path())).unwrap();
        let kept = store.store(body(&[b"keep"]), None, None).await.unwrap();
        std::fs::write(dir.path().join("tmp/partial.part"), b"half").unwrap();
        drop(store);

        let reopened = BlobStore::open(settings(dir.path())).unwrap();
        assert_eq!(
            reopened.stats(),
            BlobStats {
                blobs: 1,
                blob_bytes: 4
            }
        );
        assert!(reopened.path(kept.id).await.is_ok());
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );

        let expiring = BlobSettings {
            expiry: Duration::ZERO,
            ..settings(dir.path())
        };
        let expired = BlobStore::open(expiring).unwrap();
        assert!(matches!(
            expired.path(kept.id).await,
            Err(BlobError::NotFound { .. })
        ));
        assert_eq!(expired.stats(), BlobStats::default());
        assert_eq!(
            std::fs::read_dir(dir.path().join("blobs")).unwrap().count(),
            0
        );
    }
}
