//! The acceptance tables the policy prices drafts with, by source (a model
//! token by its confidence, a copy by its matched context and position, a
//! recycled chain, a tree's branches by their share of the evidence), and
//! what of them a later process starts from ([`Experience`]).

use super::Policy;
use crate::costs::Ema;
use crate::draft::DraftSource;
use crate::speculative::acceptance::{copy_prior, AcceptanceModel, Layered, LookupModel, Memory};

/// How fast the distribution of a model draft's first-token confidence is learned.
pub(super) const FIRST_CONFIDENCE: Memory = Memory {
    process: 200.0,
    request: 32.0,
};

/// Confidence tenths.
pub(super) const BINS: usize = 10;

/// What a [`Policy`] learned over its process that a later process with the
/// same models may start from ([`Policy::learned`], [`Policy::recall`]):
/// acceptance by confidence, the spread of a model draft's first-token
/// confidence, lookup acceptance by matched context, the model rounds'
/// estimate error and episode length. Request-level estimates are not kept.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Experience {
    acceptance: AcceptanceModel,
    first_confidence: [Layered; BINS],
    #[serde(flatten)]
    free: FreeModels,
    /// Absent from what earlier versions kept: learned afresh.
    #[serde(default)]
    branches: BranchModels,
    estimate_error: Ema,
    episode_length: Ema,
}

/// Acceptance of each free source, learned apart: a copy of the request's
/// own text, of an earlier output and a chain of recycled candidates hold
/// differently.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct FreeModels {
    pub(super) lookup: LookupModel,
    /// Absent from what earlier versions kept: learned afresh.
    #[serde(default)]
    pub(super) memory: LookupModel,
    #[serde(default)]
    pub(super) recycled: LookupModel,
}

impl FreeModels {
    pub(super) fn begin_request(&mut self) {
        self.lookup.begin_request();
        self.memory.begin_request();
        self.recycled.begin_request();
    }
}

/// Acceptance of branch nodes once their parent is accepted, by the share
/// of the evidence behind them: a suffix match's share of places and a
/// recycled candidate's share of the target's kept probability mean
/// different things, so they are learned apart.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(super) struct BranchModels {
    matched: AcceptanceModel,
    recycled: AcceptanceModel,
}

impl BranchModels {
    pub(super) fn of(&self, source: DraftSource) -> &AcceptanceModel {
        match source {
            DraftSource::Recycled => &self.recycled,
            _ => &self.matched,
        }
    }

    pub(super) fn of_mut(&mut self, source: DraftSource) -> &mut AcceptanceModel {
        match source {
            DraftSource::Recycled => &mut self.recycled,
            _ => &mut self.matched,
        }
    }

    pub(super) fn begin_request(&mut self) {
        self.matched.begin_request();
        self.recycled.begin_request();
    }
}

impl Policy {
    /// What this process learned, for a later one ([`Self::recall`]).
    pub fn experience(&self) -> Experience {
        // The episode under way counts as ended (a one-shot process ends
        // in its first).
        let mut episode_length = self.episode_length;
        if self.episode_tokens > 0 {
            episode_length.add(self.episode_tokens as f64);
        }
        let mut learned = Experience {
            acceptance: self.acceptance.clone(),
            first_confidence: self.first_confidence,
            free: self.free.clone(),
            branches: self.branches.clone(),
            estimate_error: self.estimate_error.process,
            episode_length,
        };
        // The request level is not kept.
        learned.acceptance.begin_request();
        learned.branches.begin_request();
        learned
            .first_confidence
            .iter_mut()
            .for_each(Layered::begin_request);
        learned.free.begin_request();
        learned
    }

    /// Starts from what an earlier process learned, as if this process
    /// had made its observations.
    pub fn recall(&mut self, learned: &Experience) {
        self.acceptance = learned.acceptance.clone();
        self.first_confidence = learned.first_confidence;
        self.free = learned.free.clone();
        self.branches = learned.branches.clone();
        self.estimate_error.process = learned.estimate_error;
        self.episode_length = learned.episode_length;
    }

    /// Estimated acceptance of the draft token at `position` (0-based),
    /// given that the tokens before it are accepted. `confidence` is a
    /// model token's top probability; for a copied token, its share of the
    /// vote of the earlier places it was copied from, for a recycled one
    /// its share of the target's kept probability (unknown: whole), which
    /// scales what its source's estimate says.
    pub(super) fn token_estimate(
        &self,
        source: DraftSource,
        confidence: Option<f32>,
        position: usize,
    ) -> f64 {
        let share = || confidence.map_or(1.0, |c| f64::from(c).clamp(0.0, 1.0));
        match source {
            DraftSource::Model => self.acceptance.predict(confidence.unwrap_or(0.5)),
            DraftSource::Lookup { matched } => {
                share()
                    * self
                        .free
                        .lookup
                        .predict(matched, position, copy_prior(matched))
            }
            DraftSource::Memory { matched } => {
                share()
                    * self
                        .free
                        .memory
                        .predict(matched, position, copy_prior(matched))
            }
            // A recycled chain copies nothing: a coin flip until observed.
            DraftSource::Recycled => share() * self.free.recycled.predict(1, position, 0.5),
        }
    }

