//! `edgespec bench`: the side-by-side report.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use edgespec::ead::EadConfig;
use edgespec_tools::bench::{
    check_out_dir, load_prompts, load_runs, peak_rss_bytes, read_bandwidth_passes, reset_peak_rss,
    run, write_report, Bandwidth, BenchConfig, MachineInfo, Mode, PromptSet, ReportInputs, Sweep,
};
use edgespec_tools::vocabtrim::{TokenCounts, Trimmer};

use crate::UsageError;

/// Arguments of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Target model (llama-bench: -m; `--target` until the next release).
    #[arg(short = 'm', long = "model", alias = "target")]
    target: PathBuf,
    /// Drafter model (model/hybrid modes, llama-draft).
    #[arg(short, long)]
    draft: Option<PathBuf>,
    /// VocabTrim drafter for the trimmed modes (from `edgespec trim`).
    #[arg(long)]
    trimmed: Option<PathBuf>,
    /// Prompt file (plain lines or JSONL); `NAME=PATH` names the set. Repeatable.
    #[arg(short = 'f', long = "prompts", required_unless_present = "from_runs")]
    prompts: Vec<String>,
    /// Use at most this many prompts per set.
    #[arg(long)]
    limit: Option<usize>,
    /// Comma-separated modes: target, small, model:N|auto, lookup:N|auto,
    /// hybrid:N|auto, trimmed:N|auto, ead:BITS, ead-spec:BITS,
    /// llama-completion, llama-draft, llama-ngram.
    #[arg(long, default_value = "target,model:auto,model:3,lookup,hybrid")]
    modes: String,
    /// Sweep a setting: `gamma=A..B` adds model:A..=B (and trimmed:A..=B
    /// with --trimmed); `k=K1,K2,…` trims --draft to each K with --counts
    /// and adds trimmed@K:G (G from --sweep-gamma); `threads=T1,T2,…` runs
    /// every mode at each thread count (instead of --threads). Repeatable.
    #[arg(long)]
    sweep: Vec<String>,
    /// Draft length of the `--sweep k=…` modes (a number or auto).
    #[arg(long, default_value = "3")]
    sweep_gamma: String,
    /// Calibration counts (from `edgespec calibrate`) for `--sweep k=…`.
    #[arg(long)]
    counts: Option<PathBuf>,
    /// Tie-breaking counts for `--sweep k=…` (see `trim --prior`).
    #[arg(long)]
    prior: Option<PathBuf>,
    /// Rolling window of the ead modes.
    #[arg(long, default_value_t = EadConfig::default().window)]
    ead_window: usize,
    /// Minimum dwell of the ead modes.
    #[arg(long, default_value_t = EadConfig::default().min_dwell)]
    ead_dwell: usize,
    /// EAD modes never fall back to the large model alone (their decisions
    /// then do not depend on this machine's timing, so `replay --runs`
    /// prices them fairly under another machine's profile).
    #[arg(long)]
    ead_no_fallback: bool,
    /// Longest draft the auto modes consider.
    #[arg(long, default_value_t = 8)]
    gamma_max: usize,
    /// Most tokens per generation.
    #[arg(short = 'n', long, default_value_t = 128)]
    max_tokens: usize,
    /// Timed repetitions (after one warm-up).
    #[arg(short, long, default_value_t = 1)]
    reps: usize,
    /// Threads (default: all cores).
    #[arg(short, long, default_value_t = crate::all_cores())]
    threads: i32,
    /// Context size.
    #[arg(short = 'c', long, default_value_t = 4096)]
    ctx_size: u32,
    /// Feed prompts as raw text instead of chat messages.
    #[arg(long)]
    no_chat: bool,
    /// Folder of llama.cpp's peer tools (benches/build-peer.sh builds them).
    #[arg(long, default_value = "benches/peer/bin")]
    peer_bin: PathBuf,
    /// The target on ggml RPC servers (scripts/rpc-latency-bench.sh).
    #[command(flatten)]
    rpc: crate::rpc_args::RpcArgs,
    /// With --target-rpc: the servers llama.cpp's peer modes put their
    /// target on (their --rpc). Other servers than edgespec's: a ggml
    /// server serves one client at a time, and edgespec's runs hold theirs.
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT...]", requires = "target_rpc")]
    peer_rpc: Option<String>,
    /// Do not run anything: build the report from this runs.jsonl (e.g. of an interrupted run).
    #[arg(long, conflicts_with = "trace")]
    from_runs: Option<PathBuf>,
    /// After the runs, record a trace of every prompt for `edgespec replay`
    /// (OUT/traces/SET.jsonl): the target's greedy output and what --draft
    /// and --trimmed would draft from every position, up to --gamma-max tokens.
    #[arg(long)]
    trace: bool,
    /// Output folder: runs.jsonl (streamed), report.json, report.md.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Replace the runs of an earlier benchmark in the output folder
    /// (without it, a folder that holds runs is refused).
    #[arg(long)]
    force: bool,
}

