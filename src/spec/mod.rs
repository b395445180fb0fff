//! Speculative decoding: draft → verify → accept → roll back.
//!
//! The loop only orchestrates; the maths are pure functions in [`verify`]
//! and the draft length comes from [`policy`]. Invariant between rounds: the
//! target's KV cache holds every committed token but the last, whose logits
//! the next round computes together with the draft in one batch
//! (`[last, x1..xγ]`). Stopping rules match target-only decoding exactly.

pub mod policy;
pub mod verify;

use std::time::{Duration, Instant};

use crate::draft::{
    check_vocab_compatible, Draft, DraftControl, DraftSource, Drafter, Next, VocabError,
};
use crate::engine::{Context, EngineError, Logits, Model, Token};
use crate::generate::{check_prompt, GenerateParams, Generation, StopReason, TokenSink};
use crate::metrics::{GenerationStats, SpecStats};
use crate::sampling::{Sampler, SamplingError};

pub use policy::{
    AcceptanceModel, CostModel, DraftCost, DraftLength, Ema, Frequency, LookupModel, PolicyConfig,
    PolicyError, MAX_DRAFT,
};
pub use verify::{verify_greedy, verify_sampling, DraftProb, Verdict};

/// Errors of speculative generation.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// llama.cpp or parameter trouble.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The drafter cannot draft for this target.
    #[error(transparent)]
    Vocab(#[from] VocabError),
    /// Bad policy settings.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// Bad sampling settings.
    #[error(transparent)]
    Sampling(#[from] SamplingError),
}

/// A speculative generation's result: the usual one plus speculation stats.
#[derive(Debug, Clone)]
pub struct SpecGeneration {
    /// Tokens, text, stop reason, timings.
    pub generation: Generation,
    /// Speculation counters.
    pub spec: SpecStats,
}

/// Tokens a model drafter must catch up on after a round in which it drafted
/// (the last drafted token and the target's own token).
const STEADY_BEHIND: usize = 2;

/// Rounds without a draft after which one probe draft refreshes the estimates.
const PROBE_EVERY: u32 = 16;

/// What the policy learns across rounds (and prompts).
#[derive(Debug, Clone, Default)]
struct PolicyState {
    costs: CostModel,
    acceptance: AcceptanceModel,
    /// Acceptance of the first drafted token of a model draft.
    first_model_token: Ema,
    /// Acceptance of lookup drafts by how much context they matched.
    lookup: LookupModel,
    /// Realised tokens per ms of recent rounds.
    realized_rate: Ema,
    rounds_without_draft: u32,
    /// Rounds without a draft before a probe; doubles while probes do not pay.
    probe_interval: u32,
    /// The current round is a probe.
    probing: bool,
}

impl PolicyState {
    fn best_rate(&self) -> f64 {
        let plain = 1.0 / self.costs.verify_ms(1).max(1e-6);
        self.realized_rate.get().map_or(plain, |r| r.max(plain))
    }

    /// Estimated acceptance of the draft token at `position` (0-based),
    /// given that the tokens before it are accepted.
    fn token_estimate(&self, source: DraftSource, confidence: Option<f32>, position: usize) -> f64 {
        match (source, confidence) {
            (DraftSource::Lookup { matched }, _) => self.lookup.predict(matched, position),
            (DraftSource::Model, Some(c)) => self.acceptance.predict(c),
            (DraftSource::Model, None) => self.first_model_token.get().unwrap_or(0.5),
        }
    }

    fn draft_cost(&self, source: DraftSource, behind: usize) -> DraftCost {
        match source {
            DraftSource::Lookup { .. } => DraftCost {
                upfront_ms: 0.0,
                per_token_ms: 0.0,
            },
            // The catch-up batch of `behind` tokens yields the first draft
            // token; each further token is one drafter step.
            DraftSource::Model => {
                let step = self.costs.draft_ms().unwrap_or(0.0);
                DraftCost {
                    upfront_ms: (self.costs.catch_up_ms(behind.max(1)) - step).max(0.0),
                    per_token_ms: step,
                }
            }
        }
    }

    fn probe_due(&self) -> bool {
        self.rounds_without_draft >= self.probe_interval.max(PROBE_EVERY)
    }
}

/// The policy's view of one round, handed to the drafter.
struct RoundControl<'a> {
    config: PolicyConfig,
    state: &'a PolicyState,
    /// Tokens left before the output or the context is full.
    room: usize,
    cumulative: heapless::Vec<f64, MAX_DRAFT>,
    /// This round drafts one token whatever the estimates say.
    probe: bool,
}

