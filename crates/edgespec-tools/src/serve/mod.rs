//! `edgespec serve`: an OpenAI-compatible HTTP server (chat and text
//! completions, streamed as server-sent events or whole, the model list,
//! a health check) on axum/tokio. One generation thread owns the session
//! ([`worker`]); requests queue in front of it up to a bound and are
//! refused with 503 beyond it; bodies are capped; a client that goes away
//! stops its generation; Ctrl-C or SIGTERM stops accepting, finishes the
//! answers under way and exits.

pub mod openai;
pub mod worker;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use edgespec::engine::ChatMessage;
use edgespec::sampling::{Mirostat, Penalties, SamplingParams, DEFAULT_MIROSTAT};
use edgespec::Session;
use serde_json::Value;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use openai::{ChatRequest, CompletionRequest, End, Endpoint, Settings};
use worker::{Event, Job, Prompt, Queue, Refused};

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where to listen (loopback unless told otherwise).
    pub address: SocketAddr,
    /// The model's name in answers and `/v1/models`.
    pub model_name: String,
    /// Requests that may wait for the generation thread; more get 503.
    pub max_queue: usize,
    /// Largest request body in bytes; larger get 413.
    pub max_body_bytes: usize,
    /// Tokens an answer gets when the request does not say.
    pub default_max_tokens: usize,
    /// Most tokens a request may ask for.
    pub max_tokens_limit: usize,
    /// Sampling when the request does not say (the command line's).
    pub sampling: SamplingParams,
}

#[derive(Clone)]
struct App {
    queue: Queue,
    config: std::sync::Arc<ServeConfig>,
    started: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Serves `session` until Ctrl-C or SIGTERM, then hands it back;
/// `on_listening` gets the bound address (with the port the system chose
/// for port 0).
pub fn serve(
    session: Session,
    config: ServeConfig,
    on_listening: impl FnOnce(SocketAddr),
) -> anyhow::Result<Session> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (queue, worker) = worker::start(session, config.max_queue);
    let app = App {
        queue,
        config: std::sync::Arc::new(config),
        started: now(),
    };
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(app.config.address).await?;
        on_listening(listener.local_addr()?);
        axum::serve(listener, router(app))
            .with_graceful_shutdown(shutdown())
            .await?;
        anyhow::Ok(())
    });
    // The router (and with it every queue handle) is gone: the worker ends
    // after the answer under way.
    drop(runtime);
    let session = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the generation thread panicked"))?;
    result.map(|()| session)
}

fn router(app: App) -> Router {
    let limit = app.config.max_body_bytes;
    Router::new()
        .route(
            "/health",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    log::info!("shutting down: no new requests; finishing the answers under way");
}

async fn models(State(app): State<App>) -> Json<Value> {
    Json(openai::model_list(&app.config.model_name, app.started))
}

/// An OpenAI-style error response.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let kind = if status.is_client_error() {
        "invalid_request_error"
    } else {
        "server_error"
    };
    (status, Json(openai::error_body(&message.into(), kind))).into_response()
}

/// A malformed body: 413 when too large, 400 otherwise.
fn rejected(rejection: JsonRejection) -> Response {
    let status = match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    error(status, rejection.body_text())
}

async fn chat(State(app): State<App>, body: Result<Json<ChatRequest>, JsonRejection>) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => return rejected(rejection),
    };
    if request.messages.is_empty() {
        return error(StatusCode::BAD_REQUEST, "messages is empty");
    }
    if let Some(m) = request
        .messages
        .iter()
        .find(|m| !matches!(m.role.as_str(), "system" | "user" | "assistant"))
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("role {:?} is not system, user or assistant", m.role),
        );
    }
    let messages = request
        .messages
        .into_iter()
        .map(|m| ChatMessage::new(&m.role, m.content))
        .collect();
    respond(
        app,
        Endpoint::Chat,
        Prompt::Chat(messages),
        request.settings,
    )
    .await
}

async fn completions(
    State(app): State<App>,
    body: Result<Json<CompletionRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => return rejected(rejection),
    };
    if request.prompt.is_empty() {
        return error(StatusCode::BAD_REQUEST, "prompt is empty");
    }
    respond(
        app,
        Endpoint::Completion,
        Prompt::Text(request.prompt),
        request.settings,
    )
    .await
}

