//! `edgespec calibrate` and `edgespec trim`: VocabTrim from the command line.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use edgespec::bench::load_prompts;
use edgespec::engine::{Context, ContextParams, Model, ModelParams};
use edgespec::generate::GenerateParams;
use edgespec::gguf::{GgufFile, ModelSummary};
use edgespec::sampling::SamplingParams;
use edgespec::vocabtrim::{
    calibrate_generations, count_raw_text, select_ids, trim_drafter, vocab_fingerprint, TokenCounts,
};

/// Arguments of `calibrate`.
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Target model whose emitted tokens are counted.
    #[arg(short, long)]
    target: PathBuf,
    /// Calibration prompts (plain lines or JSONL).
    #[arg(short, long, required_unless_present = "raw_text")]
    prompts: Option<PathBuf>,
    /// Count the tokens of this text corpus instead (one document per line).
    #[arg(long, conflicts_with = "prompts")]
    raw_text: Option<PathBuf>,
    /// Output counts file (JSON); an unfinished one is resumed.
    #[arg(short, long)]
    out: PathBuf,
    /// Tokens per generation.
    #[arg(short = 'n', long, default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature for calibration generations (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    temp: f32,
    /// Feed prompts as raw text instead of chat messages.
    #[arg(long)]
    no_chat: bool,
    /// Threads.
    #[arg(long)]
    threads: Option<i32>,
}

pub fn calibrate(args: CalibrateArgs) -> anyhow::Result<()> {
    let model = Model::load(&args.target, &ModelParams::default())
        .with_context(|| format!("loading {}", args.target.display()))?;
    let counts = if let Some(corpus) = &args.raw_text {
        let text = std::fs::read_to_string(corpus)
            .with_context(|| format!("reading {}", corpus.display()))?;
        let lines: Vec<String> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect();
        let counts = count_raw_text(&model, &lines)?;
        counts.save(&args.out)?;
        counts
    } else {
        let path = args
            .prompts
            .as_ref()
            .expect("clap requires --prompts without --raw-text");
        let prompts = load_prompts(path)?;
        let mut ctx_params = ContextParams::default();
        if let Some(t) = args.threads {
            ctx_params.n_threads = t;
            ctx_params.n_threads_batch = t;
        }
        let mut ctx = Context::new(model.clone(), &ctx_params)?;
        let params = GenerateParams {
            max_tokens: args.max_tokens,
            sampling: SamplingParams {
                temperature: args.temp,
                ..SamplingParams::greedy()
            },
            ignore_eos: false,
        };
        params.sampling.validate()?;
        let bar = indicatif::ProgressBar::new(prompts.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} prompts {elapsed_precise} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let counts = calibrate_generations(
            &mut ctx,
            &prompts,
            &params,
            !args.no_chat,
            &args.out,
            &mut |done, _, tokens| {
                bar.set_position(done as u64);
                bar.set_message(format!("{tokens} tokens"));
            },
        )?;
        bar.finish_and_clear();
        counts
    };
    let distinct = counts.counts.iter().filter(|&&c| c > 0).count();
    eprintln!(
        "counted {} tokens ({} distinct ids of {}) from {} items; wrote {}",
        counts.total(),
        distinct,
        counts.vocab_size,
        counts.items_done,
        args.out.display()
    );
    Ok(())
}

/// Arguments of `trim`.
#[derive(Debug, Args)]
pub struct TrimArgs {
    /// Drafter model to trim.
    #[arg(short, long)]
    drafter: PathBuf,
    /// Counts from `edgespec calibrate`.
    #[arg(short, long)]
    counts: PathBuf,
    /// Rows of the LM head to keep.
    #[arg(short)]
    k: usize,
    /// Output GGUF.
    #[arg(short, long)]
    out: PathBuf,
}

pub fn trim(args: TrimArgs) -> anyhow::Result<()> {
    let counts = TokenCounts::load(&args.counts)?;
    let vocab = Model::load(
        &args.drafter,
        &ModelParams {
            vocab_only: true,
            ..ModelParams::default()
        },
    )
    .with_context(|| format!("loading {}", args.drafter.display()))?;
    counts.check_vocab(&vocab)?;
    // End-of-generation, control and other special tokens are always kept.
    let specials: Vec<i32> = (0..vocab.n_vocab())
        .filter(|&t| vocab.is_eog(t) || vocab.is_control(t))
        .collect();
    let ids = select_ids(&counts, args.k, &specials)?;
    let file = GgufFile::open(&args.drafter)?;
    let source = std::fs::canonicalize(&args.drafter).unwrap_or(args.drafter.clone());
    trim_drafter(&file, &source, &vocab_fingerprint(&vocab), &ids, &args.out)?;
    let before = ModelSummary::of(&file)?;
    let after = ModelSummary::of(&GgufFile::open(&args.out)?)?;
    let covered: u64 = ids.iter().map(|&t| counts.counts[t as usize]).sum();
    eprintln!(
        "kept {} ids ({} special) covering {:.2}% of calibration tokens; bytes per token {} -> {} ({:.3}x), LM head {} -> {}; wrote {}",
        ids.len(),
        specials.len(),
        100.0 * covered as f64 / counts.total().max(1) as f64,
        before.bytes_per_token,
        after.bytes_per_token,
        after.bytes_per_token as f64 / before.bytes_per_token as f64,
        before.head_bytes,
        after.head_bytes,
        args.out.display()
    );
    Ok(())
}
