//! The model and session flags `generate` and `chat` share, and the
//! session they describe.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};

use edgespec::draft::{
    memory, DraftLength, DraftModel, LookupDrafter, MemoryFileError, OutputMemory, Trees,
    DEFAULT_HYBRID_MIN_NGRAM,
};
use edgespec::ead::EadConfig;
use edgespec::engine::{CacheType, ContextParams, FlashAttention, Model, ModelParams, Token};
use edgespec::sampling::{Mirostat, Penalties, SamplingParams, DEFAULT_MIROSTAT};
use edgespec::session::{check_settings, DraftKind, Session, SessionConfig};
use edgespec::{GenerateError, PolicyConfig};

use crate::rpc_args::RpcArgs;
use crate::UsageError;
use edgespec_tools::bench::MachineInfo;
use edgespec_tools::cost_cache::{self, Cached, CostCache, CostKey, FileId};
use edgespec_tools::json_schema::json_schema_to_gbnf;

/// How to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GenMode {
    /// Target alone, or speculative when a drafter is given (see --draft-kind).
    Spec,
    /// Entropy-adaptive decoding: --small generates while it is confident,
    /// --large where its rolling entropy exceeds --ead-threshold.
    Ead,
    /// EAD, with the small model drafting for the large one inside
    /// large-model regions (lossless there).
    EadSpec,
}

/// `--gamma`: a number or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gamma {
    /// Fixed draft length.
    Fixed(usize),
    /// Cost-aware per round.
    Auto,
}

impl std::str::FromStr for Gamma {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(Gamma::Auto);
        }
        s.parse::<usize>()
            .map(Gamma::Fixed)
            .map_err(|_| format!("expected a number or `auto`, got {s:?}"))
    }
}

/// `--repeat-last-n`: a count, or -1 for the whole context (llama.cpp's spelling).
fn parse_last_n(s: &str) -> Result<usize, String> {
    match s.parse::<i64>() {
        Ok(-1) => Ok(usize::MAX),
        Ok(n) => usize::try_from(n).map_err(|_| format!("expected -1 or a count >= 0, got {n}")),
        Err(e) => Err(e.to_string()),
    }
}

/// `--mirostat`: 0 or 2 (Mirostat 1.0 is not offered).
fn parse_mirostat(s: &str) -> Result<u8, String> {
    match s {
        "0" => Ok(0),
        "2" => Ok(2),
        _ => Err(format!("expected 0 (off) or 2 (Mirostat 2.0), got {s:?}")),
    }
}

