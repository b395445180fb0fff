//! `edgespec profile`: measure this machine's cost curves (target passes by
//! batch size, drafter steps and catch-up batches) and write them as JSON.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use edgespec::costs::{CostModel, MAX_BATCH};
use edgespec::draft::{ModelDrafter, TrimmedSource};
use edgespec::engine::{Context, ContextParams, Logits, Model, ModelParams};
use edgespec::sampling::SamplingParams;
use edgespec::speculative::time_batches;
use edgespec_tools::profile::{CostProfile, ModelCosts, PROFILE_VERSION};

/// Arguments of `profile`.
#[derive(Debug, Args)]
pub struct ProfileArgs {
    /// Target model.
    #[arg(short, long)]
    model: PathBuf,
    /// Drafter model (profiled as drafter `model`).
    #[arg(short, long)]
    draft: Option<PathBuf>,
    /// VocabTrim drafter (profiled as drafter `trimmed`).
    #[arg(long)]
    trimmed: Option<PathBuf>,
    /// Threads (default: all cores).
    #[arg(short, long, default_value_t = crate::all_cores())]
    threads: i32,
    /// Largest batch measured (1..=65); every size up to it is timed.
    #[arg(long, default_value_t = MAX_BATCH)]
    max_batch: usize,
    /// Tokens of context before each timed pass.
    #[arg(long, default_value_t = 128)]
    context: usize,
    /// Profile name (default: the output file's stem).
    #[arg(long)]
    name: Option<String>,
    /// The machine in words (default: the CPU model and core count).
    #[arg(long)]
    machine: Option<String>,
    /// Output file (JSON).
    #[arg(short, long)]
    out: PathBuf,
    /// Replace the output file if it exists.
    #[arg(long)]
    force: bool,
    /// The target on RPC servers: its curve is then what this machine sees
    /// of the servers', round trips included (drafters stay local).
    #[command(flatten)]
    rpc: crate::rpc_args::RpcArgs,
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// The CPU model name and core count, as /proc/cpuinfo tells.
fn describe_machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    format!("{cpu}, {} cores", crate::all_cores())
}

fn drafter_costs(
    drafter: &mut ModelDrafter,
    model: String,
    sizes: &[usize],
    context: usize,
) -> anyhow::Result<ModelCosts> {
    let batch_ms: BTreeMap<usize, f64> = drafter
        .time_batches(sizes, context)?
        .into_iter()
        .map(|(b, ms)| (b, round2(ms)))
        .collect();
    Ok(ModelCosts {
        model,
        batch_ms,
        step_ms: None,
    })
}

fn round2(ms: f64) -> f64 {
    (ms * 100.0).round() / 100.0
}

pub fn run(args: ProfileArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=MAX_BATCH).contains(&args.max_batch),
        "--max-batch must be in 1..={MAX_BATCH}, got {}",
        args.max_batch
    );
    anyhow::ensure!(
        (1..=1024).contains(&args.threads),
        "--threads must be in 1..=1024, got {}",
        args.threads
    );
    anyhow::ensure!(
        args.force || !args.out.exists(),
        "{} exists: pass --force to replace it",
        args.out.display()
    );
    let params = ModelParams::default();
    let ctx_params = ContextParams {
        n_ctx: (args.context + MAX_BATCH + 8) as u32,
        n_batch: 512,
        n_threads: args.threads,
        n_threads_batch: args.threads,
        ..ContextParams::default()
    };
    let sizes: Vec<usize> = (1..=args.max_batch).collect();
    if args.rpc.target_fallback.is_some() {
        return Err(crate::UsageError(
            "--target-fallback: a profile times the servers; a fallback would time this machine instead"
                .into(),
        )
        .into());
    }
    let target_params = ModelParams {
        remote: args.rpc.remote()?,
        ..ModelParams::default()
    };
    let model = Model::load(&args.model, &target_params)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let mut target = Context::new(model, &ctx_params)?;
    eprintln!(
        "timing the target over batches of 1..={} tokens",
        args.max_batch
    );
    target.decode(&vec![0; args.context.max(1)], Logits::None)?;
    let mut costs = CostModel::default();
    time_batches(&mut target, 0, &sizes, &mut costs)?;
    let target_costs = ModelCosts {
        model: file_name(&args.model),
        batch_ms: sizes
            .iter()
            .filter_map(|&b| costs.measured_ms(b).map(|ms| (b, round2(ms))))
            .collect(),
        step_ms: None,
    };
    drop(target);

    let mut drafters = BTreeMap::new();
    let greedy = SamplingParams::greedy();
    if let Some(path) = &args.draft {
        eprintln!("timing the drafter");
        let m =
            Model::load(path, &params).with_context(|| format!("loading {}", path.display()))?;
        let mut d = ModelDrafter::new(m, &ctx_params, greedy)?;
        drafters.insert(
            "model".to_owned(),
            drafter_costs(&mut d, file_name(path), &sizes, args.context)?,
        );
    }
    if let Some(path) = &args.trimmed {
        eprintln!("timing the trimmed drafter");
        let source = TrimmedSource::open(path, None, &params)?;
        let mut d = ModelDrafter::trimmed(std::sync::Arc::new(source), &ctx_params, greedy)?;
        drafters.insert(
            "trimmed".to_owned(),
            drafter_costs(&mut d, file_name(path), &sizes, args.context)?,
        );
    }
    let profile = CostProfile {
        version: PROFILE_VERSION,
        name: args.name.clone().unwrap_or_else(|| {
            args.out
                .file_stem()
                .map_or_else(|| "profile".into(), |s| s.to_string_lossy().into_owned())
        }),
        machine: args.machine.clone().unwrap_or_else(describe_machine),
        threads: args.threads as u32,
        source: format!(
            "edgespec profile {} (median of three timed passes after one warm-up, {} tokens of context)",
            env!("CARGO_PKG_VERSION"),
            args.context
        ),
        note: String::new(),
        target: target_costs,
        drafters,
    };
    profile.validate()?;
    edgespec_tools::scratch::write_atomically(
        &args.out,
        (serde_json::to_string_pretty(&profile)? + "\n").as_bytes(),
    )
    .with_context(|| format!("writing {}", args.out.display()))?;
    let t = profile.target.curve();
    eprintln!(
        "target: 1 token {:.1} ms, 2 {:.1}, 4 {:.1} ({:.2}x one), 8 {:.1}, {} {:.1}",
        t.ms(1),
        t.ms(2),
        t.ms(4),
        t.ms(4) / t.ms(1),
        t.ms(8),
        args.max_batch,
        t.ms(args.max_batch)
    );
    for (name, d) in &profile.drafters {
        eprintln!(
            "drafter {name}: step {:.1} ms ({:.2} of the target), batch of 2 {:.1} ms",
            d.step(),
            d.step() / t.ms(1),
            d.curve().ms(2)
        );
    }
    eprintln!("wrote {}", args.out.display());
    Ok(())
}