impl DraftControl for RoundControl<'_> {
    fn room(&self, source: DraftSource) -> usize {
        self.config.cap_for(source).min(self.room)
    }

    fn start(&mut self, source: DraftSource, behind: usize) -> bool {
        let room = self.room(source);
        if room == 0 {
            return false;
        }
        if let DraftLength::Fixed(_) = self.config.length {
            return true;
        }
        let state = self.state;
        let worth = |acceptance: f64, cost: DraftCost| {
            policy::worth_extending(
                &[],
                |_| acceptance,
                room,
                cost,
                &state.costs,
                state.best_rate(),
            )
        };
        // Judge drafting by its steady state: a drafting round leaves the
        // drafter STEADY_BEHIND tokens behind. A longer backlog (after rounds
        // without drafts) is a one-time cost that says nothing about whether
        // drafting pays; counting it would keep a drafter that fell behind
        // from ever starting again.
        let cost = state.draft_cost(source, behind.min(STEADY_BEHIND));
        if worth(state.token_estimate(source, None, 0), cost) {
            return true;
        }
        // A probe refreshes acceptance estimates. It pays the whole backlog's
        // catch-up, so it runs only if drafting would pay even at that price
        // with every token accepted; otherwise the drafter stays off.
        self.probe = self.probe && worth(1.0, state.draft_cost(source, behind));
        self.probe
    }

    fn next(&mut self, draft: &Draft) -> Next {
        let k = draft.len();
        let confidence = draft.confidence()[k - 1];
        if let (Some(p_min), Some(c)) = (self.config.p_min, confidence) {
            if c < p_min {
                return Next::DropLastAndStop;
            }
        }
        let room = self.room(draft.source());
        if k >= room {
            return Next::Stop;
        }
        match self.config.length {
            DraftLength::Fixed(_) => Next::Continue,
            DraftLength::Auto { .. } => {
                let a = self.state.token_estimate(draft.source(), confidence, k - 1);
                // Aligned with the draft in hand (a hybrid may have dropped a lookup attempt).
                self.cumulative.truncate(k - 1);
                let previous = self.cumulative.last().copied().unwrap_or(1.0);
                let _ = self.cumulative.push(previous * a);
                if self.probe {
                    return Next::Stop;
                }
                // Further tokens: a lookup copy's rates by position
                // (conditional on the span so far); a model's, this one's.
                let state = self.state;
                let source = draft.source();
                let next = |position: usize| match source {
                    DraftSource::Lookup { .. } => state.token_estimate(source, None, position),
                    DraftSource::Model => a,
                };
                let costs = &state.costs;
                let best = state.best_rate();
                let more = policy::worth_extending(
                    &self.cumulative,
                    next,
                    room - k,
                    state.draft_cost(source, 0),
                    costs,
                    best,
                );
                // Stopping here: keep the last token only if verifying it
                // pays for itself. (Mid-way, a token that does not pay alone
                // may still lead to a longer draft that does: the verify cost
                // per token falls with batch size.)
                let marginal_ms = costs.verify_ms(k + 1) - costs.verify_ms(k);
                if more {
                    Next::Continue
                } else if marginal_ms > 0.0 && self.cumulative[k - 1] / marginal_ms < best {
                    Next::DropLastAndStop
                } else {
                    Next::Stop
                }
            }
        }
    }
}

/// Batches longer than this are timed once at calibration: they take long
/// enough to time steadily, the smaller sizes timed before them have warmed
/// the graph, and online samples refine them.
const ONE_SAMPLE_ABOVE: usize = 16;

