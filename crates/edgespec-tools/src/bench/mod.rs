//! `edgespec bench`: modes × prompt sets, side by side in one run on one
//! machine, with warm-up, repetitions in interleaved order, medians with
//! spread, speed-ups against target-only from the same repetition, and the
//! llama.cpp peer tools on the same prompts.

mod charts;
mod mode;
mod peer;
mod prompts;
mod report;
mod roofline;
mod stats;
mod sweep;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

pub use charts::write_charts;
pub use mode::{Mode, ModeError};
pub use peer::{parse_peer_log, PeerError, PeerMode, PeerRun, PeerSetup};
pub use prompts::{load_prompts, parse_prompts, Prompt, PromptError};
pub use report::{summarize, BenchReport, MachineInfo, ModeSummary, Roofline};
pub use roofline::{peak_rss_bytes, read_bandwidth_passes, reset_peak_rss, Bandwidth};
pub use stats::Spread;
pub use sweep::{Sweep, SweepError};

use crate::trace::{record_trace, write_trace};
use edgespec::draft::{DraftLength, DraftModel, Drafter, ModelDrafter, TrimmedSource, MAX_DRAFT};
use edgespec::ead::{EadConfig, DEFAULT_SPEC_GAMMA};
use edgespec::engine::rpc::RemoteTarget;
use edgespec::engine::{Context, ContextParams, EngineError, Model, ModelParams, Sequence, Token};
use edgespec::error::GenerateError;
use edgespec::generate::GenerateParams;
use edgespec::gguf::{GgufFile, ModelSummary};
use edgespec::{DraftKind, PolicyConfig, Session, SessionConfig};

/// A named list of prompts.
#[derive(Debug, Clone)]
pub struct PromptSet {
    /// Name in the report (`code`, `chat`, a file stem).
    pub name: String,
    /// The prompts.
    pub prompts: Vec<Prompt>,
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
    /// VocabTrim drafters by K (`trimmed@K` modes).
    pub trimmed_k: Vec<(u32, PathBuf)>,
    /// Window and dwell of the EAD modes (their threshold is in the mode).
    pub ead: EadConfig,
    /// Prompt sets.
    pub sets: Vec<PromptSet>,
    /// Modes; `target` is added first if missing (speed-ups need it).
    pub modes: Vec<Mode>,
    /// Timed repetitions.
    pub reps: usize,
    /// Most tokens per generation.
    pub max_tokens: usize,
    /// Thread counts: every mode runs at each (a threads sweep when more than one).
    pub threads: Vec<i32>,
    /// Context size.
    pub ctx_size: u32,
    /// Apply the chat template to prompts.
    pub chat: bool,
    /// Folder of the llama.cpp peer tools, when built.
    pub peer_bin: Option<PathBuf>,
    /// Run the target on ggml RPC servers (drafters stay local).
    pub remote: Option<RemoteTarget>,
    /// The servers llama.cpp's peer modes use with a remote target (their
    /// `--rpc`; not edgespec's, which its own runs keep busy).
    pub peer_rpc: Option<String>,
    /// Where runs.jsonl is streamed (every run as it finishes).
    pub out_dir: PathBuf,
    /// Replace a runs.jsonl that holds earlier runs (else refuse).
    pub force: bool,
}

