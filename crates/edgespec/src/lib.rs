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
