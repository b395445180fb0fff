//! A loaded model: llama.cpp's weights plus our validated view of the file.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};

use llama_cpp_sys_2 as sys;

use super::resident::LoadReleaser;
use super::rpc::{self, RemoteLink, RemoteTarget};
use super::{backend, EngineError, Token};
use crate::gguf::{GgufFile, ModelSummary};

/// How to load a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelParams {
    /// Layers to offload to a GPU (0: CPU only; a large number: all).
    pub gpu_layers: u32,
    /// Map the file instead of reading it into memory.
    pub use_mmap: bool,
    /// Lock the model's pages in RAM.
    pub use_mlock: bool,
    /// Load the vocabulary only (no weights): for tokenizing and vocabulary checks.
    pub vocab_only: bool,
    /// Let ggml repack weights into interleaved layouts with their own
    /// batched kernels (faster; batched logits then differ from
    /// single-token logits in the last bits).
    pub repack: bool,
    /// Place every layer on these ggml RPC servers instead of this
    /// machine (the target of a split deployment; drafters stay local).
    pub remote: Option<RemoteTarget>,
}

impl Default for ModelParams {
    fn default() -> Self {
        Self {
            gpu_layers: 0,
            use_mmap: true,
            use_mlock: false,
            vocab_only: false,
            repack: true,
            remote: None,
        }
    }
}

/// Serialises context creation: llama.cpp may adjust model fields while
/// creating a context, so two threads must not do it at once.
pub(super) static CONTEXT_CREATION: Mutex<()> = Mutex::new(());

/// Serialises the loads that release mapped pages ([`LoadReleaser`]): no
/// other load maps or unmaps the same file meanwhile.
static RELEASING_LOAD: Mutex<()> = Mutex::new(());

/// A model loaded by llama.cpp. Shared between contexts through `Arc`.
pub struct Model {
    raw: NonNull<sys::llama_model>,
    vocab: NonNull<sys::llama_vocab>,
    gguf: GgufFile,
    summary: ModelSummary,
    path: PathBuf,
    remote: Option<RemoteLink>,
    /// Where a remote model's work goes when its servers are lost.
    fallback: Option<Fallback>,
    /// Loaded with [`ModelParams::repack`].
    repacked: bool,
}

/// A remote model's local stand-in ([`RemoteTarget::fallback`]): loaded
/// the first time a cache on the remote model needs it, then shared.
struct Fallback {
    path: PathBuf,
    params: ModelParams,
    loaded: Mutex<Option<Arc<Model>>>,
}

// SAFETY: after loading, llama.cpp only reads a llama_model (weights, vocab,
// hparams); it supports one model serving contexts on several threads.
// Context creation, the one path that writes to it, is serialised by
// CONTEXT_CREATION.
unsafe impl Send for Model {}
// SAFETY: see Send; every method of Model takes &self and only reads.
unsafe impl Sync for Model {}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("path", &self.path).finish()
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: raw came from llama_model_load_from_file and is freed once;
        // contexts hold an Arc<Model>, so none outlives it.
        unsafe { sys::llama_model_free(self.raw.as_ptr()) }
    }
}

