//! The C ABI. Conventions (after rustls-ffi): functions are named
//! `edgespec_<type>_<verb>`; handles are opaque and created by `_new`/`_load`,
//! released by `_free(T**)`, which sets the caller's pointer to NULL; every
//! function returns an [`edgespec_result`] whose numbers never change;
//! `edgespec_last_error()` describes the last failure on the calling thread;
//! out-parameters are written only on success; NULL is checked everywhere;
//! no panic crosses the boundary (each function runs under `catch_unwind`).
//!
//! Threads: an `edgespec_model` is immutable once loaded and may be shared by
//! any number of sessions on any threads. An `edgespec_session` is used by
//! one thread at a time (it may move between threads).
//!
//! What cannot be caught: an abort inside llama.cpp (a GGML_ASSERT) ends the
//! process. edgespec validates inputs first (strict GGUF parsing, parameter
//! ranges, token ids, context room) so that its own calls never trigger one.
#![allow(non_camel_case_types)]

mod error;
mod log_callback;
mod session;
#[cfg(test)]
mod tests;
mod versioned;

use std::ffi::{c_char, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use error::{edgespec_last_error, edgespec_result};
pub use log_callback::{
    edgespec_log_callback, edgespec_set_log_callback, EDGESPEC_LOG_DEBUG, EDGESPEC_LOG_ERROR,
    EDGESPEC_LOG_INFO, EDGESPEC_LOG_TRACE, EDGESPEC_LOG_WARN,
};
pub use session::{
    edgespec_draft_kind, edgespec_session, edgespec_session_free, edgespec_session_generate,
    edgespec_session_generate_tokens, edgespec_session_new, edgespec_session_params,
    edgespec_session_params_default, edgespec_session_reset, edgespec_session_set_stop_strings,
    edgespec_stats, edgespec_stats_init, edgespec_token_callback, EDGESPEC_DRAFT_EAD,
    EDGESPEC_DRAFT_EAD_SPEC, EDGESPEC_DRAFT_HYBRID, EDGESPEC_DRAFT_LOOKUP, EDGESPEC_DRAFT_MODEL,
    EDGESPEC_DRAFT_NONE, EDGESPEC_STOP_CALLBACK, EDGESPEC_STOP_CONTEXT_FULL, EDGESPEC_STOP_EOG,
    EDGESPEC_STOP_GRAMMAR, EDGESPEC_STOP_MAX_TOKENS, EDGESPEC_STOP_STRING,
};

use edgespec::engine::rpc::{parse_endpoints, RemoteTarget, RpcKey, DEFAULT_RPC_TIMEOUT};
use edgespec::engine::{Model, ModelParams};
use error::{fail, set_error, Failure};
use versioned::{read_struct, Versioned};

/// A loaded model (opaque). Shareable across threads and sessions.
pub struct edgespec_model {
    inner: Arc<Model>,
}

/// How to load a model. Start from `edgespec_model_params_default()`,
/// which also sets `struct_size`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct edgespec_model_params {
    /// `sizeof(edgespec_model_params)` as the caller's header has it (set
    /// by the _default function): fields added by later versions keep
    /// their defaults for older callers.
    pub struct_size: u32,
    /// Layers to offload to the GPU (0: CPU only). Must be >= 0.
    pub gpu_layers: i32,
    /// Memory-map the file (recommended).
    pub use_mmap: bool,
    /// Lock the model in RAM.
    pub use_mlock: bool,
    /// NULL: run here. Else `"HOST:PORT[,HOST:PORT...]"`: place every
    /// layer on these ggml RPC servers (`edgespec rpc-server`); the string
    /// is read during the call only. Loopback only unless
    /// `target_rpc_key_file` or `insecure_rpc`.
    pub target_rpc: *const c_char,
    /// Allow RPC servers off loopback without a key (plain ggml RPC has no
    /// authentication or encryption: prefer `target_rpc_key_file`, an SSH
    /// tunnel or WireGuard).
    pub insecure_rpc: bool,
    /// Milliseconds an RPC server may take to accept or answer one request
    /// before it counts as lost (then `EDGESPEC_ERR_REMOTE`); 0: 60000.
    pub rpc_timeout_ms: u32,
    /// Let ggml repack the weights for its batched kernels (faster on
    /// some CPUs; default true). An exact session's target
    /// (`edgespec_session_params.exact`) needs false.
    pub repack: bool,
    /// NULL: plain RPC. Else the path of the key file the servers were
    /// started with (`edgespec rpc-server --key-file`): the link is
    /// encrypted and authenticated, and servers may be off loopback. Read
    /// during the call only.
    pub target_rpc_key_file: *const c_char,
    /// NULL: a lost server ends the generation (`EDGESPEC_ERR_REMOTE`, the
    /// text so far kept). Else a model file (the target's own, say) to
    /// load here when the servers are lost: the text so far is read into
    /// it and the generation carries on. Read during the call only.
    pub target_fallback: *const c_char,
}

