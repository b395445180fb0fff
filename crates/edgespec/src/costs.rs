//! Measured costs in milliseconds: target passes by batch size, drafter
//! steps and catch-up batches, smoothed online.

/// Exponential moving average with a count: the first observation sets the
/// value, each later one moves it by [`Ema::WEIGHT`] of the difference. A
/// value carried over from an earlier run ([`Ema::assume`]) stands until
/// the first observation replaces it. A stored one with a value that is not
/// finite is refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "StoredEma")]
pub struct Ema {
    value: f64,
    count: u32,
    assumed: bool,
}

#[derive(serde::Deserialize)]
struct StoredEma {
    value: f64,
    count: u32,
    assumed: bool,
}

impl TryFrom<StoredEma> for Ema {
    type Error = String;
    fn try_from(e: StoredEma) -> Result<Self, String> {
        if e.value.is_finite() {
            Ok(Self {
                value: e.value,
                count: e.count,
                assumed: e.assumed,
            })
        } else {
            Err(format!("not an average: {}", e.value))
        }
    }
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

    /// Adds a measurement: the mean of the measurements until there are
    /// enough of them for [`Self::WEIGHT`], then as [`Self::add`] (one
    /// noisy first sample does not stand for ten).
    pub fn add_sample(&mut self, x: f64) {
        self.count = self.count.saturating_add(1);
        let weight = (1.0 / f64::from(self.count)).max(Self::WEIGHT);
        self.value += weight * (x - self.value);
    }

    /// Starts from `x` measured elsewhere, until the first observation.
    pub fn assume(&mut self, x: f64) {
        *self = Self {
            value: x,
            count: 0,
            assumed: true,
        };
    }

    /// The average, if anything was observed.
    pub fn get(&self) -> Option<f64> {
        (self.count > 0 || self.assumed).then_some(self.value)
    }
}

/// Largest batch the cost model keeps a slot for: a verification pass of
/// the last token and the longest draft ([`crate::draft::MAX_DRAFT`] is
/// one less).
pub const MAX_BATCH: usize = 65;

/// Pass time by batch size, measured; sizes not measured are interpolated
/// linearly between the nearest measured ones (extrapolated past the ends).
#[derive(Debug, Clone, PartialEq)]
pub struct BatchCurve {
    /// Index b: a pass over b tokens.
    slots: [Ema; MAX_BATCH + 1],
}

impl Default for BatchCurve {
    fn default() -> Self {
        Self {
            slots: [Ema::default(); MAX_BATCH + 1],
        }
    }
}

impl BatchCurve {
    /// Records a pass over `batch` tokens (ignored above [`MAX_BATCH`]).
    pub fn observe(&mut self, batch: usize, ms: f64) {
        if batch > 0 && ms.is_finite() && ms >= 0.0 {
            if let Some(slot) = self.slots.get_mut(batch) {
                slot.add_sample(ms);
            }
        }
    }

    /// Starts from a pass time measured by an earlier run, which this
    /// run's first pass of that size replaces.
    pub fn assume(&mut self, batch: usize, ms: f64) {
        if batch > 0 && ms.is_finite() && ms >= 0.0 {
            if let Some(slot) = self.slots.get_mut(batch) {
                slot.assume(ms);
            }
        }
    }

    /// The measured time of a pass over `batch` tokens, if that size was measured.
    pub fn measured(&self, batch: usize) -> Option<f64> {
        self.slots.get(batch).and_then(Ema::get)
    }

    /// True when no size was measured.
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(|s| s.get().is_none())
    }

    /// Time of a pass over `batch` tokens: measured, else interpolated
    /// linearly between the nearest measured sizes. Past the largest size
    /// it grows by the mean cost per extra token between the smallest and
    /// the largest measured sizes (the slope between two noisy neighbours
    /// could be anything); below the smallest it is the smallest's (a pass
    /// never costs less than a smaller one). One size measured: in
    /// proportion to it. Nothing measured: `batch` ms.
    pub fn ms(&self, batch: usize) -> f64 {
        if let Some(v) = self.measured(batch) {
            return v;
        }
        let measured = || {
            self.slots
                .iter()
                .enumerate()
                .filter_map(|(b, slot)| slot.get().map(|v| (b, v)))
        };
        let below = measured().rev().find(|&(b, _)| b < batch);
        let above = measured().find(|&(b, _)| b > batch);
        match (below, above) {
            (Some(lo), Some(hi)) => {
                let slope = (hi.1 - lo.1) / (hi.0 - lo.0) as f64;
                lo.1 + slope * (batch - lo.0) as f64
            }
            (Some((b, v)), None) => match measured().next() {
                Some((first, first_v)) if first < b => {
                    let slope = ((v - first_v) / (b - first) as f64).max(0.0);
                    v + slope * (batch - b) as f64
                }
                _ => v * batch as f64 / b as f64,
            },
            (None, Some((_, v))) => v,
            (None, None) => batch as f64,
        }
    }
}

