//! Lookup when the text repeats itself, the model otherwise.

use super::{Draft, DraftControl, Drafter, LookupDrafter, ModelDrafter};
use crate::engine::{EngineError, Token};
use crate::spec::CostModel;

/// Uses prompt lookup when it finds a match of at least `min_ngram` tokens
/// (a confident match: long n-grams repeat verbatim), else the model
/// (any model-running drafter; the replay simulator plugs in recorded ones).
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
    fn name(&self) -> &'static str {
        "hybrid"
    }

    fn reset(&mut self) {
        self.model.reset();
    }

    fn propose(
        &mut self,
        committed: &[Token],
        ctl: &mut dyn DraftControl,
        out: &mut Draft,
    ) -> Result<(), EngineError> {
        // A match the policy turned down (empty draft) falls back to the model.
        if self
            .lookup
            .propose_with(committed, self.min_ngram, ctl, out)
            && !out.is_empty()
        {
            return Ok(());
        }
        self.model.propose(committed, ctl, out)
    }

    fn commit(&mut self, committed: &[Token]) -> Result<(), EngineError> {
        self.model.commit(committed)
    }

    fn bytes_per_token(&self) -> u64 {
        self.model.bytes_per_token()
    }

    fn calibrate(&mut self, costs: &mut CostModel) -> Result<(), EngineError> {
        self.model.calibrate(costs)
    }

    fn drafts_lookup(&self) -> bool {
        true
    }
}
