//! The front door: one configuration, validated once, assembles the target
//! and its drafter (or EAD's small model); one `generate` returns one
//! outcome; one error type. The CLI, the benchmark, the C API and the tests
//! all build their engines here.

pub mod conversation;
mod engine;
pub mod prompt_cache;

use std::path::Path;
use std::sync::Arc;

pub use crate::draft_kind::{DraftKind, DraftKindError};
pub use conversation::{Conversation, WhenFull};
pub use prompt_cache::PromptCacheError;

use crate::draft::{
    DraftLength, DraftModel, Drafter, HybridDrafter, LookupDrafter, MemoryFileError, ModelDrafter,
    OutputMemory, DEFAULT_HYBRID_MIN_NGRAM,
};
use crate::ead::{Ead, EadConfig, EadStats, Who};
use crate::engine::{Context, ContextParams, EngineError, Grammar, Model, Sequence, Token};
use crate::error::GenerateError;
use crate::generate::Piece;
use crate::generate::{check_prompt, prompt_tokens, GenerateParams, Generation};
use crate::metrics::SpecStats;
use crate::sampling::SamplingParams;
use crate::speculative::CostSnapshot;
use crate::speculative::{PolicyConfig, Speculator};
use engine::Engine;

/// Everything a session needs: the models, how to draft, how to sample,
/// the context. Start from [`SessionConfig::new`] and set what differs.
#[derive(Clone)]
pub struct SessionConfig {
    /// The target model (EAD's large model).
    pub target: Arc<Model>,
    /// How to draft.
    pub kind: DraftKind,
    /// The drafter model (model, hybrid, trimmed) or EAD's small model.
    pub drafter: Option<DraftModel>,
    /// The free drafts' settings and memory of earlier outputs (lookup
    /// and hybrid).
    pub lookup: LookupDrafter,
    /// Shortest lookup match a hybrid drafter considers.
    pub hybrid_min_ngram: usize,
    /// EAD's switching settings (EAD kinds).
    pub ead: EadConfig,
    /// The draft policy's settings together: draft length (ignored by
    /// plain EAD, which never drafts), the drafter-probability cut-off, trees.
    pub policy: PolicyConfig,
    /// How tokens are picked.
    pub sampling: SamplingParams,
    /// Never produce end-of-generation tokens (fixed-length benchmark runs).
    pub ignore_eos: bool,
    /// Context window and threads, shared by every model of the session.
    pub context: ContextParams,
    /// Pass costs measured earlier with these models, settings and machine,
    /// and what the draft-length policy learned then (a cost cache, see
    /// [`Session::costs`]): a speculative session given them reads its
    /// first prompt in one batch, timing nothing, and starts from that
    /// learning. The caller keys them; wrong costs only make the
    /// draft-length policy choose worse.
    pub costs: Option<CostSnapshot>,
    /// End the output where its text first contains one of these (the
    /// stop string and what follows left out; [`crate::generate::StopReason::StopString`]).
    pub stop: Vec<String>,
    /// Produce only what this grammar allows (llama.cpp's GBNF, start rule
    /// `root`): target-only and speculative kinds, greedy or sampled, exact
    /// as without one; refused for EAD kinds.
    pub grammar: Option<String>,
}

impl SessionConfig {
    /// The target alone, greedy, with the default draft-length policy for
    /// when a drafter is set.
    pub fn new(target: Arc<Model>, context: ContextParams) -> Self {
        Self {
            target,
            kind: DraftKind::None,
            drafter: None,
            lookup: LookupDrafter::default(),
            hybrid_min_ngram: DEFAULT_HYBRID_MIN_NGRAM,
            ead: EadConfig::default(),
            policy: PolicyConfig::default(),
            sampling: SamplingParams::greedy(),
            ignore_eos: false,
            context,
            costs: None,
            stop: Vec::new(),
            grammar: None,
        }
    }

    /// The same session with `kind` drafting from `drafter`.
    pub fn with_drafter(mut self, kind: DraftKind, drafter: Option<DraftModel>) -> Self {
        self.kind = kind;
        self.drafter = drafter;
        self
    }
}

/// Checks every setting that needs no model, as [`Session::new`] does:
/// a caller can run it before loading models, so a bad value costs no
/// load. Returns the policy settings as validated.
pub fn check_settings(
    context: &ContextParams,
    sampling: &SamplingParams,
    ead: &EadConfig,
    policy: PolicyConfig,
) -> Result<PolicyConfig, GenerateError> {
    context.validate()?;
    sampling.validate()?;
    ead.validate()?;
    let length = policy
        .length
        .validate()
        .map_err(crate::speculative::PolicyError::from)?;
    let policy = PolicyConfig { length, ..policy };
    policy.validate()?;
    Ok(policy)
}

