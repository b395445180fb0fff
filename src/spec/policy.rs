//! How many tokens to draft: fixed γ, a confidence cut-off (p_min), or the
//! cost-aware adaptive policy.
//!
//! The adaptive policy maximises expected tokens per second. A round that
//! drafts k tokens with acceptance probabilities a_1..a_k yields
//! E = 1 + Σ_m Π_{i≤m} a_i tokens for k·t_draft + t_verify(k+1) ms. Drafting
//! sequentially, one more token is worth it while its expected gain per
//! extra millisecond (looking a few tokens ahead) beats R*, the best rate
//! the process can sustain: the renewal-reward stopping rule, with R* taken
//! as max(target-only rate, recently realised rate). γ = 0 (plain decoding)
//! falls out when even the first token does not pay. Costs are measured:
//! t_verify(b) at start-up and refined online per batch size, t_draft
//! online. Acceptance is predicted from the drafter's confidence through
//! bins calibrated on the acceptances actually observed.

use crate::draft::DraftSource;

/// Longest draft edgespec ever proposes in one round.
pub const MAX_DRAFT: usize = 64;

/// Draft-length settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DraftLength {
    /// Always draft this many tokens (fewer at the limits).
    Fixed(usize),
    /// Cost-aware: pick each round's length from measured costs and
    /// predicted acceptance, up to the cap.
    Auto {
        /// Longest draft considered.
        max: usize,
    },
}

/// Policy settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyConfig {
    /// Fixed or adaptive length.
    pub length: DraftLength,
    /// Stop drafting when the drafter's top probability falls below this.
    pub p_min: Option<f32>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            length: DraftLength::Auto { max: 8 },
            p_min: None,
        }
    }
}

/// Invalid policy settings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// γ outside 0..=MAX_DRAFT.
    #[error("draft length {0} is outside 0..={MAX_DRAFT}")]
    Gamma(usize),
    /// p_min outside [0, 1].
    #[error("p-min must be in [0, 1], got {0}")]
    PMin(f32),
}

impl PolicyConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let g = match self.length {
            DraftLength::Fixed(g) | DraftLength::Auto { max: g } => g,
        };
        if g > MAX_DRAFT {
            return Err(PolicyError::Gamma(g));
        }
        if let Some(p) = self.p_min {
            if !(0.0..=1.0).contains(&p) {
                return Err(PolicyError::PMin(p));
            }
        }
        Ok(())
    }

    /// The longest draft this configuration asks of a model drafter.
    pub fn cap(&self) -> usize {
        match self.length {
            DraftLength::Fixed(g) | DraftLength::Auto { max: g } => g,
        }
    }

    /// The longest draft `source` may propose. A fixed length holds for every
    /// source; the automatic policy lets free lookup drafts run to
    /// [`MAX_DRAFT`], since it prices each token by the measured cost of
    /// verifying it, and a copied span is often accepted whole, however long.
    pub fn cap_for(&self, source: DraftSource) -> usize {
        match (self.length, source) {
            (DraftLength::Auto { .. }, DraftSource::Lookup { .. }) => MAX_DRAFT,
            _ => self.cap(),
        }
    }
}

/// Exponential moving average with a count.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ema {
    value: f64,
    count: u32,
}

impl Ema {
    const WEIGHT: f64 = 0.1;

    /// Adds an observation (the first one sets the value).
    pub fn add(&mut self, x: f64) {
        self.value = if self.count == 0 {
            x
        } else {
            self.value + Self::WEIGHT * (x - self.value)
        };
        self.count = self.count.saturating_add(1);
    }

    /// The average, if anything was observed.
    pub fn get(&self) -> Option<f64> {
        (self.count > 0).then_some(self.value)
    }
}

/// Measured costs in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct CostModel {
    /// Target decode time by batch size (index b = batch of b tokens).
    verify: [Ema; MAX_DRAFT + 2],
    /// Model drafter time per step after the first drafted token (one token fed).
    draft: Ema,
    /// Model drafter time per token fed in a catch-up batch.
    catch_up: Ema,
}

