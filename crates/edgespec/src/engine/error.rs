//! Errors of the llama.cpp wrapper.

use std::path::PathBuf;

use crate::gguf::GgufError;

/// Everything that can go wrong loading models or running contexts.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The llama.cpp backend could not be initialised.
    #[error("llama.cpp backend initialisation failed: {0}")]
    BackendInit(String),
    /// No file at the model path.
    #[error("model file not found: {path}")]
    ModelNotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The model file is not a valid GGUF.
    #[error("invalid model file: {0}")]
    Gguf(#[from] GgufError),
    /// The path cannot be passed to C (not UTF-8 or holds a NUL byte).
    #[error("model path cannot be passed to llama.cpp: {path}")]
    BadPath {
        /// The path given.
        path: PathBuf,
    },
    /// llama.cpp refused the model (unsupported architecture, missing tensors...).
    #[error("llama.cpp could not load {path} (run with -v for llama.cpp's log)")]
    ModelLoadFailed {
        /// The path given.
        path: PathBuf,
    },
    /// llama.cpp could not create a context (out of memory, bad parameters).
    #[error("llama.cpp could not create a context (n_ctx {n_ctx}, n_batch {n_batch})")]
    ContextCreateFailed {
        /// Requested context size.
        n_ctx: u32,
        /// Requested batch size.
        n_batch: u32,
    },
    /// A parameter outside its valid range.
    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParam {
        /// Parameter name.
        name: &'static str,
        /// Value given.
        value: String,
        /// What is allowed.
        reason: &'static str,
    },
    /// The tokens would not fit in the context window.
    #[error("context overflow: {needed} positions needed, the context holds {n_ctx}")]
    ContextFull {
        /// Positions the request needs.
        needed: usize,
        /// Context size.
        n_ctx: u32,
    },
    /// A token id outside the model's vocabulary.
    #[error("token id {token} is outside the vocabulary (0..{n_vocab})")]
    TokenOutOfRange {
        /// The token.
        token: i32,
        /// Vocabulary size.
        n_vocab: i32,
    },
    /// A prompt read was stopped from outside (a stop check said so, see
    /// [`super::Context::set_stop_check`]); the cache is as before it.
    #[error("interrupted while reading the prompt")]
    Interrupted,
    /// `llama_decode` failed.
    #[error("llama_decode failed with code {code}")]
    DecodeFailed {
        /// Its return code.
        code: i32,
    },
    /// Logits were asked for a batch position that did not request them.
    #[error("no logits for batch index {index}")]
    NoLogits {
        /// The index.
        index: usize,
    },
    /// `llama_memory_seq_rm` refused to roll back.
    #[error("could not roll the KV cache back to position {pos}")]
    RollbackFailed {
        /// Target position.
        pos: usize,
    },
    /// `llama_state_seq_get_data` failed, or wrote what cannot be read back.
    #[error("llama.cpp could not save the KV cache (run with -v for llama.cpp's log)")]
    StateSave,

    /// The saved state is not one llama.cpp reads into this context.
    #[error("llama.cpp could not restore a KV cache of {n_tokens} tokens from the saved state")]
    StateRestore {
        /// Positions the state was to hold.
        n_tokens: usize,
    },

    /// Text with an interior NUL byte where C needs a string.
    #[error("text contains a NUL byte")]
    NulInText,
    /// Tokenization failed.
    #[error("tokenization failed ({0} tokens)")]
    Tokenize(i32),
    /// The model has no chat template in its metadata.
    #[error("the model has no chat template (tokenizer.chat_template); run without --chat")]
    NoChatTemplate,
    /// The remote target (ggml RPC) is unusable: refused, unreachable,
    /// lost mid-generation.
    #[error(transparent)]
    Remote(#[from] super::rpc::RpcError),
    /// llama.cpp does not support the model's chat template.
    #[error("llama.cpp does not support this model's chat template")]
    UnsupportedChatTemplate,
}
