//! Token selection over a logits row: repetition penalties, top-k, top-p,
//! min-p and temperature, then a seeded draw (ChaCha8) or, at temperature
//! 0, the argmax; or Mirostat 2.0 in their place.
//!
//! The chain runs in llama.cpp's order (`common_sampler`'s default):
//! penalties on the raw logits, then top-k, top-p and min-p on the
//! untempered probabilities, then temperature on what is left. The full
//! processed distribution is available ([`Sampler::distribution`]) because
//! speculative sampling needs p(x) and q(x), not just a draw. Penalties
//! depend on the tokens before the sampled position ([`History`]): a
//! verification passes the draft tokens before each position as pending,
//! so a penalised distribution is exactly the one plain decoding would
//! sample from after the same tokens.
//!
//! A grammar ([`Sampler::constrain`]) comes first: the chain runs on the
//! logits of the tokens it allows, and it advances on every token produced
//! (a verification's accepted draft tokens included), so constrained
//! speculative output keeps the constrained target distribution.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::engine::{
    draw_at_temperature, draw_by_weight, Context, EngineError, Grammar, LogitsKept, Nucleus,
    RowDraws, Token,
};

/// Repetition penalties over the most recent tokens, as llama.cpp's
/// `--repeat-penalty`, `--frequency-penalty`, `--presence-penalty` and
/// `--repeat-last-n`: a token seen c > 0 times among the last `last_n` has
/// its logit divided by `repeat` (multiplied when negative), then lowered
/// by c·`frequency` + `presence`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Penalties {
    /// Divides a repeated token's positive logit (1: off).
    pub repeat: f32,
    /// Subtracted once per occurrence (0: off).
    pub frequency: f32,
    /// Subtracted once for any occurrence (0: off).
    pub presence: f32,
    /// How many of the latest tokens count (0: off).
    pub last_n: usize,
}

impl Default for Penalties {
    fn default() -> Self {
        Self::OFF
    }
}

impl Penalties {
    /// No penalty (llama.cpp's defaults but for `last_n`, which does not matter then).
    pub const OFF: Self = Self {
        repeat: 1.0,
        frequency: 0.0,
        presence: 0.0,
        last_n: 64,
    };

    /// True when some penalty changes logits.
    pub fn is_active(&self) -> bool {
        self.last_n > 0 && (self.repeat != 1.0 || self.frequency != 0.0 || self.presence != 0.0)
    }

    /// `logit` of a token seen `count` > 0 times.
    fn apply(&self, logit: f32, count: usize) -> f32 {
        let repeated = if logit <= 0.0 {
            logit * self.repeat
        } else {
            logit / self.repeat
        };
        repeated - count as f32 * self.frequency - self.presence
    }
}

/// Mirostat 2.0 (Basu et al. 2021, "Mirostat: a neural text decoding
/// algorithm that directly controls perplexity"), as llama.cpp's
/// `--mirostat 2`: it replaces penalties, top-k, top-p and min-p (after
/// temperature), keeping only tokens whose surprise −log2 p is at most μ,
/// and after each token moves μ by −η·(surprise − τ), from μ = 2τ at the
/// start of each generation. μ depends on every token before, so a
/// verification advances it along the draft tokens it accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mirostat {
    /// Target surprise τ in bits (llama.cpp's --mirostat-ent, 5 by default).
    pub tau: f32,
    /// Learning rate η (llama.cpp's --mirostat-lr, 0.1 by default).
    pub eta: f32,
}

/// llama.cpp's Mirostat defaults: τ = 5 bits, η = 0.1.
pub const DEFAULT_MIROSTAT: Mirostat = Mirostat { tau: 5.0, eta: 0.1 };

/// Sampling settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy (argmax of the penalised logits).
    pub temperature: f32,
    /// Keep the k most likely tokens (0: no limit).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1: no limit).
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the most likely one (0: off).
    pub min_p: f32,
    /// Repetition penalties.
    pub penalties: Penalties,
    /// Mirostat 2.0 instead of penalties and truncation (sampling only).
    pub mirostat: Option<Mirostat>,
    /// RNG seed.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self::greedy()
    }
}

/// Invalid sampling settings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    /// Temperature negative or not finite.
    #[error("temperature must be a finite number >= 0, got {0}")]
    Temperature(f32),
    /// top-p outside (0, 1].
    #[error("top-p must be in (0, 1], got {0}")]
    TopP(f32),
    /// min-p outside [0, 1].
    #[error("min-p must be in [0, 1], got {0}")]
    MinP(f32),
    /// Mirostat's τ or η not a finite number > 0.
    #[error("mirostat {name} must be a finite number > 0, got {value}")]
    Mirostat {
        /// `tau` or `eta`.
        name: &'static str,
        /// What was given.
        value: f32,
    },
    /// A penalty that is not a finite number (or a repeat penalty <= 0).
    #[error("{name} must be a finite number{}, got {value}", if *.name == "repeat-penalty" { " > 0" } else { "" })]
    Penalty {
        /// The flag's name.
        name: &'static str,
        /// What was given.
        value: f32,
    },
}

