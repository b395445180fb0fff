//! VocabTrim (arXiv 2506.22694): a drafter whose LM head keeps only the K
//! token ids the target actually emits. The runtime reads trimmed files
//! (their metadata, checked); calibration and trimming are tools
//! (`edgespec_tools::vocabtrim`). The drafter reads K-wide logits and maps
//! them back to target ids; verification stays full-vocabulary, so output
//! does not change.

use std::path::PathBuf;

use crate::engine::{EngineError, Token};
use crate::gguf::{GgufError, GgufFile, OUTPUT, TOKEN_EMBD};

/// Metadata key: the kept target token ids, ascending (u32 array, K long).
pub const KEY_IDS: &str = "edgespec.vocabtrim.ids";
/// Metadata key: vocabulary size of the source drafter.
pub const KEY_SOURCE_VOCAB: &str = "edgespec.vocabtrim.source_vocab_size";
/// Metadata key: path of the source drafter (its embedding table feeds the input).
pub const KEY_SOURCE_FILE: &str = "edgespec.vocabtrim.source_file";
/// Metadata key: sha256 fingerprint of the source drafter's vocabulary.
pub const KEY_VOCAB_FINGERPRINT: &str = "edgespec.vocabtrim.vocab_fingerprint";

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

/// What a trimmed drafter file says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct TrimInfo {
    /// Kept target ids, ascending; logits index j means ids[j].
    pub ids: Vec<Token>,
    /// Source drafter's vocabulary size.
    pub source_vocab: u64,
    /// Where the source drafter was (its embedding table feeds the input).
    pub source_file: PathBuf,
    /// Source vocabulary fingerprint.
    pub fingerprint: String,
}

impl TrimInfo {
    /// Reads and checks the metadata; `Ok(None)` for an ordinary model.
    pub fn from_gguf(file: &GgufFile) -> Result<Option<Self>, TrimError> {
        let Some(ids_value) = file.get(KEY_IDS) else {
            return Ok(None);
        };
        let bad = |s: String| TrimError::BadTrimmedFile(s);
        let ids: Vec<Token> = ids_value
            .as_array()
            .ok_or_else(|| bad(format!("{KEY_IDS} is not an array")))?
            .to_u64s()
            .and_then(|ids| ids.into_iter().map(|x| Token::try_from(x).ok()).collect())
            .ok_or_else(|| bad(format!("{KEY_IDS} holds non-id values")))?;
        let source_vocab = file
            .get_u64(KEY_SOURCE_VOCAB)
            .map_err(|e| bad(e.to_string()))?;
        let source_file = PathBuf::from(
            file.get_str(KEY_SOURCE_FILE)
                .map_err(|e| bad(e.to_string()))?,
        );
        let fingerprint = file
            .get_str(KEY_VOCAB_FINGERPRINT)
            .map_err(|e| bad(e.to_string()))?
            .to_owned();
        if ids.is_empty() || !ids.windows(2).all(|w| w[0] < w[1]) {
            return Err(bad(
                "kept ids must be non-empty and strictly ascending".into()
            ));
        }
        if *ids.last().unwrap_or(&0) as u64 >= source_vocab {
            return Err(bad(format!(
                "kept id beyond the source vocabulary of {source_vocab}"
            )));
        }
        let arch = file.architecture()?;
        let k = file
            .get_u64(&format!("{arch}.vocab_size"))
            .map_err(|e| bad(e.to_string()))?;
        if k != ids.len() as u64 {
            return Err(bad(format!(
                "{arch}.vocab_size = {k} but {} ids are listed",
                ids.len()
            )));
        }
        let head = file
            .tensor(OUTPUT)
            .or(file.tensor(TOKEN_EMBD))
            .ok_or_else(|| bad("no LM head".into()))?;
        if head.n_rows() != k {
            return Err(bad(format!(
                "LM head has {} rows, expected K = {k}",
                head.n_rows()
            )));
        }
        Ok(Some(Self {
            ids,
            source_vocab,
            source_file,
            fingerprint,
        }))
    }
}
