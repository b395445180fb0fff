//! The CLI on bad input: a clear message naming the problem, never a
//! panic; exit status 2 for a command line that cannot run (as clap's own
//! usage errors), 1 for a run that failed.

use std::process::Command;

use edgespec_testing as common;

fn edgespec(args: &[&str]) -> (bool, String) {
    let (status, stderr) = edgespec_status(args);
    (status == Some(0), stderr)
}

/// The exit status and standard error of `edgespec ARGS`.
fn edgespec_status(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edgespec"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code(), stderr)
}

/// Asserts that `edgespec ARGS` is refused as a usage error naming `what`.
fn refused_as_usage(args: &[&str], what: &str) {
    let (status, err) = edgespec_status(args);
    assert_eq!(status, Some(2), "{args:?}: {err}");
    assert!(err.contains(what), "{args:?}: {err}");
}

#[test]
fn bench_rejects_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("p.jsonl");
    std::fs::write(
        &prompts,
        "{\"prompt\": \"ok\"}\n{\"prompt\": \"ok\"}\n{broken\n",
    )
    .unwrap();
    let model = dir.path().join("m.gguf");
    edgespec::synthetic::SyntheticSpec::default()
        .write(&model)
        .unwrap();
    let m = model.to_str().unwrap();
    let p = prompts.to_str().unwrap();

    refused_as_usage(
        &["bench", "-m", m, "-f", p, "--modes", "target,medusa"],
        "unknown mode \"medusa\"",
    );
    // A bad prompt file is a failed run, not a usage error.
    let (status, err) = edgespec_status(&["bench", "-m", m, "-f", p]);
    assert!(
        status == Some(1) && err.contains("p.jsonl:3") && err.contains("invalid JSON"),
        "{err}"
    );
    std::fs::write(&prompts, "hello\n").unwrap();
    let (ok, err) = edgespec(&["bench", "-m", "/no/model.gguf", "-f", p]);
    assert!(
        !ok && err.contains("target model not found: /no/model.gguf"),
        "{err}"
    );
    let usage: [(&[&str], &str); 5] = [
        (&["--modes", "target,model:3"], "need a drafter model"),
        (&["--sweep", "gamma=5..2"], "gamma=5..2"),
        (&["--sweep", "size=1..2"], "use gamma=A..B, k="),
        (&["--sweep", "threads=2,0"], "\"0\" is not a thread count"),
        (&["--sweep", "k=4096,8192"], "needs the full drafter"),
    ];
    for (extra, what) in usage {
        refused_as_usage(&[&["bench", "-m", m, "-f", p], extra].concat(), what);
    }
    // A K sweep past the vocabulary, with real counts for this model.
    let corpus = dir.path().join("corpus.txt");
    std::fs::write(&corpus, "hello world\nthe quick brown fox\n").unwrap();
    let counts = dir.path().join("counts.json");
    let c = counts.to_str().unwrap();
    let (ok, err) = edgespec(&[
        "calibrate",
        "-m",
        m,
        "--raw-text",
        corpus.to_str().unwrap(),
        "-o",
        c,
    ]);
    assert!(ok, "{err}");
    let out = dir.path().join("out");
    let o = out.to_str().unwrap();
    let sweep = |k: &str| {
        edgespec(&[
            "bench", "-m", m, "-d", m, "-f", p, "--counts", c, "--sweep", k, "--out", o,
        ])
    };
    let (ok, err) = sweep("k=100000");
    assert!(
        !ok && err.contains("K = 100000 is larger than the vocabulary"),
        "{err}"
    );
    let (ok, err) = sweep("k=64,zero");
    assert!(
        !ok && err.contains("\"zero\" is not a positive number"),
        "{err}"
    );
    let (ok, err) = edgespec(&["bench", "-m", m, "-f", p, "--modes", "ead:-2"]);
    assert!(!ok && err.contains("unknown mode \"ead:-2\""), "{err}");
    let (ok, err) = edgespec(&["bench", "-m", m, "-f", p, "--modes", "ead-spec:1"]);
    assert!(!ok && err.contains("need a drafter model"), "{err}");
    let runs = dir.path().join("runs.jsonl");
    std::fs::write(&runs, "{\"not\": \"a run\"}\n").unwrap();
    let (ok, err) = edgespec(&["bench", "-m", m, "--from-runs", runs.to_str().unwrap()]);
    assert!(!ok && err.contains("runs.jsonl:1"), "{err}");
}

