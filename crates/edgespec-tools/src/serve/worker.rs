//! The one thread that generates: it owns the session (the models and
//! their caches) and answers queued requests one after the other. Each
//! request's prompt is read after what the caches already hold of it, so
//! a client that sends its conversation turn after turn pays only for the
//! new turn (one conversation slot with KV reuse).

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use edgespec::engine::{ChatMessage, Token};
use edgespec::generate::StopReason;
use edgespec::sampling::SamplingParams;
use edgespec::Session;
use tokio::sync::mpsc::UnboundedSender;

use super::openai::{End, Usage};

/// What to read before generating.
#[derive(Debug, Clone)]
pub enum Prompt {
    /// A conversation, through the model's chat template.
    Chat(Vec<ChatMessage>),
    /// Raw text.
    Text(String),
}

/// One queued request.
#[derive(Debug)]
pub struct Job {
    /// What to read.
    pub prompt: Prompt,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// How to pick them.
    pub sampling: SamplingParams,
    /// Where the output ends.
    pub stop: Vec<String>,
    /// The grammar the output follows (GBNF).
    pub grammar: Option<String>,
    /// Where the answer goes; when the receiver is gone (the client left),
    /// generation stops.
    pub events: UnboundedSender<Event>,
}

/// What the worker reports about a job.
#[derive(Debug)]
pub enum Event {
    /// Newly generated text.
    Text(String),
    /// The answer is complete.
    Done(End),
    /// The request could not be answered: a client error (400) or not (500).
    Failed {
        /// The client's mistake (400) rather than the server's (500).
        client: bool,
        /// What went wrong.
        message: String,
    },
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue is full.
    Busy,
    /// The worker has stopped.
    Gone,
}

/// The queue in front of the worker: at most `capacity` waiting jobs.
#[derive(Debug, Clone)]
pub struct Queue(SyncSender<Job>);

impl Queue {
    /// Queues a job without waiting.
    pub fn submit(&self, job: Job) -> Result<(), Refused> {
        self.0.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => Refused::Busy,
            TrySendError::Disconnected(_) => Refused::Gone,
        })
    }
}

/// Starts the worker on `session`; it ends when every [`Queue`] is
/// dropped, handing the session back.
pub fn start(session: Session, capacity: usize) -> (Queue, std::thread::JoinHandle<Session>) {
    let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
    let handle = std::thread::Builder::new()
        .name("edgespec-generate".into())
        .spawn(move || work(session, rx))
        .expect("spawning the generation thread");
    (Queue(tx), handle)
}

fn work(mut session: Session, jobs: Receiver<Job>) -> Session {
    for job in jobs {
        if job.events.is_closed() {
            continue; // the client left while the job waited
        }
        // A client that leaves while its prompt is read stops the read.
        let events = job.events.clone();
        session
            .target_mut()
            .set_stop_check(Some(Arc::new(move || events.is_closed())));
        let answered = answer(&mut session, &job);
        // The check holds a sender: dropped, so the client's stream ends.
        session.target_mut().set_stop_check(None);
        let event = match answered {
            Ok(end) => Event::Done(end),
            Err((client, message)) => Event::Failed { client, message },
        };
        let _ = job.events.send(event);
    }
    session
}

/// The prompt's tokens: a conversation through the chat template, text as it is.
fn tokens(session: &Session, prompt: &Prompt) -> Result<Vec<Token>, String> {
    let model = session.model();
    match prompt {
        Prompt::Chat(messages) => model
            .apply_chat_template(messages)
            .and_then(|text| model.tokenize(&text, true, true)),
        Prompt::Text(text) => model.tokenize(text, true, false),
    }
    .map_err(|e| e.to_string())
}

fn answer(session: &mut Session, job: &Job) -> Result<End, (bool, String)> {
    let prompt = tokens(session, &job.prompt).map_err(|e| (true, e))?;
    if prompt.is_empty() {
        return Err((true, "the prompt is empty".into()));
    }
    session
        .set_sampling(job.sampling)
        .map_err(|e| (true, e.to_string()))?;
    session.set_stop_strings(job.stop.clone());
    session
        .set_grammar(job.grammar.as_deref())
        .map_err(|e| (true, e.to_string()))?;
    let events = &job.events;
    let outcome = session
        .generate_from_cache(&prompt, job.max_tokens, |_, text| {
            if events.is_closed() {
                return false;
            }
            if !text.is_empty() {
                let _ = events.send(Event::Text(text.to_owned()));
            }
            true
        })
        .map_err(|e| {
            use edgespec::engine::EngineError;
            use edgespec::error::GenerateError;
            if matches!(e, GenerateError::Engine(EngineError::Interrupted)) {
                log::info!("the client left while its prompt was read: stopped there");
            }
            // A prompt the context cannot hold is the client's to shorten.
            let client = matches!(
                e,
                GenerateError::Engine(
                    EngineError::ContextFull { .. } | EngineError::InvalidParam { .. }
                )
            );
            (client, e.to_string())
        })?;
    let g = &outcome.generation;
    if g.stop == StopReason::Callback {
        log::info!("the client left: stopped after {} tokens", g.tokens.len());
    }
    Ok(End {
        finish_reason: match g.stop {
            StopReason::MaxTokens | StopReason::ContextFull => "length",
            _ => "stop",
        },
        usage: Usage {
            prompt_tokens: prompt.len(),
            completion_tokens: g.tokens.len(),
            total_tokens: prompt.len() + g.tokens.len(),
        },
        stats: serde_json::json!({
            "timings": g.stats,
            "speculation": outcome.speculation,
            "ead": outcome.ead,
        }),
    })
}
