//! `edgespec rpc-server`: ggml's RPC server from the very sources edgespec
//! links, so client and server always speak the same protocol.

use std::path::PathBuf;

use clap::Args;

use edgespec::engine::rpc::{serve, RpcEndpoint};

use crate::UsageError;

/// Arguments of `rpc-server`.
#[derive(Debug, Args)]
pub struct RpcServerArgs {
    /// Address to listen on. Anything but loopback needs --insecure-rpc:
    /// ggml RPC has no authentication or encryption.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on.
    #[arg(short, long, default_value_t = 50052)]
    port: u16,
    /// CPU threads for the computation (default: all cores).
    #[arg(short, long)]
    threads: Option<usize>,
    /// Keep large tensors in this directory, so a client that sends the
    /// same weights again sends only their hashes.
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Listen on an address that is not loopback.
    #[arg(long)]
    insecure_rpc: bool,
}

pub fn run(args: RpcServerArgs) -> anyhow::Result<()> {
    let endpoint: RpcEndpoint = format!("{}:{}", args.host, args.port)
        .parse()
        .map_err(|e: edgespec::engine::rpc::RpcError| UsageError(e.to_string()))?;
    if let Some(dir) = &args.cache {
        std::fs::create_dir_all(dir)?;
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if args.insecure_rpc && endpoint.checked_addresses(false).is_err() {
        eprintln!(
            "warning: serving on {endpoint} without authentication or encryption: \
             anyone who reaches the port can read and write this machine's memory"
        );
    }
    eprintln!("edgespec rpc-server on {endpoint}, {threads} threads (Ctrl-C stops)");
    serve(&endpoint, args.insecure_rpc, threads, args.cache.as_deref())?;
    Ok(())
}
