//! Scratch folders beside an output: uniquely named, removed when
//! dropped (on success, on error) and on Ctrl-C or SIGTERM; and the tools'
//! door to the runtime's atomic write (temporary file, fsync, rename, fsync
//! of the folder), so a reader finds the old file or the new one whole,
//! never a torn one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

/// Every scratch path alive in this process.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A scratch folder, removed (recursively) when dropped.
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

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
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

/// Writes `contents` to `path` atomically and durably, with the runtime's
/// one atomic writer ([`edgespec::atomic_file::write_atomically`]).
pub fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    edgespec::atomic_file::write_atomically(path, |out| out.write_all(contents), |e| e)
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
    fn scratch_is_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("drafter.gguf");
        let scratch = Scratch::dir_beside(&out).unwrap();
        std::fs::write(scratch.path().join("k4096.gguf"), "x").unwrap();
        let path = scratch.path().to_owned();
        assert_ne!(
            Scratch::dir_beside(&out).unwrap().path(),
            path,
            "names are unique"
        );
        drop(scratch);
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
