//! Process-wide llama.cpp initialisation and log routing.

use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;

use super::EngineError;

/// Log target under which llama.cpp's own messages are forwarded to `log`.
pub const LLAMA_LOG_TARGET: &str = "llama.cpp";

static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();

/// The llama.cpp backend, initialised once per process (llama.cpp allows one
/// initialisation; every model and context of the process shares it).
pub fn backend() -> Result<&'static LlamaBackend, EngineError> {
    BACKEND
        .get_or_init(|| {
            // SAFETY: llama_log_set stores a plain function pointer; the
            // callback is a `extern "C"` fn that never unwinds and ignores
            // the null user data.
            unsafe { llama_cpp_sys_2::llama_log_set(Some(forward_log), std::ptr::null_mut()) };
            #[cfg(feature = "portable-cpu")]
            load_cpu_variant()?;
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| EngineError::BackendInit(e.clone()))
}

/// Loads ggml's backends from `EDGESPEC_BACKENDS_DIR`, else from the
/// folder of the file that holds edgespec (the executable, `libedgespec.so`
/// or the Python module): of the CPU backend's variants (one per
/// instruction-set level) ggml keeps the best this CPU runs. An error when
/// none does (or none is there).
#[cfg(feature = "portable-cpu")]
fn load_cpu_variant() -> Result<(), String> {
    use std::os::unix::ffi::OsStrExt;
    let dir = match std::env::var_os("EDGESPEC_BACKENDS_DIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => own_folder()
            .ok_or("cannot find the folder of edgespec's own file, which holds the CPU backends")?,
    };
    let c_dir = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", dir.display()))?;
    // SAFETY: c_dir is a NUL-terminated path valid for the call; ggml copies
    // what it keeps. The returned device pointer is only compared to null.
    let cpu = unsafe {
        llama_cpp_sys_2::ggml_backend_load_all_from_path(c_dir.as_ptr());
        llama_cpp_sys_2::ggml_backend_dev_by_type(llama_cpp_sys_2::GGML_BACKEND_DEVICE_TYPE_CPU)
    };
    if cpu.is_null() {
        return Err(format!(
            "no CPU backend this CPU can run in {} (libggml-cpu-*.so; set EDGESPEC_BACKENDS_DIR)",
            dir.display()
        ));
    }
    Ok(())
}

/// The folder of the loaded file (executable or shared library) that
/// holds this code.
#[cfg(feature = "portable-cpu")]
fn own_folder() -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    // SAFETY: dladdr only reads the address (a function of this file) and
    // fills `info`; on success dli_fname is a NUL-terminated path owned by
    // the dynamic loader, copied before anything could unload the file.
    let file = unsafe {
        if libc::dladdr(own_folder as *const libc::c_void, info.as_mut_ptr()) == 0 {
            return None;
        }
        let name = info.assume_init().dli_fname;
        if name.is_null() {
            return None;
        }
        std::path::PathBuf::from(std::ffi::OsStr::from_bytes(CStr::from_ptr(name).to_bytes()))
    };
    // The executable may be named as it was run (relative, or bare):
    // the kernel knows its path.
    let file = if file.is_absolute() {
        file
    } else {
        std::env::current_exe().ok()?
    };
    file.canonicalize()
        .ok()?
        .parent()
        .map(std::path::Path::to_path_buf)
}

/// A function a backend registry (`CPU`, `RPC`) hands out by name: what
/// that backend's module exports beyond ggml's common interface, whether
/// it is linked in or loaded at run time. None when the registry or the
/// function is missing.
pub(super) fn backend_function(registry: &CStr, name: &CStr) -> Option<NonNull<c_void>> {
    backend().ok()?;
    // SAFETY: the registry is initialised by backend(); both names are
    // NUL-terminated; null results are handled.
    unsafe {
        let reg = llama_cpp_sys_2::ggml_backend_reg_by_name(registry.as_ptr());
        if reg.is_null() {
            return None;
        }
        NonNull::new(llama_cpp_sys_2::ggml_backend_reg_get_proc_address(
            reg,
            name.as_ptr(),
        ))
    }
}