#[test]
fn other_commands_reject_bad_input_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.gguf");
    std::fs::write(
        &bad,
        b"GGUF\x03\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff",
    )
    .unwrap();
    let b = bad.to_str().unwrap();
    let (ok, err) = edgespec(&["inspect", b]);
    assert!(
        !ok && err.contains("truncated") || err.contains("cannot fit"),
        "{err}"
    );
    let (ok, err) = edgespec(&["inspect", "/no/such.gguf"]);
    assert!(!ok && err.contains("/no/such.gguf"), "{err}");
    // Issue 18: each cause once (the OS error was printed twice).
    assert_eq!(err.matches("os error 2").count(), 1, "{err}");
    let (ok, err) = edgespec(&["generate", "-m", "/no/such.gguf", "-p", "hi"]);
    assert!(!ok && err.contains("model file not found"), "{err}");
    let model = dir.path().join("m.gguf");
    edgespec::synthetic::SyntheticSpec::default()
        .write(&model)
        .unwrap();
    let m = model.to_str().unwrap();
    let out = dir.path().join("p.json");
    let o = out.to_str().unwrap();
    refused_as_usage(
        &[
            "profile",
            "-m",
            m,
            "-o",
            o,
            "--target-rpc",
            "127.0.0.1:1",
            "--target-fallback",
            m,
        ],
        "--target-fallback",
    );
    let profile = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../profiles/vm-intel-xeon-avx512.json"
    );
    let traces = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../benches/traces/tuning/specbench/qa.jsonl"
    );
    for rtt in ["nan", "-1", "inf"] {
        let (ok, err) = edgespec(&[
            "replay",
            "-t",
            traces,
            "-P",
            profile,
            &format!("--round-trip={rtt}"),
        ]);
        assert!(!ok && err.contains("round trip"), "{rtt}: {err}");
    }
    let (ok, err) = edgespec(&["generate", "-m", m, "-p", "hi", "--temp=-1"]);
    assert!(!ok && err.contains("temperature"), "{err}");
    let (ok, err) = edgespec(&["generate", "-m", m, "-p", "hi", "--draft-kind", "model"]);
    assert!(!ok && err.contains("needs a drafter model"), "{err}");
    let (ok, err) = edgespec(&["generate", "--large", m, "-p", "hi", "--mode", "ead"]);
    assert!(
        !ok && err.contains("needs a small model (--small)"),
        "{err}"
    );
    let ead = |flag: &str, value: &str| {
        edgespec(&[
            "generate", "--large", m, "--small", m, "-p", "hi", "--mode", "ead-spec", flag, value,
        ])
    };
    let (ok, err) = ead("--ead-window", "0");
    assert!(!ok && err.contains("window must be at least 1"), "{err}");
    let (ok, err) = ead("--ead-threshold=-1", "--stats");
    assert!(
        !ok && err.contains("threshold must be a finite number"),
        "{err}"
    );
    let (ok, err) = ead("--ead-dwell", "2");
    assert!(ok, "{err}");
    let (ok, err) = edgespec(&["eval", "humaneval", "--from-results", "/no/results.jsonl"]);
    assert!(!ok && err.contains("/no/results.jsonl"), "{err}");
    let (ok, err) = edgespec(&[
        "generate",
        "-m",
        m,
        "-p",
        "hi",
        "--draft-kind",
        "lookup",
        "--gamma",
        "99",
    ]);
    assert!(!ok && err.contains("draft length 99"), "{err}");
    let (ok, err) = edgespec(&[
        "generate",
        "-m",
        m,
        "-p",
        "hi",
        "-d",
        m,
        "--draft-kind",
        "trimmed",
    ]);
    assert!(!ok && err.contains("not a trimmed drafter"), "{err}");
    let counts = dir.path().join("c.json");
    std::fs::write(&counts, "[1, 2, 3]").unwrap();
    let (ok, err) = edgespec(&[
        "trim",
        "-d",
        m,
        "--counts",
        counts.to_str().unwrap(),
        "-k",
        "10",
        "-o",
        "/tmp/x.gguf",
    ]);
    assert!(!ok && err.contains("not a counts file"), "{err}");
}

/// Issue 16: `edgespec generate` on a file whose `vocab_size` claims 4e9
/// tokens beside its real tokenizer prints what the honest file prints
/// (SIGSEGV before: the claim sized the read of llama.cpp's logits).
#[test]
fn generate_on_a_crafted_vocab_size_prints_what_the_honest_file_prints() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.gguf");
    edgespec::synthetic::SyntheticSpec::default()
        .write(&model)
        .unwrap();
    let crafted = common::with_crafted_vocab_size(&model, 4_000_000_000);
    let run = |path: &std::path::Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_edgespec"))
            .args(["generate", "-p", "kalo mine", "-n", "16", "-t", "1", "-m"])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    assert_eq!(run(&crafted), run(&model));
}