/// Which models to load and how to decode with them.
#[derive(Debug, Args)]
pub struct SessionArgs {
    /// Target model (GGUF); the large model in EAD modes.
    #[arg(short, long, visible_alias = "large")]
    pub model: PathBuf,
    /// Generation mode.
    #[arg(long, value_enum, default_value = "spec")]
    pub mode: GenMode,
    /// EAD: switch to the large model when the small model's rolling mean
    /// entropy (bits) exceeds this; back below it.
    #[arg(long, default_value_t = EadConfig::default().threshold_bits)]
    pub ead_threshold: f64,
    /// EAD: entropy values in the rolling mean.
    #[arg(long, default_value_t = EadConfig::default().window)]
    pub ead_window: usize,
    /// EAD: tokens to generate after a switch before the next one.
    #[arg(long, default_value_t = EadConfig::default().min_dwell)]
    pub ead_dwell: usize,
    /// EAD: hold the large model's share of tokens at this fraction by
    /// moving the threshold (--ead-threshold is then only where it starts).
    #[arg(long)]
    pub ead_share: Option<f64>,
    /// EAD: never fall back to the large model alone when EAD runs slower
    /// than it (output then does not depend on timing).
    #[arg(long)]
    pub ead_no_fallback: bool,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    pub temp: f32,
    /// Top-k (0: off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Top-p (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Min-p: drop tokens less likely than this times the most likely one (0: off).
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,
    /// Divide a repeated token's logit by this (multiply if negative; 1: off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Tokens the penalties look back on (-1: the whole context; 0: off).
    #[arg(long, default_value_t = 64, allow_negative_numbers = true, value_parser = parse_last_n)]
    pub repeat_last_n: usize,
    /// Subtract this from a repeated token's logit once per occurrence (0: off).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub frequency_penalty: f32,
    /// Subtract this from a repeated token's logit once (0: off).
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    pub presence_penalty: f32,
    /// Mirostat: 0 off, 2 Mirostat 2.0 (in place of penalties, top-k, top-p and min-p).
    #[arg(long, default_value_t = 0, value_parser = parse_mirostat)]
    pub mirostat: u8,
    /// Mirostat's target surprise τ in bits.
    #[arg(long, default_value_t = DEFAULT_MIROSTAT.tau)]
    pub mirostat_ent: f32,
    /// Mirostat's learning rate η.
    #[arg(long, default_value_t = DEFAULT_MIROSTAT.eta)]
    pub mirostat_lr: f32,
    /// Sampling seed (default: a fresh one, printed when sampling, as in
    /// llama.cpp; give it to repeat a sampled run).
    #[arg(short, long)]
    pub seed: Option<u64>,
    /// Stop where the output contains this text, left out (repeatable; llama.cpp: -r).
    #[arg(short = 'r', long, visible_alias = "stop", value_name = "TEXT")]
    pub reverse_prompt: Vec<String>,
    /// Constrain the output to this grammar (llama.cpp's GBNF, start rule
    /// `root`); exact with every speculative draft kind.
    #[arg(long, value_name = "GBNF")]
    pub grammar: Option<String>,
    /// Read the grammar from this file (as llama.cpp's --grammar-file).
    #[arg(long, value_name = "FILE", conflicts_with = "grammar")]
    pub grammar_file: Option<PathBuf>,
    /// Constrain the output to JSON this schema accepts (llama.cpp's -j; a
    /// subset of JSON Schema, anything else refused by name).
    #[arg(short = 'j', long, value_name = "SCHEMA", conflicts_with_all = ["grammar", "grammar_file"])]
    pub json_schema: Option<String>,
    /// Read the JSON schema from this file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["grammar", "grammar_file", "json_schema"])]
    pub json_schema_file: Option<PathBuf>,
    /// Never stop at end-of-generation tokens (fixed-length benchmark runs).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Threads (default: all cores).
    #[arg(short, long)]
    pub threads: Option<i32>,
    /// Context size in tokens.
    #[arg(short = 'c', long, default_value_t = 4096)]
    pub ctx_size: u32,
    /// Keep weights in their file layout (no repacked kernels): batched and
    /// single-token passes then compute alike, so speculative output is
    /// token-identical to target-only on K-quant models (slower on some CPUs).
    #[arg(long)]
    pub no_repack: bool,
    /// Exact mode: greedy speculative output byte-identical to the target
    /// alone's. The target keeps its file layout (no repacking), every
    /// verification is a chain of at most 6 drafted tokens (a batch ggml
    /// computes as it computes one token) and the first prompt is read as
    /// plain decoding reads it (docs/lossless.md).
    #[arg(long)]
    pub exact: bool,
    /// Flash attention: auto, on or off (llama.cpp: -fa).
    #[arg(long, default_value = "auto")]
    pub flash_attn: FlashAttention,
    /// KV cache type for keys: f16, q8_0 or q4_0 (llama.cpp: -ctk).
    #[arg(long, default_value = "f16")]
    pub cache_type_k: CacheType,
    /// KV cache type for values: f16, q8_0 or q4_0; a quantized one needs
    /// flash attention (llama.cpp: -ctv).
    #[arg(long, default_value = "f16")]
    pub cache_type_v: CacheType,
    /// Layers to offload to the GPU (CUDA builds; llama.cpp: -ngl).
    #[arg(long, visible_alias = "n-gpu-layers", default_value_t = 0)]
    pub gpu_layers: u32,
    /// Where the target runs when not here (ggml RPC).
    #[command(flatten)]
    pub rpc: RpcArgs,
    /// Drafter model for speculative decoding (same vocabulary as the
    /// target); the small model in EAD modes (llama.cpp: -md).
    #[arg(short, long, visible_aliases = ["small", "model-draft"])]
    pub draft: Option<PathBuf>,
    /// Drafter kind: model, lookup, hybrid or trimmed (default: model with
    /// --draft; the target alone without).
    #[arg(long)]
    pub draft_kind: Option<DraftKind>,
    /// Source drafter of a trimmed --draft (default: the path stored in it).
    #[arg(long)]
    pub draft_source: Option<PathBuf>,
    /// Draft length: a number (0..=64) or `auto` (cost-aware, chosen per round).
    #[arg(long, default_value = "auto")]
    pub gamma: Gamma,
    /// Longest draft `--gamma auto` considers.
    #[arg(long, visible_alias = "draft-max", default_value_t = 8)]
    pub gamma_max: usize,
    /// Stop drafting when the drafter's top probability falls below this.
    #[arg(long, visible_alias = "draft-p-min")]
    pub p_min: Option<f32>,
    /// Draft trees from free drafts that are unsure between continuations:
    /// `auto` (where the policy expects a branch to pay), `off` (chains
    /// only), `always` (every branch offered, for measurements).
    #[arg(long, default_value = "auto")]
    pub draft_tree: Trees,
    /// Shortest n-gram prompt lookup matches (lookup drafter).
    #[arg(long, default_value_t = 2)]
    pub lookup_min_ngram: usize,
    /// Longest n-gram prompt lookup tries first.
    #[arg(long, default_value_t = 4)]
    pub lookup_max_ngram: usize,
    /// Keep the lookup drafters' memory of earlier outputs in this file
    /// across runs (created when absent; a damaged one is replaced, one
    /// made with another model or not a memory file is left alone).
    #[arg(long, value_name = "FILE")]
    pub lookup_memory: Option<PathBuf>,
    /// Shortest lookup match the hybrid drafter weighs against its model.
    #[arg(long, default_value_t = DEFAULT_HYBRID_MIN_NGRAM)]
    pub hybrid_min_ngram: usize,
    /// Only generate with the target (ignores --draft).
    #[arg(long)]
    pub target_only: bool,
    /// Folder of the cost cache: pass costs measured by an earlier run with
    /// the same models, settings and machine, so this one need not time
    /// passes on its first prompt (default: ~/.cache/edgespec/costs).
    #[arg(long)]
    pub cost_cache: Option<PathBuf>,
    /// Neither read nor write the cost cache.
    #[arg(long, conflicts_with = "cost_cache")]
    pub no_cost_cache: bool,
    /// Keep the prompt's KV caches in FILE: restored from it when it
    /// exists (a file made with another target model or edgespec version,
    /// or damaged, is refused), saved to it after reading prompt tokens it
    /// did not hold (generate: the prompt; chat: the system prompt).
    #[arg(long, value_name = "FILE")]
    pub prompt_cache: Option<PathBuf>,
    /// Restore from --prompt-cache but never write it.
    #[arg(long, requires = "prompt_cache")]
    pub prompt_cache_ro: bool,
}

