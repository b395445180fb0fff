//! `edgespec inspect`: pure-Rust GGUF inspection.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use edgespec::gguf::{GgufFile, ModelSummary, Value};

/// Arguments of `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// GGUF file.
    model: PathBuf,
    /// Print every tensor (name, type, dims, bytes, offset).
    #[arg(long)]
    tensors: bool,
    /// Print every metadata key (long arrays abbreviated).
    #[arg(long)]
    metadata: bool,
    /// Machine-readable JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let file = GgufFile::open(&args.model)
        .with_context(|| format!("cannot inspect {}", args.model.display()))?;
    let summary = ModelSummary::of(&file)?;
    if args.json {
        let mut json = serde_json::to_value(&summary)?;
        if args.tensors {
            json["tensors"] = file
                .tensors()
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "name": t.name, "type": t.ggml_type.name, "dims": t.dims,
                        "bytes": t.size, "offset": t.offset,
                    })
                })
                .collect();
        }
        if args.metadata {
            json["metadata"] = file
                .metadata()
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(short_value(v))))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    print_summary(&summary);
    if args.metadata {
        println!("\nmetadata ({} keys):", file.metadata().len());
        for (k, v) in file.metadata() {
            println!("  {k:<44} {}", short_value(v));
        }
    }
    if args.tensors {
        println!(
            "\n{:<36} {:>8} {:>22} {:>12} {:>12}",
            "tensor", "type", "dims", "bytes", "offset"
        );
        for t in file.tensors() {
            let dims = t
                .dims
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join("x");
            println!(
                "{:<36} {:>8} {:>22} {:>12} {:>12}",
                t.name, t.ggml_type.name, dims, t.size, t.offset
            );
        }
    }
    Ok(())
}

fn print_summary(s: &ModelSummary) {
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
    println!("architecture      {}", s.architecture);
    if let Some(name) = &s.name {
        println!("name              {name}");
    }
    println!(
        "file size         {} bytes ({:.1} MiB), GGUF v{}",
        s.file_bytes,
        mib(s.file_bytes),
        s.gguf_version
    );
    println!(
        "parameters        {} ({:.1} M)",
        s.parameters,
        s.parameters as f64 / 1e6
    );
    println!(
        "vocabulary        {} (LM head rows {})",
        opt(s.vocab_size),
        opt(s.head_rows)
    );
    println!("context length    {}", opt(s.context_length));
    println!(
        "layers / width    {} / {}",
        opt(s.block_count),
        opt(s.embedding_length)
    );
    println!(
        "LM head           {}",
        if s.tied_head {
            "tied to token embedding"
        } else {
            "separate (output.weight)"
        }
    );
    let types: Vec<String> = s
        .types
        .iter()
        .map(|(name, t)| format!("{name}: {} tensors, {:.1} MiB", t.tensors, mib(t.bytes)))
        .collect();
    println!("tensor types      {}", types.join("; "));
    println!(
        "bytes per token   {} ({:.1} MiB)",
        s.bytes_per_token,
        mib(s.bytes_per_token)
    );
    println!(
        "LM head bytes     {} ({:.1} MiB), {:.1}% of bytes per token",
        s.head_bytes,
        mib(s.head_bytes),
        100.0 * s.head_share
    );
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A value for display: arrays longer than 8 items are abbreviated.
fn short_value(v: &Value) -> String {
    match v {
        Value::Array(array) => {
            let shown = array.len().min(if array.len() > 8 { 4 } else { 8 });
            let head: Vec<String> = (0..shown)
                .filter_map(|i| array.get(i))
                .map(|v| short_value(&v))
                .collect();
            if shown < array.len() {
                format!(
                    "[{}; {} items: {}, ...]",
                    array.element_type().name(),
                    array.len(),
                    head.join(", ")
                )
            } else {
                format!("[{}]", head.join(", "))
            }
        }
        Value::String(s) if s.chars().count() > 80 => {
            format!("{:?}...", s.chars().take(77).collect::<String>())
        }
        Value::String(s) => format!("{s:?}"),
        other => format!("{other:?}")
            .split(['(', ')'])
            .nth(1)
            .unwrap_or_default()
            .to_owned(),
    }
}
