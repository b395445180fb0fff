//! Token counts: what calibration produces and trimming consumes.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use edgespec::engine::Model;
use edgespec::vocabtrim::TrimError;

/// Where counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CountSource {
    /// Tokens the target generated (the paper's method).
    TargetGenerations,
    /// Tokens of a text corpus.
    RawText,
}

/// Occurrences of each token id, for one vocabulary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenCounts {
    /// Format version.
    pub format: u32,
    /// How the counts were made.
    pub source: CountSource,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// sha256 of the vocabulary's token texts (see [`vocab_fingerprint`]).
    pub vocab_fingerprint: String,
    /// sha256 of what was counted (prompts or documents, and the
    /// generation settings): a resumed run must count the same. Absent in
    /// files written before it was recorded.
    #[serde(default)]
    pub inputs_sha256: Option<String>,
    /// Prompts (or text lines) processed so far.
    pub items_done: usize,
    /// Prompts (or lines) in the input.
    pub items_total: usize,
    /// Count per token id.
    pub counts: Vec<u64>,
}

/// sha256 over every token's text (NUL-separated): equal fingerprints mean
/// the same ids stand for the same text.
pub fn vocab_fingerprint(model: &Model) -> String {
    let mut h = Sha256::new();
    for id in 0..model.n_vocab() {
        h.update(model.token_text(id).unwrap_or_default().as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// sha256 over `items` (NUL-separated) and a description of the settings.
pub fn inputs_sha256(items: &[String], settings: &str) -> String {
    let mut h = Sha256::new();
    h.update(settings.as_bytes());
    for item in items {
        h.update([0u8]);
        h.update(item.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl TokenCounts {
    /// Zero counts for `model`'s vocabulary.
    pub fn new(model: &Model, source: CountSource, items_total: usize) -> Self {
        let vocab_size = model.n_vocab().max(0) as usize;
        Self {
            format: 1,
            source,
            vocab_size,
            vocab_fingerprint: vocab_fingerprint(model),
            inputs_sha256: None,
            items_done: 0,
            items_total,
            counts: vec![0; vocab_size],
        }
    }

    /// Total tokens counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Reads and validates a counts file.
    pub fn load(path: &Path) -> Result<Self, TrimError> {
        let bad = |reason: String| TrimError::BadCounts {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        Self::parse(&text).map_err(bad)
    }

    /// Parses and validates the text of a counts file; the error says what
    /// is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let counts: Self =
            serde_json::from_str(text).map_err(|e| format!("not a counts file: {e}"))?;
        if counts.format != 1 {
            return Err(format!("unsupported format {}", counts.format));
        }
        if counts.counts.len() != counts.vocab_size {
            return Err(format!(
                "{} counts for a vocabulary of {}",
                counts.counts.len(),
                counts.vocab_size
            ));
        }
        if counts.items_done > counts.items_total {
            return Err(format!(
                "{} of {} items done",
                counts.items_done, counts.items_total
            ));
        }
        Ok(counts)
    }

    /// Checks that the counts were made with `model`'s vocabulary.
    pub fn check_vocab(&self, model: &Model) -> Result<(), TrimError> {
        let expected = vocab_fingerprint(model);
        if self.vocab_fingerprint != expected || self.vocab_size != model.n_vocab().max(0) as usize
        {
            return Err(TrimError::CountsVocabMismatch {
                expected,
                expected_size: model.n_vocab().max(0) as usize,
                found: self.vocab_fingerprint.clone(),
                found_size: self.vocab_size,
            });
        }
        Ok(())
    }

    /// Writes the file atomically (see [`crate::scratch`]): an interrupted
    /// run never leaves a half-written counts file.
    pub fn save(&self, path: &Path) -> Result<(), TrimError> {
        let io = |source| TrimError::Io {
            path: path.to_owned(),
            source,
        };
        let json = serde_json::to_string(self).map_err(|e| io(std::io::Error::other(e)))?;
        crate::scratch::write_atomically(path, json.as_bytes()).map_err(io)
    }
}
