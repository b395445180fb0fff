//! Speculative decoding: draft → verify → accept → roll back.
//!
//! The loop only orchestrates; the maths are pure functions in [`verify`]
//! and the draft length comes from [`policy`]. Invariant between rounds: the
//! target's KV cache holds every committed token but the last, whose logits
//! the next round computes together with the draft in one batch
//! (`[last, x1..xγ]`). Stopping rules match target-only decoding exactly.

pub mod acceptance;
pub mod policy;
pub mod snapshot;
pub mod verify;

use std::time::Instant;

use crate::costs::{timed_tail, CostModel};
use crate::draft::{
    check_vocab_compatible, top_successors, Draft, DraftSource, Drafter, MAX_DRAFT, SUCCESSORS,
    TIMED_CATCH_UP,
};
use crate::engine::{Context, EngineError, Logits, LogitsKept, RowDraws, Sequence, Token};
use crate::error::GenerateError;
use crate::generate::Piece;
use crate::generate::{check_prompt, read_prompt, Emitter, GenerateParams, Generation, StopReason};
use crate::metrics::{GenerationStats, SpecStats};
use crate::sampling::{History, Sampler};

pub use acceptance::{AcceptanceModel, Frequency, Layered, LookupModel};
pub use policy::{
    DraftCost, Experience, Policy, PolicyConfig, PolicyError, RoundControl, RoundOutcome,
};
pub use snapshot::CostSnapshot;
pub use verify::{chain_path, verify_sampling, verify_tree, DraftProb, TreeVerdict, Verdict};

/// A speculative generation's result: the usual one plus speculation stats.
#[derive(Debug, Clone)]
pub struct SpecGeneration {
    /// Tokens, text, stop reason, timings.
    pub generation: Generation,
    /// Speculation counters.
    pub spec: SpecStats,
}

/// Batches longer than this are timed once at calibration: they take long
/// enough to time steadily, the smaller sizes timed before them have warmed
/// the graph, and online samples refine them.
const ONE_SAMPLE_ABOVE: usize = 16;

/// Tokens a drafter model reads untimed before its timed passes on the
/// first prompt: the pass that brings its weights into memory, so the
/// timed ones are steady.
const DRAFTER_WARM_UP: usize = 16;

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
    target: Sequence,
    drafter: Option<Box<dyn Drafter>>,
    policy: Policy,
    /// Pass costs were measured (or given): the first prompt read need not
    /// time them.
    costs_known: bool,
    draft: Draft,
    batch: Vec<Token>,
    scratch: (Vec<f32>, Vec<f32>),
}

impl Speculator {
    /// Sets up speculation. A drafter that runs a model has its vocabulary
    /// checked against the target's first.
    pub fn new(
        target: Context,
        drafter: Option<Box<dyn Drafter>>,
        config: PolicyConfig,
    ) -> Result<Self, GenerateError> {
        let policy = Policy::new(config)?;
        if let Some(vocabulary) = drafter.as_ref().and_then(|d| d.vocabulary()) {
            check_vocab_compatible(target.model(), vocabulary)?;
        }
        let mut draft = Draft::default();
        draft.end_at(&target.model().end_tokens());
        Ok(Self {
            target: Sequence::new(target),
            drafter,
            policy,
            costs_known: false,
            draft,
            batch: Vec::with_capacity(MAX_DRAFT + 1),
            scratch: (Vec::new(), Vec::new()),
        })
    }

    /// The target context.
    pub fn target(&self) -> &Context {
        self.target.context()
    }

    /// Starts from costs measured earlier with the same models on this
    /// machine, and from what the policy learned then: the first prompt is
    /// read in one batch, nothing timed.
    pub fn assume_costs(&mut self, snapshot: &CostSnapshot) {
        *self.policy.costs_mut() = CostModel::from_snapshot(&snapshot.costs);
        if let Some(experience) = &snapshot.experience {
            self.policy.recall(experience);
        }
        self.costs_known = true;
    }

    /// What the costs are now (measured on the first prompt or given, and
    /// refined by every pass), with what the policy learned, once they are
    /// known.
    pub fn costs(&self) -> Option<CostSnapshot> {
        self.costs_known.then(|| CostSnapshot {
            costs: self.policy.costs().snapshot(),
            experience: Some(self.policy.experience()),
        })
    }

