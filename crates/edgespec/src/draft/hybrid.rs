//! Free drafts when they are expected to yield more, the model otherwise.

use super::{
    Draft, DraftControl, DraftSource, Drafter, LookupDrafter, ModelDrafter, OutputMemory, Successor,
};
use std::sync::Arc;
use std::time::Duration;

use crate::costs::CostModel;
use crate::engine::{EngineError, Model, Sequence, Token};

/// Shortest lookup match a hybrid drafter considers by default: the lookup
/// drafter's own; the policy then weighs each match against the model.
pub const DEFAULT_HYBRID_MIN_NGRAM: usize = 2;

/// Prompt lookup and a model drafter: each round the lookup draft (matches
/// of at least `min_ngram` tokens) unless the policy expects the model to
/// yield more per millisecond, and the model where lookup has nothing. The
/// model is any model-running drafter (the replay simulator plugs in
/// recorded ones).
pub struct HybridDrafter<M = ModelDrafter> {
    lookup: LookupDrafter,
    model: M,
    /// Shortest n-gram match that lookup is trusted with.
    pub min_ngram: usize,
}

impl<M: Drafter> HybridDrafter<M> {
    /// Combines the two drafters.
    pub fn new(lookup: LookupDrafter, model: M, min_ngram: usize) -> Self {
        Self {
            lookup,
            model,
            min_ngram,
        }
    }

    /// The model drafter.
    pub fn model_mut(&mut self) -> &mut M {
        &mut self.model
    }
}

impl<M: Drafter> Drafter for HybridDrafter<M> {
    fn reset(&mut self) {
        self.model.reset();
    }

    fn propose(
        &mut self,
        committed: &[Token],
        ctl: &mut dyn DraftControl,
        out: &mut Draft,
    ) -> Result<(), EngineError> {
        // A lookup draft is free to make: make it, then ask the policy
        // whether the model would do better this round.
        let mut lookup = |out: &mut Draft, ctl: &mut dyn DraftControl| {
            self.lookup
                .propose_with(committed, self.min_ngram, ctl, out)
                && !out.is_empty()
        };
        if lookup(out, ctl) && !ctl.prefer(out, DraftSource::Model) {
            return Ok(());
        }
        self.model.propose(committed, ctl, out)?;
        if out.is_empty() {
            // The model did not start after all: the lookup draft, if any.
            lookup(out, ctl);
        }
        Ok(())
    }

    fn commit(&mut self, committed: &[Token]) -> Result<(), EngineError> {
        self.model.commit(committed)
    }

    fn bytes_per_token(&self) -> u64 {
        self.model.bytes_per_token()
    }

    fn prefill(
        &mut self,
        tokens: &[Token],
        costs: Option<&mut CostModel>,
    ) -> Result<Duration, EngineError> {
        self.model.prefill(tokens, costs)
    }

    fn cache(&self) -> Option<&Sequence> {
        self.model.cache()
    }

    fn cache_mut(&mut self) -> Option<&mut Sequence> {
        self.model.cache_mut()
    }

    fn vocabulary(&self) -> Option<&Arc<Model>> {
        self.model.vocabulary()
    }

    fn drafts_lookup(&self) -> bool {
        true
    }

    fn observe_successors(&mut self, token: Token, next: &[Successor]) {
        self.lookup.observe_successors(token, next);
    }

    fn finish(&mut self, committed: &[Token], prompt_len: usize) {
        self.lookup.finish(committed, prompt_len);
    }

    fn forget_outputs(&mut self) {
        self.lookup.forget_outputs();
    }

    fn memory(&self) -> Option<&OutputMemory> {
        Some(self.lookup.memory())
    }

    fn memory_mut(&mut self) -> Option<&mut OutputMemory> {
        self.lookup.memory_mut()
    }
}