/// What one generation produced and measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Tokens, text, stop reason, timings.
    pub generation: Generation,
    /// Speculation counters (speculative sessions).
    pub speculation: Option<SpecStats>,
    /// EAD counters (EAD sessions).
    pub ead: Option<EadStats>,
    /// EAD: which model produced each generated token (empty otherwise).
    pub sources: Vec<Who>,
}

/// A target (and drafter) ready to generate, prompt after prompt. What it
/// measures and learns (pass costs, acceptance) carries over between
/// generations; each generation starts from an empty cache.
pub struct Session {
    engine: Box<dyn Engine>,
    params: GenerateParams,
}

impl Session {
    /// Validates `config` and assembles its engine.
    pub fn new(config: SessionConfig) -> Result<Self, GenerateError> {
        // Every setting is checked, also those this kind does not use: a
        // bad value is a mistake to report, whatever the kind.
        let policy = check_settings(
            &config.context,
            &config.sampling,
            &config.ead,
            config.policy,
        )?;
        if policy.exact && config.target.repacked() {
            return Err(EngineError::InvalidParam {
                name: "exact",
                value: "true".into(),
                reason: "needs the target loaded without repacking (ModelParams::repack false)",
            }
            .into());
        }
        let drafter = match (config.kind.needs_model(), &config.drafter) {
            (true, None) => return Err(GenerateError::MissingDrafter(config.kind)),
            (true, Some(d)) => Some(d),
            (false, _) => None,
        };
        // Exact mode: the target never computes a lone position.
        let target_context = ContextParams {
            pad_single: policy.exact,
            ..config.context.clone()
        };
        let target = || Context::new(config.target.clone(), &target_context);
        let drafter_context = ContextParams {
            n_ctx: config.context.n_ctx + 1,
            pad_single: false,
            ..config.context.clone()
        };
        let model_drafter = || -> Result<ModelDrafter, GenerateError> {
            let model = drafter.ok_or(GenerateError::MissingDrafter(config.kind))?;
            Ok(ModelDrafter::open(
                model,
                &drafter_context,
                config.sampling,
            )?)
        };
        let speculative = |d: Box<dyn Drafter>| -> Result<Box<dyn Engine>, GenerateError> {
            let mut speculator = Speculator::new(target()?, Some(d), policy)?;
            if let Some(costs) = &config.costs {
                speculator.assume_costs(costs);
            }
            Ok(Box::new(speculator))
        };
        let grammar = match (&config.grammar, config.kind) {
            (None, _) => None,
            (Some(_), DraftKind::Ead | DraftKind::EadSpec) => {
                return Err(GenerateError::GrammarWithEad(config.kind))
            }
            (Some(gbnf), _) => Some(Grammar::new(config.target.clone(), gbnf, "root")?),
        };
        let engine: Box<dyn Engine> = match config.kind {
            DraftKind::None => Box::new(Sequence::new(target()?)),
            DraftKind::Lookup => speculative(Box::new(config.lookup.clone()))?,
            DraftKind::Model => speculative(Box::new(model_drafter()?))?,
            DraftKind::Trimmed => {
                if !drafter.is_some_and(DraftModel::is_trimmed) {
                    return Err(GenerateError::NotTrimmed);
                }
                speculative(Box::new(model_drafter()?))?
            }
            DraftKind::Hybrid => speculative(Box::new(HybridDrafter::new(
                config.lookup.clone(),
                model_drafter()?,
                config.hybrid_min_ngram,
            )))?,
            DraftKind::Ead | DraftKind::EadSpec => {
                let small = match drafter {
                    Some(DraftModel::Full(m)) => m.clone(),
                    Some(DraftModel::Trimmed(t)) => t.model.clone(),
                    None => return Err(GenerateError::MissingDrafter(config.kind)),
                };
                let length = if config.kind == DraftKind::EadSpec {
                    policy.length
                } else {
                    DraftLength::Fixed(0)
                };
                let small = Context::new(small, &config.context)?;
                Box::new(Ead::new(small, target()?, config.ead, length)?)
            }
        };
        Ok(Self {
            engine,
            params: GenerateParams {
                max_tokens: 0,
                sampling: config.sampling,
                ignore_eos: config.ignore_eos,
                reuse_prefix: false,
                grammar,
                stops: config.stop,
            },
        })
    }

