//! `edgespec generate`: target-only or speculative generation streamed to stdout.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};

use edgespec::draft::{
    DraftLength, DraftModel, Drafter, LookupDrafter, ModelDrafter, DEFAULT_HYBRID_MIN_NGRAM,
};
use edgespec::ead::{EadConfig, EadStats};
use edgespec::engine::{Context, ContextParams, Model, ModelParams, Sequence};
use edgespec::generate::{prompt_tokens, Generation};
use edgespec::metrics::SpecStats;
use edgespec::sampling::SamplingParams;
use edgespec::session::{DraftKind, Session, SessionConfig};
use edgespec_tools::trace::{record_trace, write_trace};

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

/// Arguments of `generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Target model (GGUF); the large model in EAD modes.
    #[arg(short, long, visible_alias = "large")]
    model: PathBuf,
    /// Generation mode.
    #[arg(long, value_enum, default_value = "spec")]
    mode: GenMode,
    /// EAD: switch to the large model when the small model's rolling mean
    /// entropy (bits) exceeds this; back below it.
    #[arg(long, default_value_t = EadConfig::default().threshold_bits)]
    ead_threshold: f64,
    /// EAD: entropy values in the rolling mean.
    #[arg(long, default_value_t = EadConfig::default().window)]
    ead_window: usize,
    /// EAD: tokens to generate after a switch before the next one.
    #[arg(long, default_value_t = EadConfig::default().min_dwell)]
    ead_dwell: usize,
    /// EAD: hold the large model's share of tokens at this fraction by
    /// moving the threshold (--ead-threshold is then only where it starts).
    #[arg(long)]
    ead_share: Option<f64>,
    /// EAD: never fall back to the large model alone when EAD runs slower
    /// than it (output then does not depend on timing).
    #[arg(long)]
    ead_no_fallback: bool,
    /// Prompt text.
    #[arg(short, long)]
    prompt: String,
    /// Wrap the prompt in the model's chat template as a user message.
    #[arg(long)]
    chat: bool,
    /// Most tokens to generate.
    #[arg(short = 'n', long, default_value_t = 128)]
    max_tokens: usize,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    temp: f32,
    /// Top-k (0: off).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Top-p (1: off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// RNG seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Never stop at end-of-generation tokens (fixed-length benchmark runs).
    #[arg(long)]
    ignore_eos: bool,
    /// Threads (default: all cores).
    #[arg(short, long)]
    threads: Option<i32>,
    /// Context size in tokens.
    #[arg(short = 'c', long, default_value_t = 4096)]
    ctx_size: u32,
    /// Keep weights in their file layout (no repacked kernels): batched and
    /// single-token passes then compute alike, so speculative output is
    /// token-identical to target-only on K-quant models (slower on some CPUs).
    #[arg(long)]
    no_repack: bool,
    /// Layers to offload to the GPU (CUDA builds).
    #[arg(long, default_value_t = 0)]
    gpu_layers: u32,
    /// Drafter model for speculative decoding (same vocabulary as the
    /// target); the small model in EAD modes.
    #[arg(short, long, visible_alias = "small")]
    draft: Option<PathBuf>,
    /// Drafter kind: model, lookup, hybrid or trimmed (default: model with
    /// --draft; the target alone without).
    #[arg(long)]
    draft_kind: Option<DraftKind>,
    /// Source drafter of a trimmed --draft (default: the path stored in it).
    #[arg(long)]
    draft_source: Option<PathBuf>,
    /// Draft length: a number (0..=64) or `auto` (cost-aware, chosen per round).
    #[arg(long, default_value = "auto")]
    gamma: Gamma,
    /// Longest draft `--gamma auto` considers.
    #[arg(long, default_value_t = 8)]
    gamma_max: usize,
    /// Stop drafting when the drafter's top probability falls below this.
    #[arg(long)]
    p_min: Option<f32>,
    /// Shortest n-gram prompt lookup matches (lookup drafter).
    #[arg(long, default_value_t = 2)]
    lookup_min_ngram: usize,
    /// Longest n-gram prompt lookup tries first.
    #[arg(long, default_value_t = 4)]
    lookup_max_ngram: usize,
    /// Shortest lookup match the hybrid drafter weighs against its model.
    #[arg(long, default_value_t = DEFAULT_HYBRID_MIN_NGRAM)]
    hybrid_min_ngram: usize,
    /// Only generate with the target (ignores --draft).
    #[arg(long)]
    target_only: bool,
    /// Print speculation metrics (α, τ, c, MBSU, per-phase times).
    #[arg(long)]
    stats: bool,
    /// Record a trace for `edgespec replay` instead of speculating: the
    /// target's greedy output and what the --draft model would draft from
    /// every position (up to --gamma-max tokens), appended to this file as
    /// one line (greedy only).
    #[arg(long)]
    trace: Option<PathBuf>,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let kind = match (args.mode, args.target_only, args.draft_kind, &args.draft) {
        (GenMode::Ead, _, _, _) => DraftKind::Ead,
        (GenMode::EadSpec, _, _, _) => DraftKind::EadSpec,
        (GenMode::Spec, true, _, _) => DraftKind::None,
        (GenMode::Spec, false, Some(kind), _) => kind,
        (GenMode::Spec, false, None, Some(_)) => DraftKind::Model,
        (GenMode::Spec, false, None, None) => DraftKind::None,
    };
    if kind.needs_model() && args.draft.is_none() {
        match kind {
            DraftKind::Ead | DraftKind::EadSpec => bail!("{kind} needs a small model (--small)"),
            _ => bail!("--draft-kind {kind} needs a drafter model (--draft)"),
        }
    }
    anyhow::ensure!(
        kind != DraftKind::None || args.trace.is_none(),
        "--trace records what a drafter offers: give --draft (or --draft-kind lookup)"
    );
    let model_params = ModelParams {
        gpu_layers: args.gpu_layers,
        repack: !args.no_repack,
        ..ModelParams::default()
    };
    let model = Model::load(&args.model, &model_params)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let drafter = match (&args.draft, kind.needs_model()) {
        (Some(path), true) => Some(
            DraftModel::open(path, args.draft_source.as_deref(), &model_params)
                .with_context(|| format!("loading drafter {}", path.display()))?,
        ),
        _ => None,
    };
    let mut context = ContextParams {
        n_ctx: args.ctx_size,
        ..ContextParams::default()
    };
    if let Some(t) = args.threads {
        context.n_threads = t;
        context.n_threads_batch = t;
    }
    let config = SessionConfig {
        lookup: LookupDrafter {
            min_ngram: args.lookup_min_ngram,
            max_ngram: args.lookup_max_ngram,
        },
        hybrid_min_ngram: args.hybrid_min_ngram,
        ead: EadConfig {
            threshold_bits: args.ead_threshold,
            window: args.ead_window,
            min_dwell: args.ead_dwell,
            large_share: args.ead_share,
            fallback: !args.ead_no_fallback,
        },
        length: match args.gamma {
            Gamma::Fixed(g) => DraftLength::Fixed(g),
            Gamma::Auto => DraftLength::Auto {
                max: args.gamma_max,
            },
        },
        p_min: args.p_min,
        sampling: SamplingParams {
            temperature: args.temp,
            top_k: args.top_k,
            top_p: args.top_p,
            seed: args.seed,
        },
        ignore_eos: args.ignore_eos,
        ..SessionConfig::new(model.clone(), context.clone()).with_drafter(kind, drafter)
    };
    let prompt = prompt_tokens(&model, &args.prompt, args.chat)?;
    if let Some(path) = &args.trace {
        return trace(&args, &config, &prompt, path);
    }
    let mut session = Session::new(config)?;
    let mut stdout = std::io::stdout().lock();
    let print = |_, text: &str| {
        // A closed stdout (e.g. `| head`) ends generation quietly.
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_ok()
    };
    session.target_mut().reset_llama_counters();
    let outcome = session.generate(&prompt, args.max_tokens, print)?;
    finish(
        &outcome.generation,
        outcome.speculation.as_ref().filter(|_| args.stats),
    );
    if let (true, Some(ead)) = (args.stats, &outcome.ead) {
        print_ead_stats(ead);
    }
    if kind == DraftKind::None {
        let (eval_ms, n_eval) = session.target().llama_eval_time();
        log::info!(
            "llama.cpp eval time: {eval_ms:.1} ms / {n_eval} runs ({:.2} tok/s by llama.cpp's own counter)",
            f64::from(n_eval) * 1e3 / eval_ms.max(1e-9)
        );
    }
    Ok(())
}

