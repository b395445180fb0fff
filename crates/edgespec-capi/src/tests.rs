//! The C API called from Rust: what C callers get for good and bad
//! arguments, sessions on two threads, EAD through the C API.

use edgespec_testing as common;

use std::ffi::{c_char, c_void, CStr, CString};

use super::*;

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
        // Kinds that run a drafter (or EAD's small model) use the model itself.
        let small = if kind == EDGESPEC_DRAFT_NONE || kind == EDGESPEC_DRAFT_LOOKUP {
            std::ptr::null()
        } else {
            model
        };
        assert_eq!(
            edgespec_session_new(model, small, &params, &mut session),
            edgespec_result::EDGESPEC_OK
        );
        let mut out = Collected(Vec::new());
        let p = CString::new(prompt).unwrap();
        let mut stats = edgespec_stats_init();
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
        // A round trip per target call at least when the target is remote.
        let remote = (*model).inner.remote().is_some();
        assert_eq!(stats.round_trips > 0, remote, "{}", stats.round_trips);
        edgespec_session_free(&mut session);
        assert!(session.is_null());
        String::from_utf8(out.0).unwrap()
    }
}

/// The test model through the C API (None, with a printed reason, when absent).
fn load_smollm2() -> Option<*mut edgespec_model> {
    Some(load(&common::smollm2()?))
}

/// A model through the C API.
fn load(path: &std::path::Path) -> *mut edgespec_model {
    let c_path = CString::new(path.to_str().unwrap()).unwrap();
    let mut model = std::ptr::null_mut();
    // SAFETY: valid string and out pointer.
    unsafe {
        assert_eq!(
            edgespec_model_load(c_path.as_ptr(), std::ptr::null(), &mut model),
            edgespec_result::EDGESPEC_OK
        )
    };
    model
}

/// Issue 16: a file whose `vocab_size` claims 4e9 tokens beside a normal
/// tokenizer loads through `edgespec_model_load` and generates exactly what
/// the honest file does, with and without a drafter (it read past
/// llama.cpp's logits buffer before: SIGSEGV).
#[test]
fn a_crafted_vocab_size_generates_like_the_honest_file() {
    let (_dir, path) = common::synthetic(&edgespec::synthetic::SyntheticSpec::default());
    let crafted = common::with_crafted_vocab_size(&path, 4_000_000_000);
    let (mut honest, mut liar) = (load(&path), load(&crafted));
    for kind in [
        EDGESPEC_DRAFT_NONE,
        EDGESPEC_DRAFT_MODEL,
        EDGESPEC_DRAFT_EAD,
    ] {
        assert_eq!(
            generate_via_ffi(honest, "kalo mine", kind),
            generate_via_ffi(liar, "kalo mine", kind),
            "draft kind {kind}"
        );
    }
    // SAFETY: live handles from edgespec_model_load.
    unsafe {
        assert_eq!(edgespec_model_n_vocab(liar), edgespec_model_n_vocab(honest));
        edgespec_model_free(&mut honest);
        edgespec_model_free(&mut liar);
    }
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

/// Issue 20: a remote target through `edgespec_model_params.target_rpc`:
/// malformed addresses are invalid parameters; a server off loopback
/// without `insecure_rpc`, or absent, is `EDGESPEC_ERR_REMOTE` at once;
/// with a server (ggml's, on a thread of this process) the model loads
/// there, reports its round trips, and lookup drafts give the target
/// alone's text.
#[test]
fn a_remote_target_loads_on_its_server_and_bad_servers_are_typed_errors() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let c_path = CString::new(path.to_str().unwrap()).unwrap();
    let load_with = |servers: &str, insecure: bool| {
        let servers = CString::new(servers).unwrap();
        let mut params = edgespec_model_params_default();
        params.target_rpc = servers.as_ptr();
        params.insecure_rpc = insecure;
        params.rpc_timeout_ms = 2000;
        let mut model = std::ptr::null_mut();
        // SAFETY: valid strings, params and out pointer.
        let rc = unsafe { edgespec_model_load(c_path.as_ptr(), &params, &mut model) };
        (rc, model)
    };
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    for bad in ["", "host", "127.0.0.1:0", "a:1,a:1"] {
        assert_eq!(
            load_with(bad, false).0,
            edgespec_result::EDGESPEC_ERR_INVALID_PARAMETER,
            "{bad:?}"
        );
    }
    assert_eq!(
        load_with("192.0.2.1:50052", false).0,
        edgespec_result::EDGESPEC_ERR_REMOTE
    );
    let start = std::time::Instant::now();
    let (rc, model) = load_with(&format!("127.0.0.1:{}", free_port()), false);
    assert_eq!(rc, edgespec_result::EDGESPEC_ERR_REMOTE);
    assert!(model.is_null());
    assert!(start.elapsed() < std::time::Duration::from_secs(5));

    let port = serve_on_a_thread(None);
    let (rc, mut remote) = load_with(&format!("127.0.0.1:{port}"), false);
    assert_eq!(rc, edgespec_result::EDGESPEC_OK);
    let text = generate_via_ffi(remote, "The capital of France is", EDGESPEC_DRAFT_LOOKUP);
    assert!(!text.is_empty());
    // Lookup drafts over RPC give the remote target alone's text.
    assert_eq!(
        generate_via_ffi(remote, "The capital of France is", EDGESPEC_DRAFT_NONE),
        text
    );
    // SAFETY: the live handle from edgespec_model_load.
    unsafe { edgespec_model_free(&mut remote) };

    // A fallback of another vocabulary is refused at load; one of the
    // same loads (and waits unused).
    let load_falling_back = |fallback: &std::path::Path| {
        let servers = CString::new(format!("127.0.0.1:{port}")).unwrap();
        let fallback = CString::new(fallback.to_str().unwrap()).unwrap();
        let mut params = edgespec_model_params_default();
        params.target_rpc = servers.as_ptr();
        params.target_fallback = fallback.as_ptr();
        let mut model = std::ptr::null_mut();
        // SAFETY: valid strings, params and out pointer.
        let rc = unsafe { edgespec_model_load(c_path.as_ptr(), &params, &mut model) };
        (rc, model)
    };
    let other = common::with_crafted_vocab_size(&path, 1000);
    assert_eq!(
        load_falling_back(&other).0,
        edgespec_result::EDGESPEC_ERR_INVALID_PARAMETER
    );
    let (rc, mut remote) = load_falling_back(&path);
    assert_eq!(rc, edgespec_result::EDGESPEC_OK);
    // SAFETY: the live handle from edgespec_model_load.
    unsafe { edgespec_model_free(&mut remote) };
}