impl SessionArgs {
    /// The draft kind these flags ask for.
    pub fn kind(&self) -> anyhow::Result<DraftKind> {
        let kind = match (self.mode, self.target_only, self.draft_kind, &self.draft) {
            (GenMode::Ead, _, _, _) => DraftKind::Ead,
            (GenMode::EadSpec, _, _, _) => DraftKind::EadSpec,
            (GenMode::Spec, true, _, _) => DraftKind::None,
            (GenMode::Spec, false, Some(kind), _) => kind,
            (GenMode::Spec, false, None, Some(_)) => DraftKind::Model,
            (GenMode::Spec, false, None, None) => DraftKind::None,
        };
        if kind.needs_model() && self.draft.is_none() {
            match kind {
                DraftKind::Ead | DraftKind::EadSpec => {
                    bail!("{kind} needs a small model (--small)")
                }
                _ => bail!("--draft-kind {kind} needs a drafter model (--draft)"),
            }
        }
        Ok(kind)
    }

    /// The grammar the flags give: `--grammar`, `--grammar-file`, or a JSON
    /// schema's (`-j`, `--json-schema-file`), read and converted before any
    /// model loads.
    fn grammar(&self) -> anyhow::Result<Option<String>> {
        let read = |path: &PathBuf, what: &str| {
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the {what} from {}", path.display()))
        };
        let schema = match (&self.json_schema, &self.json_schema_file) {
            (Some(text), _) => Some(text.clone()),
            (None, Some(path)) => Some(read(path, "JSON schema")?),
            (None, None) => None,
        };
        if let Some(schema) = schema {
            let gbnf = json_schema_to_gbnf(&schema).map_err(|e| UsageError(e.to_string()))?;
            return Ok(Some(gbnf));
        }
        Ok(match (&self.grammar, &self.grammar_file) {
            (Some(text), _) => Some(text.clone()),
            (None, Some(path)) => Some(read(path, "grammar")?),
            (None, None) => None,
        })
    }