impl Default for CostModel {
    fn default() -> Self {
        Self {
            verify: [Ema::default(); MAX_DRAFT + 2],
            draft: Ema::default(),
            catch_up: Ema::default(),
        }
    }
}

impl CostModel {
    /// Records a target decode of `batch` tokens.
    pub fn observe_verify(&mut self, batch: usize, ms: f64) {
        if let Some(slot) = self.verify.get_mut(batch) {
            slot.add(ms);
        }
    }

    /// Records drafter time for `tokens` drafter steps.
    pub fn observe_draft(&mut self, tokens: usize, ms: f64) {
        if tokens > 0 {
            self.draft.add(ms / tokens as f64);
        }
    }

    /// Records a drafter catch-up batch of `tokens` tokens.
    pub fn observe_catch_up(&mut self, tokens: usize, ms: f64) {
        if tokens > 0 {
            self.catch_up.add(ms / tokens as f64);
        }
    }

    /// Model drafter ms to catch up on `tokens` tokens (drafter step time per
    /// token until catch-ups are measured).
    pub fn catch_up_ms(&self, tokens: usize) -> f64 {
        let per_token = self.catch_up.get().or(self.draft.get()).unwrap_or(0.0);
        per_token * tokens as f64
    }

    /// Model drafter ms per token, once measured.
    pub fn draft_ms(&self) -> Option<f64> {
        self.draft.get()
    }

    /// Target ms for a batch of `batch` tokens, if that size was measured.
    pub fn measured_ms(&self, batch: usize) -> Option<f64> {
        self.verify.get(batch).and_then(Ema::get)
    }

    /// Target ms for a batch of `batch` tokens: measured, else linearly
    /// interpolated/extrapolated from the nearest measured sizes.
    pub fn verify_ms(&self, batch: usize) -> f64 {
        if let Some(v) = self.verify.get(batch).and_then(Ema::get) {
            return v;
        }
        let measured: Vec<(usize, f64)> = self
            .verify
            .iter()
            .enumerate()
            .filter_map(|(b, e)| e.get().map(|v| (b, v)))
            .collect();
        match measured.as_slice() {
            [] => batch as f64,
            [(b, v)] => v * batch as f64 / *b as f64,
            _ => {
                let below = measured.iter().rev().find(|(b, _)| *b < batch);
                let above = measured.iter().find(|(b, _)| *b > batch);
                let (lo, hi) = match (below, above) {
                    (Some(lo), Some(hi)) => (*lo, *hi),
                    (None, _) => (measured[0], measured[1]),
                    (_, None) => (measured[measured.len() - 2], measured[measured.len() - 1]),
                };
                let slope = (hi.1 - lo.1) / (hi.0 - lo.0) as f64;
                (lo.1 + slope * (batch as f64 - lo.0 as f64)).max(0.0)
            }
        }
    }
}

/// How often something happened, over a fading window of observations,
/// shrunk towards a prior while observations are few.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Frequency {
    hits: f64,
    seen: f64,
}

impl Frequency {
    /// Records one outcome; observations older than `memory` fade out.
    pub fn observe(&mut self, hit: bool, memory: f64) {
        if self.seen >= memory {
            let keep = (memory - 1.0) / memory;
            self.hits *= keep;
            self.seen *= keep;
        }
        self.seen += 1.0;
        self.hits += f64::from(u8::from(hit));
    }

    /// The frequency, with `prior` counted as `weight` observations.
    pub fn estimate(&self, prior: f64, weight: f64) -> f64 {
        (self.hits + weight * prior) / (self.seen + weight)
    }
}

/// Predicts the acceptance of a drafted token from the drafter's confidence,
/// with ten bins calibrated on observed outcomes (prior: the bin centre).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AcceptanceModel {
    bins: [Frequency; 10],
}

impl AcceptanceModel {
    const PRIOR_WEIGHT: f64 = 4.0;
    /// Observations older than this many (per bin) fade out.
    const MEMORY: f64 = 200.0;

    fn bin(confidence: f32) -> usize {
        ((confidence.clamp(0.0, 1.0) * 10.0) as usize).min(9)
    }

