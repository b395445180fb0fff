//! `edgespec chat`: an interactive conversation in the terminal. Each line
//! is a user turn; the answer streams as it is generated and each turn
//! reads only its own new tokens (the caches keep the conversation).
//! `/reset` forgets the conversation (the system prompt stays), `/stats`
//! prints the last turn's figures, `/regen` answers the last message again,
//! `/exit` (or end of input) quits. Ctrl-C stops the answer being generated
//! and keeps the session; at the prompt it quits.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Args, ValueEnum};

use edgespec::engine::EngineError;
use edgespec::session::{Conversation, Outcome, Session, WhenFull};
use edgespec::GenerateError;

use crate::session_args::{
    save_costs, save_memory, show_prompt_progress, use_prompt_cache, SessionArgs,
};

/// `--when-full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WhenFullArg {
    /// The turn fails with an error; `/reset` to go on.
    Error,
    /// The oldest exchanges are dropped (the system prompt stays).
    DropOldest,
}

/// Arguments of `chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    /// Models and decoding.
    #[command(flatten)]
    session: SessionArgs,
    /// System prompt.
    #[arg(long)]
    system: Option<String>,
    /// Most tokens per answer.
    #[arg(short = 'n', long, default_value_t = 512)]
    max_tokens: usize,
    /// What a turn does when the conversation outgrows the context.
    #[arg(long, value_enum, default_value = "drop-oldest")]
    when_full: WhenFullArg,
    /// Read the whole conversation again every turn (as without a cache;
    /// for comparison).
    #[arg(long)]
    no_cache_reuse: bool,
}

/// Set by Ctrl-C while an answer is being generated: stop it.
static STOP: AtomicBool = AtomicBool::new(false);
/// True while an answer is being generated.
static ANSWERING: AtomicBool = AtomicBool::new(false);

pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    let (config, cost_cache) = args.session.config(false)?;
    let when_full = match args.when_full {
        WhenFullArg::Error => WhenFull::Error,
        WhenFullArg::DropOldest => WhenFull::DropOldest,
    };
    let mut session = Session::new(config)?;
    show_prompt_progress(&mut session);
    // Ctrl-C during an answer's prompt read stops the read too; the
    // conversation is then as before that message.
    session
        .target_mut()
        .set_stop_check(Some(Arc::new(|| STOP.load(Ordering::SeqCst))));
    let mut conversation = Conversation::new(session, when_full);
    conversation.set_reuse(!args.no_cache_reuse);
    if let Some(system) = &args.system {
        conversation.add("system", system);
        let history = conversation.render()?;
        if let Some(line) = use_prompt_cache(&args.session, conversation.session_mut(), &history)? {
            eprintln!("({line})");
        }
    }
    ctrlc::set_handler(|| {
        if ANSWERING.load(Ordering::SeqCst) {
            STOP.store(true, Ordering::SeqCst);
        } else {
            std::process::exit(130);
        }
    })?;
    let stdin = std::io::stdin();
    let mut last: Option<Outcome> = None;
    let mut line = String::new();
    loop {
        eprint!("> ");
        line.clear();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let text = line.trim_end_matches(['\n', '\r']);
        let result = match text.trim() {
            "" => continue,
            "/exit" | "/quit" => break,
            "/reset" => {
                conversation.reset();
                eprintln!("(conversation forgotten)");
                continue;
            }
            "/stats" => {
                match &last {
                    Some(outcome) => print_stats(outcome),
                    None => eprintln!("(no answer yet)"),
                }
                continue;
            }
            "/regen" => answer(|on_token| conversation.regenerate(args.max_tokens, on_token)),
            _ => answer(|on_token| conversation.respond(text, args.max_tokens, on_token)),
        };
        match result {
            Ok(outcome) => {
                save_costs(cost_cache.as_ref(), conversation.session(), None);
                save_memory(&args.session, conversation.session());
                last = Some(outcome);
            }
            Err(GenerateError::Engine(EngineError::Interrupted)) => {
                eprintln!("(the message was not sent: the conversation is as before it)");
            }
            Err(e) => eprintln!("error: {e}"),
        }
    }
    Ok(())
}

/// Runs one answer with streaming to stdout and Ctrl-C stopping it.
fn answer(
    generate: impl FnOnce(
        &mut dyn FnMut(edgespec::generate::Piece, &str) -> bool,
    ) -> Result<Outcome, edgespec::error::GenerateError>,
) -> Result<Outcome, edgespec::error::GenerateError> {
    STOP.store(false, Ordering::SeqCst);
    ANSWERING.store(true, Ordering::SeqCst);
    let mut stdout = std::io::stdout().lock();
    let mut on_token = |_, text: &str| {
        let written = stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_ok();
        written && !STOP.load(Ordering::SeqCst)
    };
    let outcome = generate(&mut on_token);
    ANSWERING.store(false, Ordering::SeqCst);
    println!();
    if STOP.swap(false, Ordering::SeqCst) {
        eprintln!("(stopped)");
    }
    outcome
}

fn print_stats(outcome: &Outcome) {
    let s = &outcome.generation.stats;
    eprintln!(
        "prompt {} tokens ({} from the cache, {} read at {:.1} tok/s), first token after {:.0} ms, {} generated at {:.1} tok/s",
        s.prompt_tokens,
        s.prompt_tokens_cached,
        s.prompt_tokens - s.prompt_tokens_cached,
        s.prompt_tok_per_s(),
        s.time_to_first_token.as_secs_f64() * 1e3,
        s.generated_tokens,
        s.decode_tok_per_s()
    );
    if let Some(spec) = &outcome.speculation {
        eprintln!(
            "drafted {}, accepted {} (α {:.2})",
            spec.drafted,
            spec.accepted,
            spec.acceptance()
        );
    }
}
