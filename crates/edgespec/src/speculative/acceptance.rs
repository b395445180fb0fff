//! Acceptance estimates the draft-length policy prices drafts with.
//!
//! Every estimate is learned at two levels: over the life of the process
//! (slowly fading, so a long-running session or server keeps what it
//! learned about its drafter) and over the current request (fast), with the
//! process level acting only as the request level's prior, worth a couple
//! of observations. What was learned on one kind of text therefore steers a
//! new request only until that request has shown a few outcomes of its own:
//! copy-heavy code must not make a chat answer draft long copies it rejects.
//! The process level can be kept between processes (serde; the request
//! level is not kept), as a cost cache does.

use serde::{Deserialize, Serialize};

/// How often something happened, over a fading window of observations,
/// shrunk towards a prior while observations are few. A stored one is
/// refused unless 0 ≤ hits ≤ seen, both finite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredFrequency")]
pub struct Frequency {
    hits: f64,
    seen: f64,
}

#[derive(Deserialize)]
struct StoredFrequency {
    hits: f64,
    seen: f64,
}

impl TryFrom<StoredFrequency> for Frequency {
    type Error = String;
    fn try_from(f: StoredFrequency) -> Result<Self, String> {
        if f.seen.is_finite() && (0.0..=f.seen).contains(&f.hits) {
            Ok(Self {
                hits: f.hits,
                seen: f.seen,
            })
        } else {
            Err(format!("not a frequency: {} of {}", f.hits, f.seen))
        }
    }
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

/// How much history each level keeps and how much the levels weigh.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Memory {
    /// Observations after which the process level fades old ones.
    pub process: f64,
    /// Observations after which the request level fades old ones.
    pub request: f64,
}

/// A fixed prior counts as this many observations at the process level.
const PRIOR_WEIGHT: f64 = 2.0;
/// The process level counts as this many observations in a request.
const PROCESS_WEIGHT: f64 = 2.0;

/// A frequency learned per process and per request (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Layered {
    process: Frequency,
    #[serde(skip)]
    request: Frequency,
}

impl Layered {
    /// Records one outcome at both levels.
    pub fn observe(&mut self, hit: bool, memory: Memory) {
        self.process.observe(hit, memory.process);
        self.request.observe(hit, memory.request);
    }

    /// The request's frequency, shrunk towards the process level's, which is
    /// shrunk towards `prior`.
    pub fn estimate(&self, prior: f64) -> f64 {
        let process = self.process.estimate(prior, PRIOR_WEIGHT);
        self.request.estimate(process, PROCESS_WEIGHT)
    }

    /// Like [`Self::estimate`], but a request without evidence of its own
    /// assumes at most `cap`: the process level's rate where this request
    /// has shown it does worse (see [`LookupModel::predict`]).
    pub fn estimate_capped(&self, prior: f64, cap: f64) -> f64 {
        let process = self.process.estimate(prior, PRIOR_WEIGHT);
        self.request.estimate(process.min(cap), PROCESS_WEIGHT)
    }

    /// Starts a new request: its own evidence starts from nothing.
    pub fn begin_request(&mut self) {
        self.request = Frequency::default();
    }
}

/// Predicts the acceptance of a model-drafted token from the drafter's
/// confidence, with ten bins calibrated on observed outcomes (prior: the
/// bin's centre, i.e. a calibrated drafter).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AcceptanceModel {
    bins: [Layered; 10],
}

impl AcceptanceModel {
    const MEMORY: Memory = Memory {
        process: 200.0,
        request: 16.0,
    };

    fn bin(confidence: f32) -> usize {
        ((confidence.clamp(0.0, 1.0) * 10.0) as usize).min(9)
    }

    /// Predicted acceptance probability of a token drafted with this confidence.
    pub fn predict(&self, confidence: f32) -> f64 {
        let prior = f64::from(confidence.clamp(0.0, 1.0));
        self.bins[Self::bin(confidence)].estimate(prior)
    }

    /// Like [`Self::predict`], with `prior` in place of the confidence
    /// until outcomes say otherwise.
    pub fn predict_from(&self, confidence: f32, prior: f64) -> f64 {
        self.bins[Self::bin(confidence)].estimate(prior.clamp(0.0, 1.0))
    }

    /// Records whether a token drafted with this confidence was accepted.
    pub fn observe(&mut self, confidence: f32, accepted: bool) {
        self.bins[Self::bin(confidence)].observe(accepted, Self::MEMORY);
    }

    /// Starts a new request.
    pub fn begin_request(&mut self) {
        self.bins.iter_mut().for_each(Layered::begin_request);
    }
}

/// The acceptance a copy's first token is given before any outcome:
/// Laplace's rule of succession over the run of agreement behind it. A
/// match sharing `matched` tokens of context with an earlier place has seen
/// `matched` tokens agree in a row, so the next one holds with
/// (matched + 1) / (matched + 2): a long verbatim copy is drafted whole from
/// the first request of a process (a 12-token match: 13/14 a token), a
/// coincidental two-token match is worth less (3/4), and what the process
/// and the request observe then corrects both ([`LookupModel::predict`]).
pub fn copy_prior(matched: usize) -> f64 {
    let run = matched as f64;
    (run + 1.0) / (run + 2.0)
}