// SAFETY: repr(C), struct_size: u32 first; an i32, C bools, u32s and
// pointers that are only read as C strings when non-null.
unsafe impl Versioned for edgespec_model_params {
    const NAME: &'static str = "edgespec_model_params";
    const FIRST_SIZE: usize = std::mem::offset_of!(Self, use_mlock) + 1;
}

/// This library's major version (the header's; `edgespec_version()` gives the linked library's).
pub const EDGESPEC_VERSION_MAJOR: u32 = 0;
/// This library's minor version.
pub const EDGESPEC_VERSION_MINOR: u32 = 1;
/// This library's patch version.
pub const EDGESPEC_VERSION_PATCH: u32 = 0;

/// The library version as a static NUL-terminated string, e.g. "0.1.0".
#[no_mangle]
pub extern "C" fn edgespec_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Default model parameters: CPU only, mmap on, mlock off, repacking on.
#[no_mangle]
pub extern "C" fn edgespec_model_params_default() -> edgespec_model_params {
    edgespec_model_params {
        struct_size: std::mem::size_of::<edgespec_model_params>() as u32,
        gpu_layers: 0,
        use_mmap: true,
        use_mlock: false,
        target_rpc: std::ptr::null(),
        insecure_rpc: false,
        rpc_timeout_ms: 0,
        repack: true,
        target_rpc_key_file: std::ptr::null(),
        target_fallback: std::ptr::null(),
    }
}

/// Runs `f` under the panic boundary, turning errors and panics into codes.
pub(crate) fn guard(f: impl FnOnce() -> Result<(), Failure>) -> edgespec_result {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => edgespec_result::EDGESPEC_OK,
        Ok(Err(failure)) => {
            set_error(&failure.message);
            failure.code
        }
        Err(_) => {
            set_error("internal error: a panic was caught at the C boundary");
            edgespec_result::EDGESPEC_ERR_PANIC
        }
    }
}

/// Releases a boxed handle through the `T**` pattern: `*slot` is set to NULL
/// first, so a second call (or a NULL slot) is a no-op. Never unwinds.
///
/// # Safety
/// `slot` must be NULL or point to NULL or to a pointer from `Box::into_raw`.
pub(crate) unsafe fn free_handle<T>(slot: *mut *mut T) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if slot.is_null() {
            return;
        }
        // SAFETY: slot is non-null; *slot is NULL or a live handle we made.
        let handle = unsafe { std::mem::replace(&mut *slot, std::ptr::null_mut()) };
        if !handle.is_null() {
            // SAFETY: handle came from Box::into_raw and is released once.
            drop(unsafe { Box::from_raw(handle) });
        }
    }));
}

/// A mutable handle from C, or a NULL-argument failure naming it.
///
/// # Safety
/// `ptr` must be NULL or a live handle not used elsewhere during `'a`.
pub(crate) unsafe fn handle_mut<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    // SAFETY: NULL or a live, exclusive handle per the caller's contract.
    unsafe { ptr.as_mut() }.ok_or_else(|| {
        fail(
            edgespec_result::EDGESPEC_ERR_NULL_ARGUMENT,
            format!("{what} is NULL"),
        )
    })
}

/// Borrows a NUL-terminated UTF-8 string from C.
///
/// # Safety
/// `ptr` must be NULL or point to a NUL-terminated string valid for `'a`.
pub(crate) unsafe fn c_str<'a>(ptr: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if ptr.is_null() {
        return Err(fail(
            edgespec_result::EDGESPEC_ERR_NULL_ARGUMENT,
            format!("{what} is NULL"),
        ));
    }
    // SAFETY: the caller guarantees a valid NUL-terminated string.
    unsafe { CStr::from_ptr(ptr) }.to_str().map_err(|_| {
        fail(
            edgespec_result::EDGESPEC_ERR_INVALID_UTF8,
            format!("{what} is not valid UTF-8"),
        )
    })
}

