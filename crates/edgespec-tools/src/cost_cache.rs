//! The cost cache: pass costs a speculative session measured, kept on disk
//! so the next run with the same models, settings and machine reads its
//! first prompt without timing passes on it, and a record of whether the
//! drafter model paid for itself in one-shot runs, so a run need not load
//! one that has not. A file is named by the hash of its key and holds the
//! key itself, which must match whole; a stale, foreign or corrupt file is
//! ignored (with a warning), never an error.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use edgespec::speculative::CostSnapshot;

/// A model file as the key sees it: replaced or edited files change it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileId {
    /// Absolute path.
    pub path: PathBuf,
    /// Bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub modified_ns: u128,
}

impl FileId {
    /// The identity of the file at `path`.
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        Ok(Self {
            path: std::fs::canonicalize(path)?,
            size: meta.len(),
            modified_ns: meta
                .modified()?
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos(),
        })
    }
}

/// Everything the measured costs depend on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CostKey {
    /// edgespec's version.
    pub edgespec: String,
    /// ggml's version and commit.
    pub ggml: String,
    /// The CPU (model name).
    pub cpu: String,
    /// ggml's backends and detected CPU features.
    pub backend: String,
    /// The target model.
    pub target: FileId,
    /// The drafter model.
    pub drafter: Option<FileId>,
    /// Drafter kind, draft length and anything else of the session that
    /// decides what is measured (as text).
    pub session: String,
    /// Threads.
    pub threads: i32,
    /// Weight layout: repacked or as in the file.
    pub repack: bool,
    /// Layers on the GPU.
    pub gpu_layers: u32,
}

/// What a cache entry holds besides its key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cached {
    /// Pass costs.
    pub costs: CostSnapshot,
    /// What the drafter model's rounds saved in one-shot runs.
    #[serde(default)]
    pub drafter: DrafterRecord,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    key: CostKey,
    #[serde(flatten)]
    cached: Cached,
}

/// Whether the drafter model pays for itself on this machine with these
/// models: what its rounds saved against plain decoding in the one-shot
/// runs that loaded it, smoothed. A drafter that saved nothing is not
/// loaded (loading it and its first rounds cost more than it gives) for
/// as many runs as [`Self::retry_after`] says, which doubles every time a
/// retry does not pay either (up to [`Self::MAX_RETRY_AFTER`]): text
/// changes from run to run, so it is tried again now and then.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DrafterRecord {
    /// Smoothed ms saved per run (none before a run that loaded it).
    pub saved_ms: Option<f64>,
    /// Runs since it was last loaded.
    pub skipped: u32,
    /// Runs to go without it after one in which it did not pay.
    pub retry_after: u32,
}

impl DrafterRecord {
    /// Longest wait between tries, in runs.
    pub const MAX_RETRY_AFTER: u32 = 32;
    /// Weight of the newest run in [`Self::saved_ms`].
    const WEIGHT: f64 = 0.5;

    /// True when this run should go without the drafter.
    pub fn skip(&self) -> bool {
        self.saved_ms.is_some_and(|ms| ms <= 0.0) && self.skipped < self.retry_after
    }

    /// Records a run that went without it.
    pub fn skipped_run(&mut self) {
        self.skipped = self.skipped.saturating_add(1);
    }

    /// Records a run that loaded it and whose model rounds saved `ms`.
    pub fn loaded_run(&mut self, ms: f64) {
        if !ms.is_finite() {
            return;
        }
        self.saved_ms = Some(self.saved_ms.map_or(ms, |s| s + Self::WEIGHT * (ms - s)));
        self.skipped = 0;
        self.retry_after = if ms > 0.0 {
            0
        } else {
            (self.retry_after * 2).clamp(1, Self::MAX_RETRY_AFTER)
        };
    }
}

/// One key's place in a cache folder.
#[derive(Debug, Clone)]
pub struct CostCache {
    key: CostKey,
    path: PathBuf,
}

