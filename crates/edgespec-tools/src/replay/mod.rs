//! The replay simulator: prices a draft-length policy on recorded traces
//! under a cost profile, without a model. Greedy verification accepts the
//! prefix of a draft that equals the target's recorded output, so what a
//! policy would have drafted, accepted and paid is known exactly: the live
//! drafters and the live [`Policy`] run unchanged, model drafts come from
//! the trace ([`TraceDrafter`]), and every pass costs what the profile says.
//! Time is the decode phase, as the benchmark measures it: from the first
//! generated token (the prompt pass's) to the last.

mod llama_ngram;
mod oracle;

pub use llama_ngram::{LlamaNgram, LlamaNgramDrafter};
pub use oracle::ceiling;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::profile::{CostProfile, ModelCosts, ProfileError};
use crate::trace::Trace;
use edgespec::costs::BatchCurve;
use edgespec::draft::{
    Draft, DraftControl, DraftLength, DraftSource, Drafter, HybridDrafter, LookupDrafter,
    Successor, Trees, DEFAULT_HYBRID_MIN_NGRAM, MAX_DRAFT,
};
use edgespec::engine::{EngineError, Token};
use edgespec::speculative::{
    timed_verify_sizes, verify_tree, Policy, PolicyConfig, PolicyError, RoundOutcome,
};

/// Which drafter a replayed setting uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayDrafter {
    /// None: the target alone.
    None,
    /// Prompt lookup.
    Lookup,
    /// A recorded model drafter (`model`, `trimmed`).
    Model(String),
    /// Lookup on confident matches, else a recorded model drafter.
    Hybrid(String),
    /// llama.cpp's own n-gram speculation, its default settings (the
    /// policy's length is not used).
    Llama(LlamaNgram),
    /// The ceiling of copying the request's text, knowing the output
    /// ([`ceiling`]; the policy is not used).
    OracleCopy,
}

/// A setting to replay: a drafter and a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// The drafter.
    pub drafter: ReplayDrafter,
    /// The draft-length policy.
    pub config: PolicyConfig,
}

impl Setting {
    /// A short name: `target`, `model:3`, `hybrid:auto`, `model:8@p0.7`.
    pub fn name(&self) -> String {
        let kind = match &self.drafter {
            ReplayDrafter::None => return "target".into(),
            ReplayDrafter::Lookup => "lookup".to_owned(),
            ReplayDrafter::Model(m) => m.clone(),
            ReplayDrafter::Hybrid(m) if m == "model" => "hybrid".to_owned(),
            ReplayDrafter::Hybrid(m) => format!("hybrid-{m}"),
            ReplayDrafter::Llama(mode) => return mode.name().into(),
            ReplayDrafter::OracleCopy => return "oracle-copy".into(),
        };
        let length = match self.config.length {
            DraftLength::Fixed(g) => g.to_string(),
            DraftLength::Auto { .. } => "auto".into(),
        };
        let shape = match self.config.trees {
            Trees::Auto => "",
            Trees::Off => "/chain",
            Trees::Always => "/tree",
        };
        match self.config.p_min {
            Some(p) => format!("{kind}:{length}{shape}@p{p}"),
            None => format!("{kind}:{length}{shape}"),
        }
    }
}

/// Errors of a replay.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The profile lacks a drafter the setting needs.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// Bad policy settings.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A trace lacks the drafter the setting needs.
    #[error("trace {set}#{index} has no recorded drafter {drafter:?}")]
    NoDrafter {
        /// Prompt set.
        set: String,
        /// Prompt index.
        index: usize,
        /// The drafter asked for.
        drafter: String,
    },
}

/// One replayed generation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReplayRun {
    /// Output tokens.
    pub tokens: usize,
    /// Simulated decode ms of the setting.
    pub ms: f64,
    /// Simulated decode ms of the target alone.
    pub target_ms: f64,
    /// Target passes.
    pub rounds: usize,
    /// Drafted tokens.
    pub drafted: usize,
    /// Drafted tokens accepted.
    pub accepted: usize,
    /// Drafted tokens that came from a model.
    pub model_drafted: usize,
    /// Simulated ms spent drafting (model catch-up and steps).
    pub draft_ms: f64,
}

impl ReplayRun {
    /// Speed-up over the target alone.
    pub fn speedup(&self) -> f64 {
        if self.ms > 0.0 {
            self.target_ms / self.ms
        } else {
            1.0
        }
    }