/// `eval humaneval` naming files that do not exist: what it checks before
/// opening any is all that runs.
const EVAL_WITHOUT_FILES: &[&str] = &[
    "eval",
    "humaneval",
    "--large",
    "/no/l.gguf",
    "--small",
    "/no/s.gguf",
    "--problems",
    "/no/such.jsonl",
];

/// Issue 16: `eval --timeout` outside (0, 86400] is a clear error, not a
/// panic in `Duration::from_secs_f64`.
#[test]
fn eval_rejects_a_timeout_that_is_not_a_positive_number_of_seconds() {
    for bad in ["-1", "0", "NaN", "inf", "1e300"] {
        let (ok, err) = edgespec(&[EVAL_WITHOUT_FILES, &[&format!("--timeout={bad}")]].concat());
        assert!(
            !ok && err.contains("--timeout") && err.contains("(0, 86400]"),
            "{bad}: {err}"
        );
    }
}

/// Issue 16: a second `bench` or `eval` into a folder that holds results
/// refuses (naming --from-runs/--from-results and --force) and leaves the
/// earlier file untouched; they were silently truncated before.
#[test]
fn earlier_results_are_never_silently_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let earlier = "{\"earlier\": true}\n";
    for (command, file, resume) in [
        ("bench", "runs.jsonl", "--from-runs"),
        ("eval", "results.jsonl", "--from-results"),
    ] {
        let out = dir.path().join(command);
        std::fs::create_dir_all(&out).unwrap();
        std::fs::write(out.join(file), earlier).unwrap();
        let out = out.to_str().unwrap();
        let args: Vec<&str> = match command {
            "bench" => vec![
                "bench",
                "-m",
                "/no/such.gguf",
                "-f",
                "/no/such.txt",
                "--out",
                out,
            ],
            _ => [EVAL_WITHOUT_FILES, &["--out", out]].concat(),
        };
        let (ok, err) = edgespec(&args);
        assert!(
            !ok && err.contains(resume) && err.contains("--force"),
            "{command}: {err}"
        );
        let kept = std::fs::read_to_string(std::path::Path::new(out).join(file)).unwrap();
        assert_eq!(kept, earlier, "{command} touched {file}");
    }
}

/// Peak resident memory (KiB) and stderr of `edgespec ARGS`.
// The child is reaped by wait4, which also reports its peak memory.
#[allow(clippy::zombie_processes)]
fn edgespec_peak_rss(args: &[&std::ffi::OsStr]) -> (bool, String, i64) {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgespec"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our own unwaited child; status and usage are valid
    // out-pointers for the call.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let success = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    (success, stderr, usage.ru_maxrss)
}

#[test]
fn inspect_refuses_oversized_headers_without_using_the_memory_they_claim() {
    let dir = tempfile::tempdir().unwrap();
    for (what, path) in common::sparse_oversized_files(dir.path()) {
        let (ok, err, peak_kib) = edgespec_peak_rss(&["inspect".as_ref(), path.as_os_str()]);
        assert!(!ok && err.contains("over the cap"), "{what}: {err}");
        assert!(
            peak_kib < 100 * 1024,
            "{what}: peak resident memory {peak_kib} KiB"
        );
    }
}

/// Issue 16, the CLI-wide number audit: values that crashed, aborted or
/// were silently accepted before (each found by a sweep of every numeric
/// flag with -1, 0, NaN, inf, 1e30, 2^32 and 2^64) are clear errors now.
#[test]
fn hostile_numbers_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.gguf");
    edgespec::synthetic::SyntheticSpec::default()
        .write(&model)
        .unwrap();
    let m = model.to_str().unwrap();
    let out = dir.path().join("s.gguf");
    let o = out.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        // Unused by the target alone, still checked.
        (
            &["generate", "-m", m, "-p", "hi", "--p-min", "nan"],
            "p-min",
        ),
        (
            &["generate", "-m", m, "-p", "hi", "--ead-share", "inf"],
            "share",
        ),
        (
            &["generate", "-m", m, "-p", "hi", "--ead-threshold", "nan"],
            "threshold",
        ),
        (
            &["generate", "-m", m, "-p", "hi", "--temp=-1"],
            "temperature",
        ),
        (
            &["generate", "-m", m, "-p", "hi", "--top-p", "nan"],
            "top-p",
        ),
        // Checked before any model loads: no file is needed to hear it.
        (
            &[
                "generate",
                "-m",
                "/nonexistent.gguf",
                "-p",
                "hi",
                "--gamma",
                "100",
            ],
            "draft length 100",
        ),
        (
            &[
                "generate",
                "-m",
                "/nonexistent.gguf",
                "-p",
                "hi",
                "--p-min",
                "2",
            ],
            "p-min",
        ),
        (&["chat", "-m", "/nonexistent.gguf", "-c", "0"], "n_ctx"),
        (
            &[
                "generate",
                "-m",
                "/nonexistent.gguf",
                "-p",
                "hi",
                "-fa",
                "maybe",
            ],
            "use auto, on or off",
        ),
        (
            &[
                "generate",
                "-m",
                "/nonexistent.gguf",
                "-p",
                "hi",
                "-ctk",
                "q5_1",
            ],
            "use f16, q8_0 or q4_0",
        ),
        (
            &[
                "serve",
                "-m",
                "/nonexistent.gguf",
                "-ctv",
                "q8_0",
                "-fa",
                "off",
            ],
            "needs flash attention",
        ),
        // Allocation-sized arguments: an abort before.
        (&["synth", "-o", o, "--embd", "4294967296"], "--embd"),
        (
            &["synth", "-o", o, "--embd", "65536", "--ff", "262144"],
            "over the",
        ),
        (&["synth", "-o", o, "--words", "4294967296"], "--words"),
        (
            &[EVAL_WITHOUT_FILES, &["--start-threshold", "nan"]].concat(),
            "--start-threshold",
        ),
    ];
    for (args, expected) in cases {
        let (status, err) = edgespec_status(args);
        assert!(
            status.is_some_and(|s| s != 0) && err.contains(expected),
            "{args:?}: {err}"
        );
        // The sessions' settings are usage errors, found before any load.
        if matches!(args[0], "generate" | "chat" | "serve") {
            assert_eq!(status, Some(2), "{args:?}: {err}");
        }
    }
    assert!(!out.exists());
}

