//! `edgespec info`: what this build of llama.cpp can use on this machine.

use std::path::PathBuf;

use clap::Args;

use edgespec::engine::rpc::{connect, parse_endpoints, RemoteTarget, RpcKey};
use edgespec::engine::{devices, system_info, DeviceInfo};

use crate::rpc_args::rpc_timeout;
use crate::UsageError;

/// Arguments of `info`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// Machine-readable JSON.
    #[arg(long)]
    json: bool,
    /// Also show the devices of these ggml RPC servers and their memory.
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT...]")]
    rpc: Option<String>,
    /// The key file the servers were started with (an encrypted link).
    #[arg(long, value_name = "FILE", requires = "rpc")]
    rpc_key_file: Option<PathBuf>,
    /// Allow RPC servers off loopback without a key (no authentication or
    /// encryption).
    #[arg(long)]
    insecure_rpc: bool,
    /// Seconds an RPC server may take to answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    rpc_timeout: f64,
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let mut devices = devices()?;
    if let Some(text) = &args.rpc {
        let target = RemoteTarget {
            insecure: args.insecure_rpc,
            timeout: rpc_timeout(args.rpc_timeout)?,
            key: args.rpc_key_file.as_deref().map(RpcKey::load).transpose()?,
            ..RemoteTarget::new(parse_endpoints(text).map_err(|e| UsageError(e.to_string()))?)
        };
        let link = connect(&target)?;
        devices.extend(link.devices().into_iter().map(|(server, d)| DeviceInfo {
            description: format!("ggml RPC server {server}"),
            ..d
        }));
    }
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
