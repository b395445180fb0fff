//! edgespec for Python: the runtime's [`Session`] behind a small native
//! module (`edgespec._edgespec`), which the pure-Python package `edgespec`
//! shapes like llama-cpp-python (python/edgespec). Nothing is implemented
//! twice: loading, drafting, verification, sampling, grammars, stop strings
//! and caches are the runtime's; this file moves arguments in and pieces
//! of text out, without holding the GIL while the models run.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use edgespec::draft::{DraftLength, LookupDrafter};
use edgespec::engine::rpc::{parse_endpoints, RemoteTarget, RpcKey};
use edgespec::engine::{ChatMessage, EngineError, Token};
use edgespec::generate::{Piece, StopReason};
use edgespec::metrics::SpecStats;
use edgespec::sampling::{Penalties, SamplingParams};
use edgespec::{
    ContextParams, DraftKind, DraftModel, GenerateError, Model, ModelParams, Outcome, PolicyConfig,
    Session, SessionConfig,
};

create_exception!(
    _edgespec,
    EdgespecError,
    PyException,
    "Every error edgespec raises."
);
create_exception!(
    _edgespec,
    ModelError,
    EdgespecError,
    "A model file that is missing, unreadable or not a model llama.cpp loads."
);
create_exception!(
    _edgespec,
    InvalidArgument,
    EdgespecError,
    "An argument out of range, or settings that do not go together."
);
create_exception!(
    _edgespec,
    ContextFullError,
    EdgespecError,
    "The prompt does not fit the context window."
);
create_exception!(
    _edgespec,
    RemoteError,
    EdgespecError,
    "The remote target's server cannot be reached, refused, or was lost."
);
create_exception!(
    _edgespec,
    GenerationError,
    EdgespecError,
    "Generation failed (a decode, a cache file, a chat template)."
);

/// The exception class of a runtime error.
fn classify(e: &GenerateError) -> fn(String) -> PyErr {
    match e {
        GenerateError::Engine(engine) => match engine {
            EngineError::ModelNotFound { .. }
            | EngineError::Gguf(_)
            | EngineError::BadPath { .. }
            | EngineError::ModelLoadFailed { .. } => ModelError::new_err,
            EngineError::InvalidParam { .. } | EngineError::TokenOutOfRange { .. } => {
                InvalidArgument::new_err
            }
            EngineError::ContextFull { .. } => ContextFullError::new_err,
            EngineError::Remote(_) => RemoteError::new_err,
            _ => GenerationError::new_err,
        },
        GenerateError::Policy(_)
        | GenerateError::Sampling(_)
        | GenerateError::Ead(_)
        | GenerateError::MissingDrafter(_)
        | GenerateError::GrammarWithEad(_)
        | GenerateError::NotTrimmed
        | GenerateError::Vocab(_) => InvalidArgument::new_err,
        _ => GenerationError::new_err,
    }
}

fn to_py(e: GenerateError) -> PyErr {
    classify(&e)(e.to_string())
}

fn engine_to_py(e: EngineError) -> PyErr {
    to_py(GenerateError::Engine(e))
}

/// What a model load needs, from the Python constructor.
struct LoadArgs {
    model_path: PathBuf,
    draft_model_path: Option<PathBuf>,
    draft: String,
    context: ContextParams,
    gpu_layers: u32,
    gamma: Option<usize>,
    exact: bool,
    repack: bool,
    remote: Option<RemoteTarget>,
}

impl LoadArgs {
    /// The draft kind: "auto" drafts with the drafter model when one is
    /// given (hybrid: its model beside free lookup drafts), else with
    /// lookup; "none" never drafts.
    fn kind(&self) -> PyResult<DraftKind> {
        let kind = match (self.draft.as_str(), self.draft_model_path.is_some()) {
            ("auto", true) => DraftKind::Hybrid,
            ("auto", false) => DraftKind::Lookup,
            (name, _) => name
                .parse::<DraftKind>()
                .map_err(|e| InvalidArgument::new_err(e.to_string()))?,
        };
        if kind.needs_model() && self.draft_model_path.is_none() {
            return Err(InvalidArgument::new_err(format!(
                "draft={:?} needs draft_model_path",
                self.draft
            )));
        }
        Ok(kind)
    }