    /// The drafter, if any, mutably.
    pub fn drafter_mut(&mut self) -> Option<&mut (dyn Drafter + 'static)> {
        self.drafter.as_deref_mut()
    }

    /// The drafter, if any.
    pub fn drafter(&self) -> Option<&dyn Drafter> {
        self.drafter.as_deref()
    }

    /// The target context, mutably.
    pub fn target_mut(&mut self) -> &mut Context {
        self.target.context_mut()
    }

    /// Forgets the sequence: empties the target's and the drafter's caches.
    /// What was measured and learned (pass costs, acceptance) stays.
    pub fn clear(&mut self) {
        self.target.clear();
        if let Some(d) = self.drafter.as_mut() {
            d.reset();
        }
    }

    /// Reads `tokens` into the target's and the drafter's caches without
    /// generating (what they hold of them already is kept).
    pub fn prefill(&mut self, tokens: &[Token]) -> Result<(), GenerateError> {
        check_prompt(tokens)?;
        let drafter_reads = self.costs_known;
        self.read_prompt(tokens, true, &mut SpecStats::default())?;
        if drafter_reads {
            if let Some(d) = self.drafter.as_mut() {
                d.prefill(tokens, None)?;
            }
        }
        Ok(())
    }

    /// The target's cache, then the drafter model's (if it runs one).
    pub fn caches(&self) -> Vec<&Sequence> {
        let drafter = self.drafter.as_ref().and_then(|d| d.cache());
        std::iter::once(&self.target).chain(drafter).collect()
    }

    /// The caches, mutably, in the order of [`Self::caches`].
    pub fn caches_mut(&mut self) -> Vec<&mut Sequence> {
        let drafter = self.drafter.as_mut().and_then(|d| d.cache_mut());
        std::iter::once(&mut self.target).chain(drafter).collect()
    }

    /// Reads `prompt` into the target as [`read_prompt`] does. While the
    /// costs are unknown (the first generation without a cost cache) the
    /// reading measures them: the prompt's last tokens go through the
    /// target in passes of the sizes [`timed_verify_sizes`] names, and
    /// through the drafter as its step and catch-up batches, each timed;
    /// every later pass refines them. Returns the tokens the target read.
    fn read_prompt(
        &mut self,
        prompt: &[Token],
        reuse_prefix: bool,
        spec: &mut SpecStats,
    ) -> Result<usize, GenerateError> {
        // The timed passes are part of the prompt read: a stop check
        // interrupts them too.
        let was = self.target.context_mut().set_reading(true);
        let read = self.read_and_time_prompt(prompt, reuse_prefix, spec);
        self.target.context_mut().set_reading(was);
        read
    }

    /// [`Self::read_prompt`], marked as a prompt read.
    fn read_and_time_prompt(
        &mut self,
        prompt: &[Token],
        reuse_prefix: bool,
        spec: &mut SpecStats,
    ) -> Result<usize, GenerateError> {
        if self.drafter.is_none() || self.costs_known {
            return Ok(read_prompt(&mut self.target, prompt, reuse_prefix)?);
        }
        // Only the timed passes' times count, and the last row of the
        // pass that ends the prompt: a remote server sends each row's
        // largest entry alone until that pass, which gets what the caller
        // asked for its last row (what it keeps of rows, draws).
        let ctx = self.target.context_mut();
        let last_row = ctx.draw_next_pass(None);
        let kept = ctx.set_logits_kept(Some(LogitsKept::top(1)));
        let read = self.time_prompt(prompt, reuse_prefix, spec, (kept, last_row));
        self.target.context_mut().set_logits_kept(kept);
        read
    }