impl BenchConfig {
    /// How the target loads: on its RPC servers when it has them.
    fn target_params(&self) -> ModelParams {
        ModelParams {
            remote: self.remote.clone(),
            ..ModelParams::default()
        }
    }
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
    /// Threads the run used (0: not recorded, older files).
    #[serde(default)]
    pub threads: i32,
    /// Tokens generated.
    pub tokens: usize,
    /// Decode tokens per second.
    pub decode_tok_s: f64,
    /// Decode seconds (tokens after the first ÷ rate).
    pub decode_s: f64,
    /// Prompt tokens per second (edgespec modes).
    pub prompt_tok_s: Option<f64>,
    /// Time to first token in ms (edgespec modes; llama.cpp's tools: their
    /// prompt reading, where they print it).
    pub ttft_ms: Option<f64>,
    /// Whole request in seconds: the first token, then the decode (absent
    /// where the time to first token is unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_s: Option<f64>,
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
    /// Seconds drafting, catch-up included (speculative modes).
    #[serde(default)]
    pub draft_s: Option<f64>,
    /// Network round trips to a remote target (`--target-rpc` runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub round_trips: Option<u64>,
    /// Bytes the remote target's servers sent back (`--target-rpc` runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_bytes: Option<u64>,
    /// Seconds in target verification passes (speculative modes).
    #[serde(default)]
    pub verify_s: Option<f64>,
    /// Tokens generated by the large model (EAD modes).
    #[serde(default)]
    pub large_tokens: Option<usize>,
    /// Model switches (EAD modes).
    #[serde(default)]
    pub switches: Option<usize>,
    /// EAD modes: decode passes of the small and the large model, count by
    /// batch size (`edgespec replay --runs` prices them under a profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ead_batches: Option<[BTreeMap<usize, usize>; 2]>,
    /// Speculative modes: the rounds of each draft source (`lookup`,
    /// `memory`, `recycled`, `model`) that drafted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sources: BTreeMap<String, SourceRecord>,
    /// Peak resident memory of the run's own process, bytes (llama.cpp's
    /// tools, a process a run; edgespec's modes share the bench's process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
}

/// What the rounds of one draft source did in a run (or summed over runs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct SourceRecord {
    /// Rounds with a draft from the source.
    pub rounds: usize,
    /// Tokens drafted.
    pub drafted: usize,
    /// Drafted tokens accepted.
    pub accepted: usize,
    /// Seconds in the verification passes of these rounds.
    pub verify_s: f64,
}

impl SourceRecord {
    /// Adds `other`'s counts.
    pub fn add(&mut self, other: &SourceRecord) {
        self.rounds += other.rounds;
        self.drafted += other.drafted;
        self.accepted += other.accepted;
        self.verify_s += other.verify_s;
    }
}

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Model or context trouble.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Session setup or generation trouble.
    #[error(transparent)]
    Generate(#[from] GenerateError),
    /// A peer tool failed.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// Bad configuration.
    #[error("{0}")]
    Config(String),
    /// The output folder holds earlier runs and replacing them was not asked for.
    #[error("{} holds earlier runs: report them with --from-runs {}, or replace them with --force", .0.display(), .0.display())]
    ExistingRuns(PathBuf),
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
    /// An edgespec session (`small`: the drafter model as the target).
    Session(Box<Session>),
    /// A llama.cpp tool at a thread count.
    Peer(PeerMode, i32),
}

