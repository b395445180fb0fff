//! A bounded memory of earlier outputs (SuffixDecoding's global tree, arXiv
//! 2411.04975): what the target wrote in earlier requests of this drafter,
//! for drafts where a new answer repeats an old one (a rewrite, the same
//! boilerplate, a fixed answer format). Optionally kept on disk so a device
//! keeps it across restarts.
//!
//! The file: magic `ESMEMORY`, format version (u32), CRC-32 of the payload
//! (u32), then the payload: the target model's
//! [`GgufFile::fingerprint`](crate::gguf::GgufFile::fingerprint) (u64), the
//! token count (u32) and the tokens (i32 each; -1 separates outputs),
//! little-endian. A file that is damaged, from another format or model, or
//! larger than [`MAX_TOKENS`] is refused with a typed error (callers warn and
//! start empty); it is written whole or not at all, and never over a file
//! that is not a memory file.

use std::path::{Path, PathBuf};

use crate::atomic_file::{write_envelope, EnvelopeError};
use crate::engine::Token;

/// First bytes of every memory file.
pub const MAGIC: &[u8; 8] = b"ESMEMORY";
/// The layout this build writes and reads.
pub const FORMAT: u32 = 1;
/// Tokens a memory holds by default (256 KiB on disk).
pub const DEFAULT_TOKENS: usize = 1 << 16;
/// Most tokens a memory may hold (4 MiB on disk): bigger files are refused
/// before they are read.
pub const MAX_TOKENS: usize = 1 << 20;
/// Separates outputs in [`OutputMemory::tokens`]: no match crosses it.
pub const SEPARATOR: Token = -1;
/// Magic, format, checksum, fingerprint, count.
const HEADER: usize = 8 + 4 + 4 + 8 + 4;

/// Why a memory file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MemoryFileError {
    /// Reading or writing failed.
    #[error("lookup memory {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not a memory file (also refused as a file to save over).
    #[error("{path} is not an edgespec lookup memory")]
    NotAMemory {
        /// The file.
        path: PathBuf,
    },
    /// Another layout, damaged, or too large.
    #[error("lookup memory {path} cannot be used: {reason}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: &'static str,
    },
    /// Written for another target model (its tokens mean other text; also
    /// refused as a file to save over).
    #[error("lookup memory {path} was made with another target model")]
    OtherModel {
        /// The file.
        path: PathBuf,
    },
    /// The session's drafts keep no memory of outputs (only the lookup and
    /// hybrid kinds do).
    #[error("this session keeps no lookup memory (the lookup and hybrid draft kinds do)")]
    NoMemory,
}

/// Earlier outputs, oldest first, separated by [`SEPARATOR`], at most
/// `capacity` tokens (the oldest outputs go first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputMemory {
    tokens: Vec<Token>,
    capacity: usize,
}

impl Default for OutputMemory {
    fn default() -> Self {
        Self::new(DEFAULT_TOKENS)
    }
}

impl OutputMemory {
    /// An empty memory of at most `capacity` tokens (capped at [`MAX_TOKENS`]).
    pub fn new(capacity: usize) -> Self {
        Self {
            tokens: Vec::new(),
            capacity: capacity.min(MAX_TOKENS),
        }
    }

    /// The outputs, separated by [`SEPARATOR`].
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// Most tokens held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Remembers one output: the oldest outputs make room; an output
    /// longer than the memory keeps its end.
    pub fn remember(&mut self, output: &[Token]) {
        if output.is_empty() || self.capacity < 2 {
            return;
        }
        let output = &output[output.len().saturating_sub(self.capacity - 1)..];
        let needed = output.len() + 1;
        let over = (self.tokens.len() + needed).saturating_sub(self.capacity);
        if over > 0 {
            // Drop whole outputs: up to and including the separator that
            // ends the last one dropped.
            let cut = self.tokens[over - 1..]
                .iter()
                .position(|&t| t == SEPARATOR)
                .map_or(self.tokens.len(), |p| over + p);
            self.tokens.drain(..cut);
        }
        self.tokens.extend_from_slice(output);
        self.tokens.push(SEPARATOR);
    }

