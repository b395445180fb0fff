//! `edgespec rpc-server`: ggml's RPC server from the very sources edgespec
//! links, so client and server always speak the same protocol.

use std::path::PathBuf;

use clap::Args;

use edgespec::engine::rpc::{serve, RpcEndpoint, RpcKey};

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
    /// Serve only clients that hold this key file, over an encrypted and
    /// authenticated link (then any address may be listened on). Made,
    /// readable by its owner only, when it does not exist: copy it to
    /// each client and pass it there as --rpc-key-file.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Listen on an address that is not loopback without a key.
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
    let key = match &args.key_file {
        Some(path) if path.exists() => Some(RpcKey::load(path)?),
        Some(path) => {
            let key = RpcKey::create(path)?;
            eprintln!(
                "made the key file {}: copy it to each client and pass it there as --rpc-key-file",
                path.display()
            );
            Some(key)
        }
        None => None,
    };
    let off_loopback = endpoint.checked_addresses(false).is_err();
    if args.insecure_rpc && key.is_none() && off_loopback {
        eprintln!(
            "warning: serving on {endpoint} without authentication or encryption: \
             anyone who reaches the port can read and write this machine's memory"
        );
    }
    let link = if key.is_some() {
        "keyed, encrypted link"
    } else {
        "plain ggml RPC"
    };
    eprintln!("edgespec rpc-server on {endpoint}, {threads} threads, {link} (Ctrl-C stops)");
    serve(
        &endpoint,
        args.insecure_rpc,
        threads,
        args.cache.as_deref(),
        key,
    )?;
    Ok(())
}
