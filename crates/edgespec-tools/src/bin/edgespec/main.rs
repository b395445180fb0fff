//! The `edgespec` command-line tool: argument parsing and the subcommands.

mod bench;
mod chat;
mod eval;
mod generate;
mod info;
mod inspect;
mod profile;
mod replay;
mod rpc_args;
mod rpc_server;
mod serve;
mod session_args;
mod synth;
mod trim;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// edgespec: on-device LLM inference with speculative decoding that pays off.
#[derive(Debug, Parser)]
#[command(name = "edgespec", version, about)]
struct Cli {
    /// Show debug logs, llama.cpp's included (-vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show a GGUF model's metadata, tensors and bytes read per token.
    Inspect(inspect::InspectArgs),
    /// Evaluate output quality (HumanEval pass@1 of large, small and EAD).
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// Generate text from a prompt (target alone or speculative).
    #[command(after_help = "Examples:
  edgespec generate -m target.gguf -p 'Write a haiku' --chat -n 64
  edgespec generate -m target.gguf -md drafter.gguf -f prompt.txt -n 128 -t 2 -s 42 --min-p 0.05 --temp 0.7 -r '</s>'
  edgespec generate -m target.gguf -md drafter.gguf --draft-kind hybrid -p '...' --stats --json")]
    Generate(generate::GenerateArgs),
    /// Chat in the terminal: each turn reads only its new tokens.
    Chat(chat::ChatArgs),
    /// Serve the model over HTTP with OpenAI's API (chat and text
    /// completions, streamed or whole), speculative decoding on.
    #[command(after_help = "Examples:
  edgespec serve -m target.gguf -md drafter.gguf --port 8080
  curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\
    -d '{\"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}], \"stream\": true}'")]
    Serve(serve::ServeArgs),
    /// Benchmark modes side by side on prompt sets, llama.cpp included.
    #[command(after_help = "Examples:
  edgespec bench -m target.gguf -md drafter.gguf -f code=benches/prompts/humaneval.jsonl -n 128 -r 2
  edgespec bench -m target.gguf -md drafter.gguf -f chat=benches/prompts/chat.txt --modes target,hybrid,llama-draft --out bench-out/chat")]
    Bench(bench::BenchArgs),
    /// Measure this machine's cost curves (target and drafter passes by batch size).
    Profile(profile::ProfileArgs),
    /// Price draft-length policies on recorded traces under cost profiles.
    Replay(replay::ReplayArgs),
    /// Count the token ids a target emits (VocabTrim calibration).
    Calibrate(trim::CalibrateArgs),
    /// Write a drafter whose LM head keeps only the K most used ids (VocabTrim).
    Trim(trim::TrimArgs),
    /// Write a random-weight test model (llama architecture).
    Synth(synth::SynthArgs),
    /// Show backends, CPU features ggml detected, threads and GPUs (and
    /// an RPC server's devices with --rpc).
    Info(info::InfoArgs),
    /// Serve this machine's CPU or GPUs to a remote edgespec as a ggml RPC
    /// device (the target of `--target-rpc`).
    #[command(after_help = "Examples:
  edgespec rpc-server --port 50052 -t 8
  # on the board, the server's port tunnelled to loopback:
  ssh -N -L 50052:127.0.0.1:50052 user@server &
  edgespec generate -m target.gguf --draft-kind lookup --target-rpc 127.0.0.1:50052 -p '...'")]
    RpcServer(rpc_server::RpcServerArgs),
}

/// llama.cpp's flags of more than one letter behind a single dash, as
/// their edgespec spellings (clap reads `-ngl 99` as `-n gl 99`).
const LLAMA_CPP_FLAGS: [(&str, &str); 6] = [
    ("-ngl", "--gpu-layers"),
    ("-md", "--draft"),
    ("-sys", "--system"),
    ("-fa", "--flash-attn"),
    ("-ctk", "--cache-type-k"),
    ("-ctv", "--cache-type-v"),
];