impl CostCache {
    /// The entry for `key` in `dir`.
    pub fn new(dir: &Path, key: CostKey) -> Self {
        let json = serde_json::to_string(&key).unwrap_or_default();
        let hash: String = Sha256::digest(json.as_bytes())[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            path: dir.join(format!("{hash}.json")),
            key,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What is stored for this key, if a file holds it.
    pub fn load(&self) -> Option<Cached> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        match serde_json::from_str::<Entry>(&text) {
            Ok(entry) if entry.key == self.key => Some(entry.cached),
            Ok(_) => {
                log::warn!(
                    "{}: a cost cache entry of another key, ignored",
                    self.path.display()
                );
                None
            }
            Err(e) => {
                log::warn!(
                    "{}: not a cost cache entry ({e}), ignored",
                    self.path.display()
                );
                None
            }
        }
    }

    /// Stores `cached` for this key (atomically; the folder is created).
    pub fn save(&self, cached: &Cached) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let entry = Entry {
            key: self.key.clone(),
            cached: cached.clone(),
        };
        let json = serde_json::to_string_pretty(&entry).map_err(std::io::Error::other)?;
        crate::scratch::write_atomically(&self.path, json.as_bytes())
    }
}

/// The default cache folder: `$XDG_CACHE_HOME/edgespec/costs`, else
/// `~/.cache/edgespec/costs`.
pub fn default_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|base| base.join("edgespec").join("costs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drafter_that_does_not_pay_is_left_out_for_doubling_spells() {
        let mut r = DrafterRecord::default();
        assert!(!r.skip(), "never tried: loaded");
        r.loaded_run(-150.0);
        // Left out once, then tried again.
        assert!(r.skip());
        r.skipped_run();
        assert!(!r.skip());
        r.loaded_run(-100.0);
        assert_eq!(r.saved_ms, Some(-125.0));
        for _ in 0..2 {
            assert!(r.skip());
            r.skipped_run();
        }
        assert!(!r.skip(), "after 2 runs without it");
        // A run in which it pays ends the spells, though the average is
        // still negative for a run (then it is loaded again all the same).
        r.loaded_run(100.0);
        assert_eq!(r.saved_ms, Some(-12.5));
        assert_eq!(r.retry_after, 0);
        assert!(!r.skip());
        // Mostly paying: a bad run does not make it left out.
        r.loaded_run(2000.0);
        r.loaded_run(-100.0);
        assert!(r.saved_ms.unwrap() > 0.0 && !r.skip());
        for _ in 0..10 {
            r.loaded_run(0.0);
        }
        assert_eq!(r.retry_after, DrafterRecord::MAX_RETRY_AFTER);
        r.loaded_run(f64::NAN);
        assert!(r.saved_ms.unwrap().is_finite());
    }

    #[test]
    fn an_entry_without_a_drafter_record_reads_as_never_tried() {
        let dir = tempfile::tempdir().unwrap();
        let key = CostKey {
            edgespec: "0".into(),
            ggml: "g".into(),
            cpu: "c".into(),
            backend: "b".into(),
            target: FileId {
                path: "/t".into(),
                size: 1,
                modified_ns: 2,
            },
            drafter: None,
            session: "s".into(),
            threads: 2,
            repack: true,
            gpu_layers: 0,
        };
        let cache = CostCache::new(dir.path(), key.clone());
        let old = serde_json::json!({"key": key, "costs": {"verify": [[1, 50.0]], "draft": 9.0, "catch_up": []}});
        std::fs::write(cache.path(), old.to_string()).unwrap();
        let cached = cache.load().unwrap();
        assert_eq!(cached.costs.costs.verify, vec![(1, 50.0)]);
        assert_eq!(cached.drafter, DrafterRecord::default());
        let mut cached = cached;
        cached.drafter.loaded_run(-1.0);
        cache.save(&cached).unwrap();
        assert_eq!(cache.load(), Some(cached));
    }
}
