//! Prompt caches on disk: a session's KV caches (the target's, and its
//! drafter's or EAD's small model's) saved after a long system prompt or
//! document, and restored in another process instead of reading it again.
//!
//! The file is edgespec's own envelope around llama.cpp's sequence states,
//! checked whole before any byte reaches llama.cpp: a file that is not a
//! prompt cache, was written by another edgespec version (llama.cpp's state
//! format is its own and changes between builds), was made with another
//! model, holds more tokens than the context, or fails its checksum is
//! refused with a typed error. The checksum catches damage, not intent: a
//! file deliberately forged with a valid checksum is trusted as far as
//! llama.cpp's own checks go, as a model file is.
//!
//! Layout, little-endian: magic `ESPCACHE`, format version (u32), CRC-32 of
//! everything after the checksum field (u32), payload length (u64), the
//! edgespec version (u16 length, UTF-8), the cache count (u32), then per
//! cache its model's [`GgufFile::fingerprint`](crate::gguf::GgufFile::fingerprint)
//! (u64), token count (u32), tokens (i32 each), state length (u64) and
//! llama.cpp's state bytes. The target's cache comes first.

use std::path::{Path, PathBuf};

use crate::atomic_file::{write_envelope, EnvelopeError};
use crate::engine::{EngineError, Token};

/// First bytes of every prompt cache.
pub const MAGIC: &[u8; 8] = b"ESPCACHE";
/// The layout this build writes and reads.
pub const FORMAT: u32 = 1;
/// The edgespec version a cache must come from.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Bytes before the checksummed part: magic, format, checksum.
const PREAMBLE: usize = 16;

/// Why a prompt cache could not be saved or restored.
#[derive(Debug, thiserror::Error)]
pub enum PromptCacheError {
    /// Reading or writing the file failed.
    #[error("prompt cache {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file does not start like a prompt cache (also refused as a
    /// target to save over: it may be someone's data).
    #[error("{path} is not an edgespec prompt cache")]
    NotACache {
        /// The file.
        path: PathBuf,
    },
    /// Written by another edgespec version or file layout.
    #[error("prompt cache {path} was written by edgespec {saved} (format {format}); this is edgespec {VERSION} (format {FORMAT}): make it again")]
    OtherVersion {
        /// The file.
        path: PathBuf,
        /// Its edgespec version (empty when the layout already differs).
        saved: String,
        /// Its layout version.
        format: u32,
    },
    /// Truncated, or its bytes do not match the checksum.
    #[error("prompt cache {path} is damaged: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What does not match.
        reason: &'static str,
    },
    /// Made with another target model.
    #[error("prompt cache {path} was made with another target model than {model}")]
    OtherModel {
        /// The file.
        path: PathBuf,
        /// This session's target model file.
        model: PathBuf,
    },
    /// The session has nothing to save.
    #[error("nothing to save in prompt cache {path}: the session has not read a prompt")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// llama.cpp could not save or restore a cache (or it holds more
    /// tokens than the context).
    #[error("prompt cache {path}: {source}")]
    Engine {
        /// The file.
        path: PathBuf,
        /// What the engine said.
        source: EngineError,
    },
}

/// One model's cache as saved: whose, which tokens, llama.cpp's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedCache {
    /// The model's [`GgufFile::fingerprint`](crate::gguf::GgufFile::fingerprint).
    pub model: u64,
    /// The tokens the cache holds, in order.
    pub tokens: Vec<Token>,
    /// llama.cpp's sequence state.
    pub state: Vec<u8>,
}

/// Writes `caches` (the target's first) to `path` whole or not at all. An
/// existing file is replaced only when it is a prompt cache.
pub fn write(path: &Path, caches: &[SavedCache]) -> Result<(), PromptCacheError> {
    let io_err = |source| PromptCacheError::Io {
        path: path.to_owned(),
        source,
    };
    if caches.first().is_none_or(|c| c.tokens.is_empty()) {
        return Err(PromptCacheError::Empty {
            path: path.to_owned(),
        });
    }
    write_envelope(path, MAGIC, FORMAT, &payload(caches)).map_err(|e| match e {
        EnvelopeError::NotOurs => PromptCacheError::NotACache {
            path: path.to_owned(),
        },
        EnvelopeError::Io(e) => io_err(e),
    })
}