/// An `edgespec rpc-server` (keyed when `key` is given) on a free loopback
/// port, on a thread of this process; returns the port once it listens.
/// The server never returns: the thread ends with the test process.
fn serve_on_a_thread(key: Option<edgespec::engine::rpc::RpcKey>) -> u16 {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint: edgespec::engine::rpc::RpcEndpoint = format!("127.0.0.1:{port}").parse().unwrap();
    std::thread::spawn(move || edgespec::engine::rpc::serve(&endpoint, false, 1, None, key));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    port
}

/// Issue 35: a keyed server through `target_rpc_key_file`: the key file
/// opens it, none is `EDGESPEC_ERR_REMOTE`, a missing file `EDGESPEC_ERR_IO`.
#[test]
fn a_keyed_remote_target_needs_its_key_file() {
    let Some(path) = common::smollm2() else {
        return;
    };
    let c_path = CString::new(path.to_str().unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("server.key");
    let key = edgespec::engine::rpc::RpcKey::create(&key_path).unwrap();
    let port = serve_on_a_thread(Some(key));
    let servers = CString::new(format!("127.0.0.1:{port}")).unwrap();
    let load_with = |key_file: Option<&std::path::Path>| {
        let key_file = key_file.map(|k| CString::new(k.to_str().unwrap()).unwrap());
        let mut params = edgespec_model_params_default();
        params.target_rpc = servers.as_ptr();
        params.rpc_timeout_ms = 5000;
        params.target_rpc_key_file = key_file.as_ref().map_or(std::ptr::null(), |k| k.as_ptr());
        let mut model = std::ptr::null_mut();
        // SAFETY: valid strings, params and out pointer.
        let rc = unsafe { edgespec_model_load(c_path.as_ptr(), &params, &mut model) };
        (rc, model)
    };
    assert_eq!(load_with(None).0, edgespec_result::EDGESPEC_ERR_REMOTE);
    assert_eq!(
        load_with(Some(&dir.path().join("absent.key"))).0,
        edgespec_result::EDGESPEC_ERR_IO
    );
    let (rc, mut remote) = load_with(Some(&key_path));
    assert_eq!(rc, edgespec_result::EDGESPEC_OK);
    let text = generate_via_ffi(remote, "The capital of France is", EDGESPEC_DRAFT_LOOKUP);
    assert!(!text.is_empty());
    // SAFETY: the live handle from edgespec_model_load.
    unsafe { edgespec_model_free(&mut remote) };
}