/// Times forward passes of `ctx` for each batch size in `sizes` (up to the
/// context's room) after its cache, with `token` repeated, into `costs`:
/// once to warm, then the median of three, so one noisy sample does not
/// steer a policy until online samples correct it (sizes above
/// [`ONE_SAMPLE_ABOVE`] once). The cache is left as found.
pub fn time_batches(
    ctx: &mut Context,
    token: Token,
    sizes: &[usize],
    costs: &mut CostModel,
) -> Result<(), EngineError> {
    let base = ctx.n_past();
    let mut sizes = sizes.to_vec();
    sizes.sort_unstable();
    sizes.dedup();
    let mut batch = Vec::new();
    for b in sizes {
        if b == 0 || b > MAX_DRAFT + 1 || base + b > ctx.n_ctx() as usize {
            continue;
        }
        batch.clear();
        batch.resize(b, token);
        let mut time = || -> Result<f64, EngineError> {
            let start = Instant::now();
            ctx.decode(&batch, Logits::All)?;
            let ms = start.elapsed().as_secs_f64() * 1e3;
            ctx.truncate(base)?;
            Ok(ms)
        };
        let ms = if b > ONE_SAMPLE_ABOVE {
            time()?
        } else {
            time()?;
            let mut timed = [time()?, time()?, time()?];
            timed.sort_by(f64::total_cmp);
            timed[1]
        };
        costs.observe_verify(b, ms);
    }
    Ok(())
}

/// A target context plus an optional drafter; reusable across prompts
/// (measured costs and acceptance carry over).
pub struct Speculator {
    target: Context,
    drafter: Option<Box<dyn Drafter>>,
    config: PolicyConfig,
    state: PolicyState,
    calibrated: bool,
    draft: Draft,
    batch: Vec<Token>,
    scratch: (Vec<f32>, Vec<f32>),
}

impl Speculator {
    /// Sets up speculation. `drafter_model` is the drafter's model when it
    /// runs one: its vocabulary is checked against the target's first.
    pub fn new(
        target: Context,
        drafter: Option<Box<dyn Drafter>>,
        drafter_model: Option<&Model>,
        config: PolicyConfig,
    ) -> Result<Self, SpecError> {
        config.validate()?;
        if let Some(d) = drafter_model {
            check_vocab_compatible(target.model(), d)?;
        }
        Ok(Self {
            target,
            drafter,
            config,
            state: PolicyState::default(),
            calibrated: false,
            draft: Draft::default(),
            batch: Vec::with_capacity(MAX_DRAFT + 1),
            scratch: (Vec::new(), Vec::new()),
        })
    }

    /// The target context.
    pub fn target(&self) -> &Context {
        &self.target
    }

    /// Measures target forward passes for the batch sizes the policy will
    /// weigh, and one drafter step, on an empty cache.
    fn calibrate(&mut self, token: Token) -> Result<(), SpecError> {
        self.target.clear();
        // The batch sizes the policy will weigh: small ones, the model cap,
        // and for lookup drafts the longest batch, so costs in between are
        // interpolated rather than extrapolated.
        let cap = self.config.cap();
        let longest = match &self.drafter {
            Some(d) if d.drafts_lookup() => self.config.cap_for(DraftSource::Lookup { matched: 0 }),
            _ => cap,
        };
        let mut sizes: Vec<usize> = [1, 2, 4, cap + 1, longest + 1]
            .into_iter()
            .filter(|&b| b <= longest + 1)
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        time_batches(&mut self.target, token, &sizes, &mut self.state.costs)?;
        if let Some(d) = self.drafter.as_mut() {
            if let Some(ms) = d.measure_step_ms()? {
                self.state.costs.observe_draft(1, ms);
            }
        }
        self.calibrated = true;
        log::debug!(
            "calibrated: target ms by batch {:?}, drafter step {:?} ms",
            sizes
                .iter()
                .map(|&b| (b, self.state.costs.verify_ms(b)))
                .collect::<Vec<_>>(),
            self.state.costs.draft_ms()
        );
        Ok(())
    }

