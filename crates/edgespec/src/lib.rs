//! edgespec: an on-device LLM inference runtime that makes speculative
//! decoding pay off on small machines. This crate is the runtime a board
//! image links: GGUF files, the llama.cpp engine, sampling, drafters,
//! speculative decoding, EAD and the session that assembles them. The C API
//! (`edgespec-capi`) and the tools (`edgespec-tools`: CLI, bench, eval,
//! trimming) build on it. See README.md, ARCHITECTURE.md and DESIGN.md.
#![warn(missing_docs)]
//!
//! The front door: load a target ([`Model::load`]) and, for speculative
//! kinds, a drafter ([`DraftModel::open`]); fill a [`SessionConfig`] (a
//! [`DraftKind`], [`ContextParams`]); [`Session::new`] assembles the engine and
//! [`Session::generate`] returns an [`Outcome`]; a [`Conversation`] keeps
//! chat turns; every assembly and generation error is a [`GenerateError`].
//!
//! ```no_run
//! use std::path::Path;
//! use edgespec::{ContextParams, DraftKind, DraftModel, Model, ModelParams, Session, SessionConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let params = ModelParams::default();
//! let target = Model::load("models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", &params)?;
//! let drafter = DraftModel::open(
//!     Path::new("models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
//!     None,
//!     &params,
//! )?;
//! let config = SessionConfig::new(target, ContextParams::default())
//!     .with_drafter(DraftKind::Hybrid, Some(drafter));
//! let mut session = Session::new(config)?;
//! let prompt = session.prompt_tokens("Write a haiku about RAM.", true)?;
//! let outcome = session.generate(&prompt, 64, |_token, text| {
//!     print!("{text}");
//!     true // false stops
//! })?;
//! println!("\n{:?}", outcome.generation.stop);
//! # Ok(())
//! # }
//! ```

pub mod atomic_file;
pub mod costs;
pub mod draft;
pub mod draft_kind;
pub mod ead;
pub mod engine;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod metrics;
pub mod sampling;
pub mod session;
pub mod speculative;
#[cfg(feature = "synthetic")]
pub mod synthetic;
pub mod vocabtrim;

pub use draft::DraftModel;
pub use draft_kind::DraftKind;
pub use engine::{ContextParams, EngineError, Model, ModelParams};
pub use error::GenerateError;
pub use session::{Conversation, Outcome, Session, SessionConfig};
pub use speculative::PolicyConfig;
