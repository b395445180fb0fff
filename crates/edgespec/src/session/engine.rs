//! The one interface a session drives, whichever engine it assembled: the
//! target alone, the speculator (any drafter) or EAD. Each engine says here
//! how it generates, reads a prompt, shows and clears its caches, and what
//! it alone has (measured costs, the free drafts' memory); the session has
//! no per-engine branches.

use super::{DraftKind, Outcome};
use crate::draft::Drafter;
use crate::ead::Ead;
use crate::engine::{Context, Sequence, Token};
use crate::error::GenerateError;
use crate::generate::Piece;
use crate::generate::{generate_target_only, read_prompt, GenerateParams};
use crate::speculative::{CostSnapshot, Speculator};

/// What a session asks of its engine.
pub(super) trait Engine: Send {
    /// One generation from `prompt` (see [`super::Session::generate`]).
    fn generate(
        &mut self,
        prompt: &[Token],
        params: &GenerateParams,
        on_token: &mut dyn FnMut(Piece, &str) -> bool,
    ) -> Result<Outcome, GenerateError>;

    /// Reads `prompt` into every model's cache without generating.
    fn prefill(&mut self, prompt: &[Token]) -> Result<(), GenerateError>;

    /// The target's context.
    fn target(&self) -> &Context;

    /// The target's context, mutably.
    fn target_mut(&mut self) -> &mut Context;

    /// Every model's cache, the target's first.
    fn caches(&self) -> Vec<&Sequence>;

    /// Every model's cache, mutably, the target's first.
    fn caches_mut(&mut self) -> Vec<&mut Sequence>;

    /// Empties every model's cache; what was measured and learned stays.
    fn clear(&mut self);

    /// The kind that refuses a grammar (EAD's small model writes tokens no
    /// one verifies); `None` where a grammar applies.
    fn refuses_grammar(&self) -> Option<DraftKind> {
        None
    }

    /// Pass costs measured and what the policy learned (speculative engines).
    fn costs(&self) -> Option<CostSnapshot> {
        None
    }

    /// The drafter (speculative engines).
    fn drafter(&self) -> Option<&dyn Drafter> {
        None
    }

    /// The drafter, mutably (speculative engines).
    fn drafter_mut(&mut self) -> Option<&mut (dyn Drafter + 'static)> {
        None
    }
}

/// The target alone.
impl Engine for Sequence {
    fn generate(
        &mut self,
        prompt: &[Token],
        params: &GenerateParams,
        on_token: &mut dyn FnMut(Piece, &str) -> bool,
    ) -> Result<Outcome, GenerateError> {
        Ok(Outcome {
            generation: generate_target_only(self, prompt, params, on_token)?,
            speculation: None,
            ead: None,
            sources: Vec::new(),
        })
    }

    fn prefill(&mut self, prompt: &[Token]) -> Result<(), GenerateError> {
        read_prompt(self, prompt, true)?;
        Ok(())
    }

    fn target(&self) -> &Context {
        self.context()
    }

    fn target_mut(&mut self) -> &mut Context {
        self.context_mut()
    }

    fn caches(&self) -> Vec<&Sequence> {
        vec![self]
    }

    fn caches_mut(&mut self) -> Vec<&mut Sequence> {
        vec![self]
    }

    fn clear(&mut self) {
        Sequence::clear(self);
    }
}

impl Engine for Speculator {
    fn generate(
        &mut self,
        prompt: &[Token],
        params: &GenerateParams,
        on_token: &mut dyn FnMut(Piece, &str) -> bool,
    ) -> Result<Outcome, GenerateError> {
        let r = Speculator::generate(self, prompt, params, on_token)?;
        Ok(Outcome {
            generation: r.generation,
            speculation: Some(r.spec),
            ead: None,
            sources: Vec::new(),
        })
    }

    fn prefill(&mut self, prompt: &[Token]) -> Result<(), GenerateError> {
        Speculator::prefill(self, prompt)
    }

    fn target(&self) -> &Context {
        Speculator::target(self)
    }

    fn target_mut(&mut self) -> &mut Context {
        Speculator::target_mut(self)
    }

    fn caches(&self) -> Vec<&Sequence> {
        Speculator::caches(self)
    }

    fn caches_mut(&mut self) -> Vec<&mut Sequence> {
        Speculator::caches_mut(self)
    }

    fn clear(&mut self) {
        Speculator::clear(self);
    }

    fn costs(&self) -> Option<CostSnapshot> {
        Speculator::costs(self)
    }

    fn drafter(&self) -> Option<&dyn Drafter> {
        Speculator::drafter(self)
    }

    fn drafter_mut(&mut self) -> Option<&mut (dyn Drafter + 'static)> {
        Speculator::drafter_mut(self)
    }
}

impl Engine for Ead {
    fn generate(
        &mut self,
        prompt: &[Token],
        params: &GenerateParams,
        on_token: &mut dyn FnMut(Piece, &str) -> bool,
    ) -> Result<Outcome, GenerateError> {
        let r = Ead::generate(self, prompt, params, on_token)?;
        Ok(Outcome {
            generation: r.generation,
            speculation: None,
            ead: Some(r.stats),
            sources: r.sources,
        })
    }

    fn prefill(&mut self, prompt: &[Token]) -> Result<(), GenerateError> {
        Ok(self.sync_both(prompt)?)
    }

    fn target(&self) -> &Context {
        self.large()
    }

    fn target_mut(&mut self) -> &mut Context {
        self.large_mut()
    }

    fn caches(&self) -> Vec<&Sequence> {
        Ead::caches(self)
    }

    fn caches_mut(&mut self) -> Vec<&mut Sequence> {
        Ead::caches_mut(self)
    }

    fn clear(&mut self) {
        Ead::clear(self);
    }

    fn refuses_grammar(&self) -> Option<DraftKind> {
        Some(if self.drafts() {
            DraftKind::EadSpec
        } else {
            DraftKind::Ead
        })
    }
}