    fn load(&self, kind: DraftKind) -> Result<Session, PyErr> {
        let policy = PolicyConfig {
            length: match self.gamma {
                Some(g) => DraftLength::Fixed(g),
                None => PolicyConfig::default().length,
            },
            exact: self.exact,
            ..PolicyConfig::default()
        };
        let params = ModelParams {
            gpu_layers: self.gpu_layers,
            repack: self.repack && !self.exact,
            ..ModelParams::default()
        };
        let target_params = ModelParams {
            remote: self.remote.clone(),
            ..params.clone()
        };
        let target = Model::load(&self.model_path, &target_params).map_err(engine_to_py)?;
        let drafter = match (&self.draft_model_path, kind.needs_model()) {
            (Some(path), true) => Some(
                DraftModel::open(path, None, &params)
                    .map_err(|e| ModelError::new_err(format!("{}: {e}", path.display())))?,
            ),
            _ => None,
        };
        let config = SessionConfig {
            lookup: LookupDrafter::default(),
            policy,
            ..SessionConfig::new(target, self.context.clone()).with_drafter(kind, drafter)
        };
        Session::new(config).map_err(to_py)
    }
}

/// A loaded target (and drafter), ready to generate: `edgespec.Llama`'s
/// engine. Generation runs on a thread of its own; one at a time.
#[pyclass(frozen, module = "edgespec._edgespec")]
struct Engine {
    session: Arc<Mutex<Session>>,
    model: Arc<Model>,
    kind: DraftKind,
    n_ctx: u32,
}

impl Engine {
    fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[pymethods]
impl Engine {
    /// Loads `model_path` (and the drafter) with the GIL released.
    #[new]
    #[pyo3(signature = (
        model_path, draft_model_path=None, draft="auto", n_ctx=4096, n_threads=None,
        n_gpu_layers=0, gamma=None, exact=false, repack=true, target_rpc=None,
        rpc_key_file=None, target_fallback=None, insecure_rpc=false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model_path: PathBuf,
        draft_model_path: Option<PathBuf>,
        draft: &str,
        n_ctx: u32,
        n_threads: Option<i32>,
        n_gpu_layers: i64,
        gamma: Option<usize>,
        exact: bool,
        repack: bool,
        target_rpc: Option<String>,
        rpc_key_file: Option<PathBuf>,
        target_fallback: Option<PathBuf>,
        insecure_rpc: bool,
    ) -> PyResult<Self> {
        let mut context = ContextParams {
            n_ctx,
            ..ContextParams::default()
        };
        if let Some(t) = n_threads {
            context.n_threads = t;
            context.n_threads_batch = t;
        }
        let remote = match target_rpc {
            None => None,
            Some(servers) => {
                let servers = parse_endpoints(&servers)
                    .map_err(|e| InvalidArgument::new_err(e.to_string()))?;
                let key = rpc_key_file
                    .as_deref()
                    .map(RpcKey::load)
                    .transpose()
                    .map_err(|e| RemoteError::new_err(e.to_string()))?;
                Some(RemoteTarget {
                    insecure: insecure_rpc,
                    key,
                    fallback: target_fallback,
                    ..RemoteTarget::new(servers)
                })
            }
        };
        let args = LoadArgs {
            model_path,
            draft_model_path,
            draft: draft.to_owned(),
            context,
            // Negative: every layer (llama-cpp-python's -1).
            gpu_layers: u32::try_from(n_gpu_layers).unwrap_or(u32::MAX),
            gamma,
            exact,
            repack,
            remote,
        };
        let kind = args.kind()?;
        let session = py.detach(|| args.load(kind))?;
        let model = session.model().clone();
        let n_ctx = session.target().n_ctx();
        Ok(Self {
            session: Arc::new(Mutex::new(session)),
            model,
            kind,
            n_ctx,
        })
    }