impl SamplingParams {
    /// Argmax decoding.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            penalties: Penalties::OFF,
            mirostat: None,
            seed: 0,
        }
    }

    /// True when decoding is deterministic argmax.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), SamplingError> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(SamplingError::Temperature(self.temperature));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(SamplingError::TopP(self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(SamplingError::MinP(self.min_p));
        }
        let p = &self.penalties;
        for (name, value, ok) in [
            (
                "repeat-penalty",
                p.repeat,
                p.repeat.is_finite() && p.repeat > 0.0,
            ),
            ("frequency-penalty", p.frequency, p.frequency.is_finite()),
            ("presence-penalty", p.presence, p.presence.is_finite()),
        ] {
            if !ok {
                return Err(SamplingError::Penalty { name, value });
            }
        }
        if let Some(m) = self.mirostat {
            for (name, value) in [("tau", m.tau), ("eta", m.eta)] {
                if !(value.is_finite() && value > 0.0) {
                    return Err(SamplingError::Mirostat { name, value });
                }
            }
        }
        Ok(())
    }
}

/// The tokens before a sampled position: the committed sequence (prompt
/// and output), then the draft tokens a verification has accepted so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct History<'a> {
    committed: &'a [Token],
    pending: &'a [Token],
}

impl<'a> History<'a> {
    /// After `committed`.
    pub fn new(committed: &'a [Token]) -> Self {
        Self {
            committed,
            pending: &[],
        }
    }

    /// After `committed`, then `pending`.
    pub fn then(self, pending: &'a [Token]) -> Self {
        Self { pending, ..self }
    }

    /// The last `n` tokens, latest last.
    fn recent(&self, n: usize) -> impl Iterator<Item = Token> + '_ {
        let from_pending = self.pending.len().min(n);
        let from_committed = (n - from_pending).min(self.committed.len());
        self.committed[self.committed.len() - from_committed..]
            .iter()
            .chain(&self.pending[self.pending.len() - from_pending..])
            .copied()
    }
}

/// Index of the largest logit (the lowest id among equal maxima).
pub fn argmax(logits: &[f32]) -> Token {
    let mut best = 0usize;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_value {
            best = i;
            best_value = v;
        }
    }
    best as Token
}

/// Probability of token `best` under softmax(`logits`), for the most likely
/// token its top probability: 1 / Σ exp(l − l_best).
pub fn top_probability(logits: &[f32], best: Token) -> f32 {
    let max = logits[best as usize];
    let total: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    1.0 / total
}

/// [`argmax`] over every id but the `banned` ones.
pub fn argmax_excluding(logits: &[f32], banned: &[Token]) -> Token {
    if banned.is_empty() {
        return argmax(logits);
    }
    let mut best = 0usize;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_value && !banned.contains(&(i as Token)) {
            best = i;
            best_value = v;
        }
    }
    best as Token
}

/// Larger logit first, the lower id first among equals.
fn by_logit_desc(a: &(f32, u32), b: &(f32, u32)) -> std::cmp::Ordering {
    b.0.total_cmp(&a.0).then(a.1.cmp(&b.1))
}

/// A seeded sampler with reusable scratch buffers (no allocation per token
/// once warmed up).
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    candidates: Vec<(f32, u32)>,
    probs: Vec<f32>,
    recent: Vec<Token>,
    banned: Vec<Token>,
    /// Mirostat's μ after the tokens sampled so far.
    mu: f32,
    /// The grammar output must follow, at the position being sampled.
    grammar: Option<Grammar>,
    /// The grammar allowed no token at a position sampled.
    dead_end: bool,
    /// A logits row with the grammar's mask applied.
    masked: Vec<f32>,
}

impl Sampler {
    /// A sampler; `params` must be valid ([`SamplingParams::validate`]).
    pub fn new(params: SamplingParams) -> Self {
        Self {
            params,
            rng: ChaCha8Rng::seed_from_u64(params.seed),
            candidates: Vec::new(),
            probs: Vec::new(),
            recent: Vec::new(),
            banned: Vec::new(),
            mu: params.mirostat.map_or(0.0, |m| 2.0 * m.tau),
            grammar: None,
            dead_end: false,
            masked: Vec::new(),
        }
    }

    /// Produces only what `grammar` allows, from its state now on.
    pub fn constrain(&mut self, grammar: Grammar) {
        self.grammar = Some(grammar);
    }

    /// The grammar at the position to be sampled next, if constrained.
    pub fn grammar(&self) -> Option<&Grammar> {
        self.grammar.as_ref()
    }

    /// True once a position was sampled at which the grammar allowed no
    /// token (it was complete and end-of-generation was banned, or it
    /// needs characters no token has): what was sampled there is void.
    pub fn dead_end(&self) -> bool {
        self.dead_end
    }