    /// The target model.
    pub fn model(&self) -> &Arc<Model> {
        self.target().model()
    }

    /// The target's context.
    pub fn target(&self) -> &Context {
        self.engine.target()
    }

    /// The target's context, mutably (llama.cpp's own counters).
    pub fn target_mut(&mut self) -> &mut Context {
        self.engine.target_mut()
    }

    /// Prompt tokens for `text`: through the target's chat template as one
    /// user message when `chat`, else raw.
    pub fn prompt_tokens(&self, text: &str, chat: bool) -> Result<Vec<Token>, GenerateError> {
        Ok(prompt_tokens(self.model(), text, chat)?)
    }

    /// Generates up to `max_tokens` from `prompt`, streaming each token and
    /// its newly complete text to `on_token` (false stops), and at the end
    /// [`Piece::End`] with the text held back until then.
    pub fn generate(
        &mut self,
        prompt: &[Token],
        max_tokens: usize,
        on_token: impl FnMut(Piece, &str) -> bool,
    ) -> Result<Outcome, GenerateError> {
        self.run(prompt, max_tokens, false, on_token)
    }

    /// [`Session::generate`], keeping what every model's cache holds in
    /// common with `prompt` (a restored prompt cache, a [`Session::prefill`],
    /// the previous generation) and reading only the rest.
    pub fn generate_from_cache(
        &mut self,
        prompt: &[Token],
        max_tokens: usize,
        on_token: impl FnMut(Piece, &str) -> bool,
    ) -> Result<Outcome, GenerateError> {
        self.run(prompt, max_tokens, true, on_token)
    }

    /// Reads `prompt` into every model's cache without generating (what
    /// they hold of it already is kept): a system prompt or a document, to
    /// save with [`Session::save_prompt_cache`] or answer questions on.
    pub fn prefill(&mut self, prompt: &[Token]) -> Result<(), GenerateError> {
        check_prompt(prompt)?;
        self.engine.prefill(prompt)
    }

    /// The tokens the target's cache holds, in order.
    pub fn cached_tokens(&self) -> &[Token] {
        self.caches()[0].tokens()
    }

    /// Every model's cache, the target's first.
    fn caches(&self) -> Vec<&Sequence> {
        self.engine.caches()
    }

    /// Saves every model's cache to `path` (see [`prompt_cache`]), whole
    /// or not at all; an existing file is replaced only when it is a prompt
    /// cache. Returns the tokens saved (the target's).
    pub fn save_prompt_cache(&self, path: &Path) -> Result<usize, GenerateError> {
        let caches = self
            .caches()
            .into_iter()
            .map(|seq| {
                Ok(prompt_cache::SavedCache {
                    model: seq.context().model().gguf().fingerprint(),
                    tokens: seq.tokens().to_vec(),
                    state: seq.save_state()?,
                })
            })
            .collect::<Result<Vec<_>, EngineError>>()
            .map_err(|source| PromptCacheError::Engine {
                path: path.to_owned(),
                source,
            })?;
        prompt_cache::write(path, &caches)?;
        Ok(caches[0].tokens.len())
    }

    /// Restores the caches saved in `path` by [`Session::save_prompt_cache`]
    /// (in any process with the same target model and edgespec version):
    /// the next [`Session::generate_from_cache`] or conversation turn reads
    /// only what follows them. The target's cache must have been saved
    /// with this target model; a drafter's (or EAD small model's) saved
    /// with another model, or not saved, is left empty and catches up
    /// itself. On any error every cache is empty. Returns the tokens the
    /// target's cache now holds.
    pub fn load_prompt_cache(&mut self, path: &Path) -> Result<usize, GenerateError> {
        self.clear();
        let saved = prompt_cache::read(path)?;
        let target = self.model();
        if saved[0].model != target.gguf().fingerprint() {
            return Err(PromptCacheError::OtherModel {
                path: path.to_owned(),
                model: target.path().to_owned(),
            }
            .into());
        }
        let mut restore = || -> Result<(), EngineError> {
            for (seq, saved) in self.caches_mut().into_iter().zip(&saved) {
                if saved.model == seq.context().model().gguf().fingerprint() {
                    seq.restore(&saved.tokens, &saved.state)?;
                }
            }
            Ok(())
        };
        if let Err(source) = restore() {
            self.clear();
            return Err(PromptCacheError::Engine {
                path: path.to_owned(),
                source,
            }
            .into());
        }
        Ok(saved[0].tokens.len())
    }

    /// Every model's cache, mutably, the target's first.
    fn caches_mut(&mut self) -> Vec<&mut Sequence> {
        self.engine.caches_mut()
    }