    /// The context window in tokens.
    #[getter]
    fn n_ctx(&self) -> u32 {
        self.n_ctx
    }

    /// The vocabulary's size.
    #[getter]
    fn n_vocab(&self) -> i32 {
        self.model.n_vocab()
    }

    /// How the session drafts ("none", "lookup", "model", "hybrid", ...).
    #[getter]
    fn draft_kind(&self) -> String {
        self.kind.to_string()
    }

    /// The end-of-generation tokens.
    fn eog_tokens(&self) -> Vec<Token> {
        self.model.eog_tokens()
    }

    /// Token ids of `text`; `add_special` adds the model's BOS, `parse_special`
    /// reads special tokens written in the text.
    fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> PyResult<Vec<Token>> {
        self.model
            .tokenize(text, add_special, parse_special)
            .map_err(engine_to_py)
    }

    /// The bytes of `tokens` (special tokens rendered when `special`).
    fn detokenize<'py>(
        &self,
        py: Python<'py>,
        tokens: Vec<Token>,
        special: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut out = Vec::new();
        let mut piece = Vec::new();
        for t in tokens {
            self.model
                .token_bytes(t, special, &mut piece)
                .map_err(engine_to_py)?;
            out.extend_from_slice(&piece);
        }
        Ok(PyBytes::new(py, &out))
    }

    /// `messages` ((role, content) pairs) through the model's chat
    /// template, ending with the opening of the assistant's turn.
    fn chat_prompt(&self, messages: Vec<(String, String)>) -> PyResult<String> {
        let messages: Vec<ChatMessage> = messages
            .iter()
            .map(|(role, content)| ChatMessage::new(role, content.as_str()))
            .collect();
        self.model
            .apply_chat_template(&messages)
            .map_err(engine_to_py)
    }

    /// Starts generating up to `max_tokens` after `prompt` on a thread of
    /// its own and returns the stream of its pieces. `reuse`: keep what
    /// the caches hold in common with the prompt (a conversation's earlier
    /// turns) and read only the rest.
    #[pyo3(signature = (
        prompt, max_tokens, temperature=0.0, top_k=0, top_p=1.0, min_p=0.0,
        repeat_penalty=1.0, frequency_penalty=0.0, presence_penalty=0.0,
        repeat_last_n=64, seed=0, stop=Vec::new(), grammar=None, reuse=true
    ))]
    #[allow(clippy::too_many_arguments)]
    fn generate(
        &self,
        prompt: Vec<Token>,
        max_tokens: usize,
        temperature: f32,
        top_k: usize,
        top_p: f32,
        min_p: f32,
        repeat_penalty: f32,
        frequency_penalty: f32,
        presence_penalty: f32,
        repeat_last_n: usize,
        seed: u64,
        stop: Vec<String>,
        grammar: Option<String>,
        reuse: bool,
    ) -> PyResult<Stream> {
        let sampling = SamplingParams {
            temperature,
            top_k,
            top_p,
            min_p,
            penalties: Penalties {
                repeat: repeat_penalty,
                frequency: frequency_penalty,
                presence: presence_penalty,
                last_n: repeat_last_n,
            },
            mirostat: None,
            seed,
        };
        sampling
            .validate()
            .map_err(|e| InvalidArgument::new_err(e.to_string()))?;
        let (tx, rx) = sync_channel(256);
        let stopped = Arc::new(AtomicBool::new(false));
        let job = Job {
            session: self.session.clone(),
            prompt,
            max_tokens,
            sampling,
            stop,
            grammar,
            reuse,
            stopped: stopped.clone(),
        };
        let worker = std::thread::Builder::new()
            .name("edgespec-generate".into())
            .spawn(move || job.run(&tx))
            .map_err(|e| GenerationError::new_err(format!("no thread to generate on: {e}")))?;
        Ok(Stream {
            events: Mutex::new(rx),
            stopped,
            worker: Mutex::new(Some(worker)),
            result: Mutex::new(None),
        })
    }

    /// Saves what every model's cache holds (see `Session::save_prompt_cache`).
    fn save_prompt_cache(&self, py: Python<'_>, path: PathBuf) -> PyResult<usize> {
        py.detach(|| self.lock().save_prompt_cache(&path))
            .map_err(to_py)
    }

    /// Restores a prompt cache saved by the same models and settings.
    fn load_prompt_cache(&self, py: Python<'_>, path: PathBuf) -> PyResult<usize> {
        py.detach(|| self.lock().load_prompt_cache(&path))
            .map_err(to_py)
    }

    /// Saves the lookup drafter's memory of earlier outputs.
    fn save_lookup_memory(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| self.lock().save_lookup_memory(&path))
            .map_err(to_py)
    }

    /// Loads a lookup memory saved with the same target.
    fn load_lookup_memory(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        py.detach(|| self.lock().load_lookup_memory(&path))
            .map_err(to_py)
    }

    /// Empties every model's cache.
    fn reset(&self, py: Python<'_>) {
        py.detach(|| self.lock().clear());
    }
}