/// Issue 16: `eval --resume` continues an interrupted run: the answers
/// already recorded are kept and not generated again, a torn last line is
/// dropped, and the summary covers every answer once.
#[test]
fn eval_resume_continues_an_interrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.gguf");
    edgespec::synthetic::SyntheticSpec::default()
        .write(&model)
        .unwrap();
    let problems = dir.path().join("he.jsonl");
    let problem = |id: usize| {
        serde_json::json!({
            "task_id": format!("T/{id}"), "prompt": "kalo mine", "entry_point": "f",
            "test": "def check(c):\n    pass\n", "code_prompt": "def f():\n    pass\n"
        })
        .to_string()
    };
    std::fs::write(&problems, format!("{}\n{}\n", problem(0), problem(1))).unwrap();
    let out = dir.path().join("eval");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "humaneval",
            "--large",
            model.to_str().unwrap(),
            "--small",
            model.to_str().unwrap(),
            "--problems",
            problems.to_str().unwrap(),
            "-n",
            "4",
            "--thresholds",
            "1",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        edgespec(&args)
    };
    let (ok, err) = run(&["--limit", "1"]);
    assert!(ok, "{err}");
    let results = out.join("results.jsonl");
    let first = std::fs::read_to_string(&results).unwrap();
    assert_eq!(first.lines().count(), 3, "large, small, one EAD answer");
    // An interrupt mid-write left a torn line.
    std::fs::write(&results, format!("{first}{{\"config\": \"lar")).unwrap();
    let (ok, err) = run(&["--resume"]);
    assert!(ok, "{err}");
    let text = std::fs::read_to_string(&results).unwrap();
    assert!(
        text.starts_with(&first),
        "earlier answers kept as they were:\n{first}\n---\n{text}"
    );
    let keys: Vec<(String, String)> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|r| (r["config"].to_string(), r["task_id"].to_string()))
        .collect();
    assert_eq!(keys.len(), 6, "{text}");
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 6, "nothing answered twice: {keys:?}");
}