    /// `logits` with the grammar's mask applied, in `self.masked` (None
    /// when unconstrained); marks a dead end when nothing is allowed.
    fn mask(&mut self, logits: &[f32]) -> Option<Vec<f32>> {
        let grammar = self.grammar.as_mut()?;
        let mut masked = std::mem::take(&mut self.masked);
        masked.clear();
        masked.extend_from_slice(logits);
        grammar.mask(&mut masked);
        if masked.iter().all(|l| *l == f32::NEG_INFINITY) {
            self.dead_end = true;
        }
        Some(masked)
    }

    /// Never produce these tokens (their probability is 0), as llama.cpp's
    /// `--ignore-eos` does for end-of-generation tokens.
    pub fn ban(&mut self, tokens: impl IntoIterator<Item = Token>) {
        self.banned.extend(tokens);
    }

    /// The settings.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Which of a logits row's largest entries decide what this sampler
    /// draws, whatever the others are (ties with the last one kept too):
    /// for greedy (k = 1) or top-k sampling, k plus the banned tokens plus,
    /// when penalties only lower logits, the tokens they look back on (k
    /// of the penalised largest are among that many raw largest); without
    /// top-k, penalties or banned tokens, what its top-p and min-p cuts keep
    /// ([`Nucleus`]); None when the whole row counts (temperature alone,
    /// Mirostat, a grammar, penalties that raise logits, penalties or banned
    /// tokens beside a cut by probability).
    pub fn logits_needed(&self) -> Option<LogitsKept> {
        let p = &self.params;
        if self.grammar.is_some() {
            return None;
        }
        let k = if p.is_greedy() {
            1
        } else if p.mirostat.is_some() {
            return None;
        } else if p.top_k > 0 {
            p.top_k
        } else if (p.top_p < 1.0 || p.min_p > 0.0)
            && !p.penalties.is_active()
            && self.banned.is_empty()
        {
            return Some(LogitsKept {
                top: 1,
                nucleus: Some(Nucleus {
                    top_p: p.top_p,
                    min_p: p.min_p,
                }),
            });
        } else {
            return None;
        };
        let penalties = &p.penalties;
        let penalised = if !penalties.is_active() {
            0
        } else if penalties.repeat >= 1.0 && penalties.frequency >= 0.0 && penalties.presence >= 0.0
        {
            penalties.last_n
        } else {
            return None;
        };
        Some(LogitsKept::top(k + penalised + self.banned.len()))
    }

    /// The temperature when this sampler draws at a temperature and
    /// nothing else (no truncation, penalty, banned token, grammar or
    /// Mirostat): its draw from a row is then [`draw_at_temperature`]
    /// with its next uniform number, which a remote target's server can
    /// make in its place ([`crate::engine::Context::draw_next_pass`]).
    pub fn draws_at(&self) -> Option<f32> {
        let p = &self.params;
        let plain = !p.is_greedy()
            && p.mirostat.is_none()
            && p.top_k == 0
            && p.top_p >= 1.0
            && p.min_p <= 0.0
            && !p.penalties.is_active()
            && self.banned.is_empty()
            && self.grammar.is_none();
        plain.then_some(p.temperature)
    }

    /// The next `n` uniform numbers of this sampler's stream, without
    /// using them: the one the next draw uses first.
    fn next_uniforms(&self, n: usize) -> Vec<f64> {
        let mut rng = self.rng.clone();
        (0..n).map(|_| rng.random::<f64>()).collect()
    }

    /// Has the next pass of a remote `target` whose rows this sampler
    /// will draw from be drawn on its server instead ([`Self::draws_at`]),
    /// `top` entries of each row sent besides: output row r (in batch
    /// order) at depth `depths[r]` below the pass's first row, with the
    /// uniform number the draw at that depth takes from this sampler's
    /// stream (one draw per depth, as a walk down the rows makes them).
    /// Cancels draws not yet made otherwise (a local target, a sampler
    /// that reads more).
    pub fn draw_remotely(&self, target: &mut Context, depths: &[usize], top: usize) {
        let draws = self
            .draws_at()
            .filter(|_| target.model().remote().is_some())
            .map(|temperature| {
                let ahead = self.next_uniforms(depths.iter().max().map_or(0, |d| d + 1));
                RowDraws {
                    temperature,
                    uniforms: depths.iter().map(|&d| ahead[d]).collect(),
                    top,
                }
            });
        target.draw_next_pass(draws);
    }

    /// Draws the token at output row `row` of `target`'s last pass after
    /// `history`: the token its server drew there ([`Self::draw_remotely`]),
    /// which uses this sampler's next uniform number up as a draw here
    /// would, or a draw from the row.
    pub fn sample_row(
        &mut self,
        target: &Context,
        row: usize,
        history: History<'_>,
    ) -> Result<Token, EngineError> {
        match target.drawn(row) {
            Some(token) => {
                let _ = self.rng.random::<f64>();
                self.advance(token);
                Ok(token)
            }
            None => Ok(self.sample(target.logits(row)?, history)),
        }
    }

