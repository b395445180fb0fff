//! The EAD switching rule as pure functions: entropy of the small model's
//! next-token distribution, a rolling mean over a window, a threshold with a
//! minimum dwell between switches, and optionally a feedback controller
//! that moves the threshold to hold the large model's share of tokens where
//! the user sets it.

use std::collections::VecDeque;

/// Which model generates a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Who {
    /// The small model.
    Small,
    /// The large model.
    Large,
}

/// Bad EAD settings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EadConfigError {
    /// The rolling window must hold at least one entropy value.
    #[error("EAD window must be at least 1 token (got {0})")]
    ZeroWindow(usize),
    /// The window is larger than anything useful.
    #[error("EAD window {0} is over the limit of {MAX_WINDOW} tokens")]
    WindowTooLarge(usize),
    /// Entropy is never negative, so a negative threshold is a mistake.
    #[error("EAD threshold must be a finite number of bits >= 0 (got {0})")]
    BadThreshold(f64),
    /// A share of tokens is a fraction strictly between 0 and 1.
    #[error("EAD large-model share must be in (0, 1) (got {0})")]
    BadShare(f64),
}

/// Longest rolling window accepted.
pub const MAX_WINDOW: usize = 4096;

/// EAD settings.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct EadConfig {
    /// Switch to the large model when the rolling mean entropy (bits)
    /// exceeds this; back to the small one when it falls below.
    pub threshold_bits: f64,
    /// Entropy values in the rolling mean.
    pub window: usize,
    /// Tokens that must be generated after a switch before the next one.
    pub min_dwell: usize,
    /// Hold the large model's share of generated tokens here by moving the
    /// threshold (which then only sets the start); None: a fixed threshold.
    pub large_share: Option<f64>,
    /// Finish a request with the large model alone once it has run slower
    /// than the large model's measured step (after a few dozen tokens).
    /// Keeps EAD from losing to large-only decoding, at the price of
    /// output that depends on timing; off for reproducible output.
    pub fallback: bool,
}

impl Default for EadConfig {
    fn default() -> Self {
        Self {
            threshold_bits: 1.0,
            window: 5,
            min_dwell: 4,
            large_share: None,
            fallback: true,
        }
    }
}

impl EadConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<(), EadConfigError> {
        if self.window == 0 {
            return Err(EadConfigError::ZeroWindow(self.window));
        }
        if self.window > MAX_WINDOW {
            return Err(EadConfigError::WindowTooLarge(self.window));
        }
        if !self.threshold_bits.is_finite() || self.threshold_bits < 0.0 {
            return Err(EadConfigError::BadThreshold(self.threshold_bits));
        }
        if let Some(share) = self.large_share {
            if !(share > 0.0 && share < 1.0) {
                return Err(EadConfigError::BadShare(share));
            }
        }
        Ok(())
    }
}

/// A feedback controller on the switching threshold, in the spirit of
/// Mirostat (Basu et al. 2021, arXiv 2007.14966), which steers its
/// truncation to hold the text's surprise at a target: here the threshold
/// is steered to hold the share of tokens the large model generates. The
/// update is in log space (each large token raises the threshold by a
/// factor, each small one lowers it), so one controller fits text whose
/// entropies are hundredths of a bit (code) and text where they are bits
/// (chat): a fixed threshold in bits does not transfer between the two.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShareController {
    target: f64,
    log_threshold: f64,
}

impl ShareController {
    /// Log-threshold change per token, times (large? 1 : 0) − target: a
    /// run of large tokens doubles the threshold in about four tokens
    /// (4·0.2·0.85 ≈ ln 2 at a 15 % target), so an answer settles within a
    /// few dozen tokens, while the threshold (entropies span orders of
    /// magnitude) dithers by a factor of about two.
    const RATE: f64 = 0.2;
    /// Bounds of the threshold in bits: 1/1000 bit, and the entropy of a
    /// uniform choice among 2^18 tokens (more than any vocabulary here).
    const MIN_BITS: f64 = 1e-3;
    const MAX_BITS: f64 = 18.0;

    /// A controller holding the large model's share at `target`, starting
    /// from `threshold_bits`.
    pub fn new(target: f64, threshold_bits: f64) -> Self {
        Self {
            target,
            log_threshold: threshold_bits.clamp(Self::MIN_BITS, Self::MAX_BITS).ln(),
        }
    }

    /// The threshold now.
    pub fn threshold_bits(&self) -> f64 {
        self.log_threshold.exp()
    }