    /// [`Session::generate`], reading only the part of `prompt` after what
    /// every model's cache already holds of it when `reuse_prefix`.
    fn run(
        &mut self,
        prompt: &[Token],
        max_tokens: usize,
        reuse_prefix: bool,
        on_token: impl FnMut(Piece, &str) -> bool,
    ) -> Result<Outcome, GenerateError> {
        let params = GenerateParams {
            max_tokens,
            reuse_prefix,
            ..self.params.clone()
        };
        let model = self.model().clone();
        let link = || {
            model
                .remote()
                .map_or((0, 0), |r| (r.round_trips(), r.bytes_received()))
        };
        let before = link();
        let mut on_token = on_token;
        let mut outcome = self.engine.generate(prompt, &params, &mut on_token)?;
        let after = link();
        outcome.generation.stats.round_trips = after.0 - before.0;
        outcome.generation.stats.remote_bytes = after.1 - before.1;
        Ok(outcome)
    }

    /// Replaces how later generations pick tokens. The target's choice is
    /// what changes: a drafter keeps drafting as the session was set up
    /// (greedy drafts are verified as deterministic ones, sampled drafts by
    /// their q), which may cost acceptance, never exactness.
    pub fn set_sampling(&mut self, sampling: SamplingParams) -> Result<(), GenerateError> {
        sampling.validate()?;
        self.params.sampling = sampling;
        Ok(())
    }

    /// Replaces the grammar of later generations ([`SessionConfig::grammar`];
    /// `None` removes it). A grammar that does not parse is refused and the
    /// one before stays.
    pub fn set_grammar(&mut self, gbnf: Option<&str>) -> Result<(), GenerateError> {
        self.params.grammar = match (gbnf, self.engine.refuses_grammar()) {
            (None, _) => None,
            (Some(_), Some(kind)) => return Err(GenerateError::GrammarWithEad(kind)),
            (Some(text), None) => Some(Grammar::new(self.model().clone(), text, "root")?),
        };
        Ok(())
    }

    /// Replaces the stop strings of later generations ([`SessionConfig::stop`]).
    pub fn set_stop_strings(&mut self, stops: Vec<String>) {
        self.params.stops = stops;
    }

    /// The pass costs this session has measured (calibration refined by
    /// every pass since) and what its policy learned, to hand to a later
    /// session as
    /// [`SessionConfig::costs`]; `None` before a speculative session's
    /// first generation and for other kinds.
    pub fn costs(&self) -> Option<CostSnapshot> {
        self.engine.costs()
    }

    /// The memory of earlier outputs the session's free drafts draft from
    /// (lookup and hybrid kinds): every generation's output is added to it
    /// when it ends; save it with [`OutputMemory::save`] to keep it.
    pub fn lookup_memory(&self) -> Option<&OutputMemory> {
        self.engine.drafter()?.memory()
    }

    /// Replaces the memory of earlier outputs with the one saved at `path`
    /// for this target model (as much of it as the memory holds, newest
    /// first). On an error the memory is as it was.
    pub fn load_lookup_memory(&mut self, path: &Path) -> Result<(), GenerateError> {
        let fingerprint = self.model().gguf().fingerprint();
        let memory = self
            .engine
            .drafter_mut()
            .and_then(|d| d.memory_mut())
            .ok_or(MemoryFileError::NoMemory)?;
        *memory = OutputMemory::load(path, fingerprint, memory.capacity())?;
        Ok(())
    }

    /// Saves the memory of earlier outputs to `path` (see
    /// [`OutputMemory::save`]: whole or not at all, never over another
    /// model's memory or a file that is not one).
    pub fn save_lookup_memory(&self, path: &Path) -> Result<(), GenerateError> {
        let memory = self.lookup_memory().ok_or(MemoryFileError::NoMemory)?;
        Ok(memory.save(path, self.model().gguf().fingerprint())?)
    }

    /// Forgets what earlier generations taught the free drafts (the memory
    /// of outputs, the recycled successors); what the draft-length policy
    /// learned stays.
    pub fn forget_outputs(&mut self) {
        if let Some(d) = self.engine.drafter_mut() {
            d.forget_outputs();
        }
    }

    /// Seeds the target's sampling stream of the next generations (a
    /// per-request seed; drafters keep their own streams).
    pub fn reseed(&mut self, seed: u64) {
        self.params.sampling.seed = seed;
    }

    /// Forgets the sequence: empties every model's cache. What was measured
    /// and learned stays.
    pub fn clear(&mut self) {
        self.engine.clear();
    }
}