    /// Draws the next token from a logits row, after `history`.
    pub fn sample(&mut self, logits: &[f32], history: History<'_>) -> Token {
        if let Some(temperature) = self.draws_at() {
            let u = self.rng.random::<f64>();
            return draw_at_temperature(logits, temperature, u, &mut self.probs);
        }
        if self.params.is_greedy() {
            let mut token = self.greedy_choice(logits, history);
            if let Some(grammar) = self.grammar.as_mut() {
                // The argmax of all the logits is the argmax of the allowed
                // ones when the grammar allows it (the common case).
                if !grammar.allows(token) {
                    if let Some(masked) = self.mask(logits) {
                        token = self.greedy_choice(&masked, history);
                        self.masked = masked;
                    }
                }
                self.advance(token);
            }
            return token;
        }
        let mut probs = std::mem::take(&mut self.probs);
        self.distribution(logits, history, &mut probs);
        let token = self.sample_from(&probs);
        self.observe(token, &probs);
        self.probs = probs;
        token
    }

    /// Records that `token` was produced at a position whose distribution
    /// (from [`Self::distribution`]) was `p`: Mirostat moves μ by the
    /// token's surprise, a grammar advances by it; other samplers keep no
    /// such state.
    pub fn observe(&mut self, token: Token, p: &[f32]) {
        let prob = usize::try_from(token)
            .ok()
            .and_then(|t| p.get(t))
            .copied()
            .unwrap_or(0.0);
        self.observe_probability(token, prob);
    }

    /// [`Self::observe`] given the produced token's probability at its position.
    pub fn observe_probability(&mut self, token: Token, prob: f32) {
        self.advance(token);
        let Some(m) = self.params.mirostat.filter(|_| !self.params.is_greedy()) else {
            return;
        };
        if prob > 0.0 {
            let surprise = -prob.log2();
            self.mu -= m.eta * (surprise - m.tau);
        }
    }

    /// Advances the grammar by a produced token (one it does not allow,
    /// only possible at a dead end, leaves it as it is).
    fn advance(&mut self, token: Token) {
        if let Some(grammar) = self.grammar.as_mut() {
            if !grammar.accept(token) {
                self.dead_end = true;
            }
        }
    }

    /// The argmax of the penalised logits over the allowed ids.
    fn greedy_choice(&mut self, logits: &[f32], history: History<'_>) -> Token {
        if !self.params.penalties.is_active() {
            return argmax_excluding(logits, &self.banned);
        }
        self.fill_candidates(logits, history);
        self.candidates
            .iter()
            .min_by(|a, b| by_logit_desc(a, b))
            .map_or(0, |c| c.1 as Token)
    }

    /// Every allowed id with its logit after the penalties.
    fn fill_candidates(&mut self, logits: &[f32], history: History<'_>) {
        let c = &mut self.candidates;
        c.clear();
        c.extend(logits.iter().enumerate().map(|(i, &l)| (l, i as u32)));
        let penalties = self.params.penalties;
        if penalties.is_active() {
            // Candidates are still in id order: index = id.
            self.recent.clear();
            self.recent.extend(history.recent(penalties.last_n));
            self.recent.sort_unstable();
            for run in self.recent.chunk_by(|a, b| a == b) {
                if let Some(slot) = usize::try_from(run[0]).ok().and_then(|i| c.get_mut(i)) {
                    slot.0 = penalties.apply(slot.0, run.len());
                }
            }
        }
        if !self.banned.is_empty() {
            let banned = &self.banned;
            c.retain(|x| !banned.contains(&(x.1 as Token)));
        }
    }

    /// Writes the processed distribution over the whole row into `out`
    /// (same width as `logits`, zero outside the kept set, sums to 1) for
    /// the position after `history`. Greedy gives a one-hot row.
    pub fn distribution(&mut self, logits: &[f32], history: History<'_>, out: &mut Vec<f32>) {
        match self.mask(logits) {
            Some(masked) => {
                self.constrained_distribution(&masked, history, out);
                self.masked = masked;
            }
            None => self.constrained_distribution(logits, history, out),
        }
    }