    /// Generates from `prompt`, streaming accepted tokens to `on_token`.
    pub fn generate(
        &mut self,
        prompt: &[Token],
        params: &GenerateParams,
        on_token: impl FnMut(Token, &str) -> bool,
    ) -> Result<SpecGeneration, SpecError> {
        params.sampling.validate()?;
        check_prompt(prompt)?;
        let model = self.target.model().clone();
        let mut sampler = params.sampler(&model);
        let mut sink = TokenSink::new(&model, on_token);
        let mut stats = GenerationStats {
            prompt_tokens: prompt.len(),
            ..Default::default()
        };
        let mut spec = SpecStats::default();
        if let Some(d) = self.drafter.as_mut() {
            d.reset();
        }
        let mut committed: Vec<Token> = Vec::with_capacity(prompt.len() + params.max_tokens + 1);
        committed.extend_from_slice(prompt);

        if self.drafter.is_some() && !self.calibrated {
            let t = Instant::now();
            self.calibrate(prompt[0])?;
            spec.calibration_time = t.elapsed();
        }
        self.target.clear();
        let start = Instant::now();
        // The prompt pass is the same as target-only decoding's.
        self.target.decode(prompt, Logits::Last)?;
        stats.prompt_time = start.elapsed();
        let decode_start = Instant::now();

        // The first token comes from the prompt's logits.
        let first = sampler.sample(self.target.logits(0)?);
        let mut stop = if model.is_eog(first) {
            Some(StopReason::EndOfGeneration)
        } else {
            committed.push(first);
            stats.time_to_first_token = start.elapsed();
            (!sink.push(first)?).then_some(StopReason::Callback)
        };
        if stop.is_none() && sink.tokens().len() >= params.max_tokens {
            stop = Some(StopReason::MaxTokens);
        }

        while stop.is_none() {
            let n_past = self.target.n_past();
            if n_past >= self.target.n_ctx() as usize {
                stop = Some(StopReason::ContextFull);
                break;
            }
            let remaining = params.max_tokens - sink.tokens().len();
            let room = (remaining - 1).min(self.target.n_ctx() as usize - n_past - 1);

            // Draft.
            let t = Instant::now();
            self.draft.clear(DraftSource::Model);
            if let Some(drafter) = self.drafter.as_mut() {
                self.state.probing = self.state.probe_due();
                let mut ctl = RoundControl {
                    config: self.config,
                    state: &self.state,
                    room,
                    cumulative: heapless::Vec::new(),
                    probe: self.state.probing,
                };
                drafter.propose(&committed, &mut ctl, &mut self.draft)?;
            }
            let draft_time = t.elapsed();
            spec.draft_time += draft_time;

            // Verify: [last, x1..xγ] in one target pass.
            let last = *committed.last().unwrap_or(&0);
            self.batch.clear();
            self.batch.push(last);
            self.batch.extend_from_slice(self.draft.tokens());
            let t = Instant::now();
            self.target.decode(&self.batch, Logits::All)?;
            let verify_time = t.elapsed();
            spec.verify_time += verify_time;
            spec.target_calls += 1;

            let t = Instant::now();
            let verdict = self.accept(&mut sampler)?;
            spec.accept_time += t.elapsed();

            let t = Instant::now();
            if verdict.accepted < self.draft.len() {
                self.target.truncate(n_past + 1 + verdict.accepted)?;
            }
            spec.rollback_time += t.elapsed();

            let drafted = self.draft.len();
            log::trace!(
                "round: {drafted} drafted ({:?}), {} accepted, verify {:.1} ms",
                self.draft.source(),
                verdict.accepted,
                verify_time.as_secs_f64() * 1e3
            );
            self.learn(drafted, verdict.accepted, draft_time, verify_time);
            spec.drafted += drafted;
            spec.accepted += verdict.accepted;
            spec.draft_rounds += usize::from(drafted > 0);
            spec.longest_draft = spec.longest_draft.max(drafted);
            if let DraftSource::Lookup { .. } = self.draft.source() {
                spec.drafted_lookup += drafted;
                spec.accepted_lookup += verdict.accepted;
            }

            // Emit the accepted tokens and the target's own, in order.
            let before = sink.tokens().len();
            for i in 0..=verdict.accepted {
                let token = if i < verdict.accepted {
                    self.draft.tokens()[i]
                } else {
                    verdict.next
                };
                if model.is_eog(token) {
                    stop = Some(StopReason::EndOfGeneration);
                    break;
                }
                committed.push(token);
                if !sink.push(token)? {
                    stop = Some(StopReason::Callback);
                    break;
                }
                if sink.tokens().len() >= params.max_tokens {
                    stop = Some(StopReason::MaxTokens);
                    break;
                }
            }
            let emitted = sink.tokens().len() - before;
            let round_ms = (draft_time + verify_time).as_secs_f64() * 1e3;
            if round_ms > 0.0 {
                self.state.realized_rate.add(emitted as f64 / round_ms);
            }
            if stop.is_none() {
                let t = Instant::now();
                if let Some(drafter) = self.drafter.as_mut() {
                    drafter.commit(&committed)?;
                }
                spec.rollback_time += t.elapsed();
            }
        }

        stats.decode_time = decode_start.elapsed();
        let (tokens, text) = sink.finish();
        stats.generated_tokens = tokens.len();
        let verify_1 = self.state.costs.verify_ms(1);
        spec.c_time = self.state.costs.draft_ms().map_or(0.0, |d| d / verify_1);
        spec.c_bytes = self.drafter.as_ref().map_or(0.0, |d| {
            d.bytes_per_token() as f64 / model.summary().bytes_per_token.max(1) as f64
        });
        Ok(SpecGeneration {
            generation: Generation {
                tokens,
                text,
                stop: stop.unwrap_or(StopReason::MaxTokens),
                stats,
            },
            spec,
        })
    }

