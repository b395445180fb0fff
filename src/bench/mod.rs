//! `edgespec bench`: modes × prompt sets, side by side in one run on one
//! machine, with warm-up, repetitions in interleaved order, medians with
//! spread, speed-ups against target-only from the same repetition, and the
//! llama.cpp peer tools on the same prompts.

mod mode;
mod peer;
mod prompts;
mod report;
mod roofline;
mod stats;

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

pub use mode::{DraftKind, Mode, ModeError};
pub use peer::{parse_peer_log, PeerError, PeerMode, PeerRun, PeerSetup};
pub use prompts::{load_prompts, parse_prompts, PromptError};
pub use report::{summarize, BenchReport, MachineInfo, ModeSummary, Roofline};
pub use roofline::{peak_rss_bytes, read_bandwidth};
pub use stats::Spread;

use crate::draft::{Drafter, HybridDrafter, LookupDrafter, ModelDrafter, TrimmedSource};
use crate::engine::{Context, ContextParams, EngineError, Model, ModelParams, Token};
use crate::generate::{generate_target_only, prompt_tokens, GenerateParams};
use crate::spec::{PolicyConfig, SpecError, Speculator};

/// A named list of prompts.
#[derive(Debug, Clone)]
pub struct PromptSet {
    /// Name in the report (`code`, `chat`, a file stem).
    pub name: String,
    /// The prompts.
    pub prompts: Vec<String>,
}

/// What to benchmark.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Target model.
    pub target: PathBuf,
    /// Drafter model (needed by model/hybrid modes and llama-draft).
    pub draft: Option<PathBuf>,
    /// VocabTrim drafter (trimmed modes).
    pub trimmed: Option<PathBuf>,
    /// Prompt sets.
    pub sets: Vec<PromptSet>,
    /// Modes; `target` is added first if missing (speed-ups need it).
    pub modes: Vec<Mode>,
    /// Timed repetitions.
    pub reps: usize,
    /// Most tokens per generation.
    pub max_tokens: usize,
    /// Threads.
    pub threads: i32,
    /// Context size.
    pub ctx_size: u32,
    /// Apply the chat template to prompts.
    pub chat: bool,
    /// Folder of the llama.cpp peer tools, when built.
    pub peer_bin: Option<PathBuf>,
    /// Where runs.jsonl is streamed (every run as it finishes).
    pub out_dir: PathBuf,
}

/// One measured generation.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RunRecord {
    /// Prompt set.
    pub set: String,
    /// Index of the prompt in its set.
    pub prompt: usize,
    /// Repetition (0-based).
    pub rep: usize,
    /// Mode name.
    pub mode: String,
    /// Tokens generated.
    pub tokens: usize,
    /// Decode tokens per second.
    pub decode_tok_s: f64,
    /// Decode seconds (tokens after the first ÷ rate).
    pub decode_s: f64,
    /// Prompt tokens per second (edgespec modes).
    pub prompt_tok_s: Option<f64>,
    /// Time to first token in ms (edgespec modes).
    pub ttft_ms: Option<f64>,
    /// Drafted tokens.
    pub drafted: Option<usize>,
    /// Accepted tokens.
    pub accepted: Option<usize>,
    /// Target forward passes after the prompt (edgespec speculative modes).
    pub target_calls: Option<usize>,
    /// Drafter/target time per token.
    pub c_time: Option<f64>,
    /// Drafter/target bytes per token.
    pub c_bytes: Option<f64>,
    /// Memory-bound speed-up.
    pub mbsu: Option<f64>,
    /// Same tokens as target-only on this prompt (edgespec modes, greedy).
    pub identical: Option<bool>,
}

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Model or context trouble.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Speculation setup trouble.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A peer tool failed.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// Bad configuration.
    #[error("{0}")]
    Config(String),
    /// Output files.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

enum Runner {
    Target(Context),
    Spec(Box<Speculator>),
    Peer(PeerMode),
}

/// Reads the runs a benchmark streamed to `runs.jsonl` (also from an
/// interrupted run); a malformed line is an error naming it.
pub fn load_runs(path: &std::path::Path) -> Result<Vec<RunRecord>, BenchError> {
    let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
        path: path.to_owned(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| {
                BenchError::Config(format!(
                    "{}:{}: not a run record: {e}",
                    path.display(),
                    i + 1
                ))
            })
        })
        .collect()
}