    /// Records which model generated a token.
    pub fn observe(&mut self, who: Who) {
        let large = f64::from(u8::from(who == Who::Large));
        self.log_threshold = (self.log_threshold + Self::RATE * (large - self.target))
            .clamp(Self::MIN_BITS.ln(), Self::MAX_BITS.ln());
    }
}

/// Logits this far below the maximum are left out of the entropy: together
/// they change it by less than 1e-9 bits even over a 262k vocabulary.
const NEGLIGIBLE_BELOW_MAX: f32 = 40.0;

/// Shannon entropy in bits of softmax(`logits`). Exponentials in f32, sums in
/// f64; logits of -inf (masked ids) and far below the maximum contribute
/// nothing.
pub fn entropy_bits(logits: &[f32]) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return 0.0;
    }
    let mut sum = 0.0f64;
    let mut weighted = 0.0f64;
    for &l in logits {
        let d = l - max;
        if d > -NEGLIGIBLE_BELOW_MAX {
            let e = d.exp();
            sum += f64::from(e);
            weighted += f64::from(e * d);
        }
    }
    // H = ln Σe^d − Σ p·d, with p = e^d / Σe^d.
    let nats = sum.ln() - weighted / sum;
    (nats / std::f64::consts::LN_2).max(0.0)
}

/// The switching state across one generation.
#[derive(Debug, Clone)]
pub struct EadPolicy {
    config: EadConfig,
    /// The threshold in force (moved by the controller when there is one).
    threshold: f64,
    controller: Option<ShareController>,
    window: VecDeque<f64>,
    sum: f64,
    current: Who,
    /// Positions generated since the last switch (None before the first).
    since_switch: Option<usize>,
    switches: usize,
}

