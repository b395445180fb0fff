//! The cost cache: pass costs a speculative session measured, kept on disk
//! so the next run with the same models, settings and machine reads its
//! first prompt without timing passes on it. A file is named by the hash of its key and holds
//! the key itself, which must match whole; a stale, foreign or corrupt file
//! is ignored (with a warning), never an error.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use edgespec::costs::CostSnapshot;

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

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    key: CostKey,
    costs: CostSnapshot,
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

    /// The costs stored for this key, if a file holds them.
    pub fn load(&self) -> Option<CostSnapshot> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        match serde_json::from_str::<Entry>(&text) {
            Ok(entry) if entry.key == self.key => Some(entry.costs),
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

    /// Stores `costs` for this key (atomically; the folder is created).
    pub fn save(&self, costs: &CostSnapshot) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let entry = Entry {
            key: self.key.clone(),
            costs: costs.clone(),
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