    /// The cost cache entry of a session of `kind` with `context` and
    /// `length` (speculative kinds only), unless switched off.
    fn cost_cache(
        &self,
        kind: DraftKind,
        context: &ContextParams,
        length: DraftLength,
        lookup: &LookupDrafter,
    ) -> Option<CostCache> {
        let speculative = matches!(
            kind,
            DraftKind::Lookup | DraftKind::Model | DraftKind::Hybrid | DraftKind::Trimmed
        );
        // A remote target's costs are the network's of the day: measured
        // afresh each run.
        if self.no_cost_cache || !speculative || self.rpc.target_rpc.is_some() {
            return None;
        }
        let dir = self.cost_cache.clone().or_else(cost_cache::default_dir)?;
        let drafter = match &self.draft {
            Some(path) if kind.needs_model() => Some(FileId::of(path).ok()?),
            _ => None,
        };
        let machine = MachineInfo::detect(vec![context.n_threads]);
        let key = CostKey {
            edgespec: machine.edgespec,
            ggml: machine.ggml,
            cpu: machine.cpu,
            backend: machine.backend,
            target: FileId::of(&self.model).ok()?,
            drafter,
            session: format!(
                "{kind} {length:?} p_min {:?} lookup {}..={} memory {} hybrid {} ctx {} exact {} fa {} kv {}/{}",
                self.p_min,
                lookup.min_ngram,
                lookup.max_ngram,
                self.lookup_memory.is_some(),
                self.hybrid_min_ngram,
                context.n_ctx,
                self.exact,
                context.flash_attn.name(),
                context.type_k.name(),
                context.type_v.name()
            ),
            threads: context.n_threads,
            repack: !self.no_repack && !self.exact,
            gpu_layers: self.gpu_layers,
        };
        Some(CostCache::new(&dir, key))
    }