    /// Predicted acceptance probability of a token drafted with this confidence.
    pub fn predict(&self, confidence: f32) -> f64 {
        let prior = f64::from(confidence.clamp(0.0, 1.0));
        self.bins[Self::bin(confidence)].estimate(prior, Self::PRIOR_WEIGHT)
    }

    /// Records whether a token drafted with this confidence was accepted.
    pub fn observe(&mut self, confidence: f32, accepted: bool) {
        self.bins[Self::bin(confidence)].observe(accepted, Self::MEMORY);
    }
}

/// Predicts the acceptance of lookup drafts from how much context the match
/// shares with the text (see `LookupMatch::matched`), in doubling classes
/// (1–2, 3–4, 5–8, …, 33+ tokens): a long shared context is evidence of a
/// verbatim copy. Per class it learns the first token's acceptance, and the
/// acceptance of each later token given that the ones before it were
/// accepted (copied spans succeed or fail together, so the two differ).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LookupModel {
    first: [Frequency; Self::CLASSES],
    /// By matched-context class, then by draft-position class (positions
    /// 1, 2–3, 4–7, …, 32+): deep into a copy that has held so far, the
    /// next token is likelier to hold too.
    next: [[Frequency; Self::CLASSES]; Self::CLASSES],
}

impl LookupModel {
    const CLASSES: usize = 6;
    /// Rounds (first token) or tokens (later ones, per class) that fade out.
    const MEMORY_FIRST: f64 = 50.0;
    const MEMORY_NEXT: f64 = 500.0;
    /// Before any outcome, a lookup token is a coin flip, weighed as two.
    const PRIOR: f64 = 0.5;
    const PRIOR_WEIGHT: f64 = 2.0;

    fn class(matched: usize) -> usize {
        // 1–2 → 0, 3–4 → 1, 5–8 → 2, 9–16 → 3, 17–32 → 4, 33+ → 5.
        Self::doubling(matched.saturating_sub(1))
    }

    fn position_class(position: usize) -> usize {
        // 1 → 0, 2–3 → 1, 4–7 → 2, 8–15 → 3, 16–31 → 4, 32+ → 5.
        Self::doubling(position)
    }

    /// 0–1 → 0, 2–3 → 1, 4–7 → 2, …, capped at the last class.
    fn doubling(x: usize) -> usize {
        let bits = usize::BITS - x.max(1).leading_zeros();
        (bits as usize - 1).min(Self::CLASSES - 1)
    }

    /// Predicted acceptance of the token at draft `position` (0-based)
    /// given that the ones before it were accepted. A position class with
    /// no outcomes yet takes the one before it as its prior.
    pub fn predict(&self, matched: usize, position: usize) -> f64 {
        let c = Self::class(matched);
        let mut estimate = self.first[c].estimate(Self::PRIOR, Self::PRIOR_WEIGHT);
        if position > 0 {
            for class in &self.next[c][..=Self::position_class(position)] {
                estimate = class.estimate(estimate, Self::PRIOR_WEIGHT);
            }
        }
        estimate
    }

    /// Records a verified lookup draft: `accepted` of its first `tested`
    /// tokens (the rest were never compared).
    pub fn observe(&mut self, matched: usize, tested: usize, accepted: usize) {
        let c = Self::class(matched);
        if tested == 0 {
            return;
        }
        self.first[c].observe(accepted > 0, Self::MEMORY_FIRST);
        for i in 1..tested {
            self.next[c][Self::position_class(i)].observe(i < accepted, Self::MEMORY_NEXT);
        }
    }
}

/// Expected tokens per millisecond of a round that drafts `p.len()` tokens
/// at `draft_ms` each, where p[m] is the probability that the first m+1
/// draft tokens are all accepted.
pub fn round_rate(p: &[f64], draft_ms: f64, costs: &CostModel) -> f64 {
    let tokens = 1.0 + p.iter().sum::<f64>();
    let ms = p.len() as f64 * draft_ms + costs.verify_ms(p.len() + 1);
    if ms <= 0.0 {
        return f64::INFINITY;
    }
    tokens / ms
}

