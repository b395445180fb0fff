//! The flags that put the target on ggml RPC servers, shared by the
//! commands that load a target.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use edgespec::engine::rpc::{parse_endpoints, RemoteTarget, RpcKey, DEFAULT_RPC_TIMEOUT};

use crate::UsageError;

/// `--target-rpc` and its companions.
#[derive(Debug, Clone, Args)]
pub struct RpcArgs {
    /// Run the target on these ggml RPC servers (`edgespec rpc-server`),
    /// its layers split between them; drafters stay on this machine.
    #[arg(long, value_name = "HOST:PORT[,HOST:PORT...]")]
    pub target_rpc: Option<String>,
    /// The key file the servers were started with (`edgespec rpc-server
    /// --key-file`): the link is encrypted and authenticated, and servers
    /// may be off loopback.
    #[arg(long, value_name = "FILE", requires = "target_rpc")]
    pub rpc_key_file: Option<PathBuf>,
    /// When the servers are lost, load this model file here (the
    /// target's own file, say) and carry on: the text so far is read into
    /// it and the answer completes, a pause instead of an error.
    #[arg(long, value_name = "MODEL", requires = "target_rpc")]
    pub target_fallback: Option<PathBuf>,
    /// Allow RPC servers off loopback without a key. Plain ggml RPC has no
    /// authentication or encryption: prefer --rpc-key-file, an SSH tunnel
    /// or WireGuard.
    #[arg(long)]
    pub insecure_rpc: bool,
    /// Seconds an RPC server may take to accept or to answer any one
    /// request before it counts as lost.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_RPC_TIMEOUT.as_secs_f64())]
    pub rpc_timeout: f64,
}

impl RpcArgs {
    /// The remote target, if one is asked for.
    pub fn remote(&self) -> Result<Option<RemoteTarget>, UsageError> {
        let Some(text) = &self.target_rpc else {
            return Ok(None);
        };
        let servers = parse_endpoints(text).map_err(|e| UsageError(e.to_string()))?;
        let key = self
            .rpc_key_file
            .as_deref()
            .map(RpcKey::load)
            .transpose()
            .map_err(|e| UsageError(e.to_string()))?;
        Ok(Some(RemoteTarget {
            insecure: self.insecure_rpc,
            timeout: rpc_timeout(self.rpc_timeout)?,
            key,
            fallback: self.target_fallback.clone(),
            ..RemoteTarget::new(servers)
        }))
    }
}

/// `--rpc-timeout` as a duration: 0.001 s to a day.
pub fn rpc_timeout(seconds: f64) -> Result<Duration, UsageError> {
    if !(0.001..=86_400.0).contains(&seconds) {
        return Err(UsageError(format!(
            "--rpc-timeout {seconds}: give 0.001 to 86400 seconds"
        )));
    }
    Ok(Duration::from_secs_f64(seconds))
}