/// Records a trace of every prompt of every set (see
/// [`crate::trace`]): the target's greedy output and what the drafter
/// (`model`) and the VocabTrim drafter (`trimmed`), when configured, would
/// draft from every position, up to `max_draft` tokens. One file per set,
/// `<out>/traces/<set>.jsonl`, written as it goes; `progress(set, prompt)`
/// after each prompt.
pub fn record_traces(
    config: &BenchConfig,
    max_draft: usize,
    mut progress: impl FnMut(&str, usize),
) -> Result<PathBuf, BenchError> {
    let threads = config.threads.first().copied().unwrap_or(1);
    let ctx_params = ContextParams {
        n_ctx: config.ctx_size,
        n_batch: 512,
        n_threads: threads,
        n_threads_batch: threads,
        ..ContextParams::default()
    };
    let drafter_ctx = ContextParams {
        n_ctx: config.ctx_size + MAX_DRAFT as u32 + 1,
        ..ctx_params.clone()
    };
    let greedy = edgespec::sampling::SamplingParams::greedy();
    let model = Model::load(&config.target, &config.target_params())?;
    let mut target = Sequence::new(Context::new(model.clone(), &ctx_params)?);
    let file_name = |p: &std::path::Path| {
        p.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    };
    let mut drafters: Vec<(String, String, Box<dyn Drafter>)> = Vec::new();
    if let Some(path) = &config.draft {
        let m = Model::load(path, &ModelParams::default())?;
        let d = ModelDrafter::new(m, &drafter_ctx, greedy)?;
        drafters.push(("model".into(), file_name(path), Box::new(d)));
    }
    if let Some(path) = &config.trimmed {
        let src = TrimmedSource::open(path, None, &ModelParams::default())
            .map_err(|e| BenchError::Config(e.to_string()))?;
        let d = ModelDrafter::trimmed(Arc::new(src), &drafter_ctx, greedy)?;
        drafters.push(("trimmed".into(), file_name(path), Box::new(d)));
    }
    let dir = config.out_dir.join("traces");
    let io_err = |path: &std::path::Path| {
        let path = path.to_owned();
        move |source| BenchError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    for set in &config.sets {
        let path = dir.join(format!("{}.jsonl", set.name));
        let mut file = File::create(&path).map_err(io_err(&path))?;
        for (i, p) in set.prompts.iter().enumerate() {
            let (prompt, _) = p.format(&model, config.chat)?;
            let mut refs: Vec<(String, String, &mut dyn Drafter)> = drafters
                .iter_mut()
                .map(|(kind, file, d)| (kind.clone(), file.clone(), &mut **d as &mut dyn Drafter))
                .collect();
            let mut trace = record_trace(
                &mut target,
                &mut refs,
                &prompt,
                config.max_tokens,
                max_draft,
            )
            .map_err(|e| BenchError::Config(format!("recording a trace: {e}")))?;
            trace.set.clone_from(&set.name);
            trace.prompt_index = i;
            write_trace(&mut file, &trace).map_err(io_err(&path))?;
            progress(&set.name, i);
        }
    }
    Ok(dir)
}

/// One line of `runs.jsonl`: the machine (first), then one per run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum RunsLine {
    /// The machine the runs were measured on.
    Machine {
        /// Its description.
        machine: MachineInfo,
    },
    /// One measured generation.
    Run(Box<RunRecord>),
}

/// What a `runs.jsonl` holds.
#[derive(Debug, Clone)]
pub struct Runs {
    /// The machine they were measured on (absent in files written before
    /// it was recorded).
    pub machine: Option<MachineInfo>,
    /// The runs in order.
    pub runs: Vec<RunRecord>,
}

/// Reads the runs a benchmark streamed to `runs.jsonl` (also from an
/// interrupted run: a torn last line is skipped with a warning); any other
/// malformed line is an error naming it.
pub fn load_runs(path: &std::path::Path) -> Result<Runs, BenchError> {
    let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
        path: path.to_owned(),
        source,
    })?;
    let lines: Vec<RunsLine> =
        crate::jsonl::parse(&text, &path.display().to_string()).map_err(|bad| {
            BenchError::Config(format!(
                "{}:{}: not a run record: {}",
                path.display(),
                bad.line,
                bad.reason
            ))
        })?;
    let mut runs = Runs {
        machine: None,
        runs: Vec::with_capacity(lines.len()),
    };
    for line in lines {
        match line {
            RunsLine::Machine { machine } => runs.machine = Some(machine),
            RunsLine::Run(run) => runs.runs.push(*run),
        }
    }
    Ok(runs)
}