    /// Loads the models and fills the session's configuration, with the
    /// costs of its cost cache entry when the entry holds them; returns the
    /// entry too, for [`save_costs`] after generating. A `one_shot` run
    /// (one `generate`) leaves out a drafter model that has not paid for
    /// itself in earlier one-shot runs
    /// ([`edgespec_tools::cost_cache::DrafterRecord`]; automatic draft
    /// length only): hybrid drafting is then lookup alone, model drafting
    /// the target alone.
    pub fn config(&self, one_shot: bool) -> anyhow::Result<(SessionConfig, Option<CostRun>)> {
        let kind = self.kind()?;
        let mut context = ContextParams {
            n_ctx: self.ctx_size,
            flash_attn: self.flash_attn,
            type_k: self.cache_type_k,
            type_v: self.cache_type_v,
            ..ContextParams::default()
        };
        if let Some(t) = self.threads {
            context.n_threads = t;
            context.n_threads_batch = t;
        }
        let ead = EadConfig {
            threshold_bits: self.ead_threshold,
            window: self.ead_window,
            min_dwell: self.ead_dwell,
            large_share: self.ead_share,
            fallback: !self.ead_no_fallback,
        };
        let length = match self.gamma {
            Gamma::Fixed(g) => DraftLength::Fixed(g),
            Gamma::Auto => DraftLength::Auto {
                max: self.gamma_max,
            },
        };
        let sampling = SamplingParams {
            temperature: self.temp,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            penalties: Penalties {
                repeat: self.repeat_penalty,
                frequency: self.frequency_penalty,
                presence: self.presence_penalty,
                last_n: self.repeat_last_n,
            },
            mirostat: (self.mirostat == 2).then_some(Mirostat {
                tau: self.mirostat_ent,
                eta: self.mirostat_lr,
            }),
            seed: self.seed.unwrap_or_else(fresh_seed),
        };
        if !sampling.is_greedy() {
            eprintln!("seed: {}", sampling.seed);
        }
        // Before any model loads: a bad value costs no load.
        let policy = PolicyConfig {
            length,
            p_min: self.p_min,
            trees: self.draft_tree,
            exact: self.exact,
        };
        check_settings(&context, &sampling, &ead, policy).map_err(|e| UsageError(e.to_string()))?;
        let grammar = self.grammar()?;
        let remote = self.rpc.remote()?;
        let lookup = LookupDrafter::new(self.lookup_min_ngram, self.lookup_max_ngram);
        let mut cost_run = self
            .cost_cache(kind, &context, length, &lookup)
            .map(|cache| CostRun {
                cached: cache.load(),
                cache,
                drafter_left_out: false,
            });
        let kind = match cost_run.as_mut() {
            Some(run) if one_shot && self.gamma == Gamma::Auto => run.kind_for(kind),
            _ => kind,
        };
        let model_params = ModelParams {
            gpu_layers: self.gpu_layers,
            repack: !self.no_repack,
            ..ModelParams::default()
        };
        // The drafter loads on a second thread while the target loads: a
        // load is mostly one thread reading and repacking weights, so the
        // smaller model's hides behind the larger's.
        let (model, drafter) = std::thread::scope(|scope| {
            let drafter = match (&self.draft, kind.needs_model()) {
                (Some(path), true) => Some(scope.spawn(|| {
                    DraftModel::open(path, self.draft_source.as_deref(), &model_params)
                        .with_context(|| format!("loading drafter {}", path.display()))
                })),
                _ => None,
            };
            let target_params = ModelParams {
                remote: remote.clone(),
                // An exact target computes with the file's layout.
                repack: model_params.repack && !self.exact,
                ..model_params.clone()
            };
            let model = Model::load(&self.model, &target_params)
                .with_context(|| format!("loading {}", self.model.display()));
            let drafter = drafter
                .map(|handle| {
                    handle
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p))
                })
                .transpose();
            (model, drafter)
        });
        let (model, drafter) = (model?, drafter?);
        let lookup = match &self.lookup_memory {
            Some(path) => lookup.with_memory(load_memory(path, &model)),
            None => lookup,
        };
        let mut config = SessionConfig {
            lookup,
            hybrid_min_ngram: self.hybrid_min_ngram,
            ead,
            policy,
            sampling,
            ignore_eos: self.ignore_eos,
            stop: self.reverse_prompt.clone(),
            grammar,
            ..SessionConfig::new(model.clone(), context).with_drafter(kind, drafter)
        };
        if let Some(cached) = cost_run.as_ref().and_then(|r| r.cached.as_ref()) {
            if kind != DraftKind::None {
                config.costs = Some(cached.costs.clone());
                log::info!("pass costs from the cost cache (none timed on the prompt)");
            }
        }
        Ok((config, cost_run))
    }
}

/// A run's cost cache entry: what it held when the run began, and whether
/// the run left the drafter out for it.
#[derive(Debug)]
pub struct CostRun {
    cache: CostCache,
    cached: Option<Cached>,
    drafter_left_out: bool,
}

impl CostRun {
    /// True when this run goes without the drafter model it was given.
    pub fn drafter_left_out(&self) -> bool {
        self.drafter_left_out
    }

    /// The kind a one-shot run with the automatic length decodes with:
    /// `kind` without its drafter model (hybrid: lookup alone; model: the
    /// target alone) when the entry's record says it has not paid lately.
    fn kind_for(&mut self, kind: DraftKind) -> DraftKind {
        let without = match kind {
            DraftKind::Hybrid => DraftKind::Lookup,
            DraftKind::Model => DraftKind::None,
            _ => return kind,
        };
        let Some(record) = self.cached.as_ref().map(|c| &c.drafter) else {
            return kind;
        };
        if !record.skip() {
            return kind;
        }
        log::info!(
            "drafter left out of this run: its rounds saved {:.0} ms a run lately (cost cache {}); it is loaded again in {} run(s), or always with --no-cost-cache",
            record.saved_ms.unwrap_or(0.0),
            self.cache.path().display(),
            record.retry_after - record.skipped
        );
        self.drafter_left_out = true;
        without
    }
}