    /// [`Self::read_and_time_prompt`] while costs are unknown; `last_row`
    /// holds what to keep of the rows of the pass that ends the prompt and
    /// how to draw them.
    fn time_prompt(
        &mut self,
        prompt: &[Token],
        reuse_prefix: bool,
        spec: &mut SpecStats,
        last_row: (Option<LogitsKept>, Option<RowDraws>),
    ) -> Result<usize, GenerateError> {
        let mut last_row = Some(last_row);
        let mut ending = |target: &mut Sequence| {
            if let Some((kept, draws)) = last_row.take() {
                target.context_mut().set_logits_kept(kept);
                target.context_mut().draw_next_pass(draws);
            }
        };
        let from = if reuse_prefix {
            self.target.prepare_catch_up(prompt)?
        } else {
            self.target.clear();
            0
        };
        let config = self.policy.config();
        let sizes = timed_verify_sizes(&config);
        if config.exact {
            // Exact mode reads the prompt as plain decoding does (a
            // position's logits depend on its batch's size): the timed
            // passes go over the prompt's first tokens and are dropped.
            for b in sizes.into_iter().filter(|&b| from + b <= prompt.len()) {
                let start = Instant::now();
                self.target.decode(&prompt[from..from + b], Logits::All)?;
                let elapsed = start.elapsed();
                self.target.truncate(from)?;
                self.policy
                    .costs_mut()
                    .observe_verify(b, elapsed.as_secs_f64() * 1e3);
                spec.calibration_time += elapsed;
            }
            ending(&mut self.target);
            read_prompt(&mut self.target, prompt, reuse_prefix)?;
            self.time_drafter(prompt, spec)?;
            return Ok(prompt.len() - from);
        }
        let (head, tail) = timed_tail(prompt.len() - from, &sizes);
        if head > 0 {
            // The last position's logits come from the head's pass when no
            // timed pass follows it (a prompt shorter than the smallest).
            let logits = if tail.is_empty() {
                ending(&mut self.target);
                Logits::Last
            } else {
                Logits::None
            };
            let start = Instant::now();
            self.target.decode(&prompt[from..from + head], logits)?;
            let ms = start.elapsed().as_secs_f64() * 1e3;
            // The head's pass also stands in for the longest verification
            // (a long lookup copy) until one is measured: a guess from a
            // pass without a verification's logits, so such drafts are
            // tried rather than priced by extrapolating short passes.
            let longest =
                (config.cap_for(DraftSource::Lookup { matched: MAX_DRAFT }) + 1).min(head);
            if sizes.iter().all(|&b| longest > b) {
                self.policy
                    .costs_mut()
                    .assume_verify(longest, ms * longest as f64 / head as f64);
            }
        }
        let mut at = from + head;
        for b in tail {
            // Every position's logits, as a verification computes them;
            // the last output is the prompt's last position's.
            if at + b == prompt.len() {
                ending(&mut self.target);
            }
            let start = Instant::now();
            self.target.decode(&prompt[at..at + b], Logits::All)?;
            let elapsed = start.elapsed();
            self.policy
                .costs_mut()
                .observe_verify(b, elapsed.as_secs_f64() * 1e3);
            spec.calibration_time += elapsed;
            at += b;
        }
        self.time_drafter(prompt, spec)?;
        Ok(prompt.len() - from)
    }

    /// Times the drafter on the prompt's first tokens, not read whole:
    /// whether reading the rest pays is the policy's to weigh at its first
    /// draft (a catch-up premium), as in every later request, so a first
    /// request does not wait for a drafter the machine may never use. The
    /// costs count as known from here on.
    fn time_drafter(
        &mut self,
        prompt: &[Token],
        spec: &mut SpecStats,
    ) -> Result<(), GenerateError> {
        if let Some(d) = self.drafter.as_mut() {
            let timed = (DRAFTER_WARM_UP + TIMED_CATCH_UP.iter().sum::<usize>()).min(prompt.len());
            spec.calibration_time += d.prefill(&prompt[..timed], Some(self.policy.costs_mut()))?;
        }
        self.costs_known = true;
        let costs = self.policy.costs();
        log::debug!(
            "timed on the prompt: target ms by batch {:?}, drafter step {:?} ms, catch-up of 2 {:.1} ms",
            timed_verify_sizes(&self.policy.config()).map(|b| (b, costs.verify_ms(b))),
            costs.draft_ms(),
            costs.catch_up_ms(2)
        );
        Ok(())
    }

    /// Generates from `prompt`, streaming accepted tokens to `on_token`.
    pub fn generate(
        &mut self,
        prompt: &[Token],
        params: &GenerateParams,
        on_token: impl FnMut(Piece, &str) -> bool,
    ) -> Result<SpecGeneration, GenerateError> {
        params.sampling.validate()?;
        check_prompt(prompt)?;
        let model = self.target.context().model().clone();
        let sampler = params.sampler(&model);
        // What the rows are read for: the sampler's choice, and the top
        // successors recycled drafts keep.
        let read = sampler
            .logits_needed()
            .map(|n| n.with_top_at_least(SUCCESSORS));
        let kept = self.target.context_mut().set_logits_kept(read);
        let generation = self.generate_with(prompt, params, sampler, on_token);
        self.target.context_mut().set_logits_kept(kept);
        generation
    }