/// How to read `len` pending tokens so that the passes a cost model needs
/// are timed on the way: a head read in one batch (0 when nothing is left
/// for it), then one batch of each size in `sizes` that still fits, the
/// largest first and the smallest last, always when it fits (so with a
/// size of 1 the final batch's only output is the last token's). The
/// head's pass also warms the weights, so the timed passes that follow
/// are steady ones.
pub fn timed_tail(len: usize, sizes: &[usize]) -> (usize, Vec<usize>) {
    let mut sizes: Vec<usize> = sizes.iter().copied().filter(|&b| b > 0).collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes.dedup();
    let Some(&smallest) = sizes.last() else {
        return (len, Vec::new());
    };
    let mut tail = Vec::with_capacity(sizes.len());
    let mut left = len;
    for &b in &sizes[..sizes.len() - 1] {
        // Room is kept for the smallest batch, which comes last.
        if b + smallest <= left {
            tail.push(b);
            left -= b;
        }
    }
    if smallest <= left {
        tail.push(smallest);
        left -= smallest;
    }
    (left, tail)
}

/// What a [`CostModel`] has measured, to keep between processes (with
/// what the policy learned, in `speculative::CostSnapshot`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MeasuredCosts {
    /// Target pass ms by batch size (measured sizes only).
    pub verify: Vec<(usize, f64)>,
    /// Drafter ms per step.
    pub draft: Option<f64>,
    /// Drafter catch-up ms by batch size (measured sizes only).
    pub catch_up: Vec<(usize, f64)>,
}

/// Measured costs in milliseconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CostModel {
    /// Target pass time by batch size.
    verify: BatchCurve,
    /// Model drafter time per step after the first drafted token (one token fed).
    draft: Ema,
    /// Model drafter pass time by batch size (catch-up batches).
    catch_up: BatchCurve,
}

impl CostModel {
    /// What has been measured.
    pub fn snapshot(&self) -> MeasuredCosts {
        let measured = |curve: &BatchCurve| {
            (1..=MAX_BATCH)
                .filter_map(|b| curve.measured(b).map(|ms| (b, ms)))
                .collect()
        };
        MeasuredCosts {
            verify: measured(&self.verify),
            draft: self.draft.get(),
            catch_up: measured(&self.catch_up),
        }
    }

    /// Costs as measured earlier: each value stands until this run's first
    /// pass of its kind and size replaces it (a machine busier or idler
    /// than it was then does not steer this run for long).
    pub fn from_snapshot(snapshot: &MeasuredCosts) -> Self {
        let mut costs = Self::default();
        for &(b, ms) in &snapshot.verify {
            costs.verify.assume(b, ms);
        }
        if let Some(ms) = snapshot.draft.filter(|ms| ms.is_finite() && *ms >= 0.0) {
            costs.draft.assume(ms);
        }
        for &(b, ms) in &snapshot.catch_up {
            costs.catch_up.assume(b, ms);
        }
        costs
    }

    /// Takes `ms` as the target's pass over `batch` tokens until a pass of
    /// that size is measured (a guess from a pass that was not one).
    pub fn assume_verify(&mut self, batch: usize, ms: f64) {
        self.verify.assume(batch, ms);
    }

    /// Records a target decode of `batch` tokens.
    pub fn observe_verify(&mut self, batch: usize, ms: f64) {
        self.verify.observe(batch, ms);
    }

    /// Records drafter time for `tokens` drafter steps.
    pub fn observe_draft(&mut self, tokens: usize, ms: f64) {
        if tokens > 0 && ms.is_finite() && ms >= 0.0 {
            self.draft.add_sample(ms / tokens as f64);
        }
    }

    /// Records a drafter catch-up batch of `tokens` tokens.
    pub fn observe_catch_up(&mut self, tokens: usize, ms: f64) {
        self.catch_up.observe(tokens, ms);
    }