/// `--trace`: the target's greedy output and what the drafter would draft
/// from every position, appended to `path` as one line.
fn trace(
    args: &GenerateArgs,
    config: &SessionConfig,
    prompt: &[i32],
    path: &std::path::Path,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.sampling.is_greedy(),
        "--trace records greedy generations: drop --temp"
    );
    let drafter_context = ContextParams {
        n_ctx: config.context.n_ctx + 1,
        ..config.context.clone()
    };
    let mut model_drafter = match (&config.drafter, config.kind) {
        (Some(d), DraftKind::Model | DraftKind::Hybrid | DraftKind::Trimmed) => {
            Some(ModelDrafter::open(d, &drafter_context, config.sampling)?)
        }
        _ => None,
    };
    let name = if config.drafter.as_ref().is_some_and(DraftModel::is_trimmed) {
        "trimmed"
    } else {
        "model"
    };
    let drafter_file = args
        .draft
        .as_deref()
        .and_then(|p| p.file_name())
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let mut drafters: Vec<(String, String, &mut dyn Drafter)> = model_drafter
        .as_mut()
        .map(|d| (name.to_owned(), drafter_file, d as &mut dyn Drafter))
        .into_iter()
        .collect();
    let mut target = Sequence::new(Context::new(config.target.clone(), &config.context)?);
    let mut trace = record_trace(
        &mut target,
        &mut drafters,
        prompt,
        args.max_tokens,
        args.gamma_max,
    )?;
    trace.set = "generate".into();
    println!("{}", config.target.detokenize(&trace.output)?);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    write_trace(&mut file, &trace).with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "trace of {} output tokens appended to {}",
        trace.output.len(),
        path.display()
    );
    Ok(())
}

