//! `edgespec generate`: target-only generation streamed to stdout.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use edgespec::engine::{Context, ContextParams, Model, ModelParams};
use edgespec::generate::{generate_target_only, prompt_tokens, GenerateParams};
use edgespec::sampling::SamplingParams;

/// Arguments of `generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Target model (GGUF).
    #[arg(short, long)]
    model: PathBuf,
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
    /// Threads (default: all cores).
    #[arg(short, long)]
    threads: Option<i32>,
    /// Context size in tokens.
    #[arg(short = 'c', long, default_value_t = 4096)]
    ctx_size: u32,
    /// Never stop at end-of-generation tokens (fixed-length benchmark runs).
    #[arg(long)]
    ignore_eos: bool,
    /// Layers to offload to the GPU (CUDA builds).
    #[arg(long, default_value_t = 0)]
    gpu_layers: u32,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let sampling = SamplingParams {
        temperature: args.temp,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
    };
    sampling.validate()?;
    let model_params = ModelParams {
        gpu_layers: args.gpu_layers,
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
    let mut ctx = Context::new(model.clone(), &ctx_params)?;
    let prompt = prompt_tokens(&model, &args.prompt, args.chat)?;
    let mut stdout = std::io::stdout().lock();
    let generation = generate_target_only(
        &mut ctx,
        &prompt,
        &GenerateParams {
            max_tokens: args.max_tokens,
            sampling,
            ignore_eos: args.ignore_eos,
        },
        |_, text| {
            // A closed stdout (e.g. `| head`) ends generation quietly.
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .is_ok()
        },
    )?;
    writeln!(stdout)?;
    eprintln!(
        "{} | stop: {:?}",
        generation.stats.summary_line(),
        generation.stop
    );
    Ok(())
}