/// ggml's CPU thread-pool functions, from the CPU backend's registry (a
/// module loaded at run time in a `portable-cpu` build). Without them a
/// context computes with the throwaway pools ggml makes per graph.
pub(super) struct ThreadPools {
    pub(super) new: ThreadPoolNew,
    pub(super) free: ThreadPoolFree,
}

/// `ggml_threadpool_new`.
type ThreadPoolNew = unsafe extern "C" fn(
    *mut llama_cpp_sys_2::ggml_threadpool_params,
) -> *mut llama_cpp_sys_2::ggml_threadpool;
/// `ggml_threadpool_free`.
type ThreadPoolFree = unsafe extern "C" fn(*mut llama_cpp_sys_2::ggml_threadpool);

pub(super) fn thread_pools() -> Option<&'static ThreadPools> {
    static POOLS: OnceLock<Option<ThreadPools>> = OnceLock::new();
    POOLS
        .get_or_init(|| {
            let new = backend_function(c"CPU", c"ggml_threadpool_new")?;
            let free = backend_function(c"CPU", c"ggml_threadpool_free")?;
            // SAFETY: the CPU registry hands out ggml_threadpool_new and
            // ggml_threadpool_free under these names, with these signatures.
            unsafe {
                Some(ThreadPools {
                    new: std::mem::transmute::<*mut std::ffi::c_void, ThreadPoolNew>(new.as_ptr()),
                    free: std::mem::transmute::<*mut std::ffi::c_void, ThreadPoolFree>(
                        free.as_ptr(),
                    ),
                })
            }
        })
        .as_ref()
}

/// llama.cpp's system-info line: the CPU features ggml was built with and detected.
pub fn system_info() -> String {
    // SAFETY: returns a pointer to a static, NUL-terminated buffer owned by llama.cpp.
    let info = unsafe { CStr::from_ptr(llama_cpp_sys_2::llama_print_system_info()) };
    info.to_string_lossy().trim().to_owned()
}

/// The ggml version and commit llama.cpp was built from.
pub fn ggml_version() -> String {
    // SAFETY: ggml_version/ggml_commit return pointers to static strings.
    unsafe {
        let v = CStr::from_ptr(llama_cpp_sys_2::ggml_version());
        let c = CStr::from_ptr(llama_cpp_sys_2::ggml_commit());
        format!("{} ({})", v.to_string_lossy(), c.to_string_lossy())
    }
}

/// ggml's own (type size, block size) for every tensor type id, removed
/// types included (their block size is 0): what a GGUF reader's table must
/// agree with.
pub fn ggml_type_table() -> Vec<(u64, u64)> {
    (0..llama_cpp_sys_2::GGML_TYPE_COUNT)
        .map(|id| {
            // SAFETY: ggml_type_size/ggml_blck_size read a static table
            // indexed by type id; every id below GGML_TYPE_COUNT is valid.
            unsafe {
                (
                    llama_cpp_sys_2::ggml_type_size(id as _) as u64,
                    llama_cpp_sys_2::ggml_blck_size(id as _) as u64,
                )
            }
        })
        .collect()
}

/// A compute device llama.cpp can use.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DeviceInfo {
    /// Backend device name (`CPU`, `CUDA0`, ...).
    pub name: String,
    /// Human description (CPU model, GPU name).
    pub description: String,
    /// `cpu`, `gpu`, `igpu`, `accel` or `other`.
    pub kind: &'static str,
    /// Free memory in bytes (as the backend reports it).
    pub free_bytes: u64,
    /// Total memory in bytes.
    pub total_bytes: u64,
}