/// `--prompt-cache`: restores `session`'s caches from the file when it
/// exists, reads `prompt` into them (only what they lack) and, unless
/// `--prompt-cache-ro`, saves them when that read anything. Returns a line
/// saying what it did; nothing without the flag.
pub fn use_prompt_cache(
    args: &SessionArgs,
    session: &mut Session,
    prompt: &[Token],
) -> anyhow::Result<Option<String>> {
    let Some(path) = &args.prompt_cache else {
        return Ok(None);
    };
    let start = std::time::Instant::now();
    let restored = if path.exists() {
        session.load_prompt_cache(path)?
    } else {
        0
    };
    let restore_ms = start.elapsed().as_secs_f64() * 1e3;
    let held = session
        .cached_tokens()
        .iter()
        .zip(prompt)
        .take_while(|(a, b)| a == b)
        .count();
    session.prefill(prompt)?;
    let ready_ms = start.elapsed().as_secs_f64() * 1e3;
    let saved = held < prompt.len() && !args.prompt_cache_ro;
    if saved {
        session.save_prompt_cache(path)?;
    }
    Ok(Some(format!(
        "prompt cache {}: {restored} tokens restored in {restore_ms:.0} ms, {held} of the prompt's {} held, the rest read by {ready_ms:.0} ms{}",
        path.display(),
        prompt.len(),
        if saved { ", saved" } else { "" }
    )))
}

/// Stores what `session` measured in its cost cache entry (a failure to
/// write only warns: the cache saves time, it holds nothing else), and,
/// for a one-shot run, what its drafter model's rounds saved
/// (`model_saved_ms`: none when it did not run one). A session given the
/// stored costs hands back those it did not measure (a drafter left out)
/// as it was given them.
pub fn save_costs(run: Option<&CostRun>, session: &Session, model_saved_ms: Option<f64>) {
    let Some(run) = run else { return };
    let mut cached = run.cached.clone().unwrap_or_default();
    if let Some(costs) = session.costs() {
        cached.costs = costs;
    } else if run.cached.is_none() {
        return;
    }
    if run.drafter_left_out {
        cached.drafter.skipped_run();
    } else if let Some(ms) = model_saved_ms {
        cached.drafter.loaded_run(ms);
    }
    if let Err(e) = run.cache.save(&cached) {
        log::warn!("cost cache {}: {e}", run.cache.path().display());
    }
}

/// The memory of earlier outputs kept in `path` for `model`: empty (with a
/// warning unless there is no file yet) when it cannot be used.
fn load_memory(path: &Path, model: &Model) -> OutputMemory {
    let fingerprint = model.gguf().fingerprint();
    match OutputMemory::load(path, fingerprint, memory::DEFAULT_TOKENS) {
        Ok(memory) => memory,
        Err(MemoryFileError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
            OutputMemory::default()
        }
        Err(e) => {
            log::warn!("{e}; starting with an empty one");
            OutputMemory::default()
        }
    }
}

/// Saves `session`'s memory of earlier outputs to `--lookup-memory`, if
/// given: over a memory file of this model or a damaged one, never over
/// another model's or a file that is not a memory (a failure only warns).
pub fn save_memory(args: &SessionArgs, session: &Session) {
    let Some(path) = &args.lookup_memory else {
        return;
    };
    match session.save_lookup_memory(path) {
        Ok(()) | Err(GenerateError::Memory(MemoryFileError::NoMemory)) => {}
        Err(e) => log::warn!("{e}: the lookup memory of this run is not saved"),
    }
}

/// A seed for a run that was given none: the clock's nanoseconds mixed
/// with the process id.
fn fresh_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// On a terminal, shows on standard error how far a prompt read of several
/// batches has got (tokens read of all, the rate since it began), the line
/// cleared when the read ends. Elsewhere it shows nothing.
pub fn show_prompt_progress(session: &mut Session) {
    use std::io::{IsTerminal, Write};
    if !std::io::stderr().is_terminal() {
        return;
    }
    // The read's first report: (when, tokens read by then).
    let mut first: Option<(std::time::Instant, usize)> = None;
    session
        .target_mut()
        .set_prompt_progress(Some(Box::new(move |read, total| {
            let now = std::time::Instant::now();
            let (at, from) = match first {
                Some((at, from)) if read > from => (at, from),
                _ => *first.insert((now, read)),
            };
            let secs = now.duration_since(at).as_secs_f64();
            let rate = if secs > 0.0 {
                format!(", {:.1} tok/s", (read - from) as f64 / secs)
            } else {
                String::new()
            };
            let mut err = std::io::stderr().lock();
            let _ = if read >= total {
                first = None;
                write!(err, "\r\x1b[K")
            } else {
                write!(
                    err,
                    "\r\x1b[Kreading the prompt: {read}/{total} tokens{rate}"
                )
            };
            let _ = err.flush();
        })));
}
