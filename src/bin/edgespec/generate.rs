//! `edgespec generate`: target-only or speculative generation streamed to stdout.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};

use edgespec::draft::{
    DraftLength, Drafter, HybridDrafter, LookupDrafter, ModelDrafter, TrimmedSource,
    DEFAULT_HYBRID_MIN_NGRAM,
};
use edgespec::ead::{Ead, EadConfig, EadStats};
use edgespec::engine::{Context, ContextParams, Model, ModelParams};
use edgespec::generate::{generate_target_only, prompt_tokens, GenerateParams, Generation};
use edgespec::gguf::GgufFile;
use edgespec::metrics::SpecStats;
use edgespec::sampling::SamplingParams;
use edgespec::speculative::trace::{record_trace, write_trace};
use edgespec::speculative::{PolicyConfig, Speculator};
use edgespec::vocabtrim::TrimInfo;

/// Kinds of drafter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DraftKind {
    /// A smaller model with the same vocabulary (--draft).
    Model,
    /// Prompt lookup: n-gram matches in the prompt and output; no model.
    Lookup,
    /// Lookup on confident matches, the --draft model otherwise.
    Hybrid,
    /// A VocabTrim drafter (--draft OUT.gguf from `edgespec trim`).
    Trimmed,
}

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
    /// Drafter kind (default: model with --draft; lookup without).
    #[arg(long, value_enum)]
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
    let sampling = SamplingParams {
        temperature: args.temp,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
    };
    sampling.validate()?;
    let params = GenerateParams {
        max_tokens: args.max_tokens,
        sampling,
        ignore_eos: args.ignore_eos,
    };
    let model_params = ModelParams {
        gpu_layers: args.gpu_layers,
        repack: !args.no_repack,
        ..ModelParams::default()
    };
    let model = Model::load(&args.model, &model_params)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let mut ctx_params = ContextParams {
        n_ctx: args.ctx_size,
        ..ContextParams::default()
    };
    if let Some(t) = args.threads {
        ctx_params.n_threads = t;
        ctx_params.n_threads_batch = t;
    }
    let target = Context::new(model.clone(), &ctx_params)?;
    let prompt = prompt_tokens(&model, &args.prompt, args.chat)?;
    let mut stdout = std::io::stdout().lock();
    let print = |_, text: &str| {
        // A closed stdout (e.g. `| head`) ends generation quietly.
        stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_ok()
    };
    if args.mode != GenMode::Spec {
        let Some(small_path) = &args.draft else {
            bail!("--mode {:?} needs a small model (--small)", args.mode);
        };
        let small_model = Model::load(small_path, &model_params)
            .with_context(|| format!("loading small model {}", small_path.display()))?;
        let small = Context::new(small_model, &ctx_params)?;
        let config = EadConfig {
            threshold_bits: args.ead_threshold,
            window: args.ead_window,
            min_dwell: args.ead_dwell,
            large_share: args.ead_share,
            fallback: !args.ead_no_fallback,
        };
        let length = match (args.mode, args.gamma) {
            (GenMode::EadSpec, Gamma::Fixed(g)) => DraftLength::Fixed(g),
            (GenMode::EadSpec, Gamma::Auto) => DraftLength::Auto {
                max: args.gamma_max,
            },
            _ => DraftLength::Fixed(0),
        };
        let mut ead = Ead::new(small, target, config, length)?;
        let result = ead.generate(&prompt, &params, print)?;
        finish(&result.generation, None);
        if args.stats {
            print_ead_stats(&result.stats);
        }
        return Ok(());
    }

    let kind = match (args.target_only, args.draft_kind, &args.draft) {
        (true, _, _) => None,
        (false, Some(kind), _) => Some(kind),
        (false, None, Some(_)) => Some(DraftKind::Model),
        (false, None, None) => None,
    };
    anyhow::ensure!(
        kind.is_some() || args.trace.is_none(),
        "--trace records what a drafter offers: give --draft (or --draft-kind lookup)"
    );
    let Some(kind) = kind else {
        let mut target = target;
        target.reset_llama_counters();
        let generation = generate_target_only(&mut target, &prompt, &params, print)?;
        finish(&generation, None);
        let (eval_ms, n_eval) = target.llama_eval_time();
        log::info!(
            "llama.cpp eval time: {eval_ms:.1} ms / {n_eval} runs ({:.2} tok/s by llama.cpp's own counter)",
            f64::from(n_eval) * 1e3 / eval_ms.max(1e-9)
        );
        return Ok(());
    };

    let lookup = LookupDrafter {
        min_ngram: args.lookup_min_ngram,
        max_ngram: args.lookup_max_ngram,
    };
    let drafter_ctx = ContextParams {
        n_ctx: args.ctx_size + 1,
        ..ctx_params.clone()
    };
    let is_trimmed = match &args.draft {
        Some(path) => TrimInfo::from_gguf(&GgufFile::open(path)?)?.is_some(),
        None => false,
    };
    let (model_drafter, vocab_model) = match (&args.draft, kind) {
        (None, DraftKind::Model | DraftKind::Hybrid | DraftKind::Trimmed) => {
            bail!("--draft-kind {kind:?} needs a drafter model (--draft)")
        }
        (Some(path), DraftKind::Trimmed) if !is_trimmed => {
            bail!(
                "{} is not a trimmed drafter (make one with `edgespec trim`)",
                path.display()
            )
        }
        (Some(path), DraftKind::Model | DraftKind::Hybrid | DraftKind::Trimmed) if is_trimmed => {
            let source = TrimmedSource::open(path, args.draft_source.as_deref(), &model_params)?;
            let vocab = source.vocab.clone();
            (
                Some(ModelDrafter::trimmed(source, &drafter_ctx, sampling)?),
                Some(vocab),
            )
        }
        (Some(path), DraftKind::Model | DraftKind::Hybrid) => {
            let m = Model::load(path, &model_params)
                .with_context(|| format!("loading drafter {}", path.display()))?;
            (
                Some(ModelDrafter::new(m.clone(), &drafter_ctx, sampling)?),
                Some(m),
            )
        }
        (_, _) => (None, None),
    };
    if let Some(path) = &args.trace {
        anyhow::ensure!(
            sampling.is_greedy(),
            "--trace records greedy generations: drop --temp"
        );
        let mut model_drafter = model_drafter;
        let name = match kind {
            DraftKind::Trimmed => "trimmed",
            _ => "model",
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
        let mut target = target;
        let mut trace = record_trace(
            &mut target,
            &mut drafters,
            &prompt,
            args.max_tokens,
            args.gamma_max,
        )?;
        trace.set = "generate".into();
        println!("{}", model.detokenize(&trace.output)?);
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
        return Ok(());
    }
    let drafter: Box<dyn Drafter> = match (kind, model_drafter) {
        (DraftKind::Hybrid, Some(m)) => {
            Box::new(HybridDrafter::new(lookup, m, args.hybrid_min_ngram))
        }
        (_, Some(m)) => Box::new(m),
        (_, None) => Box::new(lookup),
    };
    let config = PolicyConfig {
        length: match args.gamma {
            Gamma::Fixed(g) => DraftLength::Fixed(g),
            Gamma::Auto => DraftLength::Auto {
                max: args.gamma_max,
            },
        },
        p_min: args.p_min,
    };
    let mut speculator = Speculator::new(target, Some(drafter), vocab_model.as_deref(), config)?;
    let result = speculator.generate(&prompt, &params, print)?;
    finish(&result.generation, args.stats.then_some(&result.spec));
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