/// Runs the benchmark. `progress(done, total, record)` is called after each run.
pub fn run(
    config: &BenchConfig,
    mut progress: impl FnMut(usize, usize, &RunRecord),
) -> Result<Vec<RunRecord>, BenchError> {
    let mut modes = config.modes.clone();
    if !modes.contains(&Mode::Target) {
        modes.insert(0, Mode::Target);
    }
    if config.reps == 0 || config.max_tokens == 0 {
        return Err(BenchError::Config(
            "--reps and -n must be at least 1".into(),
        ));
    }
    let needs_draft = modes.iter().any(Mode::needs_draft_model);
    if needs_draft && config.draft.is_none() {
        let names: Vec<String> = modes
            .iter()
            .filter(|m| m.needs_draft_model())
            .map(Mode::name)
            .collect();
        return Err(BenchError::Config(format!(
            "modes {} need a drafter model (--draft)",
            names.join(", ")
        )));
    }
    if config.trimmed.is_none()
        && modes
            .iter()
            .any(|m| matches!(m, Mode::Spec(DraftKind::Trimmed, _)))
    {
        return Err(BenchError::Config(
            "trimmed modes need a VocabTrim drafter (--trimmed)".into(),
        ));
    }
    let has_peer = modes.iter().any(|m| matches!(m, Mode::Peer(_)));
    let peer = match (&config.peer_bin, has_peer) {
        (Some(dir), true) if PeerSetup::available(dir) => Some(PeerSetup {
            bin_dir: dir.clone(),
            target: config.target.clone(),
            draft: config.draft.clone(),
            threads: config.threads,
            ctx_size: config.ctx_size,
        }),
        (_, true) => {
            return Err(BenchError::Config(
                "llama.cpp peer modes need the peer tools: run benches/build-peer.sh (or drop the llama-* modes)".into(),
            ))
        }
        _ => None,
    };

    let model = Model::load(&config.target, &ModelParams::default())?;
    let draft_model = match (&config.draft, needs_draft) {
        (Some(p), true) => Some(Model::load(p, &ModelParams::default())?),
        _ => None,
    };
    let ctx_params = ContextParams {
        n_ctx: config.ctx_size,
        n_batch: 512,
        n_threads: config.threads,
        n_threads_batch: config.threads,
    };
    let mut runners: Vec<Runner> = modes
        .iter()
        .map(|m| {
            make_runner(
                m,
                &model,
                draft_model.as_ref(),
                config.trimmed.as_deref(),
                &ctx_params,
            )
        })
        .collect::<Result<_, _>>()?;

    let runs_path = config.out_dir.join("runs.jsonl");
    let io_err = |source| BenchError::Io {
        path: runs_path.clone(),
        source,
    };
    std::fs::create_dir_all(&config.out_dir).map_err(io_err)?;
    let mut runs_file = File::create(&runs_path).map_err(io_err)?;

    // Prompts as token ids and as formatted text for the peers.
    let prepared: Vec<Vec<(Vec<Token>, String)>> = config
        .sets
        .iter()
        .map(|set| {
            set.prompts
                .iter()
                .map(|p| {
                    let text = if config.chat {
                        model
                            .apply_chat_template(&[crate::engine::ChatMessage::user(p.as_str())])?
                    } else {
                        p.clone()
                    };
                    Ok((prompt_tokens(&model, p, config.chat)?, text))
                })
                .collect::<Result<Vec<_>, EngineError>>()
        })
        .collect::<Result<_, _>>()?;
    let params = GenerateParams::greedy(config.max_tokens);

    // Warm-up: one untimed generation per mode.
    if let Some((tokens, text)) = prepared.iter().flatten().next() {
        for runner in runners.iter_mut() {
            measure(
                runner,
                peer.as_ref(),
                tokens,
                text,
                &GenerateParams::greedy(config.max_tokens.min(16)),
            )?;
        }
    }

    let total = config.reps * prepared.iter().map(Vec::len).sum::<usize>() * modes.len();
    let mut records = Vec::with_capacity(total);
    let mut reference: Vec<Vec<Option<Vec<Token>>>> =
        prepared.iter().map(|s| vec![None; s.len()]).collect();
    for rep in 0..config.reps {
        for (si, set) in prepared.iter().enumerate() {
            for (pi, (tokens, text)) in set.iter().enumerate() {
                // Rotate the order so no mode always runs first (drift hits
                // all alike); the target goes first while its reference
                // output for this prompt is still missing.
                let target_index = modes.iter().position(|m| *m == Mode::Target).unwrap_or(0);
                let first_time = reference[si][pi].is_none();
                for k in 0..modes.len() {
                    let mi = if first_time {
                        (target_index + k) % modes.len()
                    } else {
                        (k + rep + pi) % modes.len()
                    };
                    let (mut record, generated) =
                        measure(&mut runners[mi], peer.as_ref(), tokens, text, &params)?;
                    if let (Mode::Target, Some(g)) = (modes[mi], &generated) {
                        reference[si][pi].get_or_insert_with(|| g.clone());
                    }
                    record.set = config.sets[si].name.clone();
                    record.prompt = pi;
                    record.rep = rep;
                    record.mode = modes[mi].name();
                    record.identical = generated
                        .as_ref()
                        .map(|g| Some(g) == reference[si][pi].as_ref());
                    let line = serde_json::to_string(&record).unwrap_or_default();
                    writeln!(runs_file, "{line}")
                        .and_then(|()| runs_file.flush())
                        .map_err(io_err)?;
                    progress(records.len() + 1, total, &record);
                    records.push(record);
                }
            }
        }
    }
    Ok(records)
}

