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

/// Longest draft edgespec ever proposes in one round.
pub const MAX_DRAFT: usize = 16;

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

    /// The longest draft this configuration can ask for.
    pub fn cap(&self) -> usize {
        match self.length {
            DraftLength::Fixed(g) | DraftLength::Auto { max: g } => g,
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

/// Predicts the acceptance of a drafted token from the drafter's confidence,
/// with ten bins calibrated on observed outcomes (prior: the bin centre).
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptanceModel {
    accepted: [f64; 10],
    seen: [f64; 10],
}

impl Default for AcceptanceModel {
    fn default() -> Self {
        Self {
            accepted: [0.0; 10],
            seen: [0.0; 10],
        }
    }
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
        let b = Self::bin(confidence);
        let prior = f64::from(confidence.clamp(0.0, 1.0));
        (self.accepted[b] + Self::PRIOR_WEIGHT * prior) / (self.seen[b] + Self::PRIOR_WEIGHT)
    }

    /// Records whether a token drafted with this confidence was accepted.
    pub fn observe(&mut self, confidence: f32, accepted: bool) {
        let b = Self::bin(confidence);
        if self.seen[b] >= Self::MEMORY {
            let keep = (Self::MEMORY - 1.0) / Self::MEMORY;
            self.accepted[b] *= keep;
            self.seen[b] *= keep;
        }
        self.seen[b] += 1.0;
        self.accepted[b] += f64::from(u8::from(accepted));
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
/// tokens drafted so far; `next` estimates each further token's acceptance;
/// `room` is how many more may be drafted at `cost`; `best_rate` is R*.
/// True when some extension by 1..=room tokens gains more tokens per extra
/// ms than R*.
pub fn worth_extending(
    p: &[f64],
    next: f64,
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
        cumulative *= next.clamp(0.0, 1.0);
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
    fn a_long_catch_up_defers_drafting() {
        let c = cpu_costs();
        let plain = 1.0 / 37.0;
        assert!(worth_extending(&[], 0.9, 8, per_token(3.0), &c, plain));
        let behind = DraftCost {
            upfront_ms: 60.0,
            per_token_ms: 3.0,
        };
        assert!(!worth_extending(&[], 0.9, 8, behind, &c, plain));
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
            0.9,
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
        assert!(worth_extending(&[], 0.8, 8, per_token(0.0), &c, plain));
        // ... but not with 10% acceptance.
        assert!(!worth_extending(&[], 0.1, 8, per_token(0.0), &c, plain));
    }

    #[test]
    fn cheap_drafter_drafts_while_it_pays() {
        let c = cpu_costs();
        let plain = 1.0 / 37.0;
        assert!(worth_extending(&[], 0.9, 8, per_token(3.0), &c, plain));
        // After three tokens the cumulative acceptance is low: stop.
        assert!(!worth_extending(
            &[0.3, 0.05, 0.01],
            0.2,
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