    /// [`Self::distribution`] of a row the grammar has masked already.
    fn constrained_distribution(
        &mut self,
        logits: &[f32],
        history: History<'_>,
        out: &mut Vec<f32>,
    ) {
        out.clear();
        out.resize(logits.len(), 0.0);
        if logits.is_empty() || self.dead_end {
            return;
        }
        if self.params.is_greedy() {
            out[self.greedy_choice(logits, history) as usize] = 1.0;
            return;
        }
        if self.params.mirostat.is_some() {
            self.mirostat_distribution(logits, out);
            return;
        }
        self.fill_candidates(logits, history);
        let params = self.params;
        let c = &mut self.candidates;
        if params.top_k > 0 && params.top_k < c.len() {
            c.select_nth_unstable_by(params.top_k - 1, by_logit_desc);
            c.truncate(params.top_k);
        }
        let max = c.iter().map(|x| x.0).fold(f32::NEG_INFINITY, f32::max);
        if params.top_p < 1.0 {
            c.sort_unstable_by(by_logit_desc);
            let total: f64 = c.iter().map(|x| f64::from((x.0 - max).exp())).sum();
            let mut cumulative = 0.0f64;
            let mut keep = c.len();
            for (i, x) in c.iter().enumerate() {
                cumulative += f64::from((x.0 - max).exp()) / total;
                if cumulative >= f64::from(params.top_p) {
                    keep = i + 1;
                    break;
                }
            }
            c.truncate(keep);
        }
        if params.min_p > 0.0 {
            // p ≥ min_p · p_max, on the untempered probabilities.
            let floor = max + params.min_p.ln();
            c.retain(|x| x.0 >= floor);
        }
        let inv_t = 1.0 / params.temperature;
        let mut total = 0.0f64;
        for x in c.iter_mut() {
            x.0 = ((x.0 - max) * inv_t).exp();
            total += f64::from(x.0);
        }
        for &(weight, id) in c.iter() {
            out[id as usize] = (f64::from(weight) / total) as f32;
        }
    }

    /// Mirostat 2.0's distribution: softmax at the temperature, then only
    /// the most likely tokens whose surprise is at most μ (at least one),
    /// renormalised.
    fn mirostat_distribution(&mut self, logits: &[f32], out: &mut [f32]) {
        self.fill_candidates(logits, History::default());
        let c = &mut self.candidates;
        c.sort_unstable_by(by_logit_desc);
        let max = c.first().map_or(0.0, |x| x.0);
        let inv_t = 1.0 / self.params.temperature;
        let mut total = 0.0f64;
        for x in c.iter_mut() {
            x.0 = ((x.0 - max) * inv_t).exp();
            total += f64::from(x.0);
        }
        let keep = c
            .iter()
            .position(|x| -((f64::from(x.0) / total).log2()) > f64::from(self.mu))
            .unwrap_or(c.len())
            .max(1);
        c.truncate(keep);
        let kept: f64 = c.iter().map(|x| f64::from(x.0)).sum();
        for &(weight, id) in c.iter() {
            out[id as usize] = (f64::from(weight) / kept) as f32;
        }
    }

    /// Draws a token from a (possibly unnormalised) non-negative weight row.
    /// Returns the last non-zero entry if rounding leaves the draw past the end.
    pub fn sample_from(&mut self, weights: &[f32]) -> Token {
        draw_by_weight(weights, self.rng.random::<f64>())
    }

    /// A uniform draw in [0, 1) from the same seeded stream.
    pub fn uniform(&mut self) -> f64 {
        self.rng.random::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: History<'static> = History {
        committed: &[],
        pending: &[],
    };

    fn sampler(temperature: f32, top_k: usize, top_p: f32, seed: u64) -> Sampler {
        Sampler::new(SamplingParams {
            temperature,
            top_k,
            top_p,
            seed,
            ..SamplingParams::greedy()
        })
    }