/// A terminal for a child process: the master side, read on a thread
/// into `output`.
struct Terminal {
    master: std::fs::File,
    output: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Terminal {
    /// Starts `command` as the leader of a new session whose controlling
    /// terminal is a fresh pty (stdin, stdout and stderr on it), as a shell
    /// would: Ctrl-C typed into it is a SIGINT from the terminal.
    fn spawn(mut command: Command) -> (Self, std::process::Child) {
        use std::os::fd::{FromRawFd, OwnedFd};
        use std::os::unix::process::CommandExt;
        let (mut master, mut slave) = (0, 0);
        // SAFETY: openpty writes two descriptors; no name, termios or size.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned here.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        command
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        // SAFETY: setsid and ioctl are async-signal-safe; the child makes
        // its stdin (the pty) its controlling terminal.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap();
        drop(command); // the parent's copies of the slave side
        let master = std::fs::File::from(master);
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once every slave descriptor is closed (the child left).
            while let Ok(n @ 1..) = std::io::Read::read(&mut reader, &mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        (Self { master, output }, child)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Types `keys` as a user would.
    fn type_keys(&mut self, keys: &str) {
        std::io::Write::write_all(&mut self.master, keys.as_bytes()).unwrap();
    }

    /// Waits (two minutes at most) until the screen shows `what` after byte `from`.
    fn wait_for(&self, what: &str, from: usize) -> usize {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let text = self.text();
            if let Some(at) = text.get(from..).and_then(|t| t.find(what)) {
                return from + at + what.len();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {what:?} on the terminal:\n{text}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// Issue 17: `edgespec chat` in a terminal, driven as a user would: the
/// system prompt goes to a prompt cache, turns stream, the second turn
/// reads only its new tokens (`/stats`), Ctrl-C typed during an answer
/// stops it and keeps the session, `/exit` quits cleanly; a second chat
/// restores the system prompt from the cache.
#[test]
fn chat_in_a_terminal_streams_reuses_caches_and_survives_ctrl_c() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.gguf");
    edgespec::synthetic::SyntheticSpec {
        weight_scale: 3.0,
        n_ctx: 8192,
        ..Default::default()
    }
    .write(&model)
    .unwrap();
    let cache = dir.path().join("system.cache");
    let system = "lomi neta kalo mine suta ro vika ".repeat(8);
    let chat = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_edgespec"));
        command
            .args([
                "chat",
                "-m",
                model.to_str().unwrap(),
                "-c",
                "8192",
                "-n",
                "4000",
            ])
            .args(["--ignore-eos", "--system", &system, "--prompt-cache"])
            .arg(&cache);
        Terminal::spawn(command)
    };
    let (mut term, mut child) = chat();
    let at = term.wait_for("0 tokens restored", 0);
    let at = term.wait_for("saved)", at);
    let at = term.wait_for("> ", at);
    // A long answer: Ctrl-C once it streams.
    term.type_keys("kalo mine suta\r");
    let at = term.wait_for("kalo mine suta", at);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while term.text().len() < at + 200 {
        assert!(std::time::Instant::now() < deadline, "no answer streams");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    term.type_keys("\x03");
    let at = term.wait_for("(stopped)", at);
    // The session goes on: a second turn, its figures, then quit.
    let at = term.wait_for("> ", at);
    term.type_keys("ro vika\r");
    // Stopped too once it streams: a 4000-token answer of the random model
    // outlasts any deadline on a loaded 2-core machine.
    let at = term.wait_for("ro vika", at);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while term.text().len() < at + 50 {
        assert!(
            std::time::Instant::now() < deadline,
            "no second answer streams"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    term.type_keys("\x03");
    let at = term.wait_for("(stopped)", at);
    // The prompt at the start of a line: the random model's answer may
    // hold "> " itself.
    let at = term.wait_for("\n> ", at);
    term.type_keys("/stats\r");
    let stats_at = term.wait_for("from the cache", at);
    term.type_keys("/exit\r");
    let status = child.wait().unwrap();
    let text = term.text();
    assert!(status.success(), "{status:?}\n{text}");
    // Every turn answered (a NUL byte a model produces does not end the
    // conversation).
    assert!(!text.contains("error:"), "{text}");
    let stats = text[..stats_at].lines().last().unwrap();
    let numbers: Vec<usize> = stats
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let (prompt, cached) = (numbers[0], numbers[1]);
    assert!(cached > 0 && cached < prompt, "{stats}");

    // A second chat restores the system prompt and reads nothing of it.
    let (mut term, mut child) = chat();
    let restored = term.wait_for(" tokens restored", 0);
    let line = term.text()[..restored].lines().last().unwrap().to_owned();
    assert!(!line.contains(": 0 tokens"), "{line}");
    let at = term.wait_for("> ", restored);
    assert!(!term.text()[..at].contains("saved)"), "{}", term.text());
    term.type_keys("/exit\r");
    assert!(child.wait().unwrap().success(), "{}", term.text());
}

/// Issue 17: the cost cache — a second run with the same models and
/// settings skips calibration; other settings get their own entry; a
/// corrupt entry is ignored (calibrated again and rewritten), never fatal.
#[test]
fn the_cost_cache_skips_calibration_on_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let (target, drafter) = common::synthetic_pair_files(dir.path());
    let cache = dir.path().join("costs");
    let run = |threads: &str| {
        let (ok, err) = edgespec(&[
            "generate",
            "-m",
            target.to_str().unwrap(),
            "-d",
            drafter.to_str().unwrap(),
            "-p",
            "kalo mine",
            "-n",
            "16",
            "--stats",
            "-t",
            threads,
            // A fixed length: the drafter is always loaded (an automatic
            // one might leave it out, see the next test).
            "--gamma",
            "4",
            "--cost-cache",
            cache.to_str().unwrap(),
        ]);
        assert!(ok, "{err}");
        let line = err
            .lines()
            .find(|l| l.contains("calibration"))
            .unwrap_or_else(|| panic!("{err}"))
            .to_owned();
        (line.contains("calibration 0 ms"), err)
    };
    let entries = || std::fs::read_dir(&cache).map_or(0, |d| d.count());
    assert!(!run("2").0, "the first run calibrates");
    assert_eq!(entries(), 1);
    assert!(run("2").0, "the second run uses the cache");
    assert!(!run("1").0, "other threads: another entry");
    assert_eq!(entries(), 2);
    for entry in std::fs::read_dir(&cache).unwrap() {
        std::fs::write(entry.unwrap().path(), "{ torn").unwrap();
    }
    let (cached, err) = run("2");
    assert!(!cached && err.contains("not a cost cache entry"), "{err}");
    assert!(run("2").0, "rewritten after the corrupt one");
}

/// Issue 17: a one-shot run leaves out a drafter model whose rounds did
/// not pay in earlier runs (the cost cache's record says so), with the
/// same text, and loads it again when its spell is over; a fixed draft
/// length always loads it.
#[test]
fn a_drafter_that_did_not_pay_is_left_out_for_a_spell() {
    let dir = tempfile::tempdir().unwrap();
    let (target, drafter) = common::synthetic_pair_files(dir.path());
    let cache = dir.path().join("costs");
    let run = |gamma: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_edgespec"))
            .args(["generate", "-m", target.to_str().unwrap()])
            .args(["-d", drafter.to_str().unwrap(), "--draft-kind", "hybrid"])
            .args(["-p", "kalo mine", "-n", "24", "--stats", "--gamma", gamma])
            .args(["--cost-cache", cache.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        (out.stdout, err.contains("drafter: left out"), err)
    };
    // The entry of the automatic length, or of the fixed one.
    let entry = |auto: bool| {
        std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| {
                let file = e.unwrap().path();
                let text = std::fs::read_to_string(&file).unwrap();
                (
                    file,
                    serde_json::from_str::<serde_json::Value>(&text).unwrap(),
                )
            })
            .find(|(_, json)| json["key"]["session"].to_string().contains("Auto") == auto)
            .unwrap()
    };
    // As if its rounds had cost 50 ms a run lately.
    let did_not_pay = |auto: bool| {
        let (file, mut json) = entry(auto);
        json["drafter"] = serde_json::json!({"saved_ms": -50.0, "skipped": 0, "retry_after": 1});
        std::fs::write(&file, json.to_string()).unwrap();
    };
    let (text, left_out, err) = run("auto");
    assert!(!left_out, "{err}");
    let json = entry(true).1;
    assert!(json["drafter"]["saved_ms"].is_f64(), "{json}");
    let costs = json["costs"].clone();
    did_not_pay(true);
    run("3");
    did_not_pay(false);
    let (fixed_text, left_out, err) = run("3");
    assert!(
        !left_out && fixed_text == text,
        "a fixed length loads it: {err}"
    );

    let (without, left_out, err) = run("auto");
    assert!(left_out, "{err}");
    assert_eq!(without, text, "the same text without the drafter");
    let json = entry(true).1;
    assert_eq!(json["drafter"]["skipped"], 1, "{json}");
    assert_eq!(
        json["costs"]["draft"], costs["draft"],
        "the drafter's costs are kept"
    );
    let (again, left_out, err) = run("auto");
    assert!(!left_out, "loaded again after its spell: {err}");
    assert_eq!(again, text);
    assert_eq!(entry(true).1["drafter"]["skipped"], 0);
}

/// Issue 18: `--grammar`, `--grammar-file` and `-j` (llama.cpp's flags)
/// constrain the output alike, speculative as target-only; a grammar that
/// does not parse, a schema beyond the subset or a missing file is a clear
/// error, and EAD refuses one.
#[test]
fn a_grammar_constrains_generate_and_bad_ones_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (target, drafter) = common::synthetic_pair_files(dir.path());
    let (t, d) = (target.to_str().unwrap(), drafter.to_str().unwrap());
    let grammar = "root ::= \" lo\" ([a-z]+ | \" \" [a-z]+)*";
    let file = dir.path().join("words.gbnf");
    std::fs::write(&file, grammar).unwrap();
    let run = |flags: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_edgespec"))
            .args([
                "generate",
                "-m",
                t,
                "-p",
                "kalo mine",
                "-n",
                "16",
                "--no-cost-cache",
            ])
            .args(flags)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            err,
        )
    };
    let (code, alone, err) = run(&["--grammar", grammar]);
    assert_eq!(code, Some(0), "{err}");
    assert!(alone.starts_with(" lo"), "{alone:?}");
    assert!(
        alone
            .trim_end()
            .chars()
            .all(|c| c == ' ' || c.is_ascii_lowercase()),
        "{alone:?}"
    );
    let (plain_code, plain, _) = run(&[]);
    assert_eq!(plain_code, Some(0));
    assert_ne!(plain, alone, "the grammar changed nothing");
    let f = file.to_str().unwrap();
    for flags in [
        &["--grammar-file", f][..],
        &["--grammar-file", f, "-md", d, "--gamma", "3"],
    ] {
        let (code, out, err) = run(flags);
        assert_eq!(code, Some(0), "{flags:?}: {err}");
        assert_eq!(out, alone, "{flags:?}");
    }
    let (code, _, err) = run(&["--grammar", "root ::= nothing"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("invalid parameter grammar") && err.contains("could not parse"),
        "{err}"
    );
    let (code, _, err) = run(&["--grammar-file", "/nonexistent/g.gbnf"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("reading the grammar from /nonexistent/g.gbnf"),
        "{err}"
    );
    let (code, _, err) = run(&["--mode", "ead", "--small", d, "--grammar", grammar]);
    assert_eq!(code, Some(1));
    assert!(err.contains("grammar is not supported with ead"), "{err}");
    // A JSON schema (llama.cpp's -j): JSON it accepts; what it cannot
    // express is a usage error, named.
    let schema =
        r#"{"type": "object", "properties": {"w": {"enum": ["kalo", "mine"]}}, "required": ["w"]}"#;
    for flags in [
        &["-j", schema][..],
        &["-j", schema, "-md", d, "--gamma", "3"],
    ] {
        let (code, out, err) = run(flags);
        assert_eq!(code, Some(0), "{err}");
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        assert!(v["w"] == "kalo" || v["w"] == "mine", "{out}");
    }
    let (code, _, err) = run(&["-j", r#"{"type": "string", "pattern": "^a"}"#]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("\"pattern\"") && err.contains("not supported"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// Issue 18: llama.cpp's spellings mean what they mean there — `-md`,
/// `-ngl`, `-s`, `--draft-max`, `--draft-p-min`, `--model-draft` — and a
/// sampled run without a seed gets a fresh one, printed.
#[test]
fn llama_cpp_flags_are_understood_and_the_seed_is_fresh_unless_given() {
    let dir = tempfile::tempdir().unwrap();
    let (target, drafter) = common::synthetic_pair_files(dir.path());
    let (t, d) = (target.to_str().unwrap(), drafter.to_str().unwrap());
    // Sampled runs print their seed; greedy runs (whose text does not
    // depend on how the timed policy drafts) are compared by their text.
    let run_at = |temp: &str, flags: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_edgespec"))
            .args(["generate", "-m", t, "-p", "kalo mine", "-n", "12"])
            .args(["--temp", temp, "--no-cost-cache"])
            .args(flags)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{flags:?}: {err}");
        let seed = err
            .lines()
            .find_map(|l| l.strip_prefix("seed: "))
            .map(str::to_owned);
        (out.stdout, seed)
    };
    let run = |flags: &[&str]| {
        let (_, seed) = run_at("0.8", flags);
        seed.expect("a sampled run prints its seed")
    };
    let ours = [
        "--draft",
        d,
        "--gpu-layers",
        "0",
        "--seed",
        "42",
        "--gamma-max",
        "4",
        "--p-min",
        "0.5",
    ];
    let theirs = [
        "-md",
        d,
        "-ngl",
        "0",
        "-s",
        "42",
        "--draft-max",
        "4",
        "--draft-p-min",
        "0.5",
    ];
    assert_eq!(run_at("0", &ours), run_at("0", &theirs));
    assert_eq!(run(&ours), "42");
    assert_eq!(run(&theirs), "42");
    assert_eq!(run(&["--model-draft", d, "-ngl=0", "-s", "42"]), "42");
    // -f FILE and -f - (standard input) read the prompt as -p gives it.
    let file = dir.path().join("prompt.txt");
    std::fs::write(&file, "kalo mine").unwrap();
    let greedy = |source: &[&str], stdin: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgespec"))
            .args(["generate", "-m", t, "-n", "12"])
            .args(source)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        out.stdout
    };
    let by_flag = greedy(&["-p", "kalo mine"], "");
    assert_eq!(greedy(&["-f", file.to_str().unwrap()], ""), by_flag);
    assert_eq!(greedy(&["-f", "-"], "kalo mine"), by_flag);
    // No seed: a fresh one each run.
    let (a, b) = (run(&[]), run(&[]));
    assert_ne!(a, b);
}

/// Issue 18: `--json` reports the generation as one object; `-r TEXT`
/// (llama.cpp's stop string) ends the output where the text first holds
/// it, left out, with and without a drafter, streamed and in the report;
/// the issue's example command line runs as written.
#[test]
fn stop_strings_cut_the_output_and_json_reports_it() {
    let dir = tempfile::tempdir().unwrap();
    let (target, drafter) = common::synthetic_pair_files(dir.path());
    let (t, d) = (target.to_str().unwrap(), drafter.to_str().unwrap());
    let run = |flags: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_edgespec"))
            .args(["generate", "-m", t, "-p", "kalo mine", "-n", "24"])
            .args(flags)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{flags:?}: {err}");
        String::from_utf8(out.stdout).unwrap()
    };
    let report = |flags: &[&str]| -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(flags);
        serde_json::from_str(&run(&all)).unwrap()
    };
    let whole = report(&[]);
    assert_eq!(whole["stop"], "MaxTokens");
    assert_eq!(whole["tokens"].as_array().unwrap().len(), 24);
    assert!(whole["seed"].is_null(), "greedy: no seed to report");
    let text = whole["text"].as_str().unwrap().to_owned();
    // A stop string from the middle of the output.
    let chars: Vec<char> = text.chars().collect();
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 3].iter().collect();
    let expected = &text[..text.find(&stop).unwrap()];
    for drafter_flags in [&[][..], &["-md", d, "--gamma", "4"][..]] {
        let mut flags = drafter_flags.to_vec();
        flags.extend(["-r", &stop]);
        let cut = report(&flags);
        assert_eq!(cut["stop"], "StopString", "{flags:?}");
        assert_eq!(cut["text"], expected, "{flags:?}");
        assert!(cut["tokens"].as_array().unwrap().len() < 24);
        assert!(cut["speculation"].is_null() == drafter_flags.is_empty());
        // Streamed: the same text (and the final newline), nothing of the stop string.
        assert_eq!(run(&flags), format!("{expected}\n"), "{flags:?}");
    }
    // The issue's llama.cpp command line, as written.
    let file = dir.path().join("prompt.txt");
    std::fs::write(&file, "kalo mine").unwrap();
    let f = file.to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edgespec"))
        .args([
            "generate", "-m", t, "-md", d, "-f", f, "-n", "128", "-t", "2",
        ])
        .args(["-s", "42", "--min-p", "0.05", "--temp", "0.7", "-r", "</s>"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--lookup-memory`: a run's output is kept in the file and drafted from
/// by the next run (same text as without it); a damaged file is replaced
/// with a warning, a file that is not a memory is neither read nor
/// replaced, and a memory of another model is left alone.
#[test]
fn the_lookup_memory_is_kept_across_runs_and_bad_files_are_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (target, drafter) = common::synthetic_pair_files(dir.path());
    let memory = dir.path().join("memory.bin");
    let run = |model: &std::path::Path, file: &std::path::Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_edgespec"))
            .args([
                "generate",
                "-m",
                model.to_str().unwrap(),
                "--draft-kind",
                "lookup",
            ])
            .args(["-p", "kalo mine", "-n", "40", "--stats", "--gamma", "4"])
            .args(["--no-cost-cache", "--lookup-memory", file.to_str().unwrap()])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        (out.stdout, err)
    };
    let (first, err) = run(&target, &memory);
    assert!(!err.contains("memory:"), "nothing to remember yet: {err}");
    let saved = std::fs::read(&memory).unwrap();
    assert!(saved.starts_with(b"ESMEMORY"));
    let (second, err) = run(&target, &memory);
    assert_eq!(second, first);
    assert!(err.contains("  memory: "), "drafted from the memory: {err}");

    // Damaged: warned about, then replaced by this run's memory.
    let mut damaged = saved.clone();
    *damaged.last_mut().unwrap() ^= 1;
    std::fs::write(&memory, &damaged).unwrap();
    let (third, err) = run(&target, &memory);
    assert_eq!(third, first);
    assert!(err.contains("checksum"), "{err}");
    assert!(std::fs::read(&memory).unwrap().starts_with(b"ESMEMORY"));
    assert_ne!(std::fs::read(&memory).unwrap(), damaged);

    // Not a memory file: left as it is.
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, b"my notes").unwrap();
    let (_, err) = run(&target, &notes);
    assert!(err.contains("not an edgespec lookup memory"), "{err}");
    assert_eq!(std::fs::read(&notes).unwrap(), b"my notes");

    // Another model's memory: not used, not replaced.
    let before = std::fs::read(&memory).unwrap();
    let (_, err) = run(&drafter, &memory);
    assert!(err.contains("another target model"), "{err}");
    assert_eq!(std::fs::read(&memory).unwrap(), before);
}