/// Loads a GGUF model. On success writes a new handle to `*out`; free it with
/// `edgespec_model_free`. `params` may be NULL for the defaults.
///
/// # Safety
/// `path` must be NULL or a NUL-terminated string; `params` NULL or valid;
/// `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgespec_model_load(
    path: *const c_char,
    params: *const edgespec_model_params,
    out: *mut *mut edgespec_model,
) -> edgespec_result {
    guard(|| {
        if out.is_null() {
            return Err(fail(
                edgespec_result::EDGESPEC_ERR_NULL_ARGUMENT,
                "out is NULL",
            ));
        }
        // SAFETY: checked by c_str; valid per the caller's contract.
        let path = unsafe { c_str(path, "path")? };
        let params = if params.is_null() {
            edgespec_model_params_default()
        } else {
            // SAFETY: non-null and readable for its struct_size per the caller's contract.
            unsafe { read_struct(params, edgespec_model_params_default())? }
        };
        if params.gpu_layers < 0 {
            return Err(fail(
                edgespec_result::EDGESPEC_ERR_INVALID_PARAMETER,
                format!("gpu_layers = {} must be >= 0", params.gpu_layers),
            ));
        }
        let remote = if params.target_rpc.is_null() {
            None
        } else {
            // SAFETY: non-null: a NUL-terminated string per the caller's contract.
            let servers = unsafe { c_str(params.target_rpc, "target_rpc")? };
            let servers = parse_endpoints(servers).map_err(|e| {
                fail(
                    edgespec_result::EDGESPEC_ERR_INVALID_PARAMETER,
                    e.to_string(),
                )
            })?;
            let key = if params.target_rpc_key_file.is_null() {
                None
            } else {
                // SAFETY: non-null: a NUL-terminated string per the caller's contract.
                let path = unsafe { c_str(params.target_rpc_key_file, "target_rpc_key_file")? };
                Some(
                    RpcKey::load(Path::new(path))
                        .map_err(|e| fail(edgespec_result::EDGESPEC_ERR_IO, e.to_string()))?,
                )
            };
            let fallback = if params.target_fallback.is_null() {
                None
            } else {
                // SAFETY: non-null: a NUL-terminated string per the caller's contract.
                let path = unsafe { c_str(params.target_fallback, "target_fallback")? };
                Some(std::path::PathBuf::from(path))
            };
            Some(RemoteTarget {
                insecure: params.insecure_rpc,
                timeout: match params.rpc_timeout_ms {
                    0 => DEFAULT_RPC_TIMEOUT,
                    ms => Duration::from_millis(u64::from(ms)),
                },
                key,
                fallback,
                ..RemoteTarget::new(servers)
            })
        };
        let model = Model::load(
            Path::new(path),
            &ModelParams {
                gpu_layers: params.gpu_layers as u32,
                use_mmap: params.use_mmap,
                use_mlock: params.use_mlock,
                vocab_only: false,
                repack: params.repack,
                remote,
            },
        )?;
        let handle = Box::into_raw(Box::new(edgespec_model { inner: model }));
        // SAFETY: out is non-null and writable per the caller's contract.
        unsafe { *out = handle };
        Ok(())
    })
}

/// Releases a model and sets `*model` to NULL. Sessions created from it keep
/// it alive until they are freed. NULL and `*model == NULL` are no-ops.
///
/// # Safety
/// `model` must be NULL or point to NULL or to a handle from `edgespec_model_load`.
#[no_mangle]
pub unsafe extern "C" fn edgespec_model_free(model: *mut *mut edgespec_model) {
    // SAFETY: forwarded caller contract; model handles come from Box::into_raw.
    unsafe { free_handle(model) }
}

/// Vocabulary size of a model, or -1 (with `edgespec_last_error`) when `model` is NULL.
///
/// # Safety
/// `model` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn edgespec_model_n_vocab(model: *const edgespec_model) -> i32 {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: NULL or a live handle per the caller's contract.
        match unsafe { model.as_ref() } {
            Some(m) => m.inner.n_vocab(),
            None => {
                set_error("model is NULL");
                -1
            }
        }
    }))
    .unwrap_or(-1)
}
