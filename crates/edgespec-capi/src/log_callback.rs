//! Logs for C programs: edgespec's own messages and llama.cpp's (which the
//! engine forwards into the same stream) go to a callback the program
//! installs, filtered by level.

use std::ffi::{c_char, c_void, CString};
use std::sync::RwLock;

use crate::error::{fail, Failure};
use crate::{edgespec_result, guard};

/// Errors.
pub const EDGESPEC_LOG_ERROR: i32 = 1;
/// Warnings.
pub const EDGESPEC_LOG_WARN: i32 = 2;
/// Progress worth telling a user.
pub const EDGESPEC_LOG_INFO: i32 = 3;
/// Details, llama.cpp's model-loading report included.
pub const EDGESPEC_LOG_DEBUG: i32 = 4;
/// Everything, per round of speculation included.
pub const EDGESPEC_LOG_TRACE: i32 = 5;

/// Receives one log line: `level` is one of EDGESPEC_LOG_*, `message` a
/// NUL-terminated UTF-8 line (no trailing newline) valid for the call,
/// `source` "edgespec" or "llama.cpp". Called from whichever thread logs,
/// possibly from several at once; it must not call back into edgespec.
pub type edgespec_log_callback = Option<
    unsafe extern "C" fn(
        level: i32,
        source: *const c_char,
        message: *const c_char,
        user_data: *mut c_void,
    ),
>;

/// The installed callback and its user data.
#[derive(Clone, Copy)]
struct Sink {
    callback: unsafe extern "C" fn(i32, *const c_char, *const c_char, *mut c_void),
    user_data: *mut c_void,
}

// SAFETY: the caller of edgespec_set_log_callback promises that the
// callback may be called with user_data from any thread.
unsafe impl Send for Sink {}
// SAFETY: as above; the sink itself is never mutated through a shared reference.
unsafe impl Sync for Sink {}

static SINK: RwLock<Option<Sink>> = RwLock::new(None);

struct CallbackLogger;

impl log::Log for CallbackLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let Ok(sink) = SINK.read() else { return };
        let Some(sink) = *sink else { return };
        let source = if record.target() == edgespec::engine::LLAMA_LOG_TARGET {
            c"llama.cpp"
        } else {
            c"edgespec"
        };
        // A NUL inside a message would cut it short: shown as U+FFFD.
        let text = record.args().to_string().replace('\0', "\u{fffd}");
        let Ok(message) = CString::new(text) else {
            return;
        };
        let level = match record.level() {
            log::Level::Error => EDGESPEC_LOG_ERROR,
            log::Level::Warn => EDGESPEC_LOG_WARN,
            log::Level::Info => EDGESPEC_LOG_INFO,
            log::Level::Debug => EDGESPEC_LOG_DEBUG,
            log::Level::Trace => EDGESPEC_LOG_TRACE,
        };
        // SAFETY: the callback's contract: NUL-terminated strings valid for
        // the call, user_data passed through untouched.
        unsafe { (sink.callback)(level, source.as_ptr(), message.as_ptr(), sink.user_data) };
    }

    fn flush(&self) {}
}

static LOGGER: CallbackLogger = CallbackLogger;

/// Sends edgespec's and llama.cpp's log lines up to `max_level` (one of
/// EDGESPEC_LOG_*) to `callback` with `user_data`; a NULL callback (or
/// `max_level` 0) turns logging off again. Without a call nothing is
/// logged. EDGESPEC_ERR_LOGGER when the process already has another
/// logger of Rust's `log` crate (a Rust program linking edgespec).
///
/// # Safety
/// `callback` NULL or a function safe to call with `user_data` from any
/// thread, concurrently, until it is replaced.
#[no_mangle]
pub unsafe extern "C" fn edgespec_set_log_callback(
    callback: edgespec_log_callback,
    max_level: i32,
    user_data: *mut c_void,
) -> edgespec_result {
    guard(|| {
        let filter = match max_level {
            0 => log::LevelFilter::Off,
            EDGESPEC_LOG_ERROR => log::LevelFilter::Error,
            EDGESPEC_LOG_WARN => log::LevelFilter::Warn,
            EDGESPEC_LOG_INFO => log::LevelFilter::Info,
            EDGESPEC_LOG_DEBUG => log::LevelFilter::Debug,
            EDGESPEC_LOG_TRACE => log::LevelFilter::Trace,
            other => {
                return Err(fail(
                    edgespec_result::EDGESPEC_ERR_INVALID_PARAMETER,
                    format!("max_level = {other} is not 0 or an EDGESPEC_LOG_* value"),
                ))
            }
        };
        install()?;
        let sink = callback.map(|callback| Sink {
            callback,
            user_data,
        });
        *SINK.write().unwrap_or_else(|e| e.into_inner()) = sink;
        log::set_max_level(if sink.is_some() {
            filter
        } else {
            log::LevelFilter::Off
        });
        Ok(())
    })
}

/// Makes the callback logger the process's logger (once).
fn install() -> Result<(), Failure> {
    static INSTALLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *INSTALLED.get_or_init(|| log::set_logger(&LOGGER).is_ok()) {
        Ok(())
    } else {
        Err(fail(
            edgespec_result::EDGESPEC_ERR_LOGGER,
            "another logger already receives this process's logs",
        ))
    }
}
