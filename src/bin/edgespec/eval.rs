//! `edgespec eval humaneval`: pass@1 against the large model's share of
//! tokens, for large-only, small-only and EAD at several thresholds.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use edgespec::ead::{Ead, EadConfig};
use edgespec::engine::{Context, ContextParams, Model, ModelParams};
use edgespec::eval::{extract_code, load_problems, Outcome, Sandbox};
use edgespec::generate::{generate_target_only, prompt_tokens, GenerateParams};

/// `eval` subcommands.
#[derive(Debug, Subcommand)]
pub enum EvalCommand {
    /// HumanEval: generate, extract the code, run it against the tests.
    Humaneval(HumanevalArgs),
}

/// Arguments of `eval humaneval`.
#[derive(Debug, Args)]
pub struct HumanevalArgs {
    /// The large model.
    #[arg(long)]
    large: PathBuf,
    /// The small model (same vocabulary).
    #[arg(long)]
    small: PathBuf,
    /// Problems (JSONL from benches/prompts/fetch-humaneval.py).
    #[arg(long, default_value = "benches/prompts/humaneval.jsonl")]
    problems: PathBuf,
    /// First problem to run (0-based).
    #[arg(long, default_value_t = 0)]
    skip: usize,
    /// Problems to run.
    #[arg(long)]
    limit: Option<usize>,
    /// Comma-separated EAD thresholds (bits).
    #[arg(long, default_value = "0.25,0.5,1,1.5")]
    thresholds: String,
    /// EAD rolling window.
    #[arg(long, default_value_t = EadConfig::default().window)]
    window: usize,
    /// EAD minimum dwell.
    #[arg(long, default_value_t = EadConfig::default().min_dwell)]
    dwell: usize,
    /// Draft length inside large-model regions (ead-spec; 0: plain EAD).
    /// Greedy output is the same either way; only speed differs.
    #[arg(long, default_value_t = 4)]
    gamma: usize,
    /// Most tokens per answer.
    #[arg(short = 'n', long, default_value_t = 512)]
    max_tokens: usize,
    /// Seconds each program may run.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// The interpreter.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Threads.
    #[arg(long, default_value_t = 2)]
    threads: i32,
    /// Output folder: results.jsonl (streamed, with every answer) and summary.md.
    #[arg(short, long, default_value = "bench-out/humaneval")]
    out: PathBuf,
}

/// One answer, as written to results.jsonl.
#[derive(Debug, Serialize)]
struct Record<'a> {
    config: &'a str,
    threshold_bits: Option<f64>,
    task_id: &'a str,
    passed: bool,
    outcome: &'a Outcome,
    tokens: usize,
    large_tokens: usize,
    switches: usize,
    decode_tok_s: f64,
    cost_bytes: f64,
    reply: &'a str,
}

#[derive(Debug, Default, Clone)]
struct Tally {
    label: String,
    passed: usize,
    problems: usize,
    tokens: usize,
    large_tokens: usize,
    switches: usize,
    decode_rates: Vec<f64>,
    cost_bytes: Vec<f64>,
}

