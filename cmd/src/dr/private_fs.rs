//! What sovd keeps on a local disk for disaster recovery is private to the user it runs as:
//! backups and the archive hold every event, and a restore's work folder holds them in the
//! clear. Folders sovd makes are 0700, files 0600; folders that were there already are left
//! as they are, and a restore removes only what it made.

use std::io;
use std::path::{Path, PathBuf};

/// Makes `path` and the folders above it that are missing, each private. Folders that exist
/// are not changed.
pub fn create_private_dirs(path: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

/// Makes the file at `path` readable and writable by its owner only.
pub fn make_private(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Opens a new file that only its owner can read, for writing; fails if `path` exists.
pub async fn create_private_file(path: &Path) -> io::Result<tokio::fs::File> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path).await
}

/// A restore's work folder: new for this run (a random name), private, and removed with
/// everything in it when dropped. Folders it had to make above it go too, if left empty;
/// nothing that was there before is touched.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    /// Deepest first.
    made_above: Vec<PathBuf>,
}

impl WorkDir {
    /// A new folder `sovd-restore-<random>` under `parent`.
    pub fn create(parent: &Path) -> io::Result<Self> {
        let made_above: Vec<PathBuf> = parent
            .ancestors()
            .filter(|p| !p.as_os_str().is_empty())
            .take_while(|p| !p.exists())
            .map(Path::to_path_buf)
            .collect();
        create_private_dirs(parent)?;
        let path = parent.join(format!("sovd-restore-{}", uuid::Uuid::new_v4().simple()));
        let mut builder = std::fs::DirBuilder::new();
        // Not recursive: it fails if the name exists, so the folder is always this run's own.
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&path)?;
        Ok(Self { path, made_above })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %error, "could not remove the restore's work folder");
        }
        for made in &self.made_above {
            // Only if empty: something else may have been put there meanwhile.
            let _ = std::fs::remove_dir(made);
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sovd-private-fs-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    #[test]
    fn a_work_dir_is_new_and_private_and_only_it_is_removed() {
        let parent = scratch();
        std::fs::write(parent.join("notes.txt"), "mine").unwrap();
        let (first, second) = (WorkDir::create(&parent).unwrap(), WorkDir::create(&parent).unwrap());
        assert_ne!(first.path(), second.path(), "each run has its own");
        assert_eq!(mode(first.path()), 0o700);
        std::fs::write(first.path().join("00.snap"), "events").unwrap();
        let path = first.path().to_owned();
        drop(first);
        assert!(!path.exists());
        drop(second);
        assert_eq!(std::fs::read_to_string(parent.join("notes.txt")).unwrap(), "mine");
        assert_eq!(std::fs::read_dir(&parent).unwrap().count(), 1, "nothing else is left");
        std::fs::remove_dir_all(parent).unwrap();
    }

    #[test]
    fn folders_made_above_a_work_dir_are_private_and_go_with_it_if_empty() {
        let root = scratch();
        let parent = root.join("a/b");
        let work = WorkDir::create(&parent).unwrap();
        assert_eq!((mode(&root.join("a")), mode(&parent)), (0o700, 0o700));
        drop(work);
        assert!(!root.join("a").exists());
        assert!(root.exists(), "what was there stays");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn files_are_created_private_and_never_over_an_existing_one() {
        let dir = scratch();
        let path = dir.join("f");
        drop(create_private_file(&path).await.unwrap());
        assert_eq!(mode(&path), 0o600);
        assert!(create_private_file(&path).await.is_err());
        std::fs::write(dir.join("g"), "x").unwrap();
        make_private(&dir.join("g")).unwrap();
        assert_eq!(mode(&dir.join("g")), 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
