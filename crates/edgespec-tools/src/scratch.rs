//! Scratch files and folders beside an output: uniquely named, removed when
//! dropped (on success, on error) and on Ctrl-C or SIGTERM; and the atomic
//! write built on them (temporary file, fsync, rename, fsync of the folder),
//! so a reader finds the old file or the new one whole, never a torn one.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

/// Every scratch path alive in this process.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A scratch file or folder, removed (recursively) when dropped.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// A new, empty scratch folder in the folder of `output`.
    pub fn dir_beside(output: &Path) -> std::io::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&hidden_prefix(output))
            .tempdir_in(folder_of(output))?;
        Ok(Self::track(dir.keep()))
    }

    /// A new, empty scratch file in the folder of `output`, opened for writing.
    pub fn file_beside(output: &Path) -> std::io::Result<(Self, File)> {
        let (file, path) = tempfile::Builder::new()
            .prefix(&hidden_prefix(output))
            .suffix(".partial")
            .tempfile_in(folder_of(output))?
            .keep()
            .map_err(|e| e.error)?;
        Ok((Self::track(path), file))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the scratch file (or folder) to `to`, durably: the data was
    /// synced by the writer, the rename is synced through the folder.
    pub fn persist(self, to: &Path) -> std::io::Result<()> {
        std::fs::rename(&self.path, to)?;
        untrack(&self.path);
        std::mem::forget(self);
        File::open(folder_of(to))?.sync_all()
    }

    fn track(path: PathBuf) -> Self {
        remove_on_interrupt();
        lock_live().push(path.clone());
        Self { path }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        remove(&self.path);
        untrack(&self.path);
    }
}

/// Writes `contents` to `path` atomically and durably.
pub fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let (scratch, mut file) = Scratch::file_beside(path)?;
    file.write_all(contents)?;
    file.sync_all()?;
    scratch.persist(path)
}

/// Installs (once) the handler that removes every live scratch path and
/// exits with status 130 on Ctrl-C or SIGTERM.
fn remove_on_interrupt() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let handler = || {
            for path in lock_live().drain(..) {
                // The main thread keeps running meanwhile and may be writing
                // into a scratch folder: try until it is gone.
                for _ in 0..1000 {
                    remove(&path);
                    if !path.exists() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            // _exit, not exit: the main thread may be inside llama.cpp, whose
            // static destructors must not run under it.
            // SAFETY: terminates the process at once; nothing after it runs.
            unsafe { libc::_exit(130) }
        };
        if let Err(e) = ctrlc::set_handler(handler) {
            log::warn!("scratch files will not be removed on Ctrl-C: {e}");
        }
    });
}

fn lock_live() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn untrack(path: &Path) {
    lock_live().retain(|p| p != path);
}

fn remove(path: &Path) {
    if path.is_dir() {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}

fn folder_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

fn hidden_prefix(output: &Path) -> String {
    let name = output
        .file_name()
        .map_or("edgespec".into(), |n| n.to_string_lossy());
    format!(".{name}.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_whole_and_leaves_nothing_beside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.json");
        std::fs::write(&path, "old").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // Into a folder that does not exist: an error, nothing written.
        let missing = dir.path().join("no/such/report.json");
        assert!(write_atomically(&missing, b"x").is_err());
    }

    #[test]
    fn scratch_is_removed_when_dropped_and_kept_when_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("drafter.gguf");
        let scratch = Scratch::dir_beside(&out).unwrap();
        std::fs::write(scratch.path().join("k4096.gguf"), "x").unwrap();
        let (file_scratch, _) = Scratch::file_beside(&out).unwrap();
        let (a, b) = (scratch.path().to_owned(), file_scratch.path().to_owned());
        assert_ne!(
            Scratch::file_beside(&out).unwrap().0.path(),
            b,
            "names are unique"
        );
        drop(scratch);
        drop(file_scratch);
        assert!(!a.exists() && !b.exists());
        let (kept, _) = Scratch::file_beside(&out).unwrap();
        kept.persist(&out).unwrap();
        assert!(out.is_file());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
