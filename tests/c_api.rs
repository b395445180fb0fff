//! The C API: header freshness, the C examples built against the static
//! library and checked against the Rust API, bad input from C, and two
//! sessions on two threads. (The valgrind memcheck run is scripts/valgrind-check.sh.)

mod common;

use std::ffi::{c_char, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;

use edgespec::ffi::*;
use edgespec::generate::{generate_target_only, prompt_tokens, GenerateParams};
use edgespec::synthetic::SyntheticSpec;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn header_is_up_to_date() {
    let config = cbindgen::Config::from_file(root().join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(root())
        .with_config(config)
        .generate()
        .expect("cbindgen")
        .write(&mut generated);
    let path = root().join("include/edgespec.h");
    if std::env::var("UPDATE_HEADER").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/edgespec.h is stale: run UPDATE_HEADER=1 cargo test --release --test c_api header_is_up_to_date"
    );
}

/// libedgespec.a, rebuilt if stale: `cargo test` builds the crate as an
/// rlib only, so the static library is brought up to date here, once.
fn static_lib() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let output = Command::new(cargo)
                .args(["build", "--release", "--lib"])
                .current_dir(root())
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            let dir = Path::new(env!("CARGO_BIN_EXE_edgespec"))
                .parent()
                .unwrap()
                .to_owned();
            dir.join("libedgespec.a")
        })
        .clone()
}

/// Compiles a C file against the static library, warnings as errors.
fn compile_c(source: &Path, out_dir: &Path) -> PathBuf {
    let exe = out_dir.join(source.file_stem().unwrap());
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let output = Command::new(cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g"])
        .arg("-I")
        .arg(root().join("include"))
        .arg(source)
        .arg(static_lib())
        .args(["-lstdc++", "-lgomp", "-lm", "-lpthread", "-ldl", "-o"])
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "compiling {}:\n{}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    exe
}

#[test]
fn c_example_output_equals_the_rust_api() {
    let Some(model_path) = common::smollm2() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let exe = compile_c(&root().join("examples/c/generate.c"), dir.path());
    let prompt = "Name three primary colours.";
    let out = Command::new(&exe)
        .arg(&model_path)
        .arg(prompt)
        .arg("")
        .arg("40")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("generated") && stderr.contains("alpha"),
        "{stderr}"
    );

    let (model, mut ctx) = common::load(&model_path, 2048);
    let tokens = prompt_tokens(&model, prompt, true).unwrap();
    let expected =
        generate_target_only(&mut ctx, &tokens, &GenerateParams::greedy(40), |_, _| true).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}\n", expected.text)
    );

    let minimal = compile_c(&root().join("examples/c/minimal.c"), dir.path());
    let out = Command::new(&minimal)
        .arg(&model_path)
        .arg(prompt)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!out.stdout.is_empty());
}

#[test]
fn bad_input_from_c_gets_error_codes() {
    let (dir, model_path) = common::synthetic(&SyntheticSpec::default());
    let malformed = dir.path().join("malformed.gguf");
    let mut bytes = std::fs::read(&model_path).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&malformed, bytes).unwrap();
    let exe = compile_c(&root().join("tests/c/bad_input.c"), dir.path());
    let out = Command::new(&exe)
        .arg(&model_path)
        .arg(&malformed)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Collected(Vec<u8>);

unsafe extern "C" fn collect(
    text: *const c_char,
    len: usize,
    _token: i32,
    user: *mut c_void,
) -> bool {
    // SAFETY: user is the &mut Collected passed below; text has len bytes.
    unsafe {
        let out = &mut *(user as *mut Collected);
        out.0
            .extend_from_slice(std::slice::from_raw_parts(text.cast::<u8>(), len));
        assert_eq!(*text.add(len), 0, "text is NUL-terminated");
    }
    true
}