/// The request's settings over the server's, checked.
fn job_settings(
    config: &ServeConfig,
    settings: &Settings,
) -> Result<(usize, SamplingParams), String> {
    if settings.n.is_some_and(|n| n != 1) {
        return Err("n must be 1: one answer per request".into());
    }
    let max_tokens = settings
        .max_completion_tokens
        .or(settings.max_tokens)
        .map_or(config.default_max_tokens as u64, |n| n);
    if max_tokens == 0 || max_tokens > config.max_tokens_limit as u64 {
        return Err(format!(
            "max_tokens = {max_tokens} must be in 1..={}",
            config.max_tokens_limit
        ));
    }
    let d = config.sampling;
    let sampling = SamplingParams {
        temperature: settings.temperature.unwrap_or(d.temperature),
        top_k: settings
            .top_k
            .map_or(d.top_k, |k| usize::try_from(k).unwrap_or(usize::MAX)),
        top_p: settings.top_p.unwrap_or(d.top_p),
        min_p: settings.min_p.unwrap_or(d.min_p),
        penalties: Penalties {
            repeat: settings.repeat_penalty.unwrap_or(d.penalties.repeat),
            frequency: settings.frequency_penalty.unwrap_or(d.penalties.frequency),
            presence: settings.presence_penalty.unwrap_or(d.penalties.presence),
            last_n: d.penalties.last_n,
        },
        mirostat: match settings.mirostat {
            None => d.mirostat,
            Some(0) => None,
            Some(2) => Some(Mirostat {
                tau: settings.mirostat_tau.unwrap_or(DEFAULT_MIROSTAT.tau),
                eta: settings.mirostat_eta.unwrap_or(DEFAULT_MIROSTAT.eta),
            }),
            Some(v) => return Err(format!("mirostat = {v}: 0 (off) or 2 (Mirostat 2.0)")),
        },
        seed: settings.seed.unwrap_or_else(|| d.seed ^ now()),
    };
    sampling.validate().map_err(|e| e.to_string())?;
    Ok((max_tokens as usize, sampling))
}

async fn respond(app: App, endpoint: Endpoint, prompt: Prompt, settings: Settings) -> Response {
    let (max_tokens, sampling, grammar) = match job_settings(&app.config, &settings)
        .and_then(|(n, s)| Ok((n, s, settings.grammar()?)))
    {
        Ok(s) => s,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let (events, mut answers) = unbounded_channel();
    let job = Job {
        prompt,
        max_tokens,
        sampling,
        stop: settings
            .stop
            .map(openai::Stop::into_vec)
            .unwrap_or_default(),
        grammar,
        events,
    };
    match app.queue.submit(job) {
        Ok(()) => {}
        Err(Refused::Busy) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is busy: too many requests waiting; retry later",
            )
        }
        Err(Refused::Gone) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down",
            )
        }
    }
    let id = format!("edgespec-{:x}", request_id());
    let (model, created) = (app.config.model_name.clone(), now());
    if settings.stream {
        return Sse::new(stream(answers, endpoint, id, model, created))
            .keep_alive(KeepAlive::default())
            .into_response();
    }
    let mut text = String::new();
    while let Some(event) = answers.recv().await {
        match event {
            Event::Text(piece) => text.push_str(&piece),
            Event::Done(end) => {
                return Json(endpoint.answer(&id, &model, created, &text, &end)).into_response()
            }
            Event::Failed { client, message } => return failed(client, message),
        }
    }
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "the generation thread stopped",
    )
}

fn failed(client: bool, message: String) -> Response {
    let status = if client {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    error(status, message)
}

/// A request id: the clock's nanoseconds mixed with a counter.
fn request_id() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos.rotate_left(17) ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The answer as server-sent events: a chunk per piece of text, the last
/// one with the finish reason and usage, then `[DONE]` (an error ends the
/// stream with an error event instead).
fn stream(
    answers: UnboundedReceiver<Event>,
    endpoint: Endpoint,
    id: String,
    model: String,
    created: u64,
) -> impl futures_core::Stream<Item = Result<SseEvent, Infallible>> {
    enum Step {
        Open(UnboundedReceiver<Event>),
        Finish,
        Closed,
    }
    let first = (endpoint == Endpoint::Chat).then(|| {
        serde_json::json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}],
        })
    });
    let opening =
        futures_util::stream::iter(first.map(|v| Ok(SseEvent::default().data(v.to_string()))));
    let body = futures_util::stream::unfold(Step::Open(answers), move |step| {
        let (id, model) = (id.clone(), model.clone());
        async move {
            match step {
                Step::Open(mut answers) => {
                    let event = match answers.recv().await {
                        Some(Event::Text(piece)) => {
                            let chunk = endpoint.chunk(&id, &model, created, &piece);
                            return Some((
                                Ok(SseEvent::default().data(chunk.to_string())),
                                Step::Open(answers),
                            ));
                        }
                        Some(Event::Done(end)) => last(endpoint, &id, &model, created, &end),
                        Some(Event::Failed { message, .. }) => SseEvent::default()
                            .event("error")
                            .data(openai::error_body(&message, "server_error").to_string()),
                        None => SseEvent::default().event("error").data(
                            openai::error_body("the generation thread stopped", "server_error")
                                .to_string(),
                        ),
                    };
                    Some((Ok(event), Step::Finish))
                }
                Step::Finish => Some((Ok(SseEvent::default().data("[DONE]")), Step::Closed)),
                Step::Closed => None,
            }
        }
    });
    futures_util::StreamExt::chain(opening, body)
}

fn last(endpoint: Endpoint, id: &str, model: &str, created: u64, end: &End) -> SseEvent {
    SseEvent::default().data(endpoint.last_chunk(id, model, created, end).to_string())
}
