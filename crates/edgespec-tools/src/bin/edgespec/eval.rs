//! `edgespec eval humaneval`: pass@1 against the large model's share of
//! tokens, for large-only, small-only and EAD at several thresholds.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use edgespec::draft::{DraftLength, DraftModel};
use edgespec::ead::EadConfig;
use edgespec::engine::{ContextParams, Model, ModelParams};
use edgespec::generate::prompt_tokens;
use edgespec::session::{DraftKind, Session, SessionConfig};
use edgespec_tools::eval::{extract_code, load_problems, Outcome, Sandbox};

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
    #[arg(long, required_unless_present = "from_results")]
    large: Option<PathBuf>,
    /// The small model (same vocabulary).
    #[arg(long, required_unless_present = "from_results")]
    small: Option<PathBuf>,
    /// Problems (JSONL from benches/prompts/fetch-humaneval.py).
    #[arg(long, default_value = "benches/prompts/humaneval.jsonl")]
    problems: PathBuf,
    /// First problem to run (0-based).
    #[arg(long, default_value_t = 0)]
    skip: usize,
    /// Problems to run.
    #[arg(long)]
    limit: Option<usize>,
    /// Comma-separated EAD thresholds (bits); empty for none.
    #[arg(long, default_value = "0.25,0.5,1,1.5")]
    thresholds: String,
    /// Comma-separated large-model shares for adaptive EAD (the threshold
    /// moves to hold each; starting from --start-threshold).
    #[arg(long, default_value = "")]
    shares: String,
    /// Skip the large-only and small-only answers (when an earlier run of
    /// the same models has them: greedy answers do not change).
    #[arg(long)]
    no_baselines: bool,
    /// Let EAD fall back to the large model alone where it runs slower than
    /// it (output then depends on timing; off: reproducible answers).
    #[arg(long)]
    fallback: bool,
    /// Starting threshold (bits) of the adaptive configurations.
    #[arg(long, default_value_t = EadConfig::default().threshold_bits)]
    start_threshold: f64,
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
    /// Do not generate: summarise this results.jsonl (e.g. of an interrupted run).
    #[arg(long)]
    from_results: Option<PathBuf>,
}

/// One answer, as written to results.jsonl.
#[derive(Debug, Serialize, Deserialize)]
struct Record {
    config: String,
    threshold_bits: Option<f64>,
    /// The large-model share an adaptive configuration held.
    #[serde(default)]
    large_share: Option<f64>,
    task_id: String,
    passed: bool,
    outcome: Outcome,
    tokens: usize,
    large_tokens: usize,
    switches: usize,
    decode_tok_s: f64,
    cost_bytes: f64,
    reply: String,
}

/// One configuration's results.
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

