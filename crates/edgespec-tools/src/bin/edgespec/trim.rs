//! `edgespec calibrate` and `edgespec trim`: VocabTrim from the command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::Args;

use edgespec::draft::{DraftLength, DraftModel, TrimmedSource};
use edgespec::engine::{ContextParams, Model, ModelParams};
use edgespec::generate::prompt_tokens;
use edgespec::gguf::{GgufFile, ModelSummary};
use edgespec::sampling::SamplingParams;
use edgespec::{DraftKind, PolicyConfig, Session, SessionConfig};
use edgespec_tools::bench::load_prompts;
use edgespec_tools::scratch::Scratch;
use edgespec_tools::vocabtrim::{
    best_k, calibrate_generations, count_raw_text, inputs_sha256, k_candidates, measure_k,
    resumable, CountSource, TokenCounts, Trimmer, RAW_TEXT_SETTINGS,
};

/// Arguments of `calibrate`.
#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// Target model whose emitted tokens are counted (`--target` until the next release).
    #[arg(short = 'm', long = "model", alias = "target")]
    target: PathBuf,
    /// Calibration prompts (plain lines or JSONL).
    #[arg(short = 'f', long, required_unless_present = "raw_text")]
    prompts: Option<PathBuf>,
    /// Count the tokens of this text corpus instead: a file (one document
    /// per line) or a folder (each file in it one document).
    #[arg(long, conflicts_with = "prompts")]
    raw_text: Option<PathBuf>,
    /// Output counts file (JSON); one from the same inputs and settings is
    /// resumed, any other is refused.
    #[arg(short, long)]
    out: PathBuf,
    /// Start over when the output holds counts of other inputs.
    #[arg(long)]
    force: bool,
    /// Tokens per generation.
    #[arg(short = 'n', long, default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature for calibration generations (0: greedy).
    #[arg(long, default_value_t = 0.0)]
    temp: f32,
    /// Feed prompts as raw text instead of chat messages.
    #[arg(long)]
    no_chat: bool,
    /// Threads (default: all cores).
    #[arg(short, long)]
    threads: Option<i32>,
}

