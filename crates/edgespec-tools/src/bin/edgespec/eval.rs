//! `edgespec eval humaneval`: pass@1 against the large model's share of
//! tokens, for large-only, small-only and EAD at several thresholds.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use edgespec::ead::EadConfig;
use edgespec::engine::{ContextParams, Model, ModelParams};
use edgespec_tools::eval::humaneval::{load_records, summary, HumanevalRun, Record};
use edgespec_tools::eval::{load_problems, Isolation, Sandbox};
use indicatif::{ProgressBar, ProgressStyle};

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
    /// Replace the results of an earlier run in --out (without it, or
    /// --resume, a folder that holds results is refused).
    #[arg(long, conflicts_with = "resume")]
    force: bool,
    /// Continue an interrupted run in --out: answers already in its
    /// results.jsonl are kept and not generated again (run it with the
    /// same settings; a torn last line is dropped).
    #[arg(long)]
    resume: bool,
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
    /// Threads (default: all cores).
    #[arg(short, long, default_value_t = crate::all_cores())]
    threads: i32,
    /// Output folder: results.jsonl (streamed, with every answer) and summary.md.
    #[arg(short, long, default_value = "bench-out/humaneval")]
    out: PathBuf,
    /// Do not generate: summarise this results.jsonl (e.g. of an interrupted run).
    #[arg(long)]
    from_results: Option<PathBuf>,
}

pub fn run(command: EvalCommand) -> anyhow::Result<()> {
    match command {
        EvalCommand::Humaneval(args) => humaneval(args),
    }
}

fn humaneval(args: HumanevalArgs) -> anyhow::Result<()> {
    if !(args.timeout.is_finite() && args.timeout > 0.0 && args.timeout <= 86_400.0) {
        bail!(
            "--timeout {}: the seconds each program may run must be in (0, 86400]",
            args.timeout
        );
    }
    if !(args.start_threshold.is_finite() && args.start_threshold >= 0.0) {
        bail!(
            "--start-threshold {}: must be a finite number of bits, at least 0",
            args.start_threshold
        );
    }
    if let Some(path) = &args.from_results {
        let records = load_records(path)?;
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
    let results_path = args.out.join("results.jsonl");
    let has_results = std::fs::metadata(&results_path).is_ok_and(|m| m.len() > 0);
    if has_results && !args.force && !args.resume {
        bail!(
            "{} holds earlier results: summarise them with --from-results {}, continue them with --resume, or replace them with --force",
            results_path.display(),
            results_path.display()
        );
    }
    let earlier = if has_results && args.resume {
        load_records(&results_path)?
    } else {
        Vec::new()
    };
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
    match sandbox.isolation {
        Isolation::Bubblewrap => {}
        Isolation::UnshareNetwork => log::warn!(
            "bubblewrap cannot run here (install it: apt install bubblewrap): candidates see the filesystem"
        ),
        Isolation::None => log::warn!(
            "neither bubblewrap nor unshare can run here: candidates see the filesystem and the network"
        ),
    }
    let (Some(large_path), Some(small_path)) = (&args.large, &args.small) else {
        bail!("--large and --small are needed to generate");
    };
    let model_params = ModelParams::default();
    let large = Model::load(large_path, &model_params)
        .with_context(|| format!("loading {}", large_path.display()))?;
    let small = Model::load(small_path, &model_params)
        .with_context(|| format!("loading {}", small_path.display()))?;
    let run = HumanevalRun {
        problems,
        large,
        small,
        configs,
        gamma: args.gamma,
        max_tokens: args.max_tokens,
        context: ContextParams {
            n_ctx: 2048,
            n_threads: args.threads,
            n_threads_batch: args.threads,
            ..ContextParams::default()
        },
        baselines: !args.no_baselines,
        done: earlier
            .iter()
            .map(|r| (r.config.clone(), r.task_id.clone()))
            .collect(),
    };
    std::fs::create_dir_all(&args.out)?;
    // The earlier lines are kept byte for byte up to the last complete one
    // (a torn last line dropped; re-serialising would change floats in
    // their last digit), then new records are appended as they finish.
    let kept = if args.resume {
        let bytes = std::fs::read(&results_path).unwrap_or_default();
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        bytes[..complete].to_vec()
    } else {
        Vec::new()
    };
    edgespec_tools::scratch::write_atomically(&results_path, &kept)?;
    let mut results = std::fs::OpenOptions::new()
        .append(true)
        .open(&results_path)?;
    let runs_per_problem = 2 * usize::from(run.baselines) + run.configs.len();
    let bar = ProgressBar::new((run.problems.len() * runs_per_problem) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} [{elapsed_precise}<{eta}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.inc(run.done.len() as u64);
    let mut records = earlier;
    records.extend(run.run(&sandbox, &mut results, |record| {
        bar.inc(1);
        bar.set_message(format!("{} {}", record.task_id, record.config));
    })?);
    bar.finish_and_clear();
    let header = format!(
        "HumanEval problems {}.., greedy, -n {}, window {}, dwell {}, γ {} inside large regions; large {}, small {}; {} threads; sandbox isolation: {}.",
        args.skip,
        args.max_tokens,
        args.window,
        args.dwell,
        args.gamma,
        large_path.display(),
        small_path.display(),
        args.threads,
        sandbox.isolation.name()
    );
    summarize(&records, &header, &args.out)
}

/// Prints and writes summary.md: the pass@1 vs large-share curve.
fn summarize(records: &[Record], header: &str, out: &std::path::Path) -> anyhow::Result<()> {
    let md = summary(records, header).ok_or_else(|| anyhow::anyhow!("no results to summarise"))?;
    print!("{md}");
    std::fs::create_dir_all(out)?;
    edgespec_tools::scratch::write_atomically(&out.join("summary.md"), md.as_bytes())?;
    eprintln!(
        "answers and outcomes: {}",
        out.join("results.jsonl").display()
    );
    Ok(())
}