    /// Sums runs (a set's total).
    pub fn total(runs: &[ReplayRun]) -> ReplayRun {
        runs.iter().fold(ReplayRun::default(), |a, r| ReplayRun {
            tokens: a.tokens + r.tokens,
            ms: a.ms + r.ms,
            target_ms: a.target_ms + r.target_ms,
            rounds: a.rounds + r.rounds,
            drafted: a.drafted + r.drafted,
            accepted: a.accepted + r.accepted,
            model_drafted: a.model_drafted + r.model_drafted,
            draft_ms: a.draft_ms + r.draft_ms,
        })
    }
}

/// Simulated time shared by the replay loop and its drafters.
#[derive(Debug, Clone, Default)]
struct Clock(Arc<AtomicU64>);

impl Clock {
    fn add(&self, ms: f64) {
        let now = f64::from_bits(self.0.load(Ordering::Relaxed));
        self.0.store((now + ms).to_bits(), Ordering::Relaxed);
    }

    fn take(&self) -> f64 {
        f64::from_bits(self.0.swap(0f64.to_bits(), Ordering::Relaxed))
    }
}

/// A model drafter replayed from a trace: proposes what the recorded
/// drafter proposed from the same position, follows the committed text
/// lazily like [`edgespec::draft::ModelDrafter`] (catching up on what it has
/// not seen in one batch) and charges the profile's pass times to the clock.
pub struct TraceDrafter {
    kind: String,
    /// The current trace's prompt length and output, and drafts.
    prompt_len: usize,
    output: Vec<Token>,
    drafts: Vec<crate::trace::RecordedDraft>,
    /// Committed tokens its cache holds (all equal to the recorded text).
    cached: usize,
    step_ms: f64,
    batch: BatchCurve,
    clock: Clock,
}

impl TraceDrafter {
    fn new(kind: &str, costs: &ModelCosts, clock: Clock) -> Self {
        Self {
            kind: kind.to_owned(),
            prompt_len: 0,
            output: Vec::new(),
            drafts: Vec::new(),
            cached: 0,
            step_ms: costs.step(),
            batch: costs.curve(),
            clock,
        }
    }

    fn load(&mut self, trace: &Trace) -> Result<(), ReplayError> {
        let recorded = trace
            .drafters
            .get(&self.kind)
            .ok_or_else(|| ReplayError::NoDrafter {
                set: trace.set.clone(),
                index: trace.prompt_index,
                drafter: self.kind.clone(),
            })?;
        self.prompt_len = trace.prompt.len();
        self.output.clone_from(&trace.output);
        self.drafts.clone_from(&recorded.drafts);
        self.cached = 0;
        Ok(())
    }
}

impl Drafter for TraceDrafter {
    fn reset(&mut self) {
        self.cached = 0;
    }

    fn propose(
        &mut self,
        committed: &[Token],
        ctl: &mut dyn DraftControl,
        out: &mut Draft,
    ) -> Result<(), EngineError> {
        out.clear(DraftSource::Model);
        let position = committed.len().saturating_sub(self.prompt_len + 1);
        let Some(recorded) = self.drafts.get(position) else {
            return Ok(());
        };
        let room = ctl.room(DraftSource::Model).min(recorded.confidence.len());
        self.cached = self.cached.min(committed.len());
        if room == 0 || !ctl.start(DraftSource::Model, committed.len() - self.cached) {
            return Ok(());
        }
        // Everything cached but the logits gone: the last token is fed again.
        let behind = (committed.len() - self.cached).max(1);
        let catch_up = self.batch.ms(behind);
        self.clock.add(catch_up);
        out.set_catch_up(behind, Duration::from_secs_f64(catch_up / 1e3));
        let from = committed.len() - self.prompt_len;
        let tokens = recorded.tokens(&self.output[from..]);
        let mut fed = 0;
        for (token, &confidence) in tokens.zip(&recorded.confidence) {
            if !out.push_and_ask(token, Some(confidence), ctl, room) {
                break;
            }
            self.clock.add(self.step_ms);
            fed += 1;
        }
        self.cached = committed.len() + fed.min(recorded.matched);
        Ok(())
    }

    fn commit(&mut self, _committed: &[Token]) -> Result<(), EngineError> {
        Ok(())
    }

    fn bytes_per_token(&self) -> u64 {
        0
    }
}

enum Source {
    None,
    Lookup(LookupDrafter),
    Model(Box<TraceDrafter>),
    Hybrid(Box<HybridDrafter<TraceDrafter>>),
    Llama(LlamaNgramDrafter),
    /// No drafter: the ceiling of copying is priced instead of a policy.
    OracleCopy,
}