/// One generation's work, on its own thread.
struct Job {
    session: Arc<Mutex<Session>>,
    prompt: Vec<Token>,
    max_tokens: usize,
    sampling: SamplingParams,
    stop: Vec<String>,
    grammar: Option<String>,
    reuse: bool,
    stopped: Arc<AtomicBool>,
}

/// What the generation thread sends the stream.
enum Event {
    /// A generated token (None: the end, with text held back until then)
    /// and the text it completed.
    Piece(Option<Token>, String),
    /// The generation's outcome.
    Done(Box<Result<Outcome, GenerateError>>),
}

impl Job {
    fn run(self, tx: &SyncSender<Event>) {
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = self.generate(&mut session, tx);
        session.target_mut().set_stop_check(None);
        let _ = tx.send(Event::Done(Box::new(outcome)));
    }

    fn generate(
        &self,
        session: &mut Session,
        tx: &SyncSender<Event>,
    ) -> Result<Outcome, GenerateError> {
        session.set_sampling(self.sampling)?;
        session.set_grammar(self.grammar.as_deref())?;
        session.set_stop_strings(self.stop.clone());
        // A stream closed or interrupted during the prompt's read stops it.
        let stopped = self.stopped.clone();
        session
            .target_mut()
            .set_stop_check(Some(Arc::new(move || stopped.load(Ordering::Relaxed))));
        let on_token = |piece: Piece, text: &str| {
            if self.stopped.load(Ordering::Relaxed) {
                return false;
            }
            let token = match piece {
                Piece::Token(t) => Some(t),
                Piece::End => None,
            };
            tx.send(Event::Piece(token, text.to_owned())).is_ok()
        };
        if self.reuse {
            session.generate_from_cache(&self.prompt, self.max_tokens, on_token)
        } else {
            session.generate(&self.prompt, self.max_tokens, on_token)
        }
    }
}

/// The pieces of a generation as they come: `(token or None, text)`
/// tuples, the text of each complete at that point (concatenated, the
/// output). Iterating waits without the GIL; Ctrl-C while waiting stops
/// the generation (the session stays usable) and raises KeyboardInterrupt.
/// `result()` is the outcome once the stream is exhausted.
#[pyclass(module = "edgespec._edgespec")]
struct Stream {
    events: Mutex<Receiver<Event>>,
    stopped: Arc<AtomicBool>,
    worker: Mutex<Option<JoinHandle<()>>>,
    result: Mutex<Option<Py<PyDict>>>,
}

impl Stream {
    /// Stops the generation and waits for its thread (without the GIL).
    fn stop(&self, py: Python<'_>) {
        self.stopped.store(true, Ordering::Relaxed);
        let worker = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(worker) = worker {
            py.detach(|| {
                // Drain so a blocked send returns, then join.
                let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
                while !worker.is_finished() {
                    let _ = events.recv_timeout(Duration::from_millis(10));
                }
                let _ = worker.join();
            });
        }
    }
}