    /// Records whether a model-drafted token of this confidence would have
    /// been accepted, observed without drafting it (EAD sees the small
    /// model's choice at every large-model position for free).
    pub fn observe_acceptance(&mut self, confidence: f32, accepted: bool) {
        self.acceptance.observe(confidence, accepted);
        self.observe_first_confidence(confidence);
    }

    pub(super) fn observe_first_confidence(&mut self, confidence: f32) {
        let bin = ((confidence.clamp(0.0, 1.0) * BINS as f32) as usize).min(BINS - 1);
        for (b, f) in self.first_confidence.iter_mut().enumerate() {
            f.observe(b == bin, FIRST_CONFIDENCE);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::draft::{Draft, DraftControl, DraftSource};
    use crate::speculative::acceptance::copy_prior;
    use crate::speculative::policy::testing::*;
    use crate::speculative::policy::{Experience, Policy};

    /// Issue 17: a later process starts from what an earlier one learned
    /// (kept as JSON in the cost cache), not from optimistic priors: a
    /// drafter whose drafts all failed is not tried on the next process's
    /// first round, where an untried one is.
    #[test]
    fn a_later_process_starts_from_what_an_earlier_one_learned() {
        let mut earlier = auto_policy(memory_bound());
        assert!(
            model_draft(&mut earlier.clone(), 150, 0.97) > 0,
            "untried: tried"
        );
        for _ in 0..20 {
            record_round(&mut earlier, DraftSource::Model, 3, 0);
            record_round(&mut earlier, DraftSource::Lookup { matched: 5 }, 3, 0);
        }
        let json = serde_json::to_string(&earlier.experience()).unwrap();
        let learned: Experience = serde_json::from_str(&json).unwrap();
        assert_eq!(learned, earlier.experience());
        let mut later = auto_policy(memory_bound());
        later.recall(&learned);
        assert_eq!(model_draft(&mut later, 150, 0.97), 0);
        // The episode under way when a process ends is kept as ended: a
        // one-shot process never begins a second request that would end it.
        let mut one_shot = auto_policy(memory_bound());
        for _ in 0..3 {
            record_round(&mut one_shot, DraftSource::Model, 1, 1);
        }
        assert_eq!(one_shot.experience().episode_length.get(), Some(6.0));
        assert_eq!(later.experience(), learned);
        // Only the process level is kept: a new request in the earlier
        // process predicts what the later one does.
        earlier.begin_request();
        for c in [0.15, 0.55, 0.95] {
            assert_eq!(earlier.acceptance.predict(c), later.acceptance.predict(c));
        }
        assert_eq!(
            earlier.free.lookup.predict(5, 0, copy_prior(5)),
            later.free.lookup.predict(5, 0, copy_prior(5))
        );
        assert!(later.free.lookup.predict(5, 0, copy_prior(5)) < 0.1);
        // A stored frequency that is not one is refused.
        let bad = json.replacen("\"hits\":0.0", "\"hits\":-1.0", 1);
        assert_ne!(bad, json);
        assert!(serde_json::from_str::<Experience>(&bad).is_err());
    }

    /// Each free source is learned apart, and a weak match gives way to
    /// recycled candidates once those have shown they hold more often (and
    /// not before), on both machine profiles.
    #[test]
    fn free_sources_are_learned_apart_and_the_likelier_one_drafts() {
        for costs in [compute_bound(), memory_bound()] {
            let mut p = auto_policy(costs);
            let weak = DraftSource::Lookup { matched: 2 };
            let prefers_recycled = |p: &mut Policy| {
                // Past the periodic plain round.
                record_round(p, DraftSource::Model, 0, 0);
                let mut ctl = p.round(64);
                let mut draft = Draft::default();
                draft.clear(weak);
                draft.push(1, None);
                ctl.next(&draft);
                ctl.prefer(&draft, DraftSource::Recycled)
            };
            for _ in 0..30 {
                record_round(&mut p, weak, 2, 1);
                record_round(&mut p, DraftSource::Recycled, 2, 0);
            }
            assert!(!prefers_recycled(&mut p));
            for _ in 0..60 {
                record_round(&mut p, weak, 2, 0);
                record_round(&mut p, DraftSource::Recycled, 3, 3);
                record_round(&mut p, DraftSource::Memory { matched: 2 }, 2, 0);
            }
            assert!(prefers_recycled(&mut p));
            let estimate = |source| p.token_estimate(source, None, 0);
            assert!(estimate(DraftSource::Recycled) > 0.8);
            assert!(estimate(DraftSource::Memory { matched: 2 }) < 0.2);
            assert!(estimate(weak) < 0.2);
        }
    }
}