impl Source {
    fn drafter(&mut self) -> Option<&mut dyn Drafter> {
        match self {
            Source::None | Source::OracleCopy => None,
            Source::Lookup(d) => Some(d),
            Source::Model(d) => Some(&mut **d),
            Source::Hybrid(d) => Some(&mut **d),
            Source::Llama(d) => Some(d),
        }
    }

    fn load(&mut self, trace: &Trace) -> Result<(), ReplayError> {
        match self {
            Source::Model(d) => d.load(trace),
            Source::Hybrid(d) => d.model_mut().load(trace),
            _ => Ok(()),
        }
    }
}

/// A process replaying one setting: one policy across the traces it is
/// given, as one long-running session or benchmark would keep it.
pub struct Replayer {
    policy: Policy,
    source: Source,
    target: BatchCurve,
    clock: Clock,
    draft: Draft,
}

impl Replayer {
    /// A fresh process for `setting` on the machine `profile` describes,
    /// its costs measured on its first prompt as a speculative session's are.
    pub fn new(setting: &Setting, profile: &CostProfile) -> Result<Self, ReplayError> {
        let clock = Clock::default();
        let model = |kind: &str| -> Result<(Box<TraceDrafter>, &ModelCosts), ReplayError> {
            let costs = profile.drafter(kind)?;
            Ok((
                Box::new(TraceDrafter::new(kind, costs, clock.clone())),
                costs,
            ))
        };
        let (source, drafter_costs) = match &setting.drafter {
            ReplayDrafter::None => (Source::None, None),
            ReplayDrafter::OracleCopy => (Source::OracleCopy, None),
            ReplayDrafter::Lookup => (Source::Lookup(LookupDrafter::default()), None),
            ReplayDrafter::Llama(mode) => (Source::Llama(LlamaNgramDrafter::new(*mode)), None),
            ReplayDrafter::Model(kind) => {
                let (d, c) = model(kind)?;
                (Source::Model(d), Some(c))
            }
            ReplayDrafter::Hybrid(kind) => {
                let (d, c) = model(kind)?;
                let hybrid =
                    HybridDrafter::new(LookupDrafter::default(), *d, DEFAULT_HYBRID_MIN_NGRAM);
                (Source::Hybrid(Box::new(hybrid)), Some(c))
            }
        };
        let mut policy = Policy::new(setting.config)?;
        profile.seed(
            &timed_verify_sizes(&setting.config),
            drafter_costs,
            policy.costs_mut(),
        );
        // The prompt's pass stands in for the longest verification until
        // one is measured (a long prompt assumed).
        let longest = setting
            .config
            .cap_for(DraftSource::Lookup { matched: MAX_DRAFT })
            + 1;
        policy
            .costs_mut()
            .assume_verify(longest, profile.target.curve().ms(longest));
        Ok(Self {
            policy,
            source,
            target: profile.target.curve(),
            clock,
            draft: Draft::default(),
        })
    }

    /// Replays one trace with what the process learned so far.
    pub fn run(&mut self, trace: &Trace) -> Result<ReplayRun, ReplayError> {
        if matches!(self.source, Source::OracleCopy) {
            return Ok(ceiling(trace, &self.target));
        }
        self.source.load(trace)?;
        // llama.cpp's n-gram drafts run past an end token; ours stop there.
        if !matches!(self.source, Source::Llama(_)) {
            self.draft.end_at(&trace.end_tokens);
        }
        self.policy.begin_request();
        let beside_free = self.source.drafter().is_some_and(|d| d.drafts_lookup());
        self.policy.set_beside_free(beside_free);
        let output = &trace.output;
        let n = output.len();
        let mut committed: Vec<Token> = Vec::with_capacity(trace.prompt.len() + n);
        committed.extend_from_slice(&trace.prompt);
        committed.push(output[0]);
        let mut run = ReplayRun {
            tokens: n,
            target_ms: (n - 1) as f64 * self.target.ms(1),
            ..ReplayRun::default()
        };
        if let Some(d) = self.source.drafter() {
            d.reset();
        }
        let mut done = 1;
        while done < n {
            let room = n - done - 1;
            self.draft.clear(DraftSource::Model);
            self.clock.take();
            if let Some(drafter) = self.source.drafter() {
                let mut ctl = self.policy.round(room);
                // Replay drafters never fail: they call no model.
                let _ = drafter.propose(&committed, &mut ctl, &mut self.draft);
            }
            let draft_ms = self.clock.take();
            let verify_ms = self.target.ms(self.draft.len() + 1);
            // The target's token after a path is the recorded output's
            // next (none past its end).
            let verdict = verify_tree(self.draft.tokens(), self.draft.parents(), |_, path| {
                Ok::<_, std::convert::Infallible>(
                    output.get(done + path.len()).copied().unwrap_or(-1),
                )
            })
            .unwrap_or_else(|never| match never {});
            let accepted = verdict.path.len();
            let emitted = (accepted + 1).min(n - done);
            self.policy.record(RoundOutcome {
                draft: &self.draft,
                path: &verdict.path,
                emitted,
                draft_ms,
                verify_ms,
            });
            // The kept positions' successors (the target's own next token
            // and, where the trace has them, its runners-up), as the live
            // loop records them.
            if let Some(d) = self.source.drafter().filter(|d| d.drafts_lookup()) {
                let mut token = committed[committed.len() - 1];
                for &next in &output[done..done + emitted] {
                    d.observe_successors(
                        token,
                        &[Successor {
                            token: next,
                            share: 1.0,
                        }],
                    );
                    token = next;
                }
            }
            committed.extend_from_slice(&output[done..done + emitted]);
            done += emitted;
            run.ms += draft_ms + verify_ms;
            run.draft_ms += draft_ms;
            run.rounds += 1;
            run.drafted += self.draft.len();
            run.accepted += accepted;
            if self.draft.source() == DraftSource::Model {
                run.model_drafted += self.draft.len();
            }
        }
        Ok(run)
    }
}