#[pymethods]
impl Stream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<(Option<Token>, String)>> {
        loop {
            let event = py.detach(|| {
                self.events
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .recv_timeout(Duration::from_millis(50))
            });
            match event {
                Ok(Event::Piece(token, text)) => return Ok(Some((token, text))),
                Ok(Event::Done(outcome)) => {
                    let _ = self
                        .worker
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .take()
                        .map(JoinHandle::join);
                    let outcome = (*outcome).map_err(to_py)?;
                    *self.result.lock().unwrap_or_else(|e| e.into_inner()) =
                        Some(summary(py, &outcome)?.unbind());
                    return Ok(None);
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Err(e) = py.check_signals() {
                        self.stop(py);
                        return Err(e);
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
            }
        }
    }

    /// The outcome: generated tokens, stop reason, token counts, timings
    /// and the speculation's counters (None before the stream ends).
    fn result(&self, py: Python<'_>) -> Option<Py<PyDict>> {
        self.result
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|d| d.clone_ref(py))
    }

    /// Stops the generation (what it produced so far stands).
    fn close(&self, py: Python<'_>) {
        self.stop(py);
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}

/// An outcome as a dict.
fn summary<'py>(py: Python<'py>, outcome: &Outcome) -> PyResult<Bound<'py, PyDict>> {
    let g = &outcome.generation;
    let d = PyDict::new(py);
    d.set_item("tokens", g.tokens.clone())?;
    d.set_item("text", g.text.as_str())?;
    d.set_item(
        "stop",
        match g.stop {
            StopReason::EndOfGeneration => "eos",
            StopReason::MaxTokens => "length",
            StopReason::ContextFull => "context",
            StopReason::Callback => "interrupted",
            StopReason::StopString => "stop",
            StopReason::Grammar => "grammar",
        },
    )?;
    let s = &g.stats;
    d.set_item("prompt_tokens", s.prompt_tokens)?;
    d.set_item("prompt_tokens_cached", s.prompt_tokens_cached)?;
    d.set_item("completion_tokens", s.generated_tokens)?;
    d.set_item("prompt_s", s.prompt_time.as_secs_f64())?;
    d.set_item("decode_s", s.decode_time.as_secs_f64())?;
    d.set_item("ttft_s", s.time_to_first_token.as_secs_f64())?;
    d.set_item("decode_tok_s", s.decode_tok_per_s())?;
    d.set_item("round_trips", s.round_trips)?;
    d.set_item("remote_bytes", s.remote_bytes)?;
    if let Some(spec) = &outcome.speculation {
        d.set_item("speculation", speculation(py, spec, s.generated_tokens)?)?;
    }
    Ok(d)
}

fn speculation<'py>(
    py: Python<'py>,
    s: &SpecStats,
    generated: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("target_calls", s.target_calls)?;
    d.set_item("draft_rounds", s.draft_rounds)?;
    d.set_item("drafted", s.drafted)?;
    d.set_item("accepted", s.accepted)?;
    d.set_item("longest_draft", s.longest_draft)?;
    d.set_item("alpha", s.acceptance())?;
    d.set_item("tau", s.tau(generated))?;
    Ok(d)
}

/// The native half of the `edgespec` package.
#[pymodule]
fn _edgespec(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Engine>()?;
    m.add_class::<Stream>()?;
    m.add("EdgespecError", py.get_type::<EdgespecError>())?;
    m.add("ModelError", py.get_type::<ModelError>())?;
    m.add("InvalidArgument", py.get_type::<InvalidArgument>())?;
    m.add("ContextFullError", py.get_type::<ContextFullError>())?;
    m.add("RemoteError", py.get_type::<RemoteError>())?;
    m.add("GenerationError", py.get_type::<GenerationError>())?;
    m.add(
        "json_schema_to_grammar",
        pyo3::wrap_pyfunction!(json_schema_to_grammar, m)?,
    )?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

/// A GBNF grammar for JSON that follows `schema` (a JSON Schema, as text),
/// as `edgespec serve` uses for response_format.
#[pyfunction]
fn json_schema_to_grammar(schema: &str) -> PyResult<String> {
    edgespec_tools::json_schema::json_schema_to_gbnf(schema)
        .map_err(|e| InvalidArgument::new_err(e.to_string()))
}