    /// Reads the memory saved at `path` for the target model with this
    /// fingerprint, keeping at most `capacity` tokens (the newest).
    pub fn load(path: &Path, model: u64, capacity: usize) -> Result<Self, MemoryFileError> {
        let io = |source| MemoryFileError::Io {
            path: path.to_owned(),
            source,
        };
        let unusable = |reason| MemoryFileError::Unusable {
            path: path.to_owned(),
            reason,
        };
        let size = std::fs::metadata(path).map_err(io)?.len();
        if size > (HEADER + 4 * MAX_TOKENS) as u64 {
            return Err(unusable("it is larger than any memory edgespec writes"));
        }
        let bytes = std::fs::read(path).map_err(io)?;
        if !bytes.starts_with(MAGIC) {
            return Err(MemoryFileError::NotAMemory {
                path: path.to_owned(),
            });
        }
        if bytes.len() < HEADER {
            return Err(unusable("it is truncated"));
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        if u32_at(8) != FORMAT {
            return Err(unusable("it was written in another format"));
        }
        if crc32fast::hash(&bytes[16..]) != u32_at(12) {
            return Err(unusable("its bytes do not match its checksum"));
        }
        if u64::from_le_bytes(bytes[16..24].try_into().unwrap()) != model {
            return Err(MemoryFileError::OtherModel {
                path: path.to_owned(),
            });
        }
        let count = u32_at(24) as usize;
        if bytes.len() - HEADER != 4 * count {
            return Err(unusable("its length is not the length it records"));
        }
        let tokens: Vec<Token> = bytes[HEADER..]
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if tokens.iter().any(|&t| t < SEPARATOR) || tokens.last().is_some_and(|&t| t >= 0) {
            return Err(unusable("it holds tokens no model has"));
        }
        let mut memory = Self::new(capacity);
        for output in tokens.split(|&t| t == SEPARATOR) {
            memory.remember(output);
        }
        Ok(memory)
    }

    /// Saves the memory to `path` for the target model with this
    /// fingerprint, whole or not at all; an existing file is replaced only
    /// when it is a memory file of this model or a damaged one (another
    /// model's memory or a file that is not a memory is left as it is).
    pub fn save(&self, path: &Path, model: u64) -> Result<(), MemoryFileError> {
        let io = |source| MemoryFileError::Io {
            path: path.to_owned(),
            source,
        };
        if let Err(e @ MemoryFileError::OtherModel { .. }) = Self::load(path, model, 0) {
            return Err(e);
        }
        let mut payload = Vec::with_capacity(12 + 4 * self.tokens.len());
        payload.extend_from_slice(&model.to_le_bytes());
        payload.extend_from_slice(&(self.tokens.len() as u32).to_le_bytes());
        for t in &self.tokens {
            payload.extend_from_slice(&t.to_le_bytes());
        }
        write_envelope(path, MAGIC, FORMAT, &payload).map_err(|e| match e {
            EnvelopeError::NotOurs => MemoryFileError::NotAMemory {
                path: path.to_owned(),
            },
            EnvelopeError::Io(e) => io(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_outputs_make_room_whole() {
        let mut m = OutputMemory::new(8);
        m.remember(&[1, 2, 3]);
        m.remember(&[4, 5]);
        assert_eq!(m.tokens(), [1, 2, 3, -1, 4, 5, -1]);
        m.remember(&[6, 7]);
        assert_eq!(m.tokens(), [4, 5, -1, 6, 7, -1]);
        // Longer than the memory: its end.
        m.remember(&[10, 11, 12, 13, 14, 15, 16, 17, 18]);
        assert_eq!(m.tokens(), [12, 13, 14, 15, 16, 17, 18, -1]);
        m.remember(&[]);
        assert_eq!(m.tokens().len(), 8);
    }

    #[test]
    fn a_saved_memory_loads_and_a_bad_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("edgespec-memory-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("memory.bin");
        let mut m = OutputMemory::new(100);
        m.remember(&[1, 2, 3]);
        m.remember(&[7, 8]);
        m.save(&path, 42).unwrap();
        assert_eq!(OutputMemory::load(&path, 42, 100).unwrap(), m);
        // A smaller capacity keeps the newest outputs.
        assert_eq!(
            OutputMemory::load(&path, 42, 4).unwrap().tokens(),
            [7, 8, -1]
        );
        assert!(matches!(
            OutputMemory::load(&path, 43, 100),
            Err(MemoryFileError::OtherModel { .. })
        ));
        // Another model's memory is not saved over.
        assert!(matches!(
            OutputMemory::new(100).save(&path, 43),
            Err(MemoryFileError::OtherModel { .. })
        ));
        assert_eq!(OutputMemory::load(&path, 42, 100).unwrap(), m);
        // One flipped bit anywhere after the magic.
        let good = std::fs::read(&path).unwrap();
        for i in 8..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x10;
            std::fs::write(&path, &bad).unwrap();
            assert!(OutputMemory::load(&path, 42, 100).is_err(), "byte {i}");
        }
        std::fs::write(&path, &good[..good.len() - 2]).unwrap();
        assert!(matches!(
            OutputMemory::load(&path, 42, 100),
            Err(MemoryFileError::Unusable { .. })
        ));
        // Someone else's file is neither read nor replaced.
        let other = dir.join("notes.txt");
        std::fs::write(&other, b"my notes").unwrap();
        assert!(matches!(
            OutputMemory::load(&other, 42, 100),
            Err(MemoryFileError::NotAMemory { .. })
        ));
        assert!(matches!(
            m.save(&other, 42),
            Err(MemoryFileError::NotAMemory { .. })
        ));
        assert_eq!(std::fs::read(&other).unwrap(), b"my notes");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