/// The checksummed part of the file.
fn payload(caches: &[SavedCache]) -> Vec<u8> {
    let size: usize = caches
        .iter()
        .map(|c| 24 + 4 * c.tokens.len() + c.state.len())
        .sum();
    let mut out = Vec::with_capacity(16 + VERSION.len() + size);
    out.extend_from_slice(&[0; 8]); // payload length, filled in below
    out.extend_from_slice(&(VERSION.len() as u16).to_le_bytes());
    out.extend_from_slice(VERSION.as_bytes());
    out.extend_from_slice(&(caches.len() as u32).to_le_bytes());
    for cache in caches {
        out.extend_from_slice(&cache.model.to_le_bytes());
        out.extend_from_slice(&(cache.tokens.len() as u32).to_le_bytes());
        for t in &cache.tokens {
            out.extend_from_slice(&t.to_le_bytes());
        }
        out.extend_from_slice(&(cache.state.len() as u64).to_le_bytes());
        out.extend_from_slice(&cache.state);
    }
    let len = (out.len() - 8) as u64;
    out[..8].copy_from_slice(&len.to_le_bytes());
    out
}

/// Reads and checks the prompt cache at `path` (layout, version,
/// checksum); the caller matches the models and contexts.
pub fn read(path: &Path) -> Result<Vec<SavedCache>, PromptCacheError> {
    let bytes = std::fs::read(path).map_err(|source| PromptCacheError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(&bytes).map_err(|e| e.at(path))
}

/// A refusal before the path is known.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not a prompt cache.
    NotACache,
    /// Another layout or edgespec version.
    OtherVersion {
        /// The saved edgespec version ("" when the layout differs).
        saved: String,
        /// The saved layout version.
        format: u32,
    },
    /// Damaged.
    Corrupt(&'static str),
}

impl ParseError {
    fn at(self, path: &Path) -> PromptCacheError {
        let path = path.to_owned();
        match self {
            Self::NotACache => PromptCacheError::NotACache { path },
            Self::OtherVersion { saved, format } => PromptCacheError::OtherVersion {
                path,
                saved,
                format,
            },
            Self::Corrupt(reason) => PromptCacheError::Corrupt { path, reason },
        }
    }
}

/// Parses a whole prompt cache held in `bytes`.
pub fn parse(bytes: &[u8]) -> Result<Vec<SavedCache>, ParseError> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(ParseError::NotACache);
    }
    let mut cur = Cursor { bytes, pos: 8 };
    let format = cur.u32()?;
    if format != FORMAT {
        return Err(ParseError::OtherVersion {
            saved: String::new(),
            format,
        });
    }
    let checksum = cur.u32()?;
    let payload = &bytes[PREAMBLE..];
    let len = cur.u64()?;
    if len != (payload.len() - 8) as u64 {
        return Err(ParseError::Corrupt(
            "its length is not the length it records",
        ));
    }
    if crc32fast::hash(payload) != checksum {
        return Err(ParseError::Corrupt("its bytes do not match its checksum"));
    }
    let version_len = cur.u16()? as usize;
    let saved = std::str::from_utf8(cur.take(version_len)?)
        .map_err(|_| ParseError::Corrupt("its version is not text"))?;
    if saved != VERSION {
        return Err(ParseError::OtherVersion {
            saved: saved.to_owned(),
            format,
        });
    }
    let count = cur.u32()? as usize;
    // Each cache takes at least 20 bytes: no reservation beyond the file.
    let mut caches = Vec::with_capacity(count.min(cur.left() / 20));
    for _ in 0..count {
        let model = cur.u64()?;
        let n_tokens = cur.u32()? as usize;
        let tokens = cur
            .take(n_tokens.checked_mul(4).ok_or(TRUNCATED)?)?
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let state_len = usize::try_from(cur.u64()?).map_err(|_| TRUNCATED)?;
        let state = cur.take(state_len)?.to_vec();
        caches.push(SavedCache {
            model,
            tokens,
            state,
        });
    }
    if cur.left() != 0 {
        return Err(ParseError::Corrupt("bytes follow its last cache"));
    }
    if caches.is_empty() {
        return Err(ParseError::Corrupt("it holds no cache"));
    }
    Ok(caches)
}