/// Every device of every backend llama.cpp was built with.
pub fn devices() -> Result<Vec<DeviceInfo>, EngineError> {
    backend()?;
    // SAFETY: the registry is initialised by backend(); indices below the count are valid.
    let count = unsafe { llama_cpp_sys_2::ggml_backend_dev_count() };
    Ok((0..count)
        // SAFETY: i < count; the device handle lives as long as the registry.
        .map(|i| unsafe { llama_cpp_sys_2::ggml_backend_dev_get(i) })
        .filter(|d| !d.is_null())
        // SAFETY: a live device of the registry.
        .map(|d| unsafe { device_info(d) })
        .collect())
}

/// What a device says of itself.
///
/// # Safety
/// `dev` is a live ggml device handle.
pub(super) unsafe fn device_info(dev: llama_cpp_sys_2::ggml_backend_dev_t) -> DeviceInfo {
    let text = |p: *const c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: non-null NUL-terminated strings owned by the device.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: the caller's promise: dev is live.
    unsafe {
        llama_cpp_sys_2::ggml_backend_dev_memory(dev, &mut free, &mut total);
        DeviceInfo {
            name: text(llama_cpp_sys_2::ggml_backend_dev_name(dev)),
            description: text(llama_cpp_sys_2::ggml_backend_dev_description(dev)),
            kind: match llama_cpp_sys_2::ggml_backend_dev_type(dev) {
                llama_cpp_sys_2::GGML_BACKEND_DEVICE_TYPE_CPU => "cpu",
                llama_cpp_sys_2::GGML_BACKEND_DEVICE_TYPE_GPU => "gpu",
                llama_cpp_sys_2::GGML_BACKEND_DEVICE_TYPE_IGPU => "igpu",
                llama_cpp_sys_2::GGML_BACKEND_DEVICE_TYPE_ACCEL => "accel",
                _ => "other",
            },
            free_bytes: free as u64,
            total_bytes: total as u64,
        }
    }
}

/// Passes stopped at our own word (a prompt read's stop check) whose
/// `llama_decode` has not returned yet: llama.cpp logs such a stop as a
/// failure at error level, which is demoted to debug meanwhile.
static STOPPING: AtomicUsize = AtomicUsize::new(0);

/// Counts a pass stopped on purpose in (`true`) or out (`false`).
pub(super) fn stopping(pass: bool) {
    if pass {
        STOPPING.fetch_add(1, Ordering::AcqRel);
    } else {
        let _ = STOPPING.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }
}

thread_local! {
    /// llama.cpp logs lines in pieces (GGML_LOG_LEVEL_CONT); pieces gather here.
    static LINE: RefCell<(log::Level, String)> = const { RefCell::new((log::Level::Debug, String::new())) };
}

extern "C" fn forward_log(
    level: llama_cpp_sys_2::ggml_log_level,
    text: *const c_char,
    _: *mut c_void,
) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated string valid for this call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    let level = match level {
        llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR if STOPPING.load(Ordering::Acquire) > 0 => {
            Some(log::Level::Debug)
        }
        llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR => Some(log::Level::Error),
        llama_cpp_sys_2::GGML_LOG_LEVEL_WARN => Some(log::Level::Warn),
        llama_cpp_sys_2::GGML_LOG_LEVEL_INFO => Some(log::Level::Debug),
        llama_cpp_sys_2::GGML_LOG_LEVEL_CONT => None,
        _ => Some(log::Level::Trace),
    };
    // A panic must not unwind into C: try_with and a non-panicking body.
    let _ = LINE.try_with(|line| {
        let Ok(mut line) = line.try_borrow_mut() else {
            return;
        };
        if let Some(level) = level {
            line.0 = level;
        }
        line.1.push_str(&text);
        if line.1.ends_with('\n') {
            let message = line.1.trim_end();
            if !message.is_empty() {
                log::log!(target: LLAMA_LOG_TARGET, line.0, "{message}");
            }
            line.1.clear();
        }
    });
}
