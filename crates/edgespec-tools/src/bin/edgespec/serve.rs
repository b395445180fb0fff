//! `edgespec serve`: the OpenAI-compatible HTTP server (see
//! `edgespec_tools::serve`) on the models and decoding the flags describe.

use std::net::{IpAddr, SocketAddr};

use clap::Args;

use edgespec::Session;
use edgespec_tools::serve::{serve, ServeConfig};

use crate::session_args::{save_costs, save_memory, SessionArgs};
use crate::UsageError;

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Models and decoding (the sampling flags are the defaults of requests
    /// that do not set their own).
    #[command(flatten)]
    session: SessionArgs,
    /// Address to listen on (loopback unless told otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Port (0: any free one, printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Requests that may wait while one is answered; more get 503.
    #[arg(long, default_value_t = 8)]
    max_queue: usize,
    /// Largest request body in bytes; larger get 413.
    #[arg(long, default_value_t = 1 << 20)]
    max_body: usize,
    /// Tokens an answer gets when the request does not say.
    #[arg(short = 'n', long, default_value_t = 256)]
    max_tokens: usize,
    /// The model's name in answers (default: the target file's name).
    #[arg(long)]
    alias: Option<String>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    if args.max_queue == 0 || args.max_body == 0 || args.max_tokens == 0 {
        return Err(UsageError("--max-queue, --max-body and -n must be at least 1".into()).into());
    }
    let (config, cost_cache) = args.session.config(false)?;
    let model_name = args.alias.clone().unwrap_or_else(|| {
        args.session
            .model
            .file_stem()
            .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned())
    });
    let serve_config = ServeConfig {
        address: SocketAddr::new(args.host, args.port),
        model_name,
        max_queue: args.max_queue,
        max_body_bytes: args.max_body,
        default_max_tokens: args.max_tokens.min(config.context.n_ctx as usize),
        max_tokens_limit: config.context.n_ctx as usize,
        sampling: config.sampling,
    };
    let session = Session::new(config)?;
    let session = serve(session, serve_config, |address| {
        eprintln!("edgespec serve: listening on http://{address}/v1");
    })?;
    // A clean shutdown keeps what the session measured for the next start.
    save_costs(cost_cache.as_ref(), &session, None);
    save_memory(&args.session, &session);
    Ok(())
}