pub fn run(command: EvalCommand) -> anyhow::Result<()> {
    match command {
        EvalCommand::Humaneval(args) => humaneval(args),
    }
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn humaneval(args: HumanevalArgs) -> anyhow::Result<()> {
    let thresholds: Vec<f64> = args
        .thresholds
        .split(',')
        .map(|t| {
            t.trim()
                .parse::<f64>()
                .with_context(|| format!("--thresholds: {t:?} is not a number"))
        })
        .collect::<anyhow::Result<_>>()?;
    let problems = load_problems(&args.problems)?;
    let problems: Vec<_> = problems
        .into_iter()
        .skip(args.skip)
        .take(args.limit.unwrap_or(usize::MAX))
        .collect();
    if problems.is_empty() {
        bail!("no problems to run in {}", args.problems.display());
    }
    let sandbox = Sandbox::new(&args.python, Duration::from_secs_f64(args.timeout))?;
    if !sandbox.isolate_network {
        log::warn!("unshare -rn is not available: candidates run with network access");
    }
    let model_params = ModelParams::default();
    let large = Model::load(&args.large, &model_params)
        .with_context(|| format!("loading {}", args.large.display()))?;
    let small = Model::load(&args.small, &model_params)
        .with_context(|| format!("loading {}", args.small.display()))?;
    let ctx_params = ContextParams {
        n_ctx: 2048,
        n_threads: args.threads,
        n_threads_batch: args.threads,
        ..ContextParams::default()
    };
    let mut large_ctx = Context::new(large.clone(), &ctx_params)?;
    let mut small_ctx = Context::new(small.clone(), &ctx_params)?;
    let mut engines = thresholds
        .iter()
        .map(|&t| {
            let config = EadConfig {
                threshold_bits: t,
                window: args.window,
                min_dwell: args.dwell,
            };
            Ok(Ead::new(
                Context::new(small.clone(), &ctx_params)?,
                Context::new(large.clone(), &ctx_params)?,
                config,
                args.gamma,
            )?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    std::fs::create_dir_all(&args.out)?;
    let mut results = std::fs::File::create(args.out.join("results.jsonl"))?;
    let mut tallies: Vec<Tally> = ["large", "small"]
        .into_iter()
        .map(String::from)
        .chain(thresholds.iter().map(|t| format!("ead τ={t}")))
        .map(|label| Tally {
            label,
            ..Tally::default()
        })
        .collect();
    let bar = ProgressBar::new((problems.len() * tallies.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed_precise}<{eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let params = GenerateParams::greedy(args.max_tokens);
    for problem in &problems {
        let prompt = prompt_tokens(&large, &problem.prompt, true)?;
        for (i, tally) in tallies.iter_mut().enumerate() {
            bar.set_message(format!("{} {}", problem.task_id, tally.label));
            let (text, tokens, large_tokens, switches, rate, cost) = match i {
                0 | 1 => {
                    let ctx = if i == 0 { &mut large_ctx } else { &mut small_ctx };
                    let g = generate_target_only(ctx, &prompt, &params, |_, _| true)?;
                    let n = g.tokens.len();
                    let large_n = if i == 0 { n } else { 0 };
                    let cost = if i == 0 {
                        1.0
                    } else {
                        small.summary().bytes_per_token as f64
                            / large.summary().bytes_per_token as f64
                    };
                    (g.text, n, large_n, 0, g.stats.decode_tok_per_s(), cost)
                }
                _ => {
                    let g = engines[i - 2].generate(&prompt, &params, |_, _| true)?;
                    let s = &g.stats;
                    (
                        g.generation.text,
                        g.generation.tokens.len(),
                        s.large_tokens,
                        s.switches,
                        g.generation.stats.decode_tok_per_s(),
                        s.cost_bytes(),
                    )
                }
            };
            let outcome = sandbox.check(problem, &extract_code(&text))?;
            tally.problems += 1;
            tally.passed += usize::from(outcome.passed());
            tally.tokens += tokens;
            tally.large_tokens += large_tokens;
            tally.switches += switches;
            tally.decode_rates.push(rate);
            tally.cost_bytes.push(cost);
            let record = Record {
                config: &tally.label,
                threshold_bits: i.checked_sub(2).map(|j| thresholds[j]),
                task_id: &problem.task_id,
                passed: outcome.passed(),
                outcome: &outcome,
                tokens,
                large_tokens,
                switches,
                decode_tok_s: rate,
                cost_bytes: cost,
                reply: &text,
            };
            writeln!(results, "{}", serde_json::to_string(&record)?)?;
            results.flush()?;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();

    let large_pass = tallies[0].passed as f64 / tallies[0].problems.max(1) as f64;
    let mut md = format!(
        "HumanEval, {} problems ({}..{}), greedy, -n {}, window {}, dwell {}, γ {} inside large regions; large {}, small {}; {} threads; network isolation: {}.\n\n\
| config | pass@1 | passed | of large's pass@1 | large share of tokens | switches/answer | decode tok/s (median) | bytes read vs large-only (median) |\n|---|---|---|---|---|---|---|---|\n",
        problems.len(),
        args.skip,
        args.skip + problems.len(),
        args.max_tokens,
        args.window,
        args.dwell,
        args.gamma,
        args.large.display(),
        args.small.display(),
        args.threads,
        if sandbox.isolate_network { "on" } else { "off" }
    );
    for t in &mut tallies {
        let pass = t.passed as f64 / t.problems.max(1) as f64;
        md.push_str(&format!(
            "| {} | {:.1}% | {}/{} | {:.1}% | {:.1}% | {:.1} | {:.1} | {:.3} |\n",
            t.label,
            pass * 100.0,
            t.passed,
            t.problems,
            if large_pass > 0.0 { pass / large_pass * 100.0 } else { 0.0 },
            t.large_tokens as f64 / t.tokens.max(1) as f64 * 100.0,
            t.switches as f64 / t.problems.max(1) as f64,
            median(&mut t.decode_rates),
            median(&mut t.cost_bytes),
        ));
    }
    print!("{md}");
    std::fs::write(args.out.join("summary.md"), &md)?;
    eprintln!(
        "answers and outcomes: {}",
        args.out.join("results.jsonl").display()
    );
    Ok(())
}
