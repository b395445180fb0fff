//! Constrained output: llama.cpp's grammar engine (GBNF) over a model's
//! vocabulary, as a mask on logits rows and a state advanced token by token.

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::Arc;

use llama_cpp_sys_2 as sys;

use super::{EngineError, Model, Token};

/// A grammar's parse state after the tokens accepted so far. llama.cpp
/// aborts the process when it is made to accept a token the grammar does
/// not allow, so [`Self::accept`] checks first and refuses such a token.
pub struct Grammar {
    raw: NonNull<sys::llama_sampler>,
    /// The vocabulary the grammar matches token pieces from.
    model: Arc<Model>,
    /// One candidate per vocabulary entry, reused for every row.
    scratch: Vec<sys::llama_token_data>,
}

// SAFETY: a grammar sampler is plain data (rules, stacks, a pointer to the
// model's vocabulary, which the Arc keeps alive and llama.cpp only reads);
// Grammar is not Sync, so one thread uses it at a time.
unsafe impl Send for Grammar {}

impl std::fmt::Debug for Grammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grammar").finish_non_exhaustive()
    }
}

impl Drop for Grammar {
    fn drop(&mut self) {
        // SAFETY: raw came from llama_sampler_init_grammar or
        // llama_sampler_clone and is freed once.
        unsafe { sys::llama_sampler_free(self.raw.as_ptr()) }
    }
}

impl Clone for Grammar {
    fn clone(&self) -> Self {
        // SAFETY: raw is a live grammar sampler; the clone owns its own state.
        let raw = unsafe { sys::llama_sampler_clone(self.raw.as_ptr()) };
        Self {
            // llama_sampler_clone of a grammar sampler only fails on
            // allocation failure, which aborts like any Rust allocation.
            raw: NonNull::new(raw).expect("llama_sampler_clone returned NULL"),
            model: self.model.clone(),
            scratch: Vec::new(),
        }
    }
}

impl Grammar {
    /// Parses `gbnf` (llama.cpp's GBNF) with `root` as the start rule.
    pub fn new(model: Arc<Model>, gbnf: &str, root: &str) -> Result<Self, EngineError> {
        let bad = |reason: &'static str| EngineError::InvalidParam {
            name: "grammar",
            value: format!("{} bytes", gbnf.len()),
            reason,
        };
        if gbnf.trim().is_empty() {
            return Err(bad("is empty"));
        }
        let text = CString::new(gbnf).map_err(|_| bad("contains a NUL byte"))?;
        let root = CString::new(root).map_err(|_| bad("its root name contains a NUL byte"))?;
        // SAFETY: the vocabulary outlives the sampler (the Arc is kept); both
        // strings are NUL-terminated and live for the call. llama.cpp
        // catches its parser's exceptions and returns NULL on any error.
        let raw = unsafe {
            sys::llama_sampler_init_grammar(model.vocab_ptr(), text.as_ptr(), root.as_ptr())
        };
        let raw = NonNull::new(raw).ok_or_else(|| {
            bad("llama.cpp could not parse it (a syntax error, an undefined or left-recursive rule, or no such root; -v shows llama.cpp's message)")
        })?;
        Ok(Self {
            raw,
            model,
            scratch: Vec::new(),
        })
    }

    /// Sets to −∞ the logits of the tokens the grammar does not allow next.
    pub fn mask(&mut self, logits: &mut [f32]) {
        self.scratch.clear();
        self.scratch.extend(
            logits
                .iter()
                .enumerate()
                .map(|(id, &logit)| sys::llama_token_data {
                    id: id as Token,
                    logit,
                    p: 0.0,
                }),
        );
        self.apply_scratch();
        for (l, c) in logits.iter_mut().zip(&self.scratch) {
            *l = c.logit;
        }
    }

    /// True when the grammar allows `token` next.
    pub fn allows(&mut self, token: Token) -> bool {
        if !(0..self.model.n_vocab()).contains(&token) {
            return false;
        }
        self.scratch.clear();
        self.scratch.push(sys::llama_token_data {
            id: token,
            logit: 0.0,
            p: 0.0,
        });
        self.apply_scratch();
        self.scratch[0].logit.is_finite()
    }

    /// Advances the state by `token`; false (and no change) when the
    /// grammar does not allow it.
    pub fn accept(&mut self, token: Token) -> bool {
        if !self.allows(token) {
            return false;
        }
        // SAFETY: raw is live and the grammar allows token (checked just
        // above), so llama.cpp neither throws nor aborts.
        unsafe { sys::llama_sampler_accept(self.raw.as_ptr(), token) };
        true
    }

    fn apply_scratch(&mut self) {
        let mut array = sys::llama_token_data_array {
            data: self.scratch.as_mut_ptr(),
            size: self.scratch.len(),
            selected: -1,
            sorted: false,
        };
        // SAFETY: array points at scratch's initialised elements for the
        // call; the grammar only rewrites their logits (ids are in the
        // vocabulary: logits rows are vocabulary-wide, allows() checks).
        unsafe { sys::llama_sampler_apply(self.raw.as_ptr(), &mut array) };
    }
}
