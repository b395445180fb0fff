//! Opening a VocabTrim drafter: the trimmed file, its metadata, the source
//! drafter's embedding table (input side) and vocabulary (compatibility).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::{EmbeddingTable, Model, ModelParams};
use crate::gguf::GgufFile;
use crate::vocabtrim::{TrimError, TrimInfo};

/// Everything a trimmed drafter needs.
pub struct TrimmedSource {
    /// The trimmed model (K-wide head).
    pub model: Arc<Model>,
    /// Its metadata.
    pub info: TrimInfo,
    /// The source drafter's full token embedding.
    pub table: EmbeddingTable,
    /// The source drafter's vocabulary (loaded vocabulary-only).
    pub vocab: Arc<Model>,
}

impl TrimmedSource {
    /// Opens a trimmed drafter. The source drafter is found at `source` if
    /// given, else at the path stored in the file (as written, then relative
    /// to the trimmed file's folder).
    pub fn open(
        path: &Path,
        source: Option<&Path>,
        params: &ModelParams,
    ) -> Result<Self, TrimError> {
        let model = Model::load(path, params)?;
        let info = TrimInfo::from_gguf(model.gguf())?.ok_or_else(|| {
            TrimError::BadTrimmedFile(format!("{} has no VocabTrim metadata", path.display()))
        })?;
        let candidates: Vec<PathBuf> = match source {
            Some(s) => vec![s.to_owned()],
            None => {
                let stored = info.source_file.clone();
                let beside = path
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(stored.file_name().unwrap_or_default());
                vec![stored, beside]
            }
        };
        let source_path = candidates.iter().find(|p| p.is_file()).ok_or_else(|| {
            TrimError::BadTrimmedFile(format!(
                "source drafter {} not found (give it with --draft-source)",
                candidates[0].display()
            ))
        })?;
        let table = EmbeddingTable::new(GgufFile::open(source_path)?)?;
        if table.n_rows() != info.source_vocab {
            return Err(TrimError::BadTrimmedFile(format!(
                "source drafter {} has {} embedding rows, the trimmed file expects {}",
                source_path.display(),
                table.n_rows(),
                info.source_vocab
            )));
        }
        if table.n_embd() != model.n_embd() as usize {
            return Err(TrimError::BadTrimmedFile(format!(
                "source embedding width {} differs from the trimmed model's {}",
                table.n_embd(),
                model.n_embd()
            )));
        }
        let vocab = Model::load(
            source_path,
            &ModelParams {
                vocab_only: true,
                ..params.clone()
            },
        )?;
        Ok(Self {
            model,
            info,
            table,
            vocab,
        })
    }
}
