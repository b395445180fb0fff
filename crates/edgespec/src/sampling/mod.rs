//! Greedy, temperature, top-k and top-p sampling over a logits row; seeded
//! and reproducible (ChaCha8).
//!
//! Order of operations (as in Hugging Face transformers): temperature, then
//! top-k, then top-p on the tempered probabilities, then a draw. The full
//! processed distribution is available ([`Sampler::distribution`]) because
//! speculative sampling needs p(x) and q(x), not just a draw.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::engine::Token;

/// Sampling settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 means greedy (argmax).
    pub temperature: f32,
    /// Keep the k most likely tokens (0: no limit).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p (1: no limit).
    pub top_p: f32,
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
}

impl SamplingParams {
    /// Argmax decoding.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
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
        Ok(())
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

/// A seeded sampler with reusable scratch buffers (no allocation per token
/// once warmed up).
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    candidates: Vec<(f32, u32)>,
    probs: Vec<f32>,
    banned: Vec<Token>,
}

impl Sampler {
    /// A sampler; `params` must be valid ([`SamplingParams::validate`]).
    pub fn new(params: SamplingParams) -> Self {
        Self {
            params,
            rng: ChaCha8Rng::seed_from_u64(params.seed),
            candidates: Vec::new(),
            probs: Vec::new(),
            banned: Vec::new(),
        }
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

    /// Draws the next token from a logits row.
    pub fn sample(&mut self, logits: &[f32]) -> Token {
        if self.params.is_greedy() {
            return argmax_excluding(logits, &self.banned);
        }
        let mut probs = std::mem::take(&mut self.probs);
        self.distribution(logits, &mut probs);
        let token = self.sample_from(&probs);
        self.probs = probs;
        token
    }

    /// Writes the processed distribution over the whole row into `out`
    /// (same width as `logits`, zero outside the kept set, sums to 1).
    /// Greedy gives a one-hot row.
    pub fn distribution(&mut self, logits: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.resize(logits.len(), 0.0);
        if logits.is_empty() {
            return;
        }
        if self.params.is_greedy() {
            out[argmax_excluding(logits, &self.banned) as usize] = 1.0;
            return;
        }
        let inv_t = 1.0 / self.params.temperature;
        let c = &mut self.candidates;
        c.clear();
        c.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (l * inv_t, i as u32)),
        );
        if !self.banned.is_empty() {
            let banned = &self.banned;
            c.retain(|x| !banned.contains(&(x.1 as Token)));
        }
        let by_logit_desc =
            |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
        if self.params.top_k > 0 && self.params.top_k < c.len() {
            c.select_nth_unstable_by(self.params.top_k - 1, by_logit_desc);
            c.truncate(self.params.top_k);
        }
        let max = c.iter().map(|x| x.0).fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0.0f64;
        for x in c.iter_mut() {
            x.0 = (x.0 - max).exp();
            total += f64::from(x.0);
        }
        if self.params.top_p < 1.0 {
            c.sort_unstable_by(by_logit_desc);
            let mut cumulative = 0.0f64;
            let mut keep = c.len();
            for (i, x) in c.iter().enumerate() {
                cumulative += f64::from(x.0) / total;
                if cumulative >= f64::from(self.params.top_p) {
                    keep = i + 1;
                    break;
                }
            }
            c.truncate(keep);
            total = c.iter().map(|x| f64::from(x.0)).sum();
        }
        for &(weight, id) in c.iter() {
            out[id as usize] = (f64::from(weight) / total) as f32;
        }
    }

    /// Draws a token from a (possibly unnormalised) non-negative weight row.
    /// Returns the last non-zero entry if rounding leaves the draw past the end.
    pub fn sample_from(&mut self, weights: &[f32]) -> Token {
        let total: f64 = weights.iter().map(|&w| f64::from(w)).sum();
        let target = self.rng.random::<f64>() * total;
        let mut cumulative = 0.0f64;
        let mut last_nonzero = 0usize;
        for (i, &w) in weights.iter().enumerate() {
            if w > 0.0 {
                cumulative += f64::from(w);
                last_nonzero = i;
                if target < cumulative {
                    return i as Token;
                }
            }
        }
        last_nonzero as Token
    }

    /// A uniform draw in [0, 1) from the same seeded stream.
    pub fn uniform(&mut self) -> f64 {
        self.rng.random::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(temperature: f32, top_k: usize, top_p: f32, seed: u64) -> Sampler {
        Sampler::new(SamplingParams {
            temperature,
            top_k,
            top_p,
            seed,
        })
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
        s.distribution(&[0.0, 2.0, 1.0], &mut d);
        assert_eq!(d, vec![0.0, 1.0, 0.0]);
        assert_eq!(s.sample(&[0.0, 2.0, 1.0]), 1);
    }

    #[test]
    fn temperature_softmax_matches_closed_form() {
        let logits = [0.0f32, 1.0, 2.0];
        let mut d = Vec::new();
        sampler(0.5, 0, 1.0, 1).distribution(&logits, &mut d);
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
        sampler(1.0, 2, 1.0, 1).distribution(&logits, &mut d);
        assert!(d[2] == 0.0 && d[3] == 0.0 && (d[0] + d[1] - 1.0).abs() < 1e-6);
        // p(0) = 0.644, p(0)+p(1) = 0.881: top-p 0.7 keeps two tokens.
        sampler(1.0, 0, 0.7, 1).distribution(&logits, &mut d);
        assert!(d[0] > 0.0 && d[1] > 0.0 && d[2] == 0.0 && d[3] == 0.0);
        sampler(1.0, 0, 0.5, 1).distribution(&logits, &mut d);
        assert_eq!(d, vec![1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn seeded_draws_repeat_and_follow_the_distribution() {
        let logits = [0.0f32, 1.0, 2.0, 0.5];
        let draws = |seed| {
            let mut s = sampler(1.0, 0, 1.0, seed);
            (0..2000).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        let a = draws(7);
        let b = draws(7);
        assert_eq!(a, b);
        // Chi-square goodness of fit, 3 degrees of freedom, p = 0.001 critical value 16.27.
        let mut d = Vec::new();
        sampler(1.0, 0, 1.0, 0).distribution(&logits, &mut d);
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

    #[test]
    fn banned_tokens_are_never_produced() {
        let logits = [5.0f32, 1.0, 4.0];
        let mut s = Sampler::new(SamplingParams::greedy());
        s.ban([0]);
        assert_eq!(s.sample(&logits), 2);
        let mut s = sampler(1.0, 0, 1.0, 3);
        s.ban([0]);
        let mut d = Vec::new();
        s.distribution(&logits, &mut d);
        assert_eq!(d[0], 0.0);
        assert!((d[1] + d[2] - 1.0).abs() < 1e-6);
        assert!((0..200).all(|_| s.sample(&logits) != 0));
    }

    #[test]
    fn invalid_params_rejected() {
        let mut p = SamplingParams::greedy();
        p.temperature = -1.0;
        assert_eq!(p.validate(), Err(SamplingError::Temperature(-1.0)));
        p.temperature = 1.0;
        p.top_p = 0.0;
        assert_eq!(p.validate(), Err(SamplingError::TopP(0.0)));
    }
}