/// Tallies per configuration, in order of first appearance.
fn tally(records: &[Record]) -> Vec<Tally> {
    let mut tallies: Vec<Tally> = Vec::new();
    for r in records {
        let i = match tallies.iter().position(|t| t.label == r.config) {
            Some(i) => i,
            None => {
                tallies.push(Tally {
                    label: r.config.clone(),
                    ..Tally::default()
                });
                tallies.len() - 1
            }
        };
        let t = &mut tallies[i];
        t.problems += 1;
        t.passed += usize::from(r.passed);
        t.tokens += r.tokens;
        t.large_tokens += r.large_tokens;
        t.switches += r.switches;
        t.decode_rates.push(r.decode_tok_s);
        t.cost_bytes.push(r.cost_bytes);
    }
    tallies
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
    if let Some(path) = &args.from_results {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let records = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .with_context(|| format!("{}:{}: not a result record", path.display(), i + 1))
            })
            .collect::<anyhow::Result<Vec<Record>>>()?;
        let header = format!("HumanEval results from {}.", path.display());
        return summarize(&records, &header, &args.out);
    }
    let numbers = |list: &str, flag: &str| -> anyhow::Result<Vec<f64>> {
        list.split(',')
            .filter(|t| !t.trim().is_empty())
            .map(|t| {
                t.trim()
                    .parse::<f64>()
                    .with_context(|| format!("--{flag}: {t:?} is not a number"))
            })
            .collect()
    };
    let fixed = numbers(&args.thresholds, "thresholds")?
        .into_iter()
        .map(|t| {
            (
                format!("ead τ={t}"),
                EadConfig {
                    threshold_bits: t,
                    window: args.window,
                    min_dwell: args.dwell,
                    large_share: None,
                    fallback: args.fallback,
                },
            )
        });
    let adaptive = numbers(&args.shares, "shares")?.into_iter().map(|s| {
        (
            format!("ead share={s}"),
            EadConfig {
                threshold_bits: args.start_threshold,
                window: args.window,
                min_dwell: args.dwell,
                large_share: Some(s),
                fallback: args.fallback,
            },
        )
    });
    let configs: Vec<(String, EadConfig)> = fixed.chain(adaptive).collect();
    for (_, c) in &configs {
        c.validate()?;
    }
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
    let (Some(large_path), Some(small_path)) = (&args.large, &args.small) else {
        bail!("--large and --small are needed to generate");
    };
    let model_params = ModelParams::default();
    let large = Model::load(large_path, &model_params)
        .with_context(|| format!("loading {}", large_path.display()))?;
    let small = Model::load(small_path, &model_params)
        .with_context(|| format!("loading {}", small_path.display()))?;
    let context = ContextParams {
        n_ctx: 2048,
        n_threads: args.threads,
        n_threads_batch: args.threads,
        ..ContextParams::default()
    };
    let alone = |model: &std::sync::Arc<Model>| {
        Session::new(SessionConfig::new(model.clone(), context.clone()))
    };
    // Sessions by label: the large model alone, the small one alone, each EAD configuration.
    let mut sessions = [alone(&large)?, alone(&small)?]
        .into_iter()
        .map(Ok)
        .chain(configs.iter().map(|(_, config)| {
            Session::new(SessionConfig {
                ead: *config,
                length: DraftLength::Fixed(args.gamma),
                ..SessionConfig::new(large.clone(), context.clone()).with_drafter(
                    if args.gamma > 0 {
                        DraftKind::EadSpec
                    } else {
                        DraftKind::Ead
                    },
                    Some(DraftModel::Full(small.clone())),
                )
            })
        }))
        .collect::<Result<Vec<_>, _>>()?;

    std::fs::create_dir_all(&args.out)?;
    let mut results = std::fs::File::create(args.out.join("results.jsonl"))?;
    let labels: Vec<String> = ["large", "small"]
        .into_iter()
        .map(String::from)
        .chain(configs.iter().map(|(label, _)| label.clone()))
        .collect();
    let mut records = Vec::new();
    let runs_per_problem = labels.len() - if args.no_baselines { 2 } else { 0 };
    let bar = ProgressBar::new((problems.len() * runs_per_problem) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed_precise}<{eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for problem in &problems {
        let prompt = prompt_tokens(&large, &problem.prompt, true)?;
        for (i, label) in labels.iter().enumerate() {
            if args.no_baselines && i < 2 {
                continue;
            }
            bar.set_message(format!("{} {label}", problem.task_id));
            let g = sessions[i].generate(&prompt, args.max_tokens, |_, _| true)?;
            let n = g.generation.tokens.len();
            let (large_tokens, switches, cost) = match (&g.ead, i) {
                (Some(s), _) => (s.large_tokens, s.switches, s.cost_bytes()),
                (None, 0) => (n, 0, 1.0),
                (None, _) => (
                    0,
                    0,
                    small.summary().bytes_per_token as f64 / large.summary().bytes_per_token as f64,
                ),
            };
            let (text, tokens, rate) =
                (g.generation.text, n, g.generation.stats.decode_tok_per_s());
            let outcome = sandbox.check(problem, &extract_code(&text))?;
            let record = Record {
                config: label.clone(),
                threshold_bits: i
                    .checked_sub(2)
                    .filter(|&j| configs[j].1.large_share.is_none())
                    .map(|j| configs[j].1.threshold_bits),
                large_share: i.checked_sub(2).and_then(|j| configs[j].1.large_share),
                task_id: problem.task_id.clone(),
                passed: outcome.passed(),
                outcome,
                tokens,
                large_tokens,
                switches,
                decode_tok_s: rate,
                cost_bytes: cost,
                reply: text,
            };
            writeln!(results, "{}", serde_json::to_string(&record)?)?;
            results.flush()?;
            records.push(record);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let header = format!(
        "HumanEval problems {}.., greedy, -n {}, window {}, dwell {}, γ {} inside large regions; large {}, small {}; {} threads; network isolation: {}.",
        args.skip,
        args.max_tokens,
        args.window,
        args.dwell,
        args.gamma,
        large_path.display(),
        small_path.display(),
        args.threads,
        if sandbox.isolate_network { "on" } else { "off" }
    );
    summarize(&records, &header, &args.out)
}

/// Prints and writes summary.md: the pass@1 vs large-share curve.
fn summarize(records: &[Record], header: &str, out: &std::path::Path) -> anyhow::Result<()> {
    let mut tallies = tally(records);
    anyhow::ensure!(!tallies.is_empty(), "no results to summarise");

    let large_pass = tallies
        .iter()
        .find(|t| t.label == "large")
        .map_or(0.0, |t| t.passed as f64 / t.problems.max(1) as f64);
    let mut md = format!(
        "{header}\n\n| config | problems | pass@1 | passed | of large's pass@1 | large share of tokens | switches/answer | decode tok/s (median) | bytes read vs large-only (median) |\n|---|---|---|---|---|---|---|---|---|\n"
    );
    for t in &mut tallies {
        let pass = t.passed as f64 / t.problems.max(1) as f64;
        md.push_str(&format!(
            "| {} | {} | {:.1}% | {}/{} | {:.1}% | {:.1}% | {:.1} | {:.1} | {:.3} |\n",
            t.label,
            t.problems,
            pass * 100.0,
            t.passed,
            t.problems,
            if large_pass > 0.0 {
                pass / large_pass * 100.0
            } else {
                0.0
            },
            t.large_tokens as f64 / t.tokens.max(1) as f64 * 100.0,
            t.switches as f64 / t.problems.max(1) as f64,
            median(&mut t.decode_rates),
            median(&mut t.cost_bytes),
        ));
    }
    print!("{md}");
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("summary.md"), &md)?;
    eprintln!(
        "answers and outcomes: {}",
        out.join("results.jsonl").display()
    );
    Ok(())
}
