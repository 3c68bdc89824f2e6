//! Where backups and the archive live: a local directory (the embedded default) or any
//! S3-compatible bucket, through object_store. Credentials come from flags or the
//! environment and are never printed; the location shown everywhere carries none. In a
//! local directory, files are private (0600) and the folders sovd makes too (0700).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ClientOptions, ObjectMeta, ObjectStore, PutPayload, RetryConfig};

use super::private_fs::{create_private_dirs, make_private};
use crate::config::Redacted;

#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Where backups and the archive live: a directory (`file:///srv/sovd-backup` or a plain
    /// path) or an S3 bucket with an optional prefix (`s3://bucket/sovd`).
    #[arg(long, env = "SOVD_BACKUP_URL", default_value = "file://.data/backup")]
    pub backup_url: String,
    /// S3 endpoint of an S3-compatible server (MinIO, Ceph, …); AWS when unset.
    #[arg(long, env = "SOVD_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "SOVD_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// S3 access key id (else AWS_ACCESS_KEY_ID and the usual AWS sources).
    #[arg(long, env = "SOVD_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    /// S3 secret access key (else AWS_SECRET_ACCESS_KEY and the usual AWS sources).
    #[arg(long, env = "SOVD_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<Redacted>,
}

/// An object store and the prefix everything of ours lives under.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// The same store when it is a local directory, whose files' modes are ours to set.
    local: Option<Arc<LocalFileSystem>>,
    root: Path,
    location: String,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.location)
    }
}

