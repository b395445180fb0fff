//! A long prompt read, watched from outside: how far it has got (the
//! progress a terminal shows) and whether to stop it (Ctrl-C, a client that
//! left). A context consults its [`Reading`] only while the caller says it
//! reads a prompt ([`super::Context::set_reading`]); a pass that generates
//! tokens is never cut short, so a stop there ends generation where the
//! caller's own callback sees it.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Asked while a prompt is read whether to stop: true stops the pass in
/// progress (between the operations of its graph) with
/// [`super::EngineError::Interrupted`]. Called from ggml's compute thread,
/// often: it must be cheap (an atomic load, a channel's state).
pub type StopCheck = Arc<dyn Fn() -> bool + Send + Sync>;

/// Told before the first batch of a prompt read of several batches and
/// after each: tokens read so far and in all, in this read.
pub type PromptProgress = Box<dyn FnMut(usize, usize) + Send>;

/// What a context's abort callback consults. The context holds it in an
/// `Arc` whose address llama.cpp keeps, and only ever shares it.
#[derive(Default)]
pub(super) struct Reading {
    /// A prompt is being read: the stop check applies.
    armed: AtomicBool,
    stop: Mutex<Option<StopCheck>>,
    /// The abort callback stopped the pass in progress.
    stopped: AtomicBool,
}

impl Reading {
    pub(super) fn set_stop(&self, stop: Option<StopCheck>) {
        *self.stop.lock().unwrap_or_else(|e| e.into_inner()) = stop;
    }

    /// Sets the mark; returns it as it was.
    pub(super) fn arm(&self, reading: bool) -> bool {
        self.armed.swap(reading, Ordering::AcqRel)
    }

    pub(super) fn armed(&self) -> bool {
        self.armed.load(Ordering::Acquire)
    }

    /// True when a prompt is being read and the caller wants it stopped.
    pub(super) fn stop_requested(&self) -> bool {
        if !self.armed() {
            return false;
        }
        let stop = self.stop.lock().unwrap_or_else(|e| e.into_inner()).clone();
        stop.is_some_and(|stop| stop())
    }

    /// After a pass: whether the abort callback stopped it (then counted
    /// out of the passes being stopped, see [`super::backend::stopping`]).
    pub(super) fn take_stopped(&self) -> bool {
        let stopped = self.stopped.swap(false, Ordering::AcqRel);
        if stopped {
            super::backend::stopping(false);
        }
        stopped
    }

    /// llama.cpp's abort callback: `data` is the context's `Reading`.
    /// Never unwinds into C (a panicking check counts as no stop).
    pub(super) extern "C" fn abort_callback(data: *mut c_void) -> bool {
        let reading = data.cast_const().cast::<Reading>();
        // SAFETY: the context installs this with Arc::as_ptr of its
        // Reading, which it holds until after llama_free; ggml calls it only
        // during llama_decode on that context. Reading is Sync and only
        // ever shared.
        let Some(reading) = (unsafe { reading.as_ref() }) else {
            return false;
        };
        let stop =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reading.stop_requested()))
                .unwrap_or(false);
        if stop && !reading.stopped.swap(true, Ordering::AcqRel) {
            super::backend::stopping(true);
        }
        stop
    }
}

impl std::fmt::Debug for Reading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reading")
            .field("armed", &self.armed())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_check_applies_only_while_armed() {
        let flag = Arc::new(AtomicBool::new(true));
        let reading = Reading::default();
        let data = std::ptr::from_ref(&reading).cast_mut().cast();
        assert!(!Reading::abort_callback(data), "no check installed");
        let f = flag.clone();
        reading.set_stop(Some(Arc::new(move || f.load(Ordering::SeqCst))));
        assert!(!Reading::abort_callback(data), "not reading a prompt");
        reading.arm(true);
        assert!(Reading::abort_callback(data));
        assert!(reading.take_stopped());
        assert!(!reading.take_stopped(), "counted out once");
        flag.store(false, Ordering::SeqCst);
        assert!(!Reading::abort_callback(data));
        reading.set_stop(Some(Arc::new(|| panic!("a broken check"))));
        assert!(!Reading::abort_callback(data), "a panic is no stop");
        assert!(!Reading::abort_callback(std::ptr::null_mut()));
    }
}
