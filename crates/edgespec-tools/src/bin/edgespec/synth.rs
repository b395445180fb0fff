//! `edgespec synth`: write a random-weight llama-architecture model with our
//! GGUF writer (for tests and for machines where no model can be carried).

use std::path::PathBuf;

use clap::Args;

use edgespec::synthetic::SyntheticSpec;

/// Most weights `synth` builds (1 GiB of f32).
const MAX_SYNTH_WEIGHTS: u64 = 1 << 28;

/// Arguments of `synth`.
#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output file.
    #[arg(short, long)]
    out: PathBuf,
    /// Embedding width.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65536))]
    embd: u64,
    /// Transformer blocks.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=512))]
    layers: u32,
    /// Attention heads.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1024))]
    heads: u64,
    /// Key/value heads.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=1024))]
    kv_heads: u64,
    /// Feed-forward width.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=262144))]
    ff: u64,
    /// Word tokens besides the 259 specials and bytes.
    #[arg(long, default_value_t = 61, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    words: u32,
    /// Store matrices as f16.
    #[arg(long)]
    f16: bool,
    /// Weight seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub fn run(args: SynthArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.heads > 0 && args.embd % args.heads == 0,
        "--embd must be a multiple of --heads"
    );
    anyhow::ensure!(
        args.kv_heads > 0 && args.heads % args.kv_heads == 0,
        "--heads must be a multiple of --kv-heads"
    );
    // Weights are built in memory: an upper bound on their count (embedding
    // and head, attention, feed-forward) keeps a typo from exhausting it.
    let vocab = 259 + u64::from(args.words);
    let weights = 2 * vocab * args.embd
        + u64::from(args.layers) * (4 * args.embd * args.embd + 3 * args.embd * args.ff);
    anyhow::ensure!(
        weights <= MAX_SYNTH_WEIGHTS,
        "a test model of {weights} weights is over the {MAX_SYNTH_WEIGHTS} synth builds"
    );
    let spec = SyntheticSpec {
        n_words: args.words as usize,
        n_embd: args.embd,
        n_layer: args.layers,
        n_head: args.heads,
        n_head_kv: args.kv_heads,
        n_ff: args.ff,
        f16_weights: args.f16,
        seed: args.seed,
        weight_scale: 3.0,
        ..SyntheticSpec::default()
    };
    spec.write(&args.out)?;
    eprintln!("wrote {} ({} tokens)", args.out.display(), spec.n_vocab());
    Ok(())
}