    /// Model drafter ms to catch up on `tokens` tokens in one batch: the
    /// measured batch curve once a size was timed; until then one step per
    /// token beyond the first is an upper bound (a batch is never dearer
    /// than its tokens fed one by one), which [`Self::catch_up_is_measured`]
    /// lets callers tell apart.
    pub fn catch_up_ms(&self, tokens: usize) -> f64 {
        if tokens == 0 {
            return 0.0;
        }
        if !self.catch_up.is_empty() {
            return self.catch_up.ms(tokens);
        }
        self.draft.get().unwrap_or(0.0) * tokens as f64
    }

    /// True once a drafter batch was timed.
    pub fn catch_up_is_measured(&self) -> bool {
        !self.catch_up.is_empty()
    }

    /// Model drafter ms per token, once measured.
    pub fn draft_ms(&self) -> Option<f64> {
        self.draft.get()
    }

    /// Target ms for a batch of `batch` tokens, if that size was measured.
    pub fn measured_ms(&self, batch: usize) -> Option<f64> {
        self.verify.measured(batch)
    }

    /// Target ms for a batch of `batch` tokens: measured, else linearly
    /// interpolated/extrapolated from the nearest measured sizes.
    pub fn verify_ms(&self, batch: usize) -> f64 {
        self.verify.ms(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_cost_interpolates_and_extrapolates() {
        let mut c = CostModel::default();
        for (b, ms) in [(1, 37.0), (2, 48.0), (4, 88.0), (8, 167.0)] {
            c.observe_verify(b, ms);
        }
        assert_eq!(c.verify_ms(2), 48.0);
        assert!((c.verify_ms(3) - 68.0).abs() < 1e-9);
        assert!((c.verify_ms(6) - 127.5).abs() < 1e-9);
        // Past the largest size: the mean slope from the smallest (130 ms
        // over 7 tokens); below the smallest: its cost.
        assert!((c.verify_ms(15) - 297.0).abs() < 1e-9);
        assert_eq!(CostModel::default().verify_ms(3), 3.0);
        let mut one = CostModel::default();
        one.observe_verify(2, 10.0);
        assert_eq!(one.verify_ms(4), 20.0);
        assert_eq!(one.verify_ms(1), 10.0);
    }

    #[test]
    fn an_assumed_value_stands_until_the_first_observation_replaces_it() {
        let mut e = Ema::default();
        assert_eq!(e.get(), None);
        e.assume(130.0);
        assert_eq!(e.get(), Some(130.0));
        e.add(58.0);
        assert_eq!(e.get(), Some(58.0));
        e.add(68.0);
        assert_eq!(e.get(), Some(59.0));
        // Samples: their mean until ten of them.
        let mut m = Ema::default();
        m.assume(130.0);
        for x in [69.0, 57.0, 57.0] {
            m.add_sample(x);
        }
        assert_eq!(m.get(), Some(61.0));
        for _ in 0..100 {
            m.add_sample(58.0);
        }
        assert!((m.get().unwrap() - 58.0).abs() < 1e-3);
    }

    #[test]
    fn catch_up_uses_the_batch_curve_once_measured() {
        let mut c = CostModel::default();
        assert_eq!(c.catch_up_ms(3), 0.0);
        c.observe_draft(2, 40.0);
        // Unmeasured: one step per token, an upper bound.
        assert_eq!(c.catch_up_ms(3), 60.0);
        assert!(!c.catch_up_is_measured());
        c.observe_catch_up(1, 20.0);
        c.observe_catch_up(4, 26.0);
        assert!(c.catch_up_is_measured());
        assert_eq!(c.catch_up_ms(2), 22.0);
        assert_eq!(c.catch_up_ms(0), 0.0);
    }

    #[test]
    fn a_timed_tail_takes_what_fits_largest_first() {
        assert_eq!(timed_tail(32, &[1, 9]), (22, vec![9, 1]));
        assert_eq!(timed_tail(9, &[9, 1, 9]), (8, vec![1]));
        assert_eq!(timed_tail(10, &[9, 1]), (0, vec![9, 1]));
        assert_eq!(timed_tail(5, &[1, 2, 9]), (2, vec![2, 1]));
        assert_eq!(timed_tail(0, &[1, 2]), (0, vec![]));
        assert_eq!(timed_tail(3, &[0]), (3, vec![]));
    }

    #[test]
    fn bad_observations_are_ignored() {
        let mut c = CostModel::default();
        c.observe_verify(0, 5.0);
        c.observe_verify(MAX_BATCH + 1, 5.0);
        c.observe_verify(2, f64::NAN);
        c.observe_draft(1, -1.0);
        assert_eq!(c, CostModel::default());
    }
}