    /// At a temperature alone the sampler draws as a remote target's
    /// server does ([`draw_at_temperature`] with the stream's next
    /// number, see `draw_remotely`), and as its chain's distribution
    /// drawn from by weight would: the same token, row after row.
    #[test]
    fn temperature_alone_draws_as_a_server_and_as_its_distribution_do() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let rows: Vec<Vec<f32>> = (0..300)
            .map(|r| {
                (0..40)
                    .map(|i| match (r + i) % 17 {
                        0 => f32::NEG_INFINITY,
                        1 => 2.0,
                        _ => rng.random::<f32>() * 8.0 - 4.0,
                    })
                    .collect()
            })
            .collect();
        for temperature in [0.2, 0.8, 1.7] {
            let mut drawing = sampler(temperature, 0, 1.0, 3);
            let mut by_weight = sampler(temperature, 0, 1.0, 3);
            assert_eq!(drawing.draws_at(), Some(temperature));
            let (mut p, mut scratch, mut seen) = (Vec::new(), Vec::new(), Vec::new());
            for row in &rows {
                let u = drawing.next_uniforms(2)[0];
                let server = draw_at_temperature(row, temperature, u, &mut scratch);
                let token = drawing.sample(row, NONE);
                assert_eq!(token, server);
                by_weight.distribution(row, NONE, &mut p);
                assert_eq!(by_weight.sample_from(&p), token);
                seen.push(token);
            }
            seen.sort_unstable();
            seen.dedup();
            assert!(seen.len() > 10, "{temperature}: {seen:?}");
        }
    }

    /// Only a sampler that reads every entry of a row at a temperature,
    /// and nothing else, has its draws made elsewhere.
    #[test]
    fn only_temperature_alone_is_drawn_elsewhere() {
        let with = |params: SamplingParams| Sampler::new(params).draws_at();
        let plain = SamplingParams {
            temperature: 0.8,
            ..SamplingParams::greedy()
        };
        assert_eq!(with(plain), Some(0.8));
        assert_eq!(with(SamplingParams::greedy()), None);
        assert_eq!(with(SamplingParams { top_k: 40, ..plain }), None);
        assert_eq!(
            with(SamplingParams {
                top_p: 0.9,
                ..plain
            }),
            None
        );
        assert_eq!(
            with(SamplingParams {
                min_p: 0.05,
                ..plain
            }),
            None
        );
        let penalties = Penalties {
            repeat: 1.1,
            ..Penalties::OFF
        };
        assert_eq!(with(SamplingParams { penalties, ..plain }), None);
        let mirostat = Some(DEFAULT_MIROSTAT);
        assert_eq!(with(SamplingParams { mirostat, ..plain }), None);
        let mut banned = Sampler::new(plain);
        banned.ban([2]);
        assert_eq!(banned.draws_at(), None);
    }

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY, -5.0]), 1);
    }

    #[test]
    fn greedy_is_one_hot() {
        let mut s = Sampler::new(SamplingParams::greedy());
        let mut d = Vec::new();
        s.distribution(&[0.0, 2.0, 1.0], NONE, &mut d);
        assert_eq!(d, vec![0.0, 1.0, 0.0]);
        assert_eq!(s.sample(&[0.0, 2.0, 1.0], NONE), 1);
    }

    #[test]
    fn temperature_softmax_matches_closed_form() {
        let logits = [0.0f32, 1.0, 2.0];
        let mut d = Vec::new();
        sampler(0.5, 0, 1.0, 1).distribution(&logits, NONE, &mut d);
        let w: Vec<f64> = logits.iter().map(|&l| (f64::from(l) / 0.5).exp()).collect();
        let z: f64 = w.iter().sum();
        for (p, w) in d.iter().zip(&w) {
            assert!((f64::from(*p) - w / z).abs() < 1e-6);
        }
    }

    #[test]
    fn top_k_and_top_p_truncate() {
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let mut d = Vec::new();
        sampler(1.0, 2, 1.0, 1).distribution(&logits, NONE, &mut d);
        assert!(d[2] == 0.0 && d[3] == 0.0 && (d[0] + d[1] - 1.0).abs() < 1e-6);
        // p(0) = 0.644, p(0)+p(1) = 0.881: top-p 0.7 keeps two tokens.
        sampler(1.0, 0, 0.7, 1).distribution(&logits, NONE, &mut d);
        assert!(d[0] > 0.0 && d[1] > 0.0 && d[2] == 0.0 && d[3] == 0.0);
        sampler(1.0, 0, 0.5, 1).distribution(&logits, NONE, &mut d);
        assert_eq!(d, vec![1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn seeded_draws_repeat_and_follow_the_distribution() {
        let logits = [0.0f32, 1.0, 2.0, 0.5];
        let draws = |seed| {
            let mut s = sampler(1.0, 0, 1.0, seed);
            (0..2000)
                .map(|_| s.sample(&logits, NONE))
                .collect::<Vec<_>>()
        };
        let a = draws(7);
        let b = draws(7);
        assert_eq!(a, b);
        // Chi-square goodness of fit, 3 degrees of freedom, p = 0.001 critical value 16.27.
        let mut d = Vec::new();
        sampler(1.0, 0, 1.0, 0).distribution(&logits, NONE, &mut d);
        let mut counts = [0f64; 4];
        for t in &a {
            counts[*t as usize] += 1.0;
        }
        let chi2: f64 = counts
            .iter()
            .zip(&d)
            .map(|(&o, &p)| {
                let e = 2000.0 * f64::from(p);
                (o - e).powi(2) / e
            })
            .sum();
        assert!(chi2 < 16.27, "chi2 = {chi2}");
    }

    /// A cut by probability (top-p, min-p, no top-k) read on a remote
    /// target: on a row cut to the entries `LogitsKept::entries` counts
    /// (ties with the last included, the rest −∞), the sampler's
    /// distribution is the whole row's, bit for bit, over rows from flat to
    /// peaked (a flat row's nucleus is most of it, and so is what is sent).
    #[test]
    fn a_row_cut_to_a_nucleus_gives_the_whole_rows_distribution() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut peaked_long = 0;
        for scale in [0.3f32, 1.0, 3.0, 8.0] {
            for _ in 0..6 {
                let row: Vec<f32> = (0..3000)
                    .map(|_| {
                        let u: f32 = rng.random_range(0.0..1.0);
                        scale * (u.powi(3) * 6.0 - 1.0)
                    })
                    .collect();
                for (top_p, min_p) in [(0.5, 0.0), (0.9, 0.0), (0.95, 0.05), (1.0, 0.1)] {
                    let params = SamplingParams {
                        top_p,
                        min_p,
                        ..sampler(0.8, 0, 1.0, 1).params
                    };
                    let whole = Sampler::new(params);
                    let kept = whole.logits_needed().expect("a cut by probability");
                    let n = kept.entries(&row);
                    let mut sorted = row.clone();
                    sorted.sort_by(|a, b| b.total_cmp(a));
                    let floor = sorted[n - 1];
                    let short: Vec<f32> = row
                        .iter()
                        .map(|&v| if v >= floor { v } else { f32::NEG_INFINITY })
                        .collect();
                    let (mut a, mut b) = (Vec::new(), Vec::new());
                    whole.clone().distribution(&row, NONE, &mut a);
                    whole.clone().distribution(&short, NONE, &mut b);
                    assert_eq!(
                        a, b,
                        "scale {scale}, top-p {top_p}, min-p {min_p}, {n} kept"
                    );
                    if scale == 8.0 {
                        peaked_long = peaked_long.max(n);
                    }
                }
            }
        }
        // A peaked row, as a language model's mostly are, is cut short.
        assert!(peaked_long < 300, "{peaked_long} of 3000 entries kept");
        // Temperature alone reads every entry.
        assert_eq!(sampler(0.8, 0, 1.0, 1).logits_needed(), None);
    }

    /// What a sampler reads of a row is enough: on a row cut to the
    /// entries it says it needs (the rest −∞), every sampler draws what it
    /// draws on the whole row, penalties and bans included.
    #[test]
    fn a_row_cut_to_what_the_sampler_needs_draws_the_same() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let row: Vec<f32> = (0..500).map(|_| rng.random_range(-4.0..4.0)).collect();
        let history: Vec<Token> = (0..40).map(|i| (i * 7) % 500).collect();
        let lowering = Penalties {
            repeat: 1.3,
            frequency: 0.2,
            presence: 0.1,
            last_n: 32,
        };
        let settings = [
            (SamplingParams::greedy(), Penalties::OFF),
            (SamplingParams::greedy(), lowering),
            (sampler(0.8, 40, 0.9, 3).params, Penalties::OFF),
            (sampler(1.2, 5, 1.0, 4).params, lowering),
        ];
        for (params, penalties) in settings {
            let params = SamplingParams {
                penalties,
                ..params
            };
            let mut whole = Sampler::new(params);
            whole.ban([row_argmax(&row)]);
            let mut cut = whole.clone();
            let keep = cut.logits_needed().expect("a bounded sampler").top;
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            let mut short = vec![f32::NEG_INFINITY; row.len()];
            for &i in &order[..keep] {
                short[i] = row[i];
            }
            for _ in 0..20 {
                let h = History::new(&history);
                assert_eq!(whole.sample(&row, h), cut.sample(&short, h), "{params:?}");
            }
        }
        // Unbounded: no top-k, penalties that raise logits.
        assert_eq!(sampler(0.8, 0, 1.0, 1).logits_needed(), None);
        let raising = SamplingParams {
            penalties: Penalties {
                repeat: 0.8,
                ..lowering
            },
            ..SamplingParams::greedy()
        };
        assert_eq!(Sampler::new(raising).logits_needed(), None);
    }

    fn row_argmax(row: &[f32]) -> Token {
        argmax_excluding(row, &[])
    }

    #[test]
    fn banned_tokens_are_never_produced() {
        let logits = [5.0f32, 1.0, 4.0];
        let mut s = Sampler::new(SamplingParams::greedy());
        s.ban([0]);
        assert_eq!(s.sample(&logits, NONE), 2);
        let mut s = sampler(1.0, 0, 1.0, 3);
        s.ban([0]);
        let mut d = Vec::new();
        s.distribution(&logits, NONE, &mut d);
        assert_eq!(d[0], 0.0);
        assert!((d[1] + d[2] - 1.0).abs() < 1e-6);
        assert!((0..200).all(|_| s.sample(&logits, NONE) != 0));
    }

    fn with(params: SamplingParams) -> Sampler {
        Sampler::new(params)
    }

    #[test]
    fn min_p_drops_tokens_below_its_share_of_the_top_one() {
        // Probabilities ∝ e^3, e^2, e^1, e^0: relative to the top 1, 0.37, 0.14, 0.05.
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let mut d = Vec::new();
        let params = SamplingParams {
            temperature: 1.0,
            min_p: 0.1,
            ..SamplingParams::greedy()
        };
        with(params).distribution(&logits, NONE, &mut d);
        assert!(
            d[0] > 0.0 && d[1] > 0.0 && d[2] > 0.0 && d[3] == 0.0,
            "{d:?}"
        );
        with(SamplingParams {
            min_p: 0.5,
            ..params
        })
        .distribution(&logits, NONE, &mut d);
        assert_eq!(d, vec![1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn truncation_comes_before_temperature_as_in_llama_cpp() {
        // Untempered, p(0) = 0.644 reaches top-p 0.6 alone; tempered at 4
        // first (Hugging Face's order) it would not, and a second token would stay.
        let logits = [3.0f32, 2.0, 1.0, 0.0];
        let mut d = Vec::new();
        sampler(4.0, 0, 0.6, 1).distribution(&logits, NONE, &mut d);
        assert_eq!(d, vec![1.0, 0.0, 0.0, 0.0]);
        // Temperature still shapes what is kept.
        sampler(4.0, 2, 1.0, 1).distribution(&logits, NONE, &mut d);
        let expected = 1.0 / (1.0 + (-0.25f64).exp());
        assert!((f64::from(d[0]) - expected).abs() < 1e-6, "{d:?}");
    }

    #[test]
    fn penalties_follow_llama_cpp_and_count_only_the_window() {
        let penalties = Penalties {
            repeat: 2.0,
            frequency: 0.5,
            presence: 0.25,
            last_n: 3,
        };
        // Positive logits are divided, negative ones multiplied, then
        // count·frequency + presence subtracted.
        assert_eq!(penalties.apply(3.0, 2), 3.0 / 2.0 - 1.0 - 0.25);
        assert_eq!(penalties.apply(-1.0, 1), -2.0 - 0.5 - 0.25);
        let params = SamplingParams {
            penalties,
            ..SamplingParams::greedy()
        };
        let logits = [4.0f32, 3.0, 0.0];
        // Token 0 twice in the last three (committed 0, pending 0 then 2):
        // 4 / 2 − 1 − 0.25 = 0.75 < 3, so greedy picks token 1.
        let history = History::new(&[1, 1, 0]).then(&[0, 2]);
        assert_eq!(with(params).sample(&logits, history), 1);
        // Token 1 (twice) is outside the window of three: not penalised.
        let recent: Vec<Token> = history.recent(3).collect();
        assert_eq!(recent, vec![0, 0, 2]);
        // Without history nothing changes.
        assert_eq!(with(params).sample(&logits, NONE), 0);
        // And sampling sees the same penalised logits.
        let mut d = Vec::new();
        let sampled = SamplingParams {
            temperature: 1.0,
            ..params
        };
        with(sampled).distribution(&logits, history, &mut d);
        let w = [
            0.75f64.exp(),
            3.0f64.exp(),
            (0.0f64 * 2.0 - 0.5 - 0.25).exp(),
        ];
        let z: f64 = w.iter().sum();
        for (p, w) in d.iter().zip(&w) {
            assert!((f64::from(*p) - w / z).abs() < 1e-6, "{d:?}");
        }
    }

    #[test]
    fn mirostat_keeps_tokens_within_mu_and_moves_mu_by_surprise() {
        // Probabilities 0.5, 0.25, 0.125, 0.125: surprises 1, 2, 3, 3 bits.
        let logits = [2.0f32.ln() * 2.0, 2.0f32.ln(), 0.0, 0.0];
        let mirostat = |tau| SamplingParams {
            temperature: 1.0,
            mirostat: Some(Mirostat { tau, eta: 0.5 }),
            ..SamplingParams::greedy()
        };
        let mut d = Vec::new();
        // μ = 2τ = 2 bits: the two tokens of surprise ≤ 2, renormalised.
        let mut s = with(mirostat(1.0));
        s.distribution(&logits, NONE, &mut d);
        assert!(
            (d[0] - 2.0 / 3.0).abs() < 1e-6 && (d[1] - 1.0 / 3.0).abs() < 1e-6,
            "{d:?}"
        );
        assert_eq!((d[2], d[3]), (0.0, 0.0));
        // Token 1 (surprise log2 3 under the kept pair) moves μ by
        // −0.5·(log2 3 − 1): below 2, so only the top token stays.
        s.observe(1, &d);
        s.distribution(&logits, NONE, &mut d);
        assert_eq!(d, vec![1.0, 0.0, 0.0, 0.0]);
        // At least one token is always kept, whatever μ.
        let mut tiny = with(mirostat(0.01));
        tiny.distribution(&logits, NONE, &mut d);
        assert_eq!(d, vec![1.0, 0.0, 0.0, 0.0]);
        // Greedy ignores it.
        let greedy = SamplingParams {
            temperature: 0.0,
            ..mirostat(1.0)
        };
        assert_eq!(with(greedy).sample(&logits, NONE), 0);
    }

    #[test]
    fn invalid_params_rejected() {
        let mut p = SamplingParams::greedy();
        p.temperature = -1.0;
        assert_eq!(p.validate(), Err(SamplingError::Temperature(-1.0)));
        p.temperature = 1.0;
        p.top_p = 0.0;
        assert_eq!(p.validate(), Err(SamplingError::TopP(0.0)));
        p.top_p = 1.0;
        p.min_p = 1.5;
        assert_eq!(p.validate(), Err(SamplingError::MinP(1.5)));
        p.min_p = 0.0;
        p.penalties.repeat = 0.0;
        let e = p.validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "repeat-penalty must be a finite number > 0, got 0"
        );
        p.penalties.repeat = 1.0;
        p.penalties.presence = f32::NAN;
        assert!(matches!(
            p.validate(),
            Err(SamplingError::Penalty {
                name: "presence-penalty",
                ..
            })
        ));
        p.penalties.presence = 0.0;
        p.mirostat = Some(Mirostat { tau: 5.0, eta: 0.0 });
        assert!(matches!(
            p.validate(),
            Err(SamplingError::Mirostat { name: "eta", .. })
        ));
    }
}