fn make_runner(
    mode: &Mode,
    model: &Arc<Model>,
    draft_model: Option<&Arc<Model>>,
    trimmed: Option<&std::path::Path>,
    ctx_params: &ContextParams,
) -> Result<Runner, BenchError> {
    let greedy = crate::sampling::SamplingParams::greedy();
    let drafter_ctx = ContextParams {
        n_ctx: ctx_params.n_ctx + 1,
        ..ctx_params.clone()
    };
    Ok(match mode {
        Mode::Target => Runner::Target(Context::new(model.clone(), ctx_params)?),
        Mode::Peer(p) => Runner::Peer(*p),
        Mode::Spec(kind, length) => {
            let lookup = LookupDrafter::default();
            let model_drafter = || -> Result<ModelDrafter, BenchError> {
                let m = draft_model
                    .ok_or_else(|| BenchError::Config("drafter model missing".into()))?;
                Ok(ModelDrafter::new(m.clone(), &drafter_ctx, greedy)?)
            };
            let mut vocab_model = if *kind == DraftKind::Lookup {
                None
            } else {
                draft_model.cloned()
            };
            let drafter: Box<dyn Drafter> = match kind {
                DraftKind::Lookup => Box::new(lookup),
                DraftKind::Model => Box::new(model_drafter()?),
                DraftKind::Hybrid => Box::new(HybridDrafter::new(lookup, model_drafter()?, 3)),
                DraftKind::Trimmed => {
                    let path =
                        trimmed.ok_or_else(|| BenchError::Config("--trimmed missing".into()))?;
                    let src = TrimmedSource::open(path, None, &ModelParams::default())
                        .map_err(|e| BenchError::Config(e.to_string()))?;
                    vocab_model = Some(src.vocab.clone());
                    Box::new(ModelDrafter::trimmed(src, &drafter_ctx, greedy)?)
                }
            };
            let config = PolicyConfig {
                length: *length,
                p_min: None,
            };
            let target = Context::new(model.clone(), ctx_params)?;
            Runner::Spec(Box::new(Speculator::new(
                target,
                Some(drafter),
                vocab_model.as_deref(),
                config,
            )?))
        }
    })
}

/// One generation; returns the record (set/prompt/rep/mode filled by the caller)
/// and, for edgespec modes, the generated tokens.
fn measure(
    runner: &mut Runner,
    peer: Option<&PeerSetup>,
    tokens: &[Token],
    text: &str,
    params: &GenerateParams,
) -> Result<(RunRecord, Option<Vec<Token>>), BenchError> {
    let mut record = RunRecord {
        set: String::new(),
        prompt: 0,
        rep: 0,
        mode: String::new(),
        tokens: 0,
        decode_tok_s: 0.0,
        decode_s: 0.0,
        prompt_tok_s: None,
        ttft_ms: None,
        drafted: None,
        accepted: None,
        target_calls: None,
        c_time: None,
        c_bytes: None,
        mbsu: None,
        identical: None,
    };
    let generated = match runner {
        Runner::Target(ctx) => {
            let g = generate_target_only(ctx, tokens, params, |_, _| true)?;
            fill_generation(&mut record, &g.stats);
            Some(g.tokens)
        }
        Runner::Spec(s) => {
            let r = s.generate(tokens, params, |_, _| true)?;
            fill_generation(&mut record, &r.generation.stats);
            let n = r.generation.stats.generated_tokens;
            record.drafted = Some(r.spec.drafted);
            record.accepted = Some(r.spec.accepted);
            record.target_calls = Some(r.spec.target_calls);
            record.c_time = Some(r.spec.c_time);
            record.c_bytes = Some(r.spec.c_bytes);
            record.mbsu = Some(r.spec.mbsu(n));
            Some(r.generation.tokens)
        }
        Runner::Peer(mode) => {
            let peer = peer.ok_or_else(|| BenchError::Config("peer tools missing".into()))?;
            let p = peer.run(*mode, text, params.max_tokens)?;
            record.tokens = p.tokens;
            record.decode_tok_s = p.decode_tok_s;
            record.decode_s = if p.decode_tok_s > 0.0 {
                p.tokens.saturating_sub(1) as f64 / p.decode_tok_s
            } else {
                0.0
            };
            record.drafted = p.drafted;
            record.accepted = p.accepted;
            None
        }
    };
    Ok((record, generated))
}

fn fill_generation(record: &mut RunRecord, stats: &crate::metrics::GenerationStats) {
    record.tokens = stats.generated_tokens;
    record.decode_tok_s = stats.decode_tok_per_s();
    record.decode_s = stats.decode_time.as_secs_f64();
    record.prompt_tok_s = Some(stats.prompt_tok_per_s());
    record.ttft_ms = Some(stats.time_to_first_token.as_secs_f64() * 1e3);
}
