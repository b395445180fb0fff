//! How many tokens to draft: fixed γ, a confidence cut-off (p_min), or the
//! cost-aware adaptive policy.
//!
//! The adaptive policy maximises expected tokens per second. A round that
//! drafts k tokens with acceptance probabilities a_1..a_k yields
//! E = 1 + Σ_m Π_{i≤m} a_i tokens for k·t_draft + t_verify(k+1) ms. Drafting
//! sequentially, one more token is worth it while its expected gain per
//! extra millisecond (looking ahead to every longer draft) beats R*, the
//! best rate the request can sustain: the renewal-reward stopping rule, with
//! R* taken as max(target-only rate, the request's realised rate). γ = 0
//! (plain decoding) falls out when even the first token does not pay. Costs
//! are measured: t_verify(b) at start-up and refined online per batch size,
//! t_draft and the drafter's catch-up batches likewise. Acceptance is
//! predicted from the drafter's confidence through bins calibrated on the
//! acceptances actually observed, per request with the process's history as
//! a weak prior ([`super::acceptance`]).
//!
//! Two structural rules keep the policy safe on text it has never seen:
//! a lookup draft is at most as long as the context its match shares with
//! the text (SuffixDecoding, arXiv 2411.04975: speculation length from the
//! match length), so copies grow round by round only while they hold; and a
//! model drafter that has not been observed yet is tried (optimism under
//! uncertainty) only where it would pay at full acceptance.
//!
//! [`Policy`] is pure: the live loop and the replay simulator drive the same
//! code with measured or profiled times. Its rooms: `config` (settings
//! and their validation), `stopping` (the stopping rule, pure), `tables`
//! (acceptance tables by source and what of them a later process keeps:
//! [`Experience`]), `valuation` (what a model round is worth and how far
//! that estimate errs) and `control` (the round the drafters talk to:
//! [`RoundControl`]); this file holds the policy's state
//! and what a verified round teaches it ([`Policy::record`]).

mod config;
mod control;
mod stopping;
mod tables;
#[cfg(test)]
mod testing;
mod valuation;

pub use config::{PolicyConfig, PolicyError};
pub use control::RoundControl;
pub use stopping::{worth_extending, DraftCost};
pub use tables::Experience;

use super::acceptance::{AcceptanceModel, Layered};
use crate::costs::{CostModel, Ema};
use crate::draft::{Draft, DraftSource};
use stopping::FREE_DRAFT;
use tables::{BranchModels, FreeModels, BINS};
use valuation::EstimateError;

/// Tokens a model drafter must catch up on after a round in which it drafted
/// (at most the last drafted token and the target's own token).
const STEADY_BEHIND: usize = 2;

/// Rounds without a draft after which one probe draft refreshes the estimates.
const PROBE_EVERY: u32 = 16;

/// Drafting rounds after which one round decodes plainly, to measure again
/// what plain decoding costs: the baseline every draft is weighed against,
/// which the policy would otherwise stop measuring while it drafts every
/// round (a stale, too high baseline makes every draft look worth it).
const PLAIN_EVERY: u32 = 128;

/// What one verified round tells the policy.
#[derive(Debug, Clone, Copy)]
pub struct RoundOutcome<'a> {
    /// The round's draft (tokens, confidences, source, catch-up).
    pub draft: &'a Draft,
    /// The draft's nodes the target accepted, in order (a chain's: 0, 1, …).
    pub path: &'a [usize],
    /// Tokens the round added to the output.
    pub emitted: usize,
    /// Drafting time, catch-up included.
    pub draft_ms: f64,
    /// The target's verification pass.
    pub verify_ms: f64,
}