pub fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    if args.from_runs.is_none() {
        check_out_dir(&args.out, args.force)?;
    }
    let mut modes = args
        .modes
        .split(',')
        .map(|m| Mode::parse(m.trim(), args.gamma_max))
        .collect::<Result<Vec<_>, _>>()?;
    let mut trimmed_k = Vec::new();
    let mut threads = vec![args.threads];
    for spec in &args.sweep {
        let swept = match Sweep::parse(spec)? {
            Sweep::K(ks) => k_sweep(&args, &ks, &mut trimmed_k)?,
            Sweep::Threads(counts) => {
                threads = counts;
                Vec::new()
            }
            Sweep::Gamma(a, b) => Sweep::gamma_modes(a, b, args.trimmed.is_some()),
        };
        for mode in swept {
            if !modes.contains(&mode) {
                modes.push(mode);
            }
        }
    }
    let mut sets = Vec::new();
    for spec in &args.prompts {
        let (name, path) = match spec.split_once('=') {
            Some((n, p)) => (n.to_owned(), PathBuf::from(p)),
            None => {
                let p = PathBuf::from(spec);
                (
                    p.file_stem()
                        .map_or("prompts".into(), |s| s.to_string_lossy().into_owned()),
                    p,
                )
            }
        };
        let mut prompts = load_prompts(&path)?;
        if let Some(limit) = args.limit {
            prompts.truncate(limit);
        }
        sets.push(PromptSet { name, prompts });
    }
    for (path, what) in
        std::iter::once((&args.target, "target")).chain(args.draft.iter().map(|d| (d, "drafter")))
    {
        anyhow::ensure!(path.is_file(), "{what} model not found: {}", path.display());
    }
    let config = BenchConfig {
        target: args.target.clone(),
        draft: args.draft.clone(),
        trimmed: args.trimmed.clone(),
        trimmed_k,
        ead: EadConfig {
            window: args.ead_window,
            min_dwell: args.ead_dwell,
            fallback: !args.ead_no_fallback,
            ..EadConfig::default()
        },
        sets,
        modes,
        reps: args.reps,
        max_tokens: args.max_tokens,
        threads: threads.clone(),
        ctx_size: args.ctx_size,
        chat: !args.no_chat,
        peer_bin: Some(args.peer_bin.clone()),
        remote: args.rpc.remote()?,
        peer_rpc: args.peer_rpc.clone(),
        out_dir: args.out.clone(),
        force: args.force,
    };
    // The bandwidth probe uses every core (the device's limit, whatever the
    // thread count), runs alone before and after the runs, and keeps every
    // pass, so the report shows how steady the memory system was.
    let cores = crate::all_cores() as usize;
    let probe = || read_bandwidth_passes(cores, 1 << 30, 3.0);
    let (before, machine, runs, runs_peak_rss_bytes) = match &args.from_runs {
        Some(path) => {
            let loaded = load_runs(path)?;
            let machine = loaded.machine.unwrap_or_else(|| {
                log::warn!(
                    "{} does not name the machine it was measured on (written before that was recorded): the report describes this one",
                    path.display()
                );
                MachineInfo::detect(threads.clone())
            });
            (Vec::new(), machine, loaded.runs, None)
        }
        None => {
            let before = probe();
            let machine = MachineInfo::detect(threads.clone());
            // The runs' own peak, not the probe's gigabyte.
            let reset = reset_peak_rss();
            let runs = run_all(&config)?;
            let peak = if reset { peak_rss_bytes() } else { None };
            (before, machine, runs, peak)
        }
    };
    if args.trace {
        let dir = edgespec_tools::bench::record_traces(&config, args.gamma_max, |set, i| {
            eprintln!("trace recorded: {set}#{i}");
        })?;
        eprintln!("wrote traces to {}", dir.display());
    }
    anyhow::ensure!(!runs.is_empty(), "no runs to report");
    let report = write_report(
        &ReportInputs {
            target: &args.target,
            draft: args.draft.as_deref(),
            trimmed: args.trimmed.as_deref(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            bandwidth: Bandwidth::combine(&before, &probe()),
            runs_peak_rss_bytes,
            machine,
        },
        runs,
        &args.out,
    )?;
    println!("{}", report.to_markdown());
    eprintln!(
        "wrote {}/report.md, report.json, runs.jsonl and the charts (*.svg)",
        args.out.display()
    );
    Ok(())
}

/// Runs the benchmark with a progress bar.
fn run_all(config: &BenchConfig) -> anyhow::Result<Vec<edgespec_tools::bench::RunRecord>> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} runs {elapsed_precise} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let runs = run(config, |done, total, r| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(format!(
            "{} {}#{}: {:.1} tok/s",
            r.mode, r.set, r.prompt, r.decode_tok_s
        ));
    })?;
    bar.finish_and_clear();
    Ok(runs)
}

/// Trims --draft to each K into the output folder and returns the
/// trimmed@K modes.
fn k_sweep(
    args: &BenchArgs,
    ks: &[u32],
    trimmed_k: &mut Vec<(u32, PathBuf)>,
) -> anyhow::Result<Vec<Mode>> {
    let (Some(draft), Some(counts)) = (&args.draft, &args.counts) else {
        return Err(UsageError(
            "--sweep k=…: needs the full drafter (--draft) and its calibration counts (--counts)"
                .into(),
        )
        .into());
    };
    let prior = args.prior.as_deref().map(TokenCounts::load).transpose()?;
    let trimmer = Trimmer::new(draft, TokenCounts::load(counts)?, prior)
        .with_context(|| format!("--sweep k=…: opening {}", draft.display()))?;
    let vocab = trimmer.counts().vocab_size;
    std::fs::create_dir_all(&args.out)?;
    let mut modes = Vec::new();
    for &k in ks {
        if k as usize > vocab {
            return Err(UsageError(format!(
                "--sweep k=…: K = {k} is larger than the vocabulary ({vocab})"
            ))
            .into());
        }
        let out = args.out.join(format!("trimmed-k{k}.gguf"));
        trimmer.write(k as usize, &out)?;
        trimmed_k.push((k, out));
        modes.push(Mode::parse(
            &format!("trimmed@{k}:{}", args.sweep_gamma),
            args.gamma_max,
        )?);
    }
    Ok(modes)
}