impl EadPolicy {
    /// A policy that starts with the small model.
    pub fn new(config: EadConfig) -> Result<Self, EadConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            threshold: config.threshold_bits,
            controller: config
                .large_share
                .map(|share| ShareController::new(share, config.threshold_bits)),
            window: VecDeque::with_capacity(config.window),
            sum: 0.0,
            current: Who::Small,
            since_switch: None,
            switches: 0,
        })
    }

    /// A policy that starts from where an earlier generation's controller
    /// left the threshold (a long-running engine keeps what it learned).
    pub fn resume(
        config: EadConfig,
        controller: Option<ShareController>,
    ) -> Result<Self, EadConfigError> {
        let mut policy = Self::new(config)?;
        if let (Some(c), Some(share)) = (controller, config.large_share) {
            let c = ShareController { target: share, ..c };
            policy.threshold = c.threshold_bits();
            policy.controller = Some(c);
        }
        Ok(policy)
    }

    /// The threshold controller, if the threshold adapts.
    pub fn controller(&self) -> Option<ShareController> {
        self.controller
    }

    /// The rolling mean of the entropies seen, over the last `window`.
    pub fn mean(&self) -> f64 {
        if self.window.is_empty() {
            0.0
        } else {
            self.sum / self.window.len() as f64
        }
    }

    /// The model in charge.
    pub fn current(&self) -> Who {
        self.current
    }

    /// Switches so far.
    pub fn switches(&self) -> usize {
        self.switches
    }

    /// The switching threshold in force, bits.
    pub fn threshold_bits(&self) -> f64 {
        self.threshold
    }

    /// Takes the small model's entropy (bits) at the next position and says
    /// which model generates that position.
    pub fn observe(&mut self, entropy_bits: f64) -> Who {
        if self.window.len() == self.config.window {
            if let Some(old) = self.window.pop_front() {
                self.sum -= old;
            }
        }
        self.window.push_back(entropy_bits);
        // Recomputed rather than updated so rounding never drifts.
        self.sum = self.window.iter().sum();
        let mean = self.mean();
        let dwelt = match self.since_switch {
            None => true,
            Some(n) => n >= self.config.min_dwell,
        };
        let wanted = match self.current {
            Who::Small if mean > self.threshold => Who::Large,
            Who::Large if mean < self.threshold => Who::Small,
            current => current,
        };
        if wanted != self.current && dwelt {
            self.current = wanted;
            self.switches += 1;
            self.since_switch = Some(0);
        }
        if let Some(n) = self.since_switch.as_mut() {
            *n += 1;
        }
        if let Some(c) = self.controller.as_mut() {
            c.observe(self.current);
            self.threshold = c.threshold_bits();
        }
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(threshold_bits: f64, window: usize, min_dwell: usize) -> EadPolicy {
        EadPolicy::new(EadConfig {
            threshold_bits,
            window,
            min_dwell,
            large_share: None,
            fallback: false,
        })
        .unwrap()
    }

    /// A deterministic entropy stream: spread over two orders of magnitude
    /// around `scale` bits (x in [0, 1) from a Weyl sequence, scale·100^(x−0.5)).
    fn stream(scale: f64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| {
                let x = (i as f64 * 0.618_033_988_749_894_9).fract();
                scale * 100f64.powf(x - 0.5)
            })
            .collect()
    }

    #[test]
    fn the_controller_holds_the_large_share_on_text_of_any_entropy_scale() {
        // Code-like (0.05 bits typical) and chat-like (2 bits) streams, each
        // started from a threshold far off: the share settles at the target.
        for scale in [0.05, 2.0] {
            for target in [0.1, 0.3] {
                let mut p = EadPolicy::new(EadConfig {
                    threshold_bits: 1.0,
                    window: 5,
                    min_dwell: 4,
                    large_share: Some(target),
                    fallback: false,
                })
                .unwrap();
                let whos = run(&mut p, &stream(scale, 3000));
                let share = whos[1000..].iter().filter(|&&w| w == L).count() as f64 / 2000.0;
                assert!(
                    (share - target).abs() < 0.05,
                    "scale {scale}, target {target}: share {share}, threshold {}",
                    p.threshold_bits()
                );
            }
        }
        // A fixed threshold does not transfer: 1 bit gives chat-like text
        // to the large model most of the time and code-like text never.
        for (scale, low, high) in [(0.05, 0.0, 0.05), (2.0, 0.5, 1.0)] {
            let mut p = policy(1.0, 5, 4);
            let whos = run(&mut p, &stream(scale, 3000));
            let share = whos.iter().filter(|&&w| w == L).count() as f64 / 3000.0;
            assert!((low..=high).contains(&share), "scale {scale}: {share}");
        }
    }

    #[test]
    fn a_resumed_controller_holds_the_share_from_its_first_tokens() {
        let config = EadConfig {
            threshold_bits: 1.0,
            window: 5,
            min_dwell: 4,
            large_share: Some(0.2),
            fallback: false,
        };
        let share =
            |whos: &[Who]| whos.iter().filter(|&&w| w == L).count() as f64 / whos.len() as f64;
        // A first chat-like answer starts far off (1 bit is below most of
        // its entropies) and settles; the next resumes where it settled.
        let mut first = EadPolicy::new(config).unwrap();
        let whos = run(&mut first, &stream(2.0, 1000));
        assert!(share(&whos[..20]) > 0.5, "{}", share(&whos[..20]));
        let mut next = EadPolicy::resume(config, first.controller()).unwrap();
        assert_eq!(next.threshold_bits(), first.threshold_bits());
        let whos = run(&mut next, &stream(2.0, 200));
        assert!((share(&whos) - 0.2).abs() < 0.1, "{}", share(&whos));
        // A fixed threshold ignores a carried controller.
        let fixed = EadConfig {
            large_share: None,
            ..config
        };
        let p = EadPolicy::resume(fixed, first.controller()).unwrap();
        assert_eq!((p.threshold_bits(), p.controller()), (1.0, None));
    }

    #[test]
    fn the_controller_threshold_stays_in_bounds() {
        let mut c = ShareController::new(0.5, 1e9);
        assert!(c.threshold_bits() <= 18.0 + 1e-9);
        for _ in 0..10_000 {
            c.observe(Who::Small);
        }
        assert!((c.threshold_bits() - 1e-3).abs() < 1e-9);
    }

    fn run(p: &mut EadPolicy, entropies: &[f64]) -> Vec<Who> {
        entropies.iter().map(|&h| p.observe(h)).collect()
    }

    use Who::{Large as L, Small as S};

    #[test]
    fn entropy_of_known_distributions() {
        assert!((entropy_bits(&[0.0; 8]) - 3.0).abs() < 1e-9);
        assert!((entropy_bits(&[0.0, 0.0]) - 1.0).abs() < 1e-9);
        assert!(entropy_bits(&[100.0, 0.0, 0.0]) < 1e-12);
        // Masked ids do not count.
        let masked = [0.0, 0.0, f32::NEG_INFINITY, f32::NEG_INFINITY];
        assert!((entropy_bits(&masked) - 1.0).abs() < 1e-9);
        // Shift invariance.
        let a = [1.0f32, 2.0, 3.0, -4.0];
        let b: Vec<f32> = a.iter().map(|x| x + 1000.0).collect();
        assert!((entropy_bits(&a) - entropy_bits(&b)).abs() < 1e-6);
        // p = (0.5, 0.25, 0.25): 1.5 bits.
        let l = [2f32.ln(), 0.0, 0.0];
        assert!((entropy_bits(&l) - 1.5).abs() < 1e-6);
    }

    #[test]
    fn entropy_matches_a_full_f64_reference() {
        let reference = |l: &[f32]| {
            let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let z: f64 = l.iter().map(|&x| (x as f64 - max).exp()).sum();
            -l.iter()
                .map(|&x| {
                    let p = (x as f64 - max).exp() / z;
                    if p > 0.0 {
                        p * p.log2()
                    } else {
                        0.0
                    }
                })
                .sum::<f64>()
        };
        // A wide spread (many logits far below the top) and a flat one.
        let wide: Vec<f32> = (0..262_144u32)
            .map(|i| ((i.wrapping_mul(2_654_435_761) >> 8) % 6000) as f32 / 100.0 - 40.0)
            .collect();
        let flat: Vec<f32> = (0..151_936u32).map(|i| (i % 7) as f32 * 0.01).collect();
        for l in [&wide, &flat] {
            assert!(
                (entropy_bits(l) - reference(l)).abs() < 1e-4,
                "{} vs {}",
                entropy_bits(l),
                reference(l)
            );
        }
    }

    #[test]
    fn switches_up_when_the_mean_exceeds_the_threshold() {
        let mut p = policy(1.0, 1, 0);
        assert_eq!(run(&mut p, &[0.5, 1.0, 1.01, 0.99, 0.2]), [S, S, L, S, S]);
        assert_eq!(p.switches(), 2);
    }

    #[test]
    fn the_rolling_mean_spans_the_window() {
        let mut p = policy(1.0, 3, 0);
        // Means: 3.0 → L; (3+0)/2=1.5 L; (3+0+0)/3=1 not below → L;
        // (0+0+0)/3 = 0 → S.
        assert_eq!(run(&mut p, &[3.0, 0.0, 0.0, 0.0]), [L, L, L, S]);
        assert!((p.mean() - 0.0).abs() < 1e-12);
        // A single spike inside a calm window stays below 1 bit: 2.9/3.
        let mut q = policy(1.0, 3, 0);
        assert_eq!(run(&mut q, &[0.0, 0.0, 2.9, 0.0]), [S, S, S, S]);
    }

    #[test]
    fn dwell_delays_both_switches() {
        let mut p = policy(1.0, 1, 3);
        // First switch is free; then 3 tokens with the large model before a
        // switch back, then 3 with the small before the next switch up.
        let h = [2.0, 0.0, 0.0, 0.0, 2.0, 2.0, 2.0, 2.0];
        assert_eq!(run(&mut p, &h), [L, L, L, S, S, S, L, L]);
        assert_eq!(p.switches(), 3);
    }

    #[test]
    fn zero_threshold_keeps_the_large_model_on_any_uncertainty() {
        let mut p = policy(0.0, 2, 0);
        // Once up, a mean of exactly 0 is not below 0: it stays large.
        assert_eq!(run(&mut p, &[0.0, 0.1, 0.0, 0.0]), [S, L, L, L]);
    }

    #[test]
    fn bad_settings_are_rejected() {
        let bad = |c: EadConfig| EadPolicy::new(c).unwrap_err();
        let ok = EadConfig::default();
        assert_eq!(
            bad(EadConfig { window: 0, ..ok }),
            EadConfigError::ZeroWindow(0)
        );
        assert!(matches!(
            bad(EadConfig {
                threshold_bits: -0.5,
                ..ok
            }),
            EadConfigError::BadThreshold(_)
        ));
        assert!(matches!(
            bad(EadConfig {
                threshold_bits: f64::NAN,
                ..ok
            }),
            EadConfigError::BadThreshold(_)
        ));
        assert!(matches!(
            bad(EadConfig {
                window: MAX_WINDOW + 1,
                ..ok
            }),
            EadConfigError::WindowTooLarge(_)
        ));
        for share in [0.0, 1.0, -0.1, f64::NAN] {
            assert!(matches!(
                bad(EadConfig {
                    large_share: Some(share),
                    ..ok
                }),
                EadConfigError::BadShare(_)
            ));
        }
    }
}
