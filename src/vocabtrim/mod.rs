//! VocabTrim (arXiv 2506.22694): cut a drafter's LM head to the K token ids
//! the target actually emits. Calibration counts the ids in target
//! generations (or in raw text, for comparison); trimming writes a derived
//! GGUF whose head (and embedding table) keep only those rows; the drafter
//! then reads K-wide logits and maps them back to target ids. Verification
//! stays full-vocabulary, so output does not change.

mod calibrate;
mod choose;
mod counts;
mod trim;

pub use calibrate::{calibrate_generations, count_raw_text, CalibrationProgress};
pub use choose::{best_k, k_candidates, KPoint};
pub use counts::{vocab_fingerprint, CountSource, TokenCounts};
pub use trim::{
    select_ids, trim_drafter, TrimInfo, Trimmer, KEY_IDS, KEY_SOURCE_FILE, KEY_SOURCE_VOCAB,
    KEY_VOCAB_FINGERPRINT,
};

use std::path::PathBuf;

use crate::engine::EngineError;
use crate::gguf::GgufError;

/// Errors of calibration and trimming.
#[derive(Debug, thiserror::Error)]
pub enum TrimError {
    /// K is 0.
    #[error("K must be at least 1")]
    ZeroK,
    /// K exceeds the vocabulary.
    #[error("K = {k} is larger than the vocabulary ({vocab})")]
    KTooLarge {
        /// Requested K.
        k: usize,
        /// Vocabulary size.
        vocab: usize,
    },
    /// K cannot even hold the special tokens that are always kept.
    #[error("K = {k} cannot hold the {specials} special tokens that are always kept")]
    KBelowSpecials {
        /// Requested K.
        k: usize,
        /// Special tokens.
        specials: usize,
    },
    /// A counts file that cannot be used.
    #[error("counts file {path}: {reason}")]
    BadCounts {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Counts made with another vocabulary.
    #[error("counts were made for another vocabulary ({found_size} tokens, fingerprint {found}), the model has {expected_size} tokens (fingerprint {expected})")]
    CountsVocabMismatch {
        /// Model's fingerprint.
        expected: String,
        /// Model's size.
        expected_size: usize,
        /// Counts' fingerprint.
        found: String,
        /// Counts' size.
        found_size: usize,
    },
    /// A drafter file lacking what trimming needs.
    #[error("cannot trim: {0}")]
    Unsupported(String),
    /// A trimmed file whose metadata is missing or inconsistent.
    #[error("invalid trimmed drafter: {0}")]
    BadTrimmedFile(String),
    /// File trouble.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// llama.cpp trouble.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Generation trouble (calibration).
    #[error(transparent)]
    Generate(#[from] crate::error::GenerateError),
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