/// The draft-length policy and everything it learns across rounds: costs
/// (kept for the process), acceptance (per request, the process's history
/// as prior) and the request's realised rate.
#[derive(Debug, Clone)]
pub struct Policy {
    config: PolicyConfig,
    costs: CostModel,
    acceptance: AcceptanceModel,
    /// How often a model draft's first token has its confidence in each
    /// tenth (the policy decides whether to keep a draft once it sees it).
    first_confidence: [Layered; BINS],
    /// Acceptance of free drafts by how much context they matched: suffix
    /// matches in the request, in the memory of earlier outputs, and
    /// recycled candidates (one class).
    free: FreeModels,
    /// Acceptance of a tree's branch nodes, once their parent is accepted,
    /// by the share of the drafter's evidence behind them.
    branches: BranchModels,
    /// Realised tokens per ms of this request's recent rounds.
    realized_rate: Ema,
    rounds_without_draft: u32,
    /// Rounds with a draft since the last plain one.
    rounds_since_plain: u32,
    /// A round of this process decoded plainly: its first automatic round
    /// does, so the baseline every draft is weighed against is a decode
    /// pass's own time, not only a timing taken at start-up or carried
    /// over from an earlier process (a single sample, often a noisy one).
    plain_measured: bool,
    /// Rounds without a draft before a probe; doubles while probes do not pay.
    probe_interval: u32,
    /// The current round's model draft is a probe.
    probing: bool,
    /// Tokens model drafts produced since the drafter last caught up on
    /// more than a steady backlog (the current episode).
    episode_tokens: usize,
    /// Tokens an episode produces: what a catch-up premium is repaid over.
    episode_length: Ema,
    /// Tokens this request has produced so far: evidence of how much more
    /// it will produce (see `RoundControl::start`).
    request_tokens: usize,
    /// Free drafts (lookup) are drafted beside the model's: the model
    /// drafter is an addition that must repay its catch-up in what the
    /// request is expected to run, not in its whole room.
    beside_free: bool,
    /// Realised minus estimated saving of model rounds.
    estimate_error: EstimateError,
}

