//! The C API from C: header freshness, and the C examples and a hostile C
//! program built against the static library, checked against the Rust API.
//! (Calls from Rust are the crate's unit tests; the valgrind memcheck run is
//! scripts/valgrind-check.sh.)

use edgespec_testing as common;

use std::path::{Path, PathBuf};
use std::process::Command;

use edgespec::synthetic::SyntheticSpec;
use edgespec::{Session, SessionConfig};

/// The workspace root (include/, examples/).
fn root() -> PathBuf {
    common::workspace_root()
}

#[test]
fn header_is_up_to_date() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).unwrap();
    let mut generated = Vec::new();
    cbindgen::Builder::new()
        .with_crate(crate_dir)
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
        "include/edgespec.h is stale: run UPDATE_HEADER=1 cargo test --release -p edgespec-capi --test c_api header_is_up_to_date"
    );
}

/// libedgespec.a, rebuilt if stale (`cargo test` does not build the
/// crate's static library), once.
fn static_lib() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let output = Command::new(cargo)
                .args(["build", "--release", "-p", "edgespec-capi"])
                .current_dir(root())
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{}",
                String::from_utf8_lossy(&output.stderr)
            );
            // This test runs from target/<profile>/deps.
            let exe = std::env::current_exe().unwrap();
            let profile_dir = exe.parent().and_then(Path::parent).unwrap();
            profile_dir.join("libedgespec.a")
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

    let (model, _) = common::load(&model_path, 2048);
    let mut session = Session::new(SessionConfig::new(model, common::ctx_params(2048))).unwrap();
    let tokens = session.prompt_tokens(prompt, true).unwrap();
    let expected = session
        .generate(&tokens, 40, |_, _| true)
        .unwrap()
        .generation;
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
    let exe = compile_c(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/c/bad_input.c"),
        dir.path(),
    );
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

/// Issue 16: `max_tokens = UINT32_MAX` ("no limit") from C under a 4 GiB
/// address-space limit: every draft kind generates until the context is
/// full (a reservation sized by the token limit aborted the process before).
#[test]
fn no_limit_max_tokens_from_c_fills_the_context_without_aborting() {
    let (dir, model_path) = common::synthetic(&SyntheticSpec::default());
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/c/no_limit_max_tokens.c");
    let exe = compile_c(&source, dir.path());
    let out = Command::new(&exe).arg(&model_path).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the C program `tests/c/NAME.c` on a synthetic target and drafter
/// (peaky logits: greedy choices decided by the algorithm, not rounding)
/// with `args` after the two model paths; it must print "ALL OK".
fn run_c_on_synthetic_pair(name: &str, args: &[&str]) {
    let (dir, target) = common::synthetic(&SyntheticSpec {
        weight_scale: 3.0,
        ..SyntheticSpec::default()
    });
    let drafter = dir.path().join("drafter.gguf");
    SyntheticSpec {
        seed: 2,
        n_layer: 1,
        weight_scale: 3.0,
        ..SyntheticSpec::default()
    }
    .write(&drafter)
    .unwrap();
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{name}.c"));
    let exe = compile_c(&source, dir.path());
    let out = Command::new(&exe)
        .arg(&target)
        .arg(&drafter)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("ALL OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Issue 16, soak (short version; `scripts/soak.sh` runs 1,000 generations
/// on real models): many generations through the C API with every draft
/// kind, sampled and greedy, cancellations and deliberate errors between
/// them — every call as expected, lossless runs equal the target alone,
/// resident memory flat after the warm-up.
#[test]
fn soak_through_the_c_api() {
    run_c_on_synthetic_pair("soak", &["120", "24"]);
}

/// Issue 17: conversations from C — every kind's answers equal a fresh
/// session given the whole history at once; bad calls get their codes.
#[test]
fn conversations_from_c_equal_the_history_read_whole() {
    run_c_on_synthetic_pair("conversation", &[]);
}

/// Issue 17: prompt caches from C — saved after a system prompt, restored
/// in a new session, the answer equal to reading the whole history; bad
/// files and arguments get their codes.
#[test]
fn prompt_caches_from_c_restore_exactly_and_refuse_what_is_not_theirs() {
    let dir = tempfile::tempdir().unwrap();
    run_c_on_synthetic_pair("prompt_cache", &[dir.path().to_str().unwrap()]);
}

/// Issue 18: the ABI grows safely (version macros, struct_size checked on
/// every parameter and result struct), the samplers and stop strings work
/// from C and stay exact under speculation, and the log callback receives
/// llama.cpp's lines until it is removed.
#[test]
fn the_abi_grows_safely_and_offers_samplers_stop_strings_and_logs() {
    run_c_on_synthetic_pair("abi", &[]);
}
