//! Result codes and the thread-local last-error message.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

use edgespec::draft::{MemoryFileError, VocabError};
use edgespec::engine::EngineError;
use edgespec::error::GenerateError;
use edgespec::session::PromptCacheError;

/// Result of every fallible function. The numbers are part of the ABI and
/// are never renumbered; new codes are only ever appended.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum edgespec_result {
    /// Success.
    EDGESPEC_OK = 0,
    /// A required pointer argument was NULL.
    EDGESPEC_ERR_NULL_ARGUMENT = 1,
    /// A string argument was not valid UTF-8.
    EDGESPEC_ERR_INVALID_UTF8 = 2,
    /// A parameter outside its valid range.
    EDGESPEC_ERR_INVALID_PARAMETER = 3,
    /// No file at the model path.
    EDGESPEC_ERR_MODEL_NOT_FOUND = 4,
    /// The file is not a valid GGUF model (malformed, truncated, ...).
    EDGESPEC_ERR_INVALID_MODEL = 5,
    /// llama.cpp could not load the model.
    EDGESPEC_ERR_MODEL_LOAD = 6,
    /// llama.cpp could not create a context (memory, parameters).
    EDGESPEC_ERR_CONTEXT = 7,
    /// The prompt does not fit in the context window.
    EDGESPEC_ERR_CONTEXT_FULL = 8,
    /// The drafter's vocabulary does not match the target's.
    EDGESPEC_ERR_VOCAB_MISMATCH = 9,
    /// A llama.cpp decode call failed.
    EDGESPEC_ERR_DECODE = 10,
    /// The model has no usable chat template.
    EDGESPEC_ERR_CHAT_TEMPLATE = 11,
    /// A panic was caught at the boundary (a bug in edgespec).
    EDGESPEC_ERR_PANIC = 12,
    /// The session needs a drafter model that was not given.
    EDGESPEC_ERR_MISSING_DRAFTER = 13,
    /// A prompt cache was refused: not a prompt cache, damaged, written by
    /// another edgespec version or with another target model, or one
    /// llama.cpp could not save or restore.
    EDGESPEC_ERR_PROMPT_CACHE = 14,
    /// Reading or writing a file failed (the message names it).
    EDGESPEC_ERR_IO = 15,
    /// Another logger already receives the process's logs
    /// (`edgespec_set_log_callback`).
    EDGESPEC_ERR_LOGGER = 16,
    /// A lookup memory was refused: not a lookup memory, damaged, made with
    /// another target model, or the session's draft kind keeps none.
    EDGESPEC_ERR_LOOKUP_MEMORY = 17,
    /// The remote target (ggml RPC) is unusable: its server refused, is
    /// unreachable or off loopback without `insecure_rpc`, speaks another
    /// protocol, or was lost mid-generation (what was generated before
    /// reached the callback; the session needs a new model).
    EDGESPEC_ERR_REMOTE = 18,
}

/// A failure on its way to C.
pub(crate) struct Failure {
    pub code: edgespec_result,
    pub message: String,
}

pub(crate) fn fail(code: edgespec_result, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        use edgespec_result::*;
        let code = match &e {
            EngineError::ModelNotFound { .. } | EngineError::BadPath { .. } => {
                EDGESPEC_ERR_MODEL_NOT_FOUND
            }
            EngineError::Gguf(_) => EDGESPEC_ERR_INVALID_MODEL,
            EngineError::ModelLoadFailed { .. } | EngineError::BackendInit(_) => {
                EDGESPEC_ERR_MODEL_LOAD
            }
            EngineError::ContextCreateFailed { .. } => EDGESPEC_ERR_CONTEXT,
            EngineError::ContextFull { .. } => EDGESPEC_ERR_CONTEXT_FULL,
            // Interrupted: the C API installs no stop check.
            EngineError::DecodeFailed { .. }
            | EngineError::Interrupted
            | EngineError::NoLogits { .. }
            | EngineError::RollbackFailed { .. } => EDGESPEC_ERR_DECODE,
            EngineError::NoChatTemplate | EngineError::UnsupportedChatTemplate => {
                EDGESPEC_ERR_CHAT_TEMPLATE
            }
            EngineError::StateSave | EngineError::StateRestore { .. } => EDGESPEC_ERR_PROMPT_CACHE,
            EngineError::InvalidParam { .. }
            | EngineError::TokenOutOfRange { .. }
            | EngineError::NulInText
            | EngineError::Tokenize(_) => EDGESPEC_ERR_INVALID_PARAMETER,
            EngineError::Remote(_) => EDGESPEC_ERR_REMOTE,
        };
        fail(code, e.to_string())
    }
}

impl From<GenerateError> for Failure {
    fn from(e: GenerateError) -> Self {
        match e {
            GenerateError::Engine(e) => e.into(),
            GenerateError::Vocab(e) => e.into(),
            GenerateError::PromptCache(e) => e.into(),
            GenerateError::Memory(e) => e.into(),
            GenerateError::MissingDrafter(_) => {
                fail(edgespec_result::EDGESPEC_ERR_MISSING_DRAFTER, e.to_string())
            }
            other => fail(
                edgespec_result::EDGESPEC_ERR_INVALID_PARAMETER,
                other.to_string(),
            ),
        }
    }
}

impl From<PromptCacheError> for Failure {
    fn from(e: PromptCacheError) -> Self {
        let code = match &e {
            PromptCacheError::Io { .. } => edgespec_result::EDGESPEC_ERR_IO,
            PromptCacheError::Engine {
                source: EngineError::ContextFull { .. },
                ..
            } => edgespec_result::EDGESPEC_ERR_CONTEXT_FULL,
            _ => edgespec_result::EDGESPEC_ERR_PROMPT_CACHE,
        };
        fail(code, e.to_string())
    }
}

impl From<MemoryFileError> for Failure {
    fn from(e: MemoryFileError) -> Self {
        let code = match &e {
            MemoryFileError::Io { .. } => edgespec_result::EDGESPEC_ERR_IO,
            _ => edgespec_result::EDGESPEC_ERR_LOOKUP_MEMORY,
        };
        fail(code, e.to_string())
    }
}

impl From<VocabError> for Failure {
    fn from(e: VocabError) -> Self {
        fail(edgespec_result::EDGESPEC_ERR_VOCAB_MISMATCH, e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub(crate) fn set_error(message: &str) {
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|e| {
        if let Ok(mut e) = e.try_borrow_mut() {
            *e = c;
        }
    });
}

/// The message of the last failure on this thread ("" if none). The pointer
/// stays valid until the next edgespec call on the same thread.
#[no_mangle]
pub extern "C" fn edgespec_last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|e| e.try_borrow().map(|e| e.as_ptr()).unwrap_or(c"".as_ptr()))
        .unwrap_or(c"".as_ptr())
}