/// Replays `traces` in order in one fresh process.
pub fn replay(
    setting: &Setting,
    profile: &CostProfile,
    traces: &[Trace],
) -> Result<Vec<ReplayRun>, ReplayError> {
    let mut replayer = Replayer::new(setting, profile)?;
    traces.iter().map(|t| replayer.run(t)).collect()
}

/// The fixed settings a policy is judged against for `drafter`: γ 1..=8,
/// and for model drafts γ 8 with a confidence cut-off p_min.
pub fn fixed_settings(drafter: &ReplayDrafter) -> Vec<Setting> {
    let mut settings: Vec<Setting> = (1..=8)
        .map(|g| Setting {
            drafter: drafter.clone(),
            config: PolicyConfig {
                length: DraftLength::Fixed(g),
                p_min: None,
                ..PolicyConfig::default()
            },
        })
        .collect();
    if !matches!(drafter, ReplayDrafter::Lookup) {
        settings.extend([0.3, 0.5, 0.7, 0.9].map(|p| Setting {
            drafter: drafter.clone(),
            config: PolicyConfig {
                length: DraftLength::Fixed(8),
                p_min: Some(p),
                ..PolicyConfig::default()
            },
        }));
    }
    settings
}

/// How the automatic policy fared against every fixed setting of one
/// drafter on one set of traces under one profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Regret {
    /// The automatic policy's speed-up over the target alone (set total).
    pub auto: f64,
    /// Its slowest prompt's speed-up.
    pub auto_worst: f64,
    /// The best fixed setting in hindsight (`target` when none beats it).
    pub best: String,
    /// That setting's speed-up.
    pub best_speedup: f64,
}

impl Regret {
    /// auto ÷ best.
    pub fn ratio(&self) -> f64 {
        self.auto / self.best_speedup
    }
}

/// Replays the automatic policy (model cap `max`) and every fixed setting
/// of `drafter` over `traces`, each in one fresh process, after `warm_up`
/// traces run in the same process (not counted).
pub fn regret(
    drafter: &ReplayDrafter,
    max: usize,
    profile: &CostProfile,
    warm_up: &[Trace],
    traces: &[Trace],
) -> Result<Regret, ReplayError> {
    let speedup = |setting: &Setting| -> Result<(f64, f64), ReplayError> {
        let mut replayer = Replayer::new(setting, profile)?;
        for t in warm_up {
            replayer.run(t)?;
        }
        let runs = traces
            .iter()
            .map(|t| replayer.run(t))
            .collect::<Result<Vec<_>, _>>()?;
        let worst = runs
            .iter()
            .map(ReplayRun::speedup)
            .fold(f64::INFINITY, f64::min);
        Ok((ReplayRun::total(&runs).speedup(), worst))
    };
    let auto = Setting {
        drafter: drafter.clone(),
        config: PolicyConfig {
            length: DraftLength::Auto { max },
            p_min: None,
            ..PolicyConfig::default()
        },
    };
    let (auto_speedup, auto_worst) = speedup(&auto)?;
    let mut best = ("target".to_owned(), 1.0);
    for setting in fixed_settings(drafter) {
        let (s, _) = speedup(&setting)?;
        if s > best.1 {
            best = (setting.name(), s);
        }
    }
    Ok(Regret {
        auto: auto_speedup,
        auto_worst,
        best: best.0,
        best_speedup: best.1,
    })
}