    /// [`Self::generate`] with its sampler, the target set to keep what
    /// the sampler reads of each logits row.
    fn generate_with(
        &mut self,
        prompt: &[Token],
        params: &GenerateParams,
        mut sampler: Sampler,
        on_token: impl FnMut(Piece, &str) -> bool,
    ) -> Result<SpecGeneration, GenerateError> {
        let model = self.target.context().model().clone();
        let mut emitter = Emitter::new(&model, params, on_token);
        let mut stats = GenerationStats {
            prompt_tokens: prompt.len(),
            ..Default::default()
        };
        let mut spec = SpecStats::default();
        if !params.reuse_prefix {
            if let Some(d) = self.drafter.as_mut() {
                d.reset();
            }
        }
        self.policy.begin_request();
        let beside_free = self.drafter.as_ref().is_some_and(|d| d.drafts_lookup());
        self.policy.set_beside_free(beside_free);
        // Bounded by the context, not by the token limit (u32::MAX from C
        // means "no limit").
        let n_ctx = self.target.context().n_ctx() as usize;
        let mut committed: Vec<Token> =
            Vec::with_capacity(prompt.len() + params.max_tokens.min(n_ctx) + 1);
        committed.extend_from_slice(prompt);

        let start = Instant::now();
        // The prompt's last row may be drawn on a remote target's server
        // (when its last pass outputs that row alone).
        sampler.draw_remotely(self.target.context_mut(), &[0], SUCCESSORS);
        stats.prompt_tokens_cached =
            prompt.len() - self.read_prompt(prompt, params.reuse_prefix, &mut spec)?;
        stats.prompt_time = start.elapsed();
        let decode_start = Instant::now();

        // The first token comes from the prompt's logits (none at a limit of
        // 0 tokens, as in target-only decoding).
        let mut stop = if emitter.is_full() {
            Some(StopReason::MaxTokens)
        } else {
            let target = self.target.context();
            let last = target.outputs().saturating_sub(1);
            let first = sampler.sample_row(target, last, History::new(&committed))?;
            if sampler.dead_end() {
                Some(StopReason::Grammar)
            } else {
                committed.push(first);
                emitter.emit(first)?
            }
        };

        while stop.is_none() {
            let n_past = self.target.len();
            let n_ctx = self.target.context().n_ctx() as usize;
            if n_past >= n_ctx {
                stop = Some(StopReason::ContextFull);
                break;
            }
            let room = (emitter.remaining() - 1).min(n_ctx - n_past - 1);

            // Draft.
            let t = Instant::now();
            self.draft.clear(DraftSource::Model);
            if let Some(drafter) = self.drafter.as_mut() {
                let mut ctl = self.policy.round(room);
                drafter.propose(&committed, &mut ctl, &mut self.draft)?;
            }
            if let Some(grammar) = sampler.grammar() {
                // A draft token the grammar forbids would be rejected: the
                // draft ends before it (branches are not checked: dropped).
                self.draft.truncate(self.draft.chain_len());
                let mut state = grammar.clone();
                let allowed = self
                    .draft
                    .tokens()
                    .iter()
                    .take_while(|&&t| state.accept(t))
                    .count();
                self.draft.truncate(allowed);
            }
            let draft_time = t.elapsed();
            spec.draft_time += draft_time;

            // Verify: [last, x1..xγ] in one target pass (a tree: every
            // node, each after its parent).
            let last = *committed.last().unwrap_or(&0);
            let t = Instant::now();
            if (0..self.draft.len()).all(|i| self.draft.q(i).is_none()) {
                // Rows that judge walks with one draw each (a remote
                // server may make the draws).
                let depths = row_depths(self.draft.parents());
                sampler.draw_remotely(self.target.context_mut(), &depths, SUCCESSORS);
            } else {
                // A sampled draft's rejection rule reads whole rows.
                self.target.context_mut().draw_next_pass(None);
            }
            if self.draft.is_chain() {
                self.batch.clear();
                self.batch.push(last);
                self.batch.extend_from_slice(self.draft.tokens());
                self.target.decode(&self.batch, Logits::All)?;
            } else {
                self.target
                    .decode_tree(last, self.draft.tokens(), self.draft.parents())?;
            }
            let verify_time = t.elapsed();
            spec.verify_time += verify_time;
            spec.target_calls += 1;

            let t = Instant::now();
            let verdict = judge(
                self.target.context(),
                &committed,
                &self.draft,
                &mut sampler,
                &mut self.scratch,
            )?;
            let accepted = verdict.path.len();
            self.batch.clear();
            self.batch
                .extend(verdict.path.iter().map(|&node| self.draft.tokens()[node]));

            // The target's likeliest successors at every kept position,
            // for recycled drafts.
            if let Some(drafter) = self.drafter.as_mut().filter(|d| d.drafts_lookup()) {
                let rows = std::iter::once(0).chain(verdict.path.iter().map(|&node| node + 1));
                let tokens = std::iter::once(last).chain(self.batch.iter().copied());
                for (row, token) in rows.zip(tokens) {
                    let next = top_successors(self.target.context().logits(row)?);
                    drafter.observe_successors(token, &next);
                }
            }
            spec.accept_time += t.elapsed();

            let t = Instant::now();
            if !self.draft.is_chain() {
                self.target.keep_path(&verdict.path, &self.batch)?;
            } else if accepted < self.draft.len() {
                self.target.truncate(n_past + 1 + accepted)?;
            }
            spec.rollback_time += t.elapsed();

            let drafted = self.draft.len();
            log::trace!(
                "round: {drafted} drafted ({:?}, {} leaves), {accepted} accepted, draft {:.1} ms, verify {:.1} ms",
                self.draft.source(),
                self.draft.leaves(),
                draft_time.as_secs_f64() * 1e3,
                verify_time.as_secs_f64() * 1e3
            );
            spec.drafted += drafted;
            spec.accepted += accepted;
            spec.draft_rounds += usize::from(drafted > 0);
            spec.longest_draft = spec.longest_draft.max(drafted);
            if drafted > 0 {
                let source = match self.draft.source() {
                    DraftSource::Lookup { .. } => &mut spec.lookup,
                    DraftSource::Memory { .. } => &mut spec.memory,
                    DraftSource::Recycled => &mut spec.recycled,
                    DraftSource::Model => &mut spec.model,
                };
                source.add_round(drafted, accepted, verify_time);
                if !self.draft.is_chain() {
                    spec.tree.add_round(drafted, accepted, verify_time);
                    let chain = self.draft.chain_len();
                    spec.branch_accepted += verdict.path.iter().filter(|&&n| n >= chain).count();
                }
            }

            // Emit the accepted tokens and the target's own, in order (not
            // the target's where the grammar allowed nothing).
            let before = emitter.len();
            let own = usize::from(!sampler.dead_end());
            let kept = self.batch.len();
            for i in 0..kept + own {
                let token = self.batch.get(i).copied().unwrap_or(verdict.next);
                committed.push(token);
                stop = emitter.emit(token)?;
                if stop.is_some() {
                    break;
                }
            }
            if own == 0 && stop.is_none() {
                stop = Some(StopReason::Grammar);
            }
            let round = RoundOutcome {
                draft: &self.draft,
                path: &verdict.path,
                emitted: emitter.len() - before,
                draft_ms: draft_time.as_secs_f64() * 1e3,
                verify_ms: verify_time.as_secs_f64() * 1e3,
            };
            self.policy.record(round);
            if self.draft.source() == DraftSource::Model
                && (drafted > 0 || self.draft.catch_up().is_some())
            {
                let plain_ms = self.policy.costs().verify_ms(1);
                spec.model_saved_ms +=
                    round.emitted as f64 * plain_ms - round.draft_ms - round.verify_ms;
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
        if let Some(d) = self.drafter.as_mut() {
            d.finish(&committed, prompt.len());
        }
        let costs = self.policy.costs();
        spec.c_time = costs.draft_ms().map_or(0.0, |d| d / costs.verify_ms(1));
        spec.c_bytes = self.drafter.as_ref().map_or(0.0, |d| {
            d.bytes_per_token() as f64 / model.summary().bytes_per_token.max(1) as f64
        });
        Ok(SpecGeneration {
            generation: emitter.finish(stop.unwrap_or(StopReason::MaxTokens), start, stats),
            spec,
        })
    }
}

/// One verification: judges `draft` on the target's logits for the batch
/// `[last, draft…]` it just decoded (row 0 scores the first token, row
/// i + 1 what follows node i), greedily or by speculative sampling (drafts
/// without a q row are deterministic). A row is sampled after `committed`
/// and the draft tokens on the path to it (the history penalties see, as
/// plain decoding would have it). Speculative decoding and ead-spec both
/// verify through it.
pub fn judge(
    target: &Context,
    committed: &[Token],
    draft: &Draft,
    sampler: &mut Sampler,
    scratch: &mut (Vec<f32>, Vec<f32>),
) -> Result<TreeVerdict, EngineError> {
    let tokens = draft.tokens();
    // Greedy, or drafts that are not samples (lookup, memory, recycled, a
    // greedy drafter, every tree): each row samples the target's own token
    // as plain decoding would, one draw per emitted token, and the walk
    // goes on where a draft token is that token. Exact, and with the same
    // seed the text of target-only decoding whatever was drafted.
    if sampler.params().is_greedy() || (0..draft.len()).all(|i| draft.q(i).is_none()) {
        let mut on_path: heapless::Vec<Token, MAX_DRAFT> = heapless::Vec::new();
        return verify_tree(tokens, draft.parents(), |row, path| {
            on_path.clear();
            on_path.extend(path.iter().map(|&node| tokens[node]));
            let history = History::new(committed).then(&on_path);
            sampler.sample_row(target, row, history)
        });
    }
    let history = |i: usize| History::new(committed).then(&tokens[..i]);
    let q: heapless::Vec<DraftProb<'_>, MAX_DRAFT> = (0..draft.len())
        .map(|i| {
            draft
                .q(i)
                .map_or(DraftProb::Deterministic, DraftProb::Sampled)
        })
        .collect();
    let sampler = std::cell::RefCell::new(sampler);
    // A stateful sampler (Mirostat, a grammar) advances along the draft:
    // row i is computed only once draft token i − 1 was accepted at row
    // i − 1, whose probability of it is kept for that moment.
    let mut accepted: Option<(Token, f32)> = None;
    let verdict = verify_sampling(
        tokens,
        &q,
        |i, out| {
            let mut sampler = sampler.borrow_mut();
            if let Some((token, p)) = accepted.take() {
                sampler.observe_probability(token, p);
            }
            sampler.distribution(target.logits(i)?, history(i), out);
            accepted = tokens
                .get(i)
                .map(|&t| (t, out.get(t as usize).copied().unwrap_or(0.0)));
            Ok::<(), EngineError>(())
        },
        || sampler.borrow_mut().uniform(),
        |w| sampler.borrow_mut().sample_from(w),
        scratch,
    )?;
    // The emitted token came from the last row computed (a rejection's
    // residual is drawn at that row's position, the bonus from it).
    sampler.borrow_mut().observe(verdict.next, &scratch.0);
    Ok(TreeVerdict {
        path: chain_path(verdict.accepted).iter().copied().collect(),
        next: verdict.next,
    })
}

/// Each row's depth in a verification pass of a draft with `parents`
/// ([`Draft::parents`]): 0 for row 0 (the committed text's last token),
/// one more than its parent's for row i + 1 (node i).
fn row_depths(parents: &[usize]) -> heapless::Vec<usize, { MAX_DRAFT + 1 }> {
    let mut depths = heapless::Vec::new();
    let _ = depths.push(0);
    for &parent in parents {
        let depth = depths.get(parent).map_or(0, |d| d + 1);
        if depths.push(depth).is_err() {
            break;
        }
    }
    depths
}

/// The target passes a first prompt read times when the costs are unknown:
/// the short verifications and the longest model verification, the sizes
/// whose costs steer the draft length most; sizes between are
/// interpolated, longer ones estimated from the prompt's own pass, until
/// rounds measure them. A single token's pass is not among them: the
/// policy's first round decodes plainly and measures it before any draft
/// is weighed.
pub fn timed_verify_sizes(config: &PolicyConfig) -> [usize; 3] {
    [2, 4, config.cap() + 1]
}

/// The batch sizes EAD's start-up calibration times: small ones and the
/// longest verification.
pub fn calibration_sizes(config: &PolicyConfig) -> Vec<usize> {
    let mut sizes = vec![1, 2, 4, config.cap() + 1];
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}
