//! edgespec: an on-device LLM inference runtime that makes speculative
//! decoding pay off on small machines. See README.md and DESIGN.md.
#![warn(missing_docs)]

pub mod bench;
pub mod costs;
pub mod draft;
pub mod ead;
pub mod engine;
pub mod error;
pub mod eval;
pub mod ffi;
pub mod generate;
pub mod gguf;
pub mod metrics;
pub mod sampling;
pub mod session;
pub mod speculative;
pub mod synthetic;
pub mod vocabtrim;