fn generate_via_ffi(model: *const edgespec_model, prompt: &str, kind: i32) -> String {
    let mut params = edgespec_session_params_default();
    params.n_ctx = 512;
    params.n_threads = 1;
    params.draft_kind = kind;
    params.gamma = 3;
    let mut session = std::ptr::null_mut();
    // SAFETY: valid handles and pointers; freed below.
    unsafe {
        // EAD kinds use the model as its own small model.
        let small = if kind >= EDGESPEC_DRAFT_EAD {
            model
        } else {
            std::ptr::null()
        };
        assert_eq!(
            edgespec_session_new(model, small, &params, &mut session),
            edgespec_result::EDGESPEC_OK
        );
        let mut out = Collected(Vec::new());
        let p = CString::new(prompt).unwrap();
        let mut stats = edgespec_stats::default();
        let rc = edgespec_session_generate(
            session,
            p.as_ptr(),
            true,
            24,
            Some(collect),
            (&mut out as *mut Collected).cast(),
            &mut stats,
        );
        assert_eq!(
            rc,
            edgespec_result::EDGESPEC_OK,
            "{:?}",
            CStr::from_ptr(edgespec_last_error())
        );
        assert_eq!(
            stats.generated_tokens as usize,
            24.min(stats.generated_tokens as usize)
        );
        if kind >= EDGESPEC_DRAFT_EAD {
            assert!((0.0..=1.0).contains(&stats.large_share));
        }
        edgespec_session_free(&mut session);
        assert!(session.is_null());
        String::from_utf8(out.0).unwrap()
    }
}

/// The test model through the C API (None, with a printed reason, when absent).
fn load_smollm2() -> Option<*mut edgespec_model> {
    let path = common::smollm2()?;
    let c_path = CString::new(path.to_str().unwrap()).unwrap();
    let mut model = std::ptr::null_mut();
    // SAFETY: valid string and out pointer.
    unsafe {
        assert_eq!(
            edgespec_model_load(c_path.as_ptr(), std::ptr::null(), &mut model),
            edgespec_result::EDGESPEC_OK
        )
    };
    Some(model)
}

#[test]
fn two_sessions_on_two_threads_match_single_threaded_runs() {
    let Some(mut model) = load_smollm2() else {
        return;
    };
    let prompts = ["Tell me a fact about cats.", "Write a haiku about winter."];
    let expected: Vec<String> = prompts
        .iter()
        .map(|p| generate_via_ffi(model, p, 0))
        .collect();
    struct Shared(*mut edgespec_model);
    // SAFETY: a model handle may be shared across threads (documented API contract).
    unsafe impl Sync for Shared {}
    let shared = Shared(model);
    let shared = &shared;
    let got: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = prompts
            .iter()
            .zip([2, 0])
            .map(|(p, kind)| scope.spawn(move || generate_via_ffi(shared.0, p, kind)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(got, expected);
    // SAFETY: model is the handle from edgespec_model_load.
    unsafe { edgespec_model_free(&mut model) };
    assert!(model.is_null());
}

#[test]
fn ead_through_the_c_api_equals_the_model_alone_when_small_is_large() {
    let Some(mut model) = load_smollm2() else {
        return;
    };
    let prompt = "Write a haiku about winter.";
    let alone = generate_via_ffi(model, prompt, EDGESPEC_DRAFT_NONE);
    for kind in [EDGESPEC_DRAFT_EAD, EDGESPEC_DRAFT_EAD_SPEC] {
        assert_eq!(generate_via_ffi(model, prompt, kind), alone, "kind {kind}");
    }
    // EAD needs its small model; a bad window is a parameter error.
    let mut params = edgespec_session_params_default();
    params.draft_kind = EDGESPEC_DRAFT_EAD;
    let mut session = std::ptr::null_mut();
    // SAFETY: valid handles and pointers.
    unsafe {
        assert_eq!(
            edgespec_session_new(model, std::ptr::null(), &params, &mut session),
            edgespec_result::EDGESPEC_ERR_MISSING_DRAFTER
        );
        params.ead_window = 0;
        assert_eq!(
            edgespec_session_new(model, model, &params, &mut session),
            edgespec_result::EDGESPEC_ERR_INVALID_PARAMETER
        );
        let message = CStr::from_ptr(edgespec_last_error()).to_string_lossy();
        assert!(message.contains("window"), "{message}");
        assert!(session.is_null());
        edgespec_model_free(&mut model);
    }
}