/// The arguments with llama.cpp's multi-letter single-dash flags renamed
/// (also in their `-flag=value` form).
fn llama_cpp_spellings(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    args.map(|arg| {
        let Some(text) = arg.to_str() else {
            return arg;
        };
        for (theirs, ours) in LLAMA_CPP_FLAGS {
            if text == theirs {
                return ours.into();
            }
            if let Some(value) = text.strip_prefix(theirs).and_then(|r| r.strip_prefix('=')) {
                return format!("{ours}={value}").into();
            }
        }
        arg
    })
    .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(llama_cpp_spellings(std::env::args_os()));
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Inspect(args) => inspect::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Chat(args) => chat::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run_bench(args),
        Command::Eval(command) => eval::run(command),
        Command::Synth(args) => synth::run(args),
        Command::Info(args) => info::run(args),
        Command::RpcServer(args) => rpc_server::run(args),
        Command::Profile(args) => profile::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Calibrate(args) => trim::calibrate(args),
        Command::Trim(args) => trim::trim(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            if is_usage_error(&e) {
                ExitCode::from(USAGE_EXIT)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The error and its causes on one line, each cause once: a cause whose
/// text an outer message already quotes (many errors show their source)
/// is not repeated.
fn error_chain(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Every core this process may use: the default thread count of every command.
fn all_cores() -> i32 {
    std::thread::available_parallelism().map_or(1, |n| n.get()) as i32
}

/// Exit status of a command line that asks for what cannot be (as clap's
/// own usage errors), so scripts tell a mistyped command from a failed run.
const USAGE_EXIT: u8 = 2;

/// A setting out of range or a combination that cannot run, found before
/// any work: an unknown bench mode, a bad sweep, a mode without the model
/// it needs, a number out of range.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn is_usage_error(e: &anyhow::Error) -> bool {
    use edgespec::engine::EngineError;
    use edgespec_tools::bench::{BenchError, ModeError, SweepError};
    e.chain().any(|cause| {
        cause.is::<UsageError>()
            || cause.is::<ModeError>()
            || cause.is::<SweepError>()
            || matches!(cause.downcast_ref(), Some(BenchError::Config(_)))
            || cause.downcast_ref().is_some_and(is_refused_address)
            || matches!(cause.downcast_ref(), Some(EngineError::Remote(e)) if is_refused_address(e))
    })
}

/// An RPC server address that is malformed or off loopback without the opt-in.
fn is_refused_address(e: &edgespec::engine::rpc::RpcError) -> bool {
    use edgespec::engine::rpc::RpcError;
    matches!(
        e,
        RpcError::NotLoopback { .. } | RpcError::BadEndpoint { .. }
    )
}

/// Our warnings by default; llama.cpp only on errors unless -v.
fn init_logging(verbose: u8) {
    let (ours, llama) = match verbose {
        0 => (log::LevelFilter::Warn, log::LevelFilter::Error),
        1 => (log::LevelFilter::Debug, log::LevelFilter::Debug),
        _ => (log::LevelFilter::Trace, log::LevelFilter::Trace),
    };
    env_logger::Builder::new()
        .filter_level(ours)
        .filter_module("llama.cpp", llama)
        .format_timestamp(None)
        .parse_default_env()
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap checks its own rules (duplicate short flags, conflicts naming
    /// missing arguments) only in debug builds: checked here for every one.
    #[test]
    fn an_error_chain_names_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let quoting = anyhow::Error::new(std::io::Error::other(format!("x.gguf: {io}")));
        let e = anyhow::Error::from(io)
            .context("x.gguf: No such file")
            .context("cannot inspect x.gguf");
        assert_eq!(
            error_chain(&e),
            "cannot inspect x.gguf: x.gguf: No such file"
        );
        let e = quoting.context("loading");
        assert_eq!(error_chain(&e), "loading: x.gguf: No such file");
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn llama_cpp_multi_letter_flags_are_renamed() {
        let args = [
            "edgespec",
            "-ngl",
            "99",
            "-md=d.gguf",
            "-n",
            "-sys",
            "-fa",
            "off",
            "-ctk=q8_0",
            "-ctv",
        ];
        let renamed = llama_cpp_spellings(args.iter().map(Into::into));
        assert_eq!(
            renamed,
            [
                "edgespec",
                "--gpu-layers",
                "99",
                "--draft=d.gguf",
                "-n",
                "--system",
                "--flash-attn",
                "off",
                "--cache-type-k=q8_0",
                "--cache-type-v"
            ]
        );
    }
}