impl Storage {
    pub fn open(args: &StorageArgs) -> anyhow::Result<Self> {
        let url = args.backup_url.trim();
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            anyhow::ensure!(!bucket.is_empty(), "SOVD_BACKUP_URL {url}: no bucket after s3://");
            // A few quick retries, not object_store's default of up to three minutes: the
            // archive has its own backoff, and a failing store must show (ArchiveFailed,
            // archive_lag_seconds) while the RPO is still small.
            let retry = RetryConfig { max_retries: 3, retry_timeout: Duration::from_secs(15), ..Default::default() };
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_region(&args.s3_region)
                .with_retry(retry)
                .with_client_options(ClientOptions::new().with_connect_timeout(Duration::from_secs(5)));
            if let Some(endpoint) = &args.s3_endpoint {
                builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
            }
            if let Some(key) = &args.s3_access_key_id {
                builder = builder.with_access_key_id(key);
            }
            if let Some(secret) = &args.s3_secret_access_key {
                builder = builder.with_secret_access_key(&secret.0);
            }
            let store = builder.build().with_context(|| format!("cannot use S3 bucket {bucket}"))?;
            let endpoint = args.s3_endpoint.as_deref().map(|e| format!(" at {e}")).unwrap_or_default();
            return Ok(Self {
                store: Arc::new(store),
                local: None,
                root: Path::from(prefix),
                location: format!("s3://{bucket}/{prefix}{endpoint}"),
            });
        }
        let dir = url.strip_prefix("file://").unwrap_or(url);
        anyhow::ensure!(!dir.contains("://"), "SOVD_BACKUP_URL {url}: use file://<dir> or s3://<bucket>[/prefix]");
        create_private_dirs(std::path::Path::new(dir))
            .with_context(|| format!("cannot create the backup directory {dir}"))?;
        let dir = std::fs::canonicalize(dir).with_context(|| format!("backup directory {dir}"))?;
        let store = Arc::new(
            LocalFileSystem::new_with_prefix(&dir)
                .with_context(|| format!("backup directory {}", dir.display()))?
                .with_automatic_cleanup(true),
        );
        Ok(Self {
            store: store.clone(),
            local: Some(store),
            root: Path::default(),
            location: format!("file://{}", dir.display()),
        })
    }

    /// Where this is, for people and the audit trail (never with credentials).
    pub fn location(&self) -> &str {
        &self.location
    }

    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// The full path of `key` (`backups/<id>/manifest.json`) under the prefix.
    pub fn path(&self, key: &str) -> Path {
        key.split('/').filter(|p| !p.is_empty()).fold(self.root.clone(), |path, part| path.child(part))
    }

    /// `path` relative to the prefix, as keys are written here.
    pub fn key(&self, path: &Path) -> String {
        path.prefix_match(&self.root)
            .map(|parts| parts.map(|p| p.as_ref().to_owned()).collect::<Vec<_>>().join("/"))
            .unwrap_or_else(|| path.to_string())
    }

    /// In a local directory: the folders `key` goes in, made private if missing, so that what
    /// is written there is out of others' reach before its own mode is set.
    fn prepare(&self, key: &str) -> anyhow::Result<()> {
        let Some(local) = &self.local else { return Ok(()) };
        let file = local.path_to_filesystem(&self.path(key))?;
        if let Some(folder) = file.parent() {
            create_private_dirs(folder).with_context(|| format!("cannot create {}", folder.display()))?;
        }
        Ok(())
    }

    /// In a local directory: the file of `key`, once written, private.
    fn seal(&self, key: &str) -> anyhow::Result<()> {
        let Some(local) = &self.local else { return Ok(()) };
        let file = local.path_to_filesystem(&self.path(key))?;
        make_private(&file).with_context(|| format!("cannot make {} private", file.display()))
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> anyhow::Result<()> {
        self.prepare(key)?;
        self.store
            .put(&self.path(key), PutPayload::from_bytes(bytes))
            .await
            .with_context(|| format!("cannot write object {key} to {}", self.location))?;
        self.seal(key)
    }

    /// A streaming upload of `key`; call [`Storage::finish_upload`] once it is shut down.
    pub fn upload(&self, key: &str) -> anyhow::Result<BufWriter> {
        self.prepare(key)?;
        Ok(BufWriter::new(self.store.clone(), self.path(key)))
    }

    pub fn finish_upload(&self, key: &str) -> anyhow::Result<()> {
        self.seal(key)
    }

    pub async fn get(&self, key: &str) -> anyhow::Result<Bytes> {
        let read = async { self.store.get(&self.path(key)).await?.bytes().await };
        read.await.with_context(|| format!("cannot read object {key} from {}", self.location))
    }

    /// `None` when there is no such object.
    pub async fn get_optional(&self, key: &str) -> anyhow::Result<Option<Bytes>> {
        match self.store.get(&self.path(key)).await {
            Ok(found) => Ok(Some(found.bytes().await.with_context(|| format!("cannot read object {key}"))?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read object {key} from {}", self.location)),
        }
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> anyhow::Result<bool> {
        match self.store.head(&self.path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot look up object {key} in {}", self.location)),
        }
    }

    /// Every object under `prefix`, with keys relative to the root, sorted by key.
    pub async fn list(&self, prefix: &str) -> anyhow::Result<Vec<(String, ObjectMeta)>> {
        let mut found: Vec<(String, ObjectMeta)> = self
            .store
            .list(Some(&self.path(prefix)))
            .map_ok(|meta| (self.key(&meta.location), meta))
            .try_collect()
            .await
            .with_context(|| format!("cannot list {prefix} in {}", self.location))?;
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    /// The objects under `prefix` whose keys sort after `after`, sorted by key.
    pub async fn list_after(&self, prefix: &str, after: &str) -> anyhow::Result<Vec<(String, ObjectMeta)>> {
        let mut found: Vec<(String, ObjectMeta)> = self
            .store
            .list_with_offset(Some(&self.path(prefix)), &self.path(after))
            .map_ok(|meta| (self.key(&meta.location), meta))
            .try_collect()
            .await
            .with_context(|| format!("cannot list {prefix} in {}", self.location))?;
        found.retain(|(key, _)| key.as_str() > after);
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    /// Moves an object (copy, then delete): object stores have no rename.
    pub async fn rename(&self, from: &str, to: &str) -> anyhow::Result<()> {
        self.prepare(to)?;
        self.store
            .copy(&self.path(from), &self.path(to))
            .await
            .with_context(|| format!("cannot copy object {from} to {to} in {}", self.location))?;
        self.seal(to)?;
        self.delete(from).await
    }

    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.store.delete(&self.path(key)).await.with_context(|| format!("cannot delete object {key}"))
    }
}
