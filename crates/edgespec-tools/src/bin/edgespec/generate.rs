//! `edgespec generate`: target-only or speculative generation streamed to stdout.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use edgespec::draft::{DraftModel, Drafter, ModelDrafter};
use edgespec::ead::EadStats;
use edgespec::engine::{Context, ContextParams, Sequence};
use edgespec::generate::{prompt_tokens, Generation};
use edgespec::metrics::SpecStats;
use edgespec::{DraftKind, Session, SessionConfig};
use edgespec_tools::trace::{record_trace, write_trace};

use crate::session_args::{
    save_costs, save_memory, show_prompt_progress, use_prompt_cache, SessionArgs,
};

/// Arguments of `generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Models and decoding.
    #[command(flatten)]
    pub session: SessionArgs,
    /// Prompt text.
    #[arg(short, long, required_unless_present = "file")]
    prompt: Option<String>,
    /// Read the prompt from this file (`-` for standard input), as
    /// llama.cpp's `-f`.
    #[arg(short, long, conflicts_with = "prompt")]
    file: Option<PathBuf>,
    /// Wrap the prompt in the model's chat template as a user message.
    #[arg(long)]
    chat: bool,
    /// Most tokens to generate.
    #[arg(short = 'n', long, default_value_t = 128)]
    max_tokens: usize,
    /// Print speculation metrics (α, τ, c, MBSU, per-phase times).
    #[arg(long)]
    stats: bool,
    /// Print one JSON object to stdout when done (text, tokens, stop reason,
    /// timings, speculation or EAD counters) instead of streaming the text.
    #[arg(long)]
    json: bool,
    /// Record a trace for `edgespec replay` instead of speculating: the
    /// target's greedy output and what the --draft model would draft from
    /// every position (up to --gamma-max tokens), appended to this file as
    /// one line (greedy only).
    #[arg(long)]
    trace: Option<PathBuf>,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let kind = args.session.kind()?;
    anyhow::ensure!(
        kind != DraftKind::None || args.trace.is_none(),
        "--trace records what a drafter offers: give --draft (or --draft-kind lookup)"
    );
    let (config, cost_run) = args.session.config(args.trace.is_none())?;
    let model = config.target.clone();
    let runs_drafter = config.drafter.is_some();
    let prompt = prompt_tokens(&model, &prompt_text(&args)?, args.chat)?;
    if let Some(path) = &args.trace {
        return trace(&args, &config, &prompt, path);
    }
    // The seed a sampled run can be repeated with (none when greedy).
    let seed = (!config.sampling.is_greedy()).then_some(config.sampling.seed);
    let mut session = Session::new(config)?;
    show_prompt_progress(&mut session);
    let mut stdout = std::io::stdout().lock();
    let json = args.json;
    let print = |_, text: &str| {
        // A closed stdout (e.g. `| head`) ends generation quietly.
        json || stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_ok()
    };
    if let Some(line) = use_prompt_cache(&args.session, &mut session, &prompt)? {
        log::info!("{line}");
        if args.stats {
            eprintln!("{line}");
        }
    }
    session.target_mut().reset_llama_counters();
    let outcome = if args.session.prompt_cache.is_some() {
        session.generate_from_cache(&prompt, args.max_tokens, print)?
    } else {
        session.generate(&prompt, args.max_tokens, print)?
    };
    let model_saved_ms = outcome
        .speculation
        .as_ref()
        .filter(|_| runs_drafter)
        .map(|s| s.model_saved_ms);
    save_costs(cost_run.as_ref(), &session, model_saved_ms);
    save_memory(&args.session, &session);
    if args.stats && cost_run.as_ref().is_some_and(|r| r.drafter_left_out()) {
        eprintln!("drafter: left out of this run, its rounds have not paid in recent runs (-v tells more)");
    }
    if args.json {
        let report = serde_json::json!({
            "text": outcome.generation.text,
            "tokens": outcome.generation.tokens,
            "stop": outcome.generation.stop,
            "seed": seed,
            "stats": outcome.generation.stats,
            "speculation": outcome.speculation,
            "ead": outcome.ead,
        });
        println!("{report}");
        return Ok(());
    }
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

/// The prompt: `--prompt`, or the contents of `--file` (`-`: standard input).
fn prompt_text(args: &GenerateArgs) -> anyhow::Result<String> {
    match (&args.prompt, &args.file) {
        (Some(text), _) => Ok(text.clone()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("reading the prompt from standard input")?;
            Ok(text)
        }
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the prompt from {}", path.display())),
        (None, None) => anyhow::bail!("give the prompt: -p TEXT or -f FILE"),
    }
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
        .session
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
        args.session.gamma_max,
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
    if generation.stats.round_trips > 0 {
        eprintln!(
            "remote target: {} round trips, {:.2} per token; {:.1} kB received, {:.1} kB per token",
            generation.stats.round_trips,
            generation.stats.round_trips_per_token(),
            generation.stats.remote_bytes as f64 / 1e3,
            generation.stats.remote_bytes_per_token() / 1e3
        );
    }
    let Some(s) = spec else { return };
    let n = generation.stats.generated_tokens;
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    eprintln!(
        "speculation: {} target calls, {} drafted, {} accepted, α {:.3}, τ {:.2} tokens/call, mean γ {:.2}, longest {}",
        s.target_calls,
        s.drafted,
        s.accepted,
        s.acceptance(),
        s.tau(n),
        s.mean_gamma(),
        s.longest_draft
    );
    if s.tree.rounds > 0 {
        eprintln!("  trees: {} tokens accepted on branches", s.branch_accepted);
    }
    for (name, source) in s.sources() {
        if source.rounds > 0 {
            eprintln!(
                "  {name}: {} rounds, {} drafted, {} accepted, α {:.3}, {:.2} accepted a round, verify {:.1} ms a round",
                source.rounds,
                source.drafted,
                source.accepted,
                source.acceptance(),
                source.mean_accepted(),
                source.verify_ms()
            );
        }
    }
    eprintln!(
        "costs: c_time {:.3}, c_bytes {:.3}, MBSU {:.3} | draft {:.0} ms, verify {:.0} ms, accept {:.1} ms, rollback {:.1} ms, calibration {:.0} ms | model rounds saved {:.0} ms",
        s.c_time,
        s.c_bytes,
        s.mbsu(n),
        ms(s.draft_time),
        ms(s.verify_time),
        ms(s.accept_time),
        ms(s.rollback_time),
        ms(s.calibration_time),
        s.model_saved_ms
    );
}
