//! The only place that talks to llama.cpp.
//!
//! `llama-cpp-2` initialises the process-wide backend ([`backend`]). Models and
//! contexts are a small owned wrapper over `llama-cpp-sys-2` because the safe
//! crate lacks what edgespec needs: it keeps raw pointers crate-private, ties
//! every context to a borrowed model (no owned sessions for the C API), builds
//! token-only batches (a trimmed drafter needs embedding input), and sizes
//! logits by the tokenizer (a trimmed drafter's are K wide) with panics on
//! bad indices. Every `unsafe` block here carries a `// SAFETY:` line.

mod backend;
mod chat;
mod context;
mod context_params;
mod embedding;
mod error;
mod grammar;
mod logits_kept;
mod model;
mod reading;
mod resident;
mod row_draw;
pub mod rpc;
mod sequence;
mod text;

pub use backend::{
    backend, devices, ggml_type_table, ggml_version, system_info, DeviceInfo, LLAMA_LOG_TARGET,
};
pub use chat::ChatMessage;
pub use context::{Context, Logits, MAX_TREE_LEAVES};
pub use context_params::{CacheType, ContextParams, FlashAttention, MAX_CONTEXT};
pub use embedding::{input_embedding_scale, EmbeddingTable};
pub use error::EngineError;
pub use grammar::Grammar;
pub use logits_kept::{LogitsKept, Nucleus};
pub use model::{Model, ModelParams};
pub use reading::{PromptProgress, StopCheck};
pub use row_draw::{draw_at_temperature, draw_by_weight, RowDraws};
pub use sequence::Sequence;
pub use text::Utf8Stream;

/// A token id (`llama_token`).
pub type Token = i32;