/// Predicts the acceptance of lookup drafts from how much context the match
/// shares with the text (see `LookupMatch::matched`), in doubling classes
/// (1–2, 3–4, 5–8, …, 33+ tokens): a long shared context is evidence of a
/// verbatim copy. Per class it learns the first token's acceptance, and the
/// acceptance of each later token given that the ones before it were
/// accepted (copied spans succeed or fail together, so the two differ).
/// Before outcomes, the first token's estimate is the draft's own evidence
/// (a prior the caller gives, e.g. [`copy_prior`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LookupModel {
    first: [Layered; Self::CLASSES],
    /// By matched-context class, then by draft-position class (positions
    /// 1, 2–3, 4–7, …, 32+): deep into a copy that has held so far, the
    /// next token is likelier to hold too.
    next: [[Layered; Self::CLASSES]; Self::CLASSES],
}

impl LookupModel {
    const CLASSES: usize = 6;
    /// Rounds (first token) that fade out.
    const MEMORY_FIRST: Memory = Memory {
        process: 50.0,
        request: 16.0,
    };
    /// Tokens (later ones, per class) that fade out.
    const MEMORY_NEXT: Memory = Memory {
        process: 500.0,
        request: 64.0,
    };
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
    /// given that the ones before it were accepted; `prior` is the first
    /// token's before any outcome. A position class with no outcomes yet
    /// takes the one before it as its prior; within a request, a deeper
    /// class is assumed no likelier than the one before it until the
    /// request shows otherwise: where copies break early, the deep
    /// positions they never reach must not keep long drafts alive on what
    /// other requests' copies did.
    pub fn predict(&self, matched: usize, position: usize, prior: f64) -> f64 {
        let c = Self::class(matched);
        let mut estimate = self.first[c].estimate(prior);
        if position > 0 {
            for class in &self.next[c][..=Self::position_class(position)] {
                estimate = class.estimate_capped(estimate, estimate);
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

    /// Starts a new request.
    pub fn begin_request(&mut self) {
        self.first.iter_mut().for_each(Layered::begin_request);
        self.next
            .iter_mut()
            .flatten()
            .for_each(Layered::begin_request);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy's estimate, its first token's prior from its matched context.
    fn copied(model: &LookupModel, matched: usize, position: usize) -> f64 {
        model.predict(matched, position, copy_prior(matched))
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
    fn lookup_acceptance_is_learned_per_matched_context_class() {
        let classes: Vec<usize> = [0, 1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33, 64, 1000]
            .iter()
            .map(|&m| LookupModel::class(m))
            .collect();
        assert_eq!(classes, [0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5]);
        let mut model = LookupModel::default();
        // Before any outcome, the copy's own evidence: 40 tokens agreed.
        assert_eq!(copied(&model, 40, 0), 41.0 / 42.0);
        assert_eq!(copied(&model, 40, 7), 41.0 / 42.0);
        // Long matches copied whole; short ones rejected at once.
        for _ in 0..20 {
            model.observe(40, 32, 32);
            model.observe(2, 1, 0);
        }
        assert!(copied(&model, 40, 0) > 0.9, "{}", copied(&model, 40, 0));
        assert!(copied(&model, 40, 5) > 0.99);
        assert!(copied(&model, 2, 0) < 0.1);
        // Nothing seen after the first token of short matches: their later
        // tokens fall back to the first token's estimate.
        assert_eq!(copied(&model, 2, 3), copied(&model, 2, 0));
        // A copy that breaks at its 5th token lowers the estimate for that
        // position, not for the 2nd.
        let (second, fifth) = (copied(&model, 40, 1), copied(&model, 40, 4));
        model.observe(40, 5, 4);
        assert!(copied(&model, 40, 4) < fifth);
        assert!(copied(&model, 40, 1) >= second);
    }

    /// The failure seen on a board-like VM: after code answers whose copies
    /// held, a chat answer kept drafting long copies that were rejected at
    /// once. A new request starts from the process level as a weak prior,
    /// and its own rejections outweigh it after a few rounds.
    #[test]
    fn what_code_taught_is_unlearned_within_a_few_rounds_of_a_new_request() {
        let mut model = LookupModel::default();
        for _ in 0..300 {
            model.observe(6, 32, 32);
        }
        assert!(copied(&model, 6, 0) > 0.95);
        model.begin_request();
        // Before any outcome of its own, the request trusts the process level...
        assert!(copied(&model, 6, 0) > 0.9);
        // ...but three rejected first tokens bring it below a coin flip,
        // where a request that knew nothing else would be after one.
        for _ in 0..3 {
            model.observe(6, 1, 0);
        }
        assert!(copied(&model, 6, 0) < 0.45, "{}", copied(&model, 6, 0));
        // Copies that break after two tokens: deep positions follow the
        // request's own evidence, not the process's 32-token copies.
        for _ in 0..6 {
            model.observe(6, 3, 2);
        }
        assert!(copied(&model, 6, 2) < 0.5, "{}", copied(&model, 6, 2));
    }

    #[test]
    fn a_copys_prior_grows_with_the_context_its_match_shares() {
        assert_eq!(copy_prior(0), 0.5);
        assert_eq!(copy_prior(2), 0.75);
        assert_eq!(copy_prior(12), 13.0 / 14.0);
        assert!(copy_prior(usize::MAX) <= 1.0);
    }

    #[test]
    fn layered_estimate_is_the_request_shrunk_to_the_process_shrunk_to_the_prior() {
        let memory = Memory {
            process: 1000.0,
            request: 1000.0,
        };
        let mut l = Layered::default();
        assert_eq!(l.estimate(0.3), 0.3);
        l.observe(true, memory);
        l.observe(true, memory);
        // Process: (2 + 2·0.3) / 4 = 0.65; request: (2 + 2·0.65) / 4 = 0.825.
        assert!((l.estimate(0.3) - 0.825).abs() < 1e-12);
        l.begin_request();
        assert!((l.estimate(0.3) - 0.65).abs() < 1e-12);
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
}