const TRUNCATED: ParseError = ParseError::Corrupt("it ends inside a field");

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        if n > self.left() {
            return Err(TRUNCATED);
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ParseError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, ParseError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, ParseError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, ParseError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<SavedCache> {
        vec![
            SavedCache {
                model: 7,
                tokens: vec![1, 2, 3],
                state: vec![9; 40],
            },
            SavedCache {
                model: 8,
                tokens: vec![1, 2],
                state: vec![5; 11],
            },
        ]
    }

    fn file(caches: &[SavedCache]) -> Vec<u8> {
        let payload = payload(caches);
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&FORMAT.to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        out.extend_from_slice(&payload);
        out
    }

    #[test]
    fn a_cache_reads_back_as_written() {
        assert_eq!(parse(&file(&sample())).unwrap(), sample());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.cache");
        write(&path, &sample()).unwrap();
        assert_eq!(read(&path).unwrap(), sample());
        // Saving again replaces a prompt cache.
        write(&path, &sample()[..1]).unwrap();
        assert_eq!(read(&path).unwrap(), sample()[..1]);
    }

    #[test]
    fn every_damage_is_refused() {
        let good = file(&sample());
        // Every truncation and every single flipped bit.
        for len in 0..good.len() {
            assert!(parse(&good[..len]).is_err(), "truncated to {len}");
        }
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[i] ^= 1 << bit;
                assert!(parse(&bad).is_err(), "bit {bit} of byte {i}");
            }
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(parse(&longer).is_err());
    }

    #[test]
    fn another_version_or_layout_is_named() {
        let mut other_format = file(&sample());
        other_format[8] = 2;
        assert_eq!(
            parse(&other_format),
            Err(ParseError::OtherVersion {
                saved: String::new(),
                format: 2
            })
        );
        // Another edgespec version with a valid checksum.
        let mut payload = payload(&sample());
        let at = 8 + 2 + VERSION.len() - 1;
        payload[at] = payload[at].wrapping_add(1);
        let mut other = MAGIC.to_vec();
        other.extend_from_slice(&FORMAT.to_le_bytes());
        other.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        other.extend_from_slice(&payload);
        assert!(
            matches!(parse(&other), Err(ParseError::OtherVersion { saved, .. }) if saved != VERSION)
        );
        assert_eq!(parse(b"GGUF\x03\0\0\0"), Err(ParseError::NotACache));
    }

    #[test]
    fn huge_counts_are_refused_without_allocating() {
        let mut payload = Vec::new();
        payload.extend_from_slice(&[0; 8]);
        payload.extend_from_slice(&(VERSION.len() as u16).to_le_bytes());
        payload.extend_from_slice(VERSION.as_bytes());
        payload.extend_from_slice(&u32::MAX.to_le_bytes());
        payload.extend_from_slice(&7u64.to_le_bytes());
        payload.extend_from_slice(&u32::MAX.to_le_bytes());
        let len = (payload.len() - 8) as u64;
        payload[..8].copy_from_slice(&len.to_le_bytes());
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&FORMAT.to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        assert_eq!(parse(&bytes), Err(TRUNCATED));
    }

    #[test]
    fn only_a_prompt_cache_is_saved_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "my notes").unwrap();
        assert!(matches!(
            write(&path, &sample()),
            Err(PromptCacheError::NotACache { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"my notes");
        assert!(matches!(
            write(&dir.path().join("e"), &[]),
            Err(PromptCacheError::Empty { .. })
        ));
    }
}