impl Policy {
    /// A policy with nothing measured or learned yet.
    pub fn new(config: PolicyConfig) -> Result<Self, PolicyError> {
        config.validate()?;
        Ok(Self {
            config,
            costs: CostModel::default(),
            acceptance: AcceptanceModel::default(),
            first_confidence: [Layered::default(); BINS],
            free: FreeModels::default(),
            branches: BranchModels::default(),
            realized_rate: Ema::default(),
            rounds_without_draft: 0,
            rounds_since_plain: 0,
            plain_measured: false,
            probe_interval: PROBE_EVERY,
            probing: false,
            episode_tokens: 0,
            episode_length: Ema::default(),
            request_tokens: 0,
            beside_free: false,
            estimate_error: EstimateError::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> PolicyConfig {
        self.config
    }

    /// Measured costs.
    pub fn costs(&self) -> &CostModel {
        &self.costs
    }

    /// Measured costs, for calibration.
    pub fn costs_mut(&mut self) -> &mut CostModel {
        &mut self.costs
    }

    /// Starts a request: acceptance is learned afresh (with what earlier
    /// requests showed as a weak prior), and so is the realised rate.
    pub fn begin_request(&mut self) {
        self.acceptance.begin_request();
        self.first_confidence
            .iter_mut()
            .for_each(Layered::begin_request);
        self.free.begin_request();
        self.branches.begin_request();
        self.realized_rate = Ema::default();
        self.request_tokens = 0;
        self.rounds_without_draft = 0;
        self.probing = false;
        self.close_episode();
        self.estimate_error.begin_request();
    }

    /// Says whether the drafter drafts free (lookup) drafts beside its
    /// model's: a hybrid's model drafter waits until the request has run
    /// long enough to repay its catch-up; a model drafter alone, the only
    /// way to draft, is weighed against the room the request has left.
    pub fn set_beside_free(&mut self, beside_free: bool) {
        self.beside_free = beside_free;
    }

    /// Ends the model drafter's current episode (it is about to pay a
    /// catch-up premium, or the request ended).
    fn close_episode(&mut self) {
        if self.episode_tokens > 0 {
            self.episode_length.add(self.episode_tokens as f64);
            self.episode_tokens = 0;
        }
    }

    fn best_rate(&self) -> f64 {
        let plain = 1.0 / self.costs.verify_ms(1).max(1e-6);
        self.realized_rate.get().map_or(plain, |r| r.max(plain))
    }

    fn draft_cost(&self, source: DraftSource, behind: usize) -> DraftCost {
        if source.is_free() {
            return FREE_DRAFT;
        }
        // The catch-up batch of `behind` tokens yields the first draft
        // token; each further token is one drafter step.
        let step = self.costs.draft_ms().unwrap_or(0.0);
        let catch_up = self.costs.catch_up_ms(behind.max(1));
        DraftCost {
            upfront_ms: (catch_up - step).max(0.0),
            per_token_ms: step,
        }
    }

    /// Updates costs and acceptance estimates from a verified round.
    pub fn record(&mut self, round: RoundOutcome<'_>) {
        let draft = round.draft;
        let drafted = draft.len();
        self.costs.observe_verify(drafted + 1, round.verify_ms);
        let mut step_ms = round.draft_ms;
        // The round's drafting time with a steady catch-up (a longer one is
        // a one-time premium, not what drafting costs).
        let mut steady_draft_ms = round.draft_ms;
        if let Some((tokens, time)) = draft.catch_up() {
            let ms = time.as_secs_f64() * 1e3;
            self.costs.observe_catch_up(tokens, ms);
            step_ms = (step_ms - ms).max(0.0);
            if tokens > STEADY_BEHIND {
                steady_draft_ms = step_ms + self.costs.catch_up_ms(STEADY_BEHIND);
            }
        }
        let model_round = draft.source() == DraftSource::Model && draft.catch_up().is_some();
        self.request_tokens = self.request_tokens.saturating_add(round.emitted);
        let round_ms = round.draft_ms + round.verify_ms;
        if round_ms > 0.0 {
            self.realized_rate.add(round.emitted as f64 / round_ms);
        }
        if drafted == 0 {
            self.rounds_without_draft = self.rounds_without_draft.saturating_add(1);
            self.rounds_since_plain = 0;
            self.plain_measured = true;
            return;
        }
        self.rounds_without_draft = 0;
        self.rounds_since_plain = self.rounds_since_plain.saturating_add(1);
        // The chain's positions after its first rejection were never
        // tested; a tree's branch nodes are tested where their parent was
        // accepted.
        let chain = draft.chain_len();
        let accepted = round
            .path
            .iter()
            .zip(0..chain)
            .take_while(|(&n, i)| n == *i)
            .count();
        let tested = (accepted + 1).min(chain);
        for node in chain..drafted {
            let parent = draft.parents()[node];
            let reached = parent == 0 || round.path.contains(&(parent - 1));
            if let (true, Some(share)) = (reached, draft.confidence()[node]) {
                self.branches
                    .of_mut(draft.source())
                    .observe(share, round.path.contains(&node));
            }
        }
        match draft.source() {
            DraftSource::Model => {
                self.episode_tokens += round.emitted;
                // Probes that do not pay are made rarer; a draft chosen on
                // its own merits resets the interval.
                self.probe_interval = if self.probing {
                    (self.probe_interval.max(PROBE_EVERY) * 2).min(PROBE_EVERY * 16)
                } else {
                    PROBE_EVERY
                };
                // The first token came from the catch-up batch; the rest from steps.
                if drafted > 1 {
                    self.costs.observe_draft(drafted - 1, step_ms);
                }
                for (i, c) in draft.confidence()[..tested].iter().enumerate() {
                    if let Some(c) = c {
                        self.acceptance.observe(*c, i < accepted);
                    }
                }
                if let (true, Some(Some(first))) = (model_round, draft.confidence().first()) {
                    let plain = self.costs.verify_ms(1);
                    let saved = round.emitted as f64 * plain - steady_draft_ms - round.verify_ms;
                    let estimate = self.round_estimate(*first, drafted);
                    self.estimate_error.observe(saved - estimate);
                }
            }
            DraftSource::Lookup { matched } => self.free.lookup.observe(matched, tested, accepted),
            DraftSource::Memory { matched } => self.free.memory.observe(matched, tested, accepted),
            DraftSource::Recycled => self.free.recycled.observe(1, tested, accepted),
        }
    }
}