/// Drafting costs of one decision, in ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DraftCost {
    /// Paid once before the next token (a drafter's catch-up batch).
    pub upfront_ms: f64,
    /// Paid per drafted token.
    pub per_token_ms: f64,
}

/// The stopping rule. `p` holds cumulative acceptance probabilities of the
/// tokens drafted so far; `next(i)` estimates the acceptance of the token at
/// draft position i (0-based) given that the ones before it are accepted;
/// `room` is how many more may be drafted at `cost`; `best_rate` is R*.
/// True when some extension by 1..=room tokens gains more tokens per extra
/// ms than R*.
pub fn worth_extending(
    p: &[f64],
    next: impl Fn(usize) -> f64,
    room: usize,
    cost: DraftCost,
    costs: &CostModel,
    best_rate: f64,
) -> bool {
    let k = p.len();
    let mut cumulative = p.last().copied().unwrap_or(1.0);
    let mut gain = 0.0;
    let base_ms = costs.verify_ms(k + 1);
    for extra in 1..=room {
        cumulative *= next(k + extra - 1).clamp(0.0, 1.0);
        gain += cumulative;
        let extra_ms =
            cost.upfront_ms + extra as f64 * cost.per_token_ms + costs.verify_ms(k + 1 + extra)
                - base_ms;
        if extra_ms <= 0.0 || gain / extra_ms > best_rate {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPU curve from DESIGN.md: 1 → 37 ms, 2 → 48, 4 → 88, 8 → 167.
    fn cpu_costs() -> CostModel {
        let mut c = CostModel::default();
        for (b, ms) in [(1, 37.0), (2, 48.0), (4, 88.0), (8, 167.0)] {
            c.observe_verify(b, ms);
        }
        c
    }

    fn per_token(ms: f64) -> DraftCost {
        DraftCost {
            upfront_ms: 0.0,
            per_token_ms: ms,
        }
    }

    #[test]
    fn lookup_acceptance_is_learned_per_matched_context_class() {
        let classes: Vec<usize> = [0, 1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33, 64, 1000]
            .iter()
            .map(|&m| LookupModel::class(m))
            .collect();
        assert_eq!(classes, [0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5]);
        let mut model = LookupModel::default();
        assert_eq!(model.predict(40, 0), 0.5);
        assert_eq!(model.predict(40, 7), 0.5);
        // Long matches copied whole; short ones rejected at once.
        for _ in 0..20 {
            model.observe(40, 32, 32);
            model.observe(2, 1, 0);
        }
        assert!(model.predict(40, 0) > 0.9, "{}", model.predict(40, 0));
        assert!(model.predict(40, 5) > 0.99);
        assert!(model.predict(2, 0) < 0.1);
        // Nothing seen after the first token of short matches: their later
        // tokens fall back to the first token's estimate.
        assert_eq!(model.predict(2, 3), model.predict(2, 0));
        // A copy that breaks at its 5th token lowers the estimate for that
        // position, not for the 2nd.
        let (second, fifth) = (model.predict(40, 1), model.predict(40, 4));
        model.observe(40, 5, 4);
        assert!(model.predict(40, 4) < fifth);
        assert!(model.predict(40, 1) >= second);
    }

    #[test]
    fn frequency_fades_old_observations() {
        let mut f = Frequency::default();
        assert_eq!(f.estimate(0.25, 4.0), 0.25);
        for _ in 0..100 {
            f.observe(true, 10.0);
        }
        for _ in 0..30 {
            f.observe(false, 10.0);
        }
        // Only the last ~10 count: mostly misses now.
        assert!(f.estimate(0.5, 0.0) < 0.1, "{}", f.estimate(0.5, 0.0));
    }

    #[test]
    fn free_lookup_drafts_may_run_longer_only_under_the_automatic_policy() {
        let lookup = DraftSource::Lookup { matched: 3 };
        let auto = PolicyConfig {
            length: DraftLength::Auto { max: 8 },
            p_min: None,
        };
        assert_eq!(auto.cap_for(DraftSource::Model), 8);
        assert_eq!(auto.cap_for(lookup), MAX_DRAFT);
        let fixed = PolicyConfig {
            length: DraftLength::Fixed(3),
            p_min: None,
        };
        assert_eq!(fixed.cap_for(DraftSource::Model), 3);
        assert_eq!(fixed.cap_for(lookup), 3);
    }

    #[test]
    fn a_long_catch_up_defers_drafting() {
        let c = cpu_costs();
        let plain = 1.0 / 37.0;
        assert!(worth_extending(&[], |_| 0.9, 8, per_token(3.0), &c, plain));
        let behind = DraftCost {
            upfront_ms: 60.0,
            per_token_ms: 3.0,
        };
        assert!(!worth_extending(&[], |_| 0.9, 8, behind, &c, plain));
    }

    #[test]
    fn verify_cost_interpolates_and_extrapolates() {
        let c = cpu_costs();
        assert_eq!(c.verify_ms(2), 48.0);
        assert!((c.verify_ms(3) - 68.0).abs() < 1e-9);
        assert!((c.verify_ms(6) - 127.5).abs() < 1e-9);
        assert!(c.verify_ms(9) > 167.0);
        assert_eq!(CostModel::default().verify_ms(3), 3.0);
    }

    #[test]
    fn expensive_drafter_is_not_used_even_when_always_right() {
        // DESIGN.md: drafter at 0.65 of the target's time. At 95% acceptance
        // one draft token is break-even (1.95 tokens in 72 ms vs 1 in 37);
        // at 90% speculation loses, so the rule keeps γ = 0.
        let c = cpu_costs();
        let plain = 1.0 / 37.0;
        assert!(!worth_extending(
            &[],
            |_| 0.9,
            8,
            per_token(0.65 * 37.0),
            &c,
            plain
        ));
        // Longer drafts never pay either: at 95%, γ = 2 gives 2.85 tokens in 116 ms.
        assert!(round_rate(&[0.95, 0.9025], 0.65 * 37.0, &c) < plain);
    }

    #[test]
    fn free_confident_drafts_are_used() {
        // A lookup draft costs nothing to make: with 80% acceptance the
        // second verify position (11 ms for 0.8 tokens) beats 1/37 per ms.
        let c = cpu_costs();
        let plain = 1.0 / 37.0;
        assert!(worth_extending(&[], |_| 0.8, 8, per_token(0.0), &c, plain));
        // ... but not with 10% acceptance.
        assert!(!worth_extending(&[], |_| 0.1, 8, per_token(0.0), &c, plain));
    }

    #[test]
    fn cheap_drafter_drafts_while_it_pays() {
        let c = cpu_costs();
        let plain = 1.0 / 37.0;
        assert!(worth_extending(&[], |_| 0.9, 8, per_token(3.0), &c, plain));
        // After three tokens the cumulative acceptance is low: stop.
        assert!(!worth_extending(
            &[0.3, 0.05, 0.01],
            |_| 0.2,
            5,
            per_token(3.0),
            &c,
            plain
        ));
        // The rate of a round matches its definition.
        let r = round_rate(&[0.9, 0.81], 3.0, &c);
        assert!((r - 2.71 / (6.0 + 68.0)).abs() < 1e-9);
    }

    #[test]
    fn acceptance_model_learns_from_outcomes() {
        let mut m = AcceptanceModel::default();
        assert!((m.predict(0.95) - 0.95).abs() < 1e-6);
        for _ in 0..100 {
            m.observe(0.95, false);
        }
        assert!(m.predict(0.95) < 0.1);
        // Other bins keep their prior.
        assert!((m.predict(0.35) - 0.35).abs() < 1e-6);
    }

    #[test]
    fn config_validation() {
        let mut c = PolicyConfig::default();
        assert!(c.validate().is_ok());
        c.length = DraftLength::Fixed(MAX_DRAFT + 1);
        assert_eq!(c.validate(), Err(PolicyError::Gamma(MAX_DRAFT + 1)));
        c.length = DraftLength::Fixed(3);
        c.p_min = Some(1.5);
        assert_eq!(c.validate(), Err(PolicyError::PMin(1.5)));
    }
}