/// The documents of a raw-text corpus: a file's non-empty lines, or the
/// UTF-8 files of a folder (not recursive; others are skipped with a warning).
fn corpus_documents(corpus: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let read = |p: &std::path::Path| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    if !corpus.is_dir() {
        return Ok(read(corpus)?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect());
    }
    let mut paths: Vec<PathBuf> = std::fs::read_dir(corpus)
        .with_context(|| format!("reading folder {}", corpus.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let mut documents = Vec::with_capacity(paths.len());
    for path in paths {
        match read(&path) {
            Ok(text) if !text.trim().is_empty() => documents.push(text),
            Ok(_) => {}
            Err(e) => log::warn!("skipping {}: {e:#}", path.display()),
        }
    }
    anyhow::ensure!(
        !documents.is_empty(),
        "no text files in {}",
        corpus.display()
    );
    Ok(documents)
}

pub fn calibrate(args: CalibrateArgs) -> anyhow::Result<()> {
    let model = Model::load(&args.target, &ModelParams::default())
        .with_context(|| format!("loading {}", args.target.display()))?;
    let counts = if let Some(corpus) = &args.raw_text {
        let lines = corpus_documents(corpus)?;
        let inputs = inputs_sha256(&lines, RAW_TEXT_SETTINGS);
        match resumable(&args.out, CountSource::RawText, &inputs, args.force)? {
            Some(done) => done,
            None => {
                let counts = count_raw_text(&model, &lines)?;
                counts.save(&args.out)?;
                counts
            }
        }
    } else {
        let path = args
            .prompts
            .as_ref()
            .expect("clap requires --prompts without --raw-text");
        let prompts: Vec<String> = load_prompts(path)?.into_iter().map(|p| p.text).collect();
        let mut context = ContextParams::default();
        if let Some(t) = args.threads {
            context.n_threads = t;
            context.n_threads_batch = t;
        }
        let mut session = Session::new(SessionConfig {
            sampling: SamplingParams {
                temperature: args.temp,
                ..SamplingParams::greedy()
            },
            ..SessionConfig::new(model.clone(), context)
        })?;
        let bar = indicatif::ProgressBar::new(prompts.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} {pos}/{len} prompts {elapsed_precise} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let counts = calibrate_generations(
            &mut session,
            &prompts,
            args.max_tokens,
            !args.no_chat,
            &args.out,
            args.force,
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
    #[arg(long)]
    counts: PathBuf,
    /// Counts that rank the ids --counts leaves tied (most of the vocabulary,
    /// when calibration is small): e.g. `calibrate --raw-text` on a corpus.
    #[arg(long)]
    prior: Option<PathBuf>,
    /// Rows of the LM head to keep, or `auto`: measure each of --k-candidates
    /// with the target on held-out prompts and keep the fastest.
    #[arg(short)]
    k: String,
    /// Candidates for `-k auto`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "4096,8192,16384,32768,65536"
    )]
    k_candidates: Vec<usize>,
    /// Target model (`-k auto`; `--target` until the next release).
    #[arg(short = 'm', long = "model", alias = "target")]
    target: Option<PathBuf>,
    /// Held-out prompts for `-k auto` (not the calibration prompts).
    #[arg(short = 'f', long)]
    prompts: Option<PathBuf>,
    /// Use at most this many held-out prompts.
    #[arg(long, default_value_t = 4)]
    limit: usize,
    /// Tokens per held-out generation.
    #[arg(short = 'n', long, default_value_t = 64)]
    max_tokens: usize,
    /// Draft length while measuring.
    #[arg(long, default_value_t = 3)]
    gamma: usize,
    /// Threads (default: all cores).
    #[arg(short, long, default_value_t = crate::all_cores())]
    threads: i32,
    /// Output GGUF.
    #[arg(short, long)]
    out: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    force: bool,
}

pub fn trim(args: TrimArgs) -> anyhow::Result<()> {
    let prior = args.prior.as_deref().map(TokenCounts::load).transpose()?;
    let trimmer = Trimmer::new(&args.drafter, TokenCounts::load(&args.counts)?, prior)
        .with_context(|| format!("opening {}", args.drafter.display()))?;
    let counts = trimmer.counts();
    let file = trimmer.file();
    let specials = trimmer.specials();
    anyhow::ensure!(
        args.force || !args.out.exists(),
        "{} exists: choose another -o, or --force to replace it",
        args.out.display()
    );
    let write = |k: usize, out: &std::path::Path| -> anyhow::Result<Vec<i32>> {
        Ok(trimmer.write(k, out)?)
    };
    let k = if args.k == "auto" {
        choose_k(&args, counts.vocab_size, &write)?
    } else {
        args.k
            .parse()
            .map_err(|_| anyhow::anyhow!("-k must be a number or `auto`, got {:?}", args.k))?
    };
    // Written inside a scratch folder (gone on error and on Ctrl-C), then
    // moved into place whole.
    let scratch = Scratch::dir_beside(&args.out)?;
    let written = scratch.path().join("trimmed.gguf");
    let ids = write(k, &written)?;
    std::fs::rename(&written, &args.out)
        .with_context(|| format!("moving the trimmed file to {}", args.out.display()))?;
    drop(scratch);
    let before = ModelSummary::of(file)?;
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

/// `-k auto`: trims each candidate K, runs the trimmed drafter against the
/// target on held-out prompts, prints the curve and returns the best K.
fn choose_k(
    args: &TrimArgs,
    vocab: usize,
    write: &dyn Fn(usize, &std::path::Path) -> anyhow::Result<Vec<i32>>,
) -> anyhow::Result<usize> {
    let (Some(target), Some(prompts)) = (&args.target, &args.prompts) else {
        anyhow::bail!("-k auto needs --target and held-out --prompts");
    };
    let mut prompts: Vec<String> = load_prompts(prompts)?.into_iter().map(|p| p.text).collect();
    prompts.truncate(args.limit.max(1));
    let model = Model::load(target, &ModelParams::default())?;
    let context = ContextParams {
        n_threads: args.threads,
        n_threads_batch: args.threads,
        ..ContextParams::default()
    };
    let tokens: Vec<Vec<i32>> = prompts
        .iter()
        .map(|p| prompt_tokens(&model, p, true))
        .collect::<Result<_, _>>()?;
    let scratch = Scratch::dir_beside(&args.out)?;
    let mut points = Vec::new();
    eprintln!(
        "{:>7} {:>7} {:>14} {:>8} {:>6}",
        "K", "alpha", "drafter ms/tok", "tok/s", "MBSU"
    );
    for k in k_candidates(&args.k_candidates, vocab) {
        let path = scratch.path().join(format!("k{k}.gguf"));
        write(k, &path)?;
        let src = TrimmedSource::open(&path, Some(&args.drafter), &ModelParams::default())?;
        let config = SessionConfig {
            policy: PolicyConfig {
                length: DraftLength::Fixed(args.gamma),
                ..PolicyConfig::default()
            },
            ..SessionConfig::new(model.clone(), context.clone())
                .with_drafter(DraftKind::Trimmed, Some(DraftModel::Trimmed(Arc::new(src))))
        };
        let point = measure_k(k, config, &tokens, args.max_tokens)?;
        eprintln!(
            "{:>7} {:>7.3} {:>14.2} {:>8.2} {:>6.3}",
            point.k, point.alpha, point.drafter_ms, point.tok_s, point.mbsu
        );
        points.push(point);
        std::fs::remove_file(&path).ok();
    }
    drop(scratch);
    let best = best_k(&points).ok_or_else(|| anyhow::anyhow!("no K could be measured"))?;
    eprintln!("chose K = {} ({:.2} tok/s)", best.k, best.tok_s);
    Ok(best.k)
}