    /// Runs the verifier for the current draft on the target's logits.
    fn accept(&mut self, sampler: &mut Sampler) -> Result<Verdict, EngineError> {
        let target = &self.target;
        let draft = &self.draft;
        if sampler.params().is_greedy() {
            return verify_greedy(draft.tokens(), |i| Ok(sampler.sample(target.logits(i)?)));
        }
        let q: heapless::Vec<DraftProb<'_>, MAX_DRAFT> = (0..draft.len())
            .map(|i| {
                draft
                    .q(i)
                    .map_or(DraftProb::Deterministic, DraftProb::Sampled)
            })
            .collect();
        let sampler_cell = std::cell::RefCell::new(sampler);
        verify_sampling(
            draft.tokens(),
            &q,
            |i, out| {
                sampler_cell
                    .borrow_mut()
                    .distribution(target.logits(i)?, out);
                Ok(())
            },
            || sampler_cell.borrow_mut().uniform(),
            |w| sampler_cell.borrow_mut().sample_from(w),
            &mut self.scratch,
        )
    }

    /// Updates costs and acceptance estimates from the round just verified.
    fn learn(
        &mut self,
        drafted: usize,
        accepted: usize,
        draft_time: Duration,
        verify_time: Duration,
    ) {
        let s = &mut self.state;
        s.costs
            .observe_verify(drafted + 1, verify_time.as_secs_f64() * 1e3);
        let mut step_time = draft_time;
        if let Some((tokens, time)) = self.draft.catch_up() {
            s.costs.observe_catch_up(tokens, time.as_secs_f64() * 1e3);
            step_time = step_time.saturating_sub(time);
        }
        if drafted == 0 {
            s.rounds_without_draft = s.rounds_without_draft.saturating_add(1);
            return;
        }
        // Probes that do not pay are made rarer; a draft chosen on its own merits resets the interval.
        s.probe_interval = if s.probing {
            (s.probe_interval.max(PROBE_EVERY) * 2).min(PROBE_EVERY * 16)
        } else {
            PROBE_EVERY
        };
        s.rounds_without_draft = 0;
        // Positions after the first rejection were never tested.
        let tested = (accepted + 1).min(drafted);
        match self.draft.source() {
            DraftSource::Model => {
                // The first token came from the catch-up batch; the rest from steps.
                if drafted > 1 {
                    s.costs
                        .observe_draft(drafted - 1, step_time.as_secs_f64() * 1e3);
                }
                s.first_model_token.add(f64::from(u8::from(accepted > 0)));
                for (i, c) in self.draft.confidence()[..tested].iter().enumerate() {
                    if let Some(c) = c {
                        s.acceptance.observe(*c, i < accepted);
                    }
                }
            }
            DraftSource::Lookup { matched } => s.lookup.observe(matched, tested, accepted),
        }
    }
}