impl Model {
    /// Validates the file with our strict GGUF reader, then loads it with llama.cpp.
    pub fn load(path: impl AsRef<Path>, params: &ModelParams) -> Result<Arc<Self>, EngineError> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(EngineError::ModelNotFound {
                path: path.to_owned(),
            });
        }
        let gguf = GgufFile::open(path)?;
        let summary = ModelSummary::of(&gguf)?;
        if let Some(fallback) = params.remote.as_ref().and_then(|r| r.fallback.as_deref()) {
            // Checked now, not when the servers are lost.
            let other = ModelSummary::of(&GgufFile::open(fallback)?)?;
            if other.vocab_size != summary.vocab_size {
                return Err(EngineError::InvalidParam {
                    name: "target fallback",
                    value: fallback.display().to_string(),
                    reason: "its vocabulary differs from the remote target's",
                });
            }
        }
        backend()?;
        let c_path = path
            .to_str()
            .and_then(|p| CString::new(p).ok())
            .ok_or_else(|| EngineError::BadPath {
                path: path.to_owned(),
            })?;
        // SAFETY: returns a plain struct of defaults.
        let mut raw_params = unsafe { sys::llama_model_default_params() };
        raw_params.n_gpu_layers = i32::try_from(params.gpu_layers).unwrap_or(i32::MAX);
        raw_params.vocab_only = params.vocab_only;
        raw_params.use_extra_bufts = params.repack;
        raw_params.load_mode = match (params.use_mmap, params.use_mlock) {
            (true, false) => sys::LLAMA_LOAD_MODE_MMAP,
            (true, true) => sys::LLAMA_LOAD_MODE_MMAP_MLOCK,
            (false, true) => sys::LLAMA_LOAD_MODE_MLOCK,
            (false, false) => sys::LLAMA_LOAD_MODE_NONE,
        };
        // A remote model's layers go to its servers' devices only (a
        // null-terminated list); a local model keeps llama.cpp's default
        // (this machine's devices: RPC devices are never registered).
        let remote = params.remote.as_ref().map(rpc::connect).transpose()?;
        let mut devices: Vec<sys::ggml_backend_dev_t> =
            remote.iter().flat_map(RemoteLink::device_handles).collect();
        if remote.is_some() {
            devices.push(std::ptr::null_mut());
            raw_params.devices = devices.as_mut_ptr();
            raw_params.n_gpu_layers = i32::MAX;
        }
        // A local, mapped, unlocked model: the pages its repacked tensors
        // were copied from leave the resident set as the load goes.
        let releasing =
            params.use_mmap && !params.use_mlock && !params.vocab_only && remote.is_none();
        let _one_load = releasing.then(|| RELEASING_LOAD.lock().unwrap_or_else(|e| e.into_inner()));
        let mut releaser = releasing.then(|| LoadReleaser::new(path));
        if let Some(releaser) = releaser.as_mut() {
            raw_params.progress_callback = Some(LoadReleaser::callback);
            raw_params.progress_callback_user_data = std::ptr::from_mut(releaser).cast();
        }
        // SAFETY: c_path is a valid NUL-terminated string for the call; the
        // params struct is fully initialised and its null-terminated device
        // list and the releaser its callback is given outlive the call; a
        // null return is handled.
        let raw = unsafe { sys::llama_model_load_from_file(c_path.as_ptr(), raw_params) };
        if let Some(releaser) = &releaser {
            log::debug!(
                "{}: {} MB of the file's mapping released after loading",
                path.display(),
                releaser.last_released >> 20
            );
        }
        if let Some(fault) = remote.as_ref().and_then(RemoteLink::fault) {
            if let Some(raw) = NonNull::new(raw) {
                // SAFETY: raw is live and not shared yet.
                unsafe { sys::llama_model_free(raw.as_ptr()) };
            }
            return Err(fault.into());
        }
        let raw = NonNull::new(raw).ok_or_else(|| EngineError::ModelLoadFailed {
            path: path.to_owned(),
        })?;
        // SAFETY: raw is a live model; the vocab it returns lives as long as it.
        let vocab = unsafe { sys::llama_model_get_vocab(raw.as_ptr()) };
        let Some(vocab) = NonNull::new(vocab.cast_mut()) else {
            // SAFETY: raw is live and not shared yet.
            unsafe { sys::llama_model_free(raw.as_ptr()) };
            return Err(EngineError::ModelLoadFailed {
                path: path.to_owned(),
            });
        };
        let fallback = params
            .remote
            .as_ref()
            .and_then(|r| r.fallback.clone())
            .map(|path| Fallback {
                path,
                params: ModelParams {
                    remote: None,
                    ..params.clone()
                },
                loaded: Mutex::new(None),
            });
        Ok(Arc::new(Self {
            raw,
            vocab,
            gguf,
            summary,
            path: path.to_owned(),
            remote,
            fallback,
            repacked: params.repack,
        }))
    }

    pub(super) fn raw(&self) -> *mut sys::llama_model {
        self.raw.as_ptr()
    }

    pub(super) fn vocab_ptr(&self) -> *const sys::llama_vocab {
        self.vocab.as_ptr()
    }

    /// The link to the RPC servers holding its layers (a remote target).
    pub fn remote(&self) -> Option<&RemoteLink> {
        self.remote.as_ref()
    }

    /// For a remote model: returns once its servers have done every
    /// request sent so far (one round trip each).
    pub(super) fn wait_for_remote(&self) {
        if let Some(link) = &self.remote {
            link.wait();
        }
    }

    /// For a remote model given a fallback: the local model to carry on
    /// with, loaded on the first call (a fallback of another vocabulary
    /// is refused).
    pub(super) fn fallback(&self) -> Option<Result<Arc<Model>, EngineError>> {
        let fallback = self.fallback.as_ref()?;
        let mut loaded = fallback.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(model) = loaded.as_ref() {
            return Some(Ok(model.clone()));
        }
        log::warn!(
            "lost the remote target: loading {} here to carry on",
            fallback.path.display()
        );
        let model = match Model::load(&fallback.path, &fallback.params) {
            Ok(model) if model.n_vocab() == self.n_vocab() => model,
            Ok(model) => {
                return Some(Err(EngineError::InvalidParam {
                    name: "target fallback",
                    value: fallback.path.display().to_string(),
                    reason: if model.n_vocab() > 0 {
                        "its vocabulary differs from the remote target's"
                    } else {
                        "it has no vocabulary"
                    },
                }))
            }
            Err(e) => return Some(Err(e)),
        };
        *loaded = Some(model.clone());
        Some(Ok(model))
    }

    /// An error when the model's RPC server failed since it was loaded:
    /// whatever llama.cpp computed after that is not to be trusted.
    pub(super) fn remote_fault(&self) -> Result<(), EngineError> {
        match self.remote.as_ref().and_then(RemoteLink::fault) {
            Some(fault) => Err(fault.into()),
            None => Ok(()),
        }
    }

    /// Whether ggml may have repacked its weights ([`ModelParams::repack`]):
    /// batched kernels then differ from single-token ones, which an exact
    /// context ([`super::ContextParams::exact`]) refuses.
    pub fn repacked(&self) -> bool {
        self.repacked
    }

    /// The path it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Our validated, memory-mapped view of the same file.
    pub fn gguf(&self) -> &GgufFile {
        &self.gguf
    }

    /// Shape and bytes read per token (see `edgespec inspect`).
    pub fn summary(&self) -> &ModelSummary {
        &self.summary
    }

    /// Number of tokens in the vocabulary; logits have this width.
    pub fn n_vocab(&self) -> i32 {
        // SAFETY: vocab is live while self is.
        unsafe { sys::llama_vocab_n_tokens(self.vocab.as_ptr()) }
    }

    /// Width of a logits row, as llama.cpp sizes it: its token count (for a
    /// trimmed drafter, whose tokenizer is `none`, the K of
    /// `<arch>.vocab_size`). Never the file's `vocab_size` on its own: a
    /// crafted value must not size a read of llama.cpp's buffer.
    pub fn n_logits(&self) -> usize {
        usize::try_from(self.n_vocab()).unwrap_or(0)
    }

    /// Embedding width.
    pub fn n_embd(&self) -> i32 {
        // SAFETY: raw is live while self is.
        unsafe { sys::llama_model_n_embd(self.raw.as_ptr()) }
    }

    /// Width of one attention head (the embedding width over the heads).
    pub fn head_size(&self) -> i32 {
        // SAFETY: raw is live while self is.
        let heads = unsafe { sys::llama_model_n_head(self.raw.as_ptr()) };
        self.n_embd() / heads.max(1)
    }

    /// True if generation ends at this token (EOS, EOT and the like).
    pub fn is_eog(&self, token: Token) -> bool {
        // SAFETY: llama_vocab_is_eog bounds-checks nothing, so check the id first.
        (0..self.n_vocab()).contains(&token)
            && unsafe { sys::llama_vocab_is_eog(self.vocab.as_ptr(), token) }
    }

    /// Every token that ends generation, in id order.
    pub fn end_tokens(&self) -> Vec<Token> {
        (0..self.n_vocab()).filter(|&t| self.is_eog(t)).collect()
    }

    /// True for control tokens (BOS, chat markers and the like).
    pub fn is_control(&self, token: Token) -> bool {
        // SAFETY: the id is checked first; the vocab is live while self is.
        (0..self.n_vocab()).contains(&token)
            && unsafe { sys::llama_vocab_is_control(self.vocab.as_ptr(), token) }
    }

    /// Every end-of-generation token id.
    pub fn eog_tokens(&self) -> Vec<Token> {
        (0..self.n_vocab()).filter(|&t| self.is_eog(t)).collect()
    }

    /// Whether tokenizing a prompt should prepend BOS.
    pub fn adds_bos(&self) -> bool {
        // SAFETY: vocab is live while self is.
        unsafe { sys::llama_vocab_get_add_bos(self.vocab.as_ptr()) }
    }

    /// Tokenizes `text`. `add_special` adds BOS/EOS as the model asks;
    /// `parse_special` turns special-token text (`<|im_start|>`) into its id.
    pub fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<Token>, EngineError> {
        let len = i32::try_from(text.len()).map_err(|_| EngineError::Tokenize(i32::MAX))?;
        let mut tokens: Vec<Token> = vec![0; text.len() + 2];
        for _ in 0..2 {
            let cap = i32::try_from(tokens.len()).unwrap_or(i32::MAX);
            // SAFETY: text points to len bytes (it need not be NUL-terminated);
            // tokens has room for cap ids; llama.cpp writes at most cap.
            let n = unsafe {
                sys::llama_tokenize(
                    self.vocab.as_ptr(),
                    text.as_ptr().cast(),
                    len,
                    tokens.as_mut_ptr(),
                    cap,
                    add_special,
                    parse_special,
                )
            };
            if n >= 0 {
                tokens.truncate(n as usize);
                return Ok(tokens);
            }
            if n == i32::MIN {
                break;
            }
            tokens.resize(n.unsigned_abs() as usize, 0);
        }
        Err(EngineError::Tokenize(i32::MIN))
    }

    /// The bytes a token stands for (special tokens rendered when `special`).
    /// Pieces may be partial UTF-8: feed them to a [`super::Utf8Stream`].
    pub fn token_bytes(
        &self,
        token: Token,
        special: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        let n_vocab = self.n_vocab();
        if !(0..n_vocab).contains(&token) {
            return Err(EngineError::TokenOutOfRange { token, n_vocab });
        }
        out.clear();
        let mut buf = [0u8; 256];
        // SAFETY: buf has room for buf.len() bytes; the token id was checked.
        let n = unsafe {
            sys::llama_token_to_piece(
                self.vocab.as_ptr(),
                token,
                buf.as_mut_ptr().cast(),
                buf.len() as i32,
                0,
                special,
            )
        };
        if n >= 0 {
            out.extend_from_slice(&buf[..n as usize]);
            return Ok(());
        }
        out.resize(n.unsigned_abs() as usize, 0);
        // SAFETY: out now has the room llama.cpp asked for.
        let n = unsafe {
            sys::llama_token_to_piece(
                self.vocab.as_ptr(),
                token,
                out.as_mut_ptr().cast(),
                out.len() as i32,
                0,
                special,
            )
        };
        out.truncate(n.max(0) as usize);
        Ok(())
    }

    /// Detokenizes a whole sequence (special tokens not rendered).
    pub fn detokenize(&self, tokens: &[Token]) -> Result<String, EngineError> {
        let mut stream = super::Utf8Stream::new();
        let mut piece = Vec::new();
        let mut text = String::new();
        for &t in tokens {
            self.token_bytes(t, false, &mut piece)?;
            text.push_str(&stream.push(&piece));
        }
        text.push_str(&stream.finish());
        Ok(text)
    }

    /// The text of a token in the vocabulary (as stored, e.g. `Ġthe`).
    pub fn token_text(&self, token: Token) -> Option<String> {
        if !(0..self.n_vocab()).contains(&token) {
            return None;
        }
        // SAFETY: the id was checked; the returned string is owned by the vocab.
        let ptr = unsafe { sys::llama_vocab_get_text(self.vocab.as_ptr(), token) };
        if ptr.is_null() {
            return None;
        }
        // SAFETY: non-null, NUL-terminated, alive as long as the model.
        Some(
            unsafe { std::ffi::CStr::from_ptr(ptr) }
                .to_string_lossy()
                .into_owned(),
        )
    }

    /// The model's own chat template (`tokenizer.chat_template`), if any.
    pub fn chat_template(&self) -> Option<String> {
        // SAFETY: raw is live; a null name asks for the default template.
        let ptr = unsafe { sys::llama_model_chat_template(self.raw.as_ptr(), std::ptr::null()) };
        if ptr.is_null() {
            return None;
        }
        // SAFETY: non-null, NUL-terminated, alive as long as the model.
        Some(
            unsafe { std::ffi::CStr::from_ptr(ptr) }
                .to_string_lossy()
                .into_owned(),
        )
    }
}