/// Where a benchmark into `out_dir` streams its runs; an error when that
/// file holds earlier runs and `force` was not given (they are never
/// replaced silently).
pub fn check_out_dir(out_dir: &Path, force: bool) -> Result<PathBuf, BenchError> {
    let runs_path = out_dir.join("runs.jsonl");
    if !force && std::fs::metadata(&runs_path).is_ok_and(|m| m.len() > 0) {
        return Err(BenchError::ExistingRuns(runs_path));
    }
    Ok(runs_path)
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
    let runs_path = check_out_dir(&config.out_dir, config.force)?;
    if config.reps == 0 || config.max_tokens == 0 {
        return Err(BenchError::Config(
            "--reps and -n must be at least 1".into(),
        ));
    }
    if config.threads.is_empty() || config.threads.iter().any(|&t| t < 1) {
        return Err(BenchError::Config(format!(
            "thread counts must be at least 1 (got {:?})",
            config.threads
        )));
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
    if let Some(Mode::TrimmedK(k, _)) = modes.iter().find(
        |m| matches!(m, Mode::TrimmedK(k, _) if !config.trimmed_k.iter().any(|(kk, _)| kk == k)),
    ) {
        return Err(BenchError::Config(format!(
            "mode trimmed@{k} has no drafter trimmed to K = {k} (use --sweep k=… with --counts)"
        )));
    }
    if config.trimmed.is_none()
        && modes
            .iter()
            .any(|m| matches!(m, Mode::Spec(DraftKind::Trimmed, ..)))
    {
        return Err(BenchError::Config(
            "trimmed modes need a VocabTrim drafter (--trimmed)".into(),
        ));
    }
    let has_peer = modes.iter().any(|m| matches!(m, Mode::Peer(_)));
    if has_peer && config.remote.is_some() && config.peer_rpc.is_none() {
        return Err(BenchError::Config(
            "llama.cpp peer modes with --target-rpc need servers of their own (--peer-rpc): \
             a ggml server serves one client at a time"
                .into(),
        ));
    }
    let peer = match (&config.peer_bin, has_peer) {
        (Some(dir), true) if PeerSetup::available(dir) => Some(PeerSetup {
            bin_dir: dir.clone(),
            target: config.target.clone(),
            draft: config.draft.clone(),
            ctx_size: config.ctx_size,
            rpc: config.peer_rpc.clone(),
        }),
        (_, true) => {
            return Err(BenchError::Config(
                "llama.cpp peer modes need the peer tools: run benches/build-peer.sh (or drop the llama-* modes)".into(),
            ))
        }
        _ => None,
    };

    let model = Model::load(&config.target, &config.target_params())?;
    let drafters = Drafters::open(config, &modes)?;
    // Columns: every mode at every thread count.
    let columns: Vec<(Mode, i32)> = config
        .threads
        .iter()
        .flat_map(|&t| modes.iter().map(move |&m| (m, t)))
        .collect();
    let mut runners: Vec<Runner> = columns
        .iter()
        .map(|&(m, t)| {
            let ctx_params = ContextParams {
                n_ctx: config.ctx_size,
                n_batch: 512,
                n_threads: t,
                n_threads_batch: t,
                ..ContextParams::default()
            };
            make_runner(&m, &model, &drafters, config, &ctx_params)
        })
        .collect::<Result<_, _>>()?;

    let io_err = |source| BenchError::Io {
        path: runs_path.clone(),
        source,
    };
    std::fs::create_dir_all(&config.out_dir).map_err(io_err)?;
    let mut runs_file = File::create(&runs_path).map_err(io_err)?;
    // The first line names the machine, so a report rebuilt elsewhere
    // (`--from-runs`) still says where the runs were measured.
    let machine = RunsLine::Machine {
        machine: MachineInfo::detect(config.threads.clone()),
    };
    let line = serde_json::to_string(&machine).unwrap_or_default();
    writeln!(runs_file, "{line}").map_err(io_err)?;

    // Prompts as token ids and as formatted text for the peers.
    let prepared: Vec<Vec<(Vec<Token>, String)>> = config
        .sets
        .iter()
        .map(|set| {
            set.prompts
                .iter()
                .map(|p| p.format(&model, config.chat))
                .collect::<Result<Vec<_>, EngineError>>()
        })
        .collect::<Result<_, _>>()?;
    let params = GenerateParams::greedy(config.max_tokens);

    // Warm-up: one untimed generation per column.
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

    let total = config
        .reps
        .saturating_mul(prepared.iter().map(Vec::len).sum::<usize>())
        .saturating_mul(columns.len());
    // Reserved for a modest run only: --reps is the user's to choose.
    let mut records = Vec::with_capacity(total.min(1 << 16));
    // Target-only output per (set, prompt, threads): what `identical` compares to.
    let mut reference: BTreeMap<(usize, usize, i32), Vec<Token>> = BTreeMap::new();
    let n = columns.len();
    for rep in 0..config.reps {
        for (si, set) in prepared.iter().enumerate() {
            // Each repetition of a set starts with no memory of earlier
            // outputs (a prompt never drafts from its own earlier answer):
            // a fresh process serving the set in order.
            for runner in runners.iter_mut() {
                if let Runner::Session(session) = runner {
                    session.forget_outputs();
                }
            }
            for (pi, (tokens, text)) in set.iter().enumerate() {
                // Rotate the order so no column always runs first (drift hits
                // all alike); on the first repetition the target columns go
                // first, so their reference output exists for the others.
                let order: Vec<usize> = if rep == 0 {
                    let (targets, others): (Vec<usize>, Vec<usize>) =
                        (0..n).partition(|&c| columns[c].0 == Mode::Target);
                    targets.into_iter().chain(others).collect()
                } else {
                    (0..n).map(|k| (k + rep + pi) % n).collect()
                };
                for ci in order {
                    let (mode, threads) = columns[ci];
                    let (mut record, generated) =
                        measure(&mut runners[ci], peer.as_ref(), tokens, text, &params)?;
                    let key = (si, pi, threads);
                    if let (Mode::Target, Some(g)) = (mode, &generated) {
                        reference.entry(key).or_insert_with(|| g.clone());
                    }
                    record.set = config.sets[si].name.clone();
                    record.prompt = pi;
                    record.rep = rep;
                    record.mode = mode.name();
                    record.threads = threads;
                    record.identical = generated.as_ref().map(|g| Some(g) == reference.get(&key));
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

/// The drafters a benchmark's modes draw on, each opened once.
struct Drafters {
    model: Option<DraftModel>,
    trimmed: Option<DraftModel>,
    trimmed_k: Vec<(u32, DraftModel)>,
}

impl Drafters {
    fn open(config: &BenchConfig, modes: &[Mode]) -> Result<Self, BenchError> {
        let open = |path: &std::path::Path| {
            DraftModel::open(path, None, &ModelParams::default())
                .map_err(|e| BenchError::Config(format!("{}: {e}", path.display())))
        };
        let wanted = |kind| {
            modes
                .iter()
                .any(|m| matches!(m, Mode::Spec(k, ..) if *k == kind))
        };
        Ok(Self {
            model: match &config.draft {
                Some(p) if modes.iter().any(Mode::needs_draft_model) => Some(open(p)?),
                _ => None,
            },
            trimmed: match &config.trimmed {
                Some(p) if wanted(DraftKind::Trimmed) => Some(open(p)?),
                _ => None,
            },
            trimmed_k: config
                .trimmed_k
                .iter()
                .filter(|(k, _)| {
                    modes
                        .iter()
                        .any(|m| matches!(m, Mode::TrimmedK(kk, _) if kk == k))
                })
                .map(|(k, p)| Ok((*k, open(p)?)))
                .collect::<Result<_, BenchError>>()?,
        })
    }
}

/// The session behind one column.
fn make_runner(
    mode: &Mode,
    model: &Arc<Model>,
    drafters: &Drafters,
    config: &BenchConfig,
    context: &ContextParams,
) -> Result<Runner, BenchError> {
    let missing = |what: &str| BenchError::Config(format!("{what} missing"));
    let drafter = || {
        drafters
            .model
            .clone()
            .ok_or_else(|| missing("drafter model"))
    };
    let base = SessionConfig::new(model.clone(), context.clone());
    let session = match mode {
        Mode::Peer(p) => return Ok(Runner::Peer(*p, context.n_threads)),
        Mode::Target => base,
        Mode::Small => match drafter()? {
            DraftModel::Full(m) => SessionConfig::new(m, context.clone()),
            DraftModel::Trimmed(_) => {
                return Err(BenchError::Config(
                    "small needs a full drafter model".into(),
                ))
            }
        },
        Mode::Ead {
            threshold_bits,
            share,
            spec,
        } => SessionConfig {
            ead: EadConfig {
                threshold_bits: *threshold_bits,
                large_share: *share,
                ..config.ead
            },
            policy: PolicyConfig {
                length: DraftLength::Auto {
                    max: DEFAULT_SPEC_GAMMA,
                },
                ..PolicyConfig::default()
            },
            ..base.with_drafter(
                if *spec {
                    DraftKind::EadSpec
                } else {
                    DraftKind::Ead
                },
                Some(drafter()?),
            )
        },
        Mode::Spec(kind, length, trees) => {
            let model = match kind {
                DraftKind::Lookup => None,
                DraftKind::Trimmed => Some(
                    drafters
                        .trimmed
                        .clone()
                        .ok_or_else(|| missing("trimmed drafter"))?,
                ),
                _ => Some(drafter()?),
            };
            SessionConfig {
                policy: PolicyConfig {
                    length: *length,
                    trees: *trees,
                    ..PolicyConfig::default()
                },
                ..base.with_drafter(*kind, model)
            }
        }
        Mode::TrimmedK(k, length) => {
            let model = drafters
                .trimmed_k
                .iter()
                .find(|(kk, _)| kk == k)
                .map(|(_, m)| m.clone())
                .ok_or_else(|| missing("trimmed drafter"))?;
            SessionConfig {
                policy: PolicyConfig {
                    length: *length,
                    ..PolicyConfig::default()
                },
                ..base.with_drafter(DraftKind::Trimmed, Some(model))
            }
        }
    };
    Ok(Runner::Session(Box::new(Session::new(session)?)))
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
        threads: 0,
        tokens: 0,
        decode_tok_s: 0.0,
        decode_s: 0.0,
        prompt_tok_s: None,
        ttft_ms: None,
        request_s: None,
        drafted: None,
        accepted: None,
        target_calls: None,
        c_time: None,
        c_bytes: None,
        mbsu: None,
        identical: None,
        draft_s: None,
        round_trips: None,
        remote_bytes: None,
        verify_s: None,
        large_tokens: None,
        switches: None,
        ead_batches: None,
        sources: BTreeMap::new(),
        peak_rss_bytes: None,
    };
    let generated = match runner {
        Runner::Session(session) => {
            let r = session.generate(tokens, params.max_tokens, |_, _| true)?;
            let n = r.generation.stats.generated_tokens;
            fill_generation(&mut record, &r.generation.stats);
            if let Some(s) = &r.speculation {
                record.drafted = Some(s.drafted);
                record.accepted = Some(s.accepted);
                record.target_calls = Some(s.target_calls);
                record.c_time = Some(s.c_time);
                record.c_bytes = Some(s.c_bytes);
                record.mbsu = Some(s.mbsu(n));
                record.draft_s = Some(s.draft_time.as_secs_f64());
                record.verify_s = Some(s.verify_time.as_secs_f64());
                for (name, source) in s.sources() {
                    if source.rounds > 0 {
                        record.sources.insert(
                            name.into(),
                            SourceRecord {
                                rounds: source.rounds,
                                drafted: source.drafted,
                                accepted: source.accepted,
                                verify_s: source.verify_time.as_secs_f64(),
                            },
                        );
                    }
                }
            }
            if let Some(e) = &r.ead {
                record.large_tokens = Some(e.large_tokens);
                record.switches = Some(e.switches);
                record.ead_batches = Some([e.small_batches.clone(), e.large_batches.clone()]);
                if e.drafted > 0 {
                    record.drafted = Some(e.drafted);
                    record.accepted = Some(e.accepted);
                }
                record.draft_s = Some(e.small_time.as_secs_f64());
                record.verify_s = Some(e.large_time.as_secs_f64());
            }
            Some(r.generation.tokens)
        }
        Runner::Peer(mode, threads) => {
            let peer = peer.ok_or_else(|| BenchError::Config("peer tools missing".into()))?;
            let p = peer.run(*mode, text, params.max_tokens, *threads)?;
            record.tokens = p.tokens;
            record.decode_tok_s = p.decode_tok_s;
            record.decode_s = if p.decode_tok_s > 0.0 {
                p.tokens.saturating_sub(1) as f64 / p.decode_tok_s
            } else {
                0.0
            };
            record.drafted = p.drafted;
            record.accepted = p.accepted;
            record.ttft_ms = p.prompt_ms;
            record.request_s = p.prompt_ms.map(|ms| ms / 1e3 + record.decode_s);
            record.peak_rss_bytes = p.peak_rss_bytes;
            None
        }
    };
    Ok((record, generated))
}

/// The largest peak resident memory of each llama.cpp mode's runs.
fn peer_peak_rss(runs: &[RunRecord]) -> BTreeMap<String, u64> {
    let mut peaks = BTreeMap::new();
    for r in runs {
        if let Some(bytes) = r.peak_rss_bytes {
            let peak = peaks.entry(r.mode.clone()).or_insert(0);
            *peak = bytes.max(*peak);
        }
    }
    peaks
}

fn fill_generation(record: &mut RunRecord, stats: &edgespec::metrics::GenerationStats) {
    record.tokens = stats.generated_tokens;
    record.decode_tok_s = stats.decode_tok_per_s();
    record.decode_s = stats.decode_time.as_secs_f64();
    record.prompt_tok_s = Some(stats.prompt_tok_per_s());
    record.ttft_ms = Some(stats.time_to_first_token.as_secs_f64() * 1e3);
    record.request_s =
        Some(stats.time_to_first_token.as_secs_f64() + stats.decode_time.as_secs_f64());
    record.round_trips = (stats.round_trips > 0).then_some(stats.round_trips);
    record.remote_bytes = (stats.round_trips > 0).then_some(stats.remote_bytes);
}

/// What a report is assembled from besides the runs.
pub struct ReportInputs<'a> {
    /// The target model file.
    pub target: &'a Path,
    /// The drafter model file.
    pub draft: Option<&'a Path>,
    /// The VocabTrim drafter file.
    pub trimmed: Option<&'a Path>,
    /// The command line.
    pub command: String,
    /// The bandwidth probe's passes.
    pub bandwidth: Option<Bandwidth>,
    /// The peak resident memory of this process while the runs ran (none:
    /// they were read from a file).
    pub runs_peak_rss_bytes: Option<u64>,
    /// The machine the runs were measured on.
    pub machine: MachineInfo,
}

/// Assembles the report of `runs` (roofline, summaries, charts, file
/// hashes) and writes report.json, report.md and the charts to `out`.
pub fn write_report(
    inputs: &ReportInputs<'_>,
    runs: Vec<RunRecord>,
    out: &Path,
) -> Result<BenchReport, BenchError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| BenchError::Io { path, source }
    };
    let bandwidth_best = inputs.bandwidth.map_or(0.0, |b| b.best);
    let target_bytes = GgufFile::open(inputs.target)
        .and_then(|f| ModelSummary::of(&f))
        .map_err(|e| BenchError::Config(format!("{}: {e}", inputs.target.display())))?
        .bytes_per_token;
    let mapped: u64 = [Some(inputs.target), inputs.draft, inputs.trimmed]
        .into_iter()
        .flatten()
        .filter_map(|p| std::fs::metadata(p).ok().map(|m| m.len()))
        .sum();
    let roofline = Roofline {
        bandwidth_bytes_s: bandwidth_best,
        bandwidth: inputs.bandwidth,
        target_bytes_per_token: target_bytes,
        target_only_bound_tok_s: bandwidth_best / target_bytes.max(1) as f64,
        peak_rss_bytes: inputs.runs_peak_rss_bytes,
        mapped_model_bytes: mapped,
        peer_peak_rss_bytes: peer_peak_rss(&runs),
    };
    let describe = |p: &Path| -> Result<(String, String), BenchError> {
        Ok((
            p.file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
            sha256(p).map_err(io_err(p))?,
        ))
    };
    std::fs::create_dir_all(out).map_err(io_err(out))?;
    let summaries = summarize(&runs);
    let charts = write_charts(&summaries, out)
        .map_err(|e| BenchError::Config(format!("writing charts to {}: {e}", out.display())))?
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let report = BenchReport {
        machine: inputs.machine.clone(),
        command: inputs.command.clone(),
        target: describe(inputs.target)?,
        draft: inputs.draft.map(describe).transpose()?,
        roofline,
        summaries,
        charts,
        runs,
    };
    let json = out.join("report.json");
    let json_text = serde_json::to_string_pretty(&report).unwrap_or_default();
    crate::scratch::write_atomically(&json, json_text.as_bytes()).map_err(io_err(&json))?;
    let md = out.join("report.md");
    crate::scratch::write_atomically(&md, report.to_markdown().as_bytes()).map_err(io_err(&md))?;
    Ok(report)
}

/// The sha256 of a file, hex.
fn sha256(path: &Path) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}
