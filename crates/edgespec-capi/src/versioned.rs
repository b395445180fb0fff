//! Structs that grow without breaking callers: every parameter and result
//! struct begins with `struct_size`, the size the caller's header gave it
//! (the `_default`/`_init` functions set it). A library newer than the
//! caller reads only that many bytes and keeps its defaults for the fields
//! the caller's header did not have, and writes no further than that; a
//! library older than the caller accepts the fields it does not know only
//! while they are zero (what a caller that never set them holds), as
//! Linux's `openat2` and `clone3` do.

use std::ffi::c_void;
use std::mem::size_of;

use crate::edgespec_result;
use crate::error::{fail, Failure};

/// The largest `struct_size` taken: anything bigger is not a size.
const MAX_STRUCT_SIZE: usize = 4096;

/// A struct of this ABI: `#[repr(C)]`, `Copy`, `struct_size: u32` first.
///
/// # Safety
/// Implementors must be `#[repr(C)]` with a `u32` size field at offset 0,
/// and every bit pattern a C caller can store in their fields must be valid.
pub(crate) unsafe trait Versioned: Copy {
    /// The struct's name in messages.
    const NAME: &'static str;
    /// The size of the first released layout (the smallest a caller may give).
    const FIRST_SIZE: usize;
}

/// The size the caller's struct claims, checked.
///
/// # Safety
/// `ptr` must be non-null and readable for 4 bytes.
unsafe fn claimed_size<T: Versioned>(ptr: *const c_void) -> Result<usize, Failure> {
    // SAFETY: readable for the size field per the caller's contract.
    let size = unsafe { ptr.cast::<u32>().read_unaligned() } as usize;
    if !(T::FIRST_SIZE..=MAX_STRUCT_SIZE).contains(&size) {
        return Err(fail(
            edgespec_result::EDGESPEC_ERR_INVALID_PARAMETER,
            format!(
                "{}.struct_size is {size}: set it with the struct's _default/_init function (this library's size is {})",
                T::NAME,
                size_of::<T>()
            ),
        ));
    }
    Ok(size)
}

/// Reads a caller's struct over `defaults`: the fields its `struct_size`
/// covers replace theirs; fields beyond this library's layout must be zero.
///
/// # Safety
/// `ptr` must be non-null and readable for the `struct_size` it holds.
pub(crate) unsafe fn read_struct<T: Versioned>(ptr: *const T, defaults: T) -> Result<T, Failure> {
    // SAFETY: forwarded contract.
    let size = unsafe { claimed_size::<T>(ptr.cast()) }?;
    let ours = size_of::<T>();
    if size > ours {
        // SAFETY: the caller's struct is readable for `size` bytes.
        let unknown =
            unsafe { std::slice::from_raw_parts(ptr.cast::<u8>().add(ours), size - ours) };
        if unknown.iter().any(|&b| b != 0) {
            return Err(fail(
                edgespec_result::EDGESPEC_ERR_INVALID_PARAMETER,
                format!(
                    "{} sets fields this library (edgespec {}) does not know: {size} bytes, this version's are {ours}",
                    T::NAME,
                    env!("CARGO_PKG_VERSION")
                ),
            ));
        }
    }
    let mut value = defaults;
    // SAFETY: both regions hold at least min(size, ours) bytes and do not
    // overlap (value is a local); T accepts the caller's bit patterns.
    unsafe {
        std::ptr::copy_nonoverlapping(
            ptr.cast::<u8>(),
            (&mut value as *mut T).cast::<u8>(),
            size.min(ours),
        );
    }
    Ok(value)
}

/// Checks that a caller's output struct can be written (its `struct_size`
/// is set), before any work that would be lost to the error.
///
/// # Safety
/// `ptr` must be non-null and readable for 4 bytes.
pub(crate) unsafe fn check_writable<T: Versioned>(ptr: *const T) -> Result<(), Failure> {
    // SAFETY: forwarded contract.
    unsafe { claimed_size::<T>(ptr.cast()) }.map(drop)
}

/// Writes `value` into a caller's struct, no further than its
/// `struct_size` (which stays as the caller set it).
///
/// # Safety
/// `ptr` must be non-null and writable for the `struct_size` it holds,
/// which [`check_writable`] accepted.
pub(crate) unsafe fn write_struct<T: Versioned>(ptr: *mut T, value: &T) {
    // SAFETY: forwarded contract; the size was checked before.
    let Ok(size) = (unsafe { claimed_size::<T>(ptr.cast()) }) else {
        return;
    };
    let skip = size_of::<u32>();
    let n = size.min(size_of::<T>()) - skip;
    // SAFETY: both hold `skip + n` bytes; the caller's is writable.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (value as *const T).cast::<u8>().add(skip),
            ptr.cast::<u8>().add(skip),
            n,
        );
    }
}
