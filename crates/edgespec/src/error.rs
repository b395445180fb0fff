//! The one error of a session, whichever engine runs it: what can go wrong
//! assembling it, decoding with it, and keeping its caches and memory.

use crate::draft::{MemoryFileError, VocabError};
use crate::draft_kind::DraftKind;
use crate::ead::policy::EadConfigError;
use crate::engine::EngineError;
use crate::sampling::SamplingError;
use crate::session::prompt_cache::PromptCacheError;
use crate::speculative::policy::PolicyError;

/// Errors of a session's methods: building it, generating with it (target
/// alone, speculative or EAD), its settings, its prompt caches and its
/// memory of earlier outputs. The error behind each is kept as its source.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// llama.cpp or parameter trouble.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The drafter (or EAD's small model) cannot draft for this target.
    #[error(transparent)]
    Vocab(#[from] VocabError),
    /// Bad draft-length policy settings.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// Bad sampling settings.
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    /// Bad EAD settings.
    #[error(transparent)]
    Ead(#[from] EadConfigError),
    /// Saving or restoring a prompt cache.
    #[error(transparent)]
    PromptCache(#[from] PromptCacheError),
    /// Loading or saving the memory of earlier outputs.
    #[error(transparent)]
    Memory(#[from] MemoryFileError),
    /// The draft kind runs a model and none was given.
    #[error("draft kind {0} needs a drafter model")]
    MissingDrafter(DraftKind),
    /// A grammar with an EAD kind (EAD's small model writes unverified
    /// tokens of its own).
    #[error(
        "a grammar is not supported with {0}: use the target alone or a speculative draft kind"
    )]
    GrammarWithEad(DraftKind),
    /// The trimmed kind was given a full model.
    #[error("the drafter is not a trimmed drafter: the trimmed draft kind needs a VocabTrim drafter (make one with `edgespec trim`)")]
    NotTrimmed,
    /// EAD's small model must be a full-vocabulary model.
    #[error("the small model has {small} logits per position but the vocabulary has {vocab}: EAD needs the full-vocabulary small model (a VocabTrim drafter cannot measure exact entropy)")]
    TrimmedSmall {
        /// Logits per position of the small model.
        small: usize,
        /// The large model's vocabulary.
        vocab: usize,
    },
}
