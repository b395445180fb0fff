//! `edgespec info`: what this build of llama.cpp can use on this machine.

use clap::Args;

use edgespec::engine::{devices, system_info};

/// Arguments of `info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Machine-readable JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let devices = devices()?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let info = system_info();
    if args.json {
        let json = serde_json::json!({
            "edgespec": env!("CARGO_PKG_VERSION"),
            "arch": std::env::consts::ARCH,
            "threads_available": threads,
            "system_info": info,
            "devices": devices,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    println!(
        "edgespec {} ({})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    println!("threads available  {threads}");
    println!("ggml system info   {info}");
    for d in &devices {
        let memory = if d.total_bytes > 0 {
            format!(
                ", {:.1} GiB total, {:.1} GiB free",
                d.total_bytes as f64 / 1073741824.0,
                d.free_bytes as f64 / 1073741824.0
            )
        } else {
            String::new()
        };
        println!(
            "device             {} [{}] {}{memory}",
            d.name, d.kind, d.description
        );
    }
    Ok(())
}