fn print_ead_stats(s: &EadStats) {
    eprintln!(
        "ead: small {} tokens, large {} tokens (share {:.1}%), {} switches, mean entropy {:.2} bits | passes small {} ({:.0} ms), large {} ({:.0} ms), large catch-up {} tokens | bytes vs large-only {:.3}",
        s.small_tokens,
        s.large_tokens,
        s.large_share() * 100.0,
        s.switches,
        s.mean_entropy_bits,
        s.small_passes,
        s.small_time.as_secs_f64() * 1e3,
        s.large_passes,
        s.large_time.as_secs_f64() * 1e3,
        s.large_catch_up_tokens,
        s.cost_bytes()
    );
    if s.drafted > 0 {
        eprintln!(
            "ead-spec: {} drafted, {} accepted, α {:.3}",
            s.drafted,
            s.accepted,
            s.acceptance()
        );
    }
}

fn finish(generation: &Generation, spec: Option<&SpecStats>) {
    println!();
    eprintln!(
        "{} | stop: {:?}",
        generation.stats.summary_line(),
        generation.stop
    );
    let Some(s) = spec else { return };
    let n = generation.stats.generated_tokens;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    eprintln!(
        "speculation: {} target calls, {} drafted ({} by lookup), {} accepted, α {:.3}, τ {:.2} tokens/call, mean γ {:.2}, longest {}",
        s.target_calls,
        s.drafted,
        s.drafted_lookup,
        s.accepted,
        s.acceptance(),
        s.tau(n),
        s.mean_gamma(),
        s.longest_draft
    );
    eprintln!(
        "costs: c_time {:.3}, c_bytes {:.3}, MBSU {:.3} | draft {:.0} ms, verify {:.0} ms, accept {:.1} ms, rollback {:.1} ms, calibration {:.0} ms",
        s.c_time,
        s.c_bytes,
        s.mbsu(n),
        ms(s.draft_time),
        ms(s.verify_time),
        ms(s.accept_time),
        ms(s.rollback_time),
        ms(s.calibration_time)
    );
}
