//! Runs model-written Python against a problem's tests, contained: its own
//! process group (killed whole), a private temporary folder, limits on
//! memory, CPU, file size and processes, an unprivileged user when started
//! as root, and the filesystem and network isolated by bubblewrap (or the
//! network alone by `unshare`) where the machine allows it. A pass is judged
//! by a sentinel the program prints after the tests ran, not by its exit
//! status alone.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{EvalError, Problem};

/// The result of running a candidate against a problem's tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Every assertion held and the program reached its end.
    Passed,
    /// The program failed; the tail of its stderr.
    Failed(String),
    /// It ran past the time limit and was killed.
    TimedOut,
}

impl Outcome {
    /// True for [`Outcome::Passed`].
    pub fn passed(&self) -> bool {
        matches!(self, Outcome::Passed)
    }
}

/// How a candidate was kept from the rest of the machine; recorded with
/// every result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// bubblewrap: read-only root, private /tmp and /dev, no network, its
    /// own PID namespace (nothing it starts outlives it).
    Bubblewrap,
    /// `unshare -rn`: no network; the filesystem is shared.
    UnshareNetwork,
    /// Limits and the process group only.
    None,
}

impl Isolation {
    /// Strongest first: the order [`Sandbox::new`] tries them in.
    const ALL: [Isolation; 3] = [
        Isolation::Bubblewrap,
        Isolation::UnshareNetwork,
        Isolation::None,
    ];

    /// The name results and reports use.
    pub fn name(self) -> &'static str {
        match self {
            Isolation::Bubblewrap => "bubblewrap",
            Isolation::UnshareNetwork => "unshare-network",
            Isolation::None => "none",
        }
    }
}

/// Resource limits set on the candidate before it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Address space (RLIMIT_AS).
    pub memory_bytes: u64,
    /// Largest file it may write (RLIMIT_FSIZE).
    pub file_bytes: u64,
    /// Processes it may add to those its user already runs (RLIMIT_NPROC).
    pub processes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 4 << 30,
            file_bytes: 16 << 20,
            processes: 32,
        }
    }
}

/// Bytes of each output stream kept (the tail).
const OUTPUT_CAP: usize = 64 << 10;
/// How long to wait for the output streams to close once the program is
/// gone.
const READER_GRACE: Duration = Duration::from_secs(2);
/// The unprivileged user a root caller runs candidates as.
const NOBODY: u32 = 65534;

/// Runs candidate programs.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// The interpreter.
    pub python: String,
    /// Wall-clock limit per program (also its CPU-time limit).
    pub timeout: Duration,
    /// Resource limits.
    pub limits: Limits,
    /// Where the private temporary folders are made.
    pub temp_root: PathBuf,
    /// The isolation in force (the strongest that works here).
    pub isolation: Isolation,
}

impl Sandbox {
    /// A sandbox with `timeout` and the strongest isolation that runs
    /// `python` on this machine.
    pub fn new(python: &str, timeout: Duration) -> Result<Self, EvalError> {
        let mut sandbox = Self {
            python: python.to_string(),
            timeout,
            limits: Limits::default(),
            temp_root: std::env::temp_dir(),
            isolation: Isolation::None,
        };
        let mut last_failure = String::new();
        for isolation in Isolation::ALL {
            sandbox.isolation = isolation;
            match sandbox.run("pass\n") {
                Ok(Outcome::Passed) => return Ok(sandbox),
                Ok(other) => last_failure = format!("{other:?}"),
                Err(e) => last_failure = e.to_string(),
            }
        }
        Err(EvalError::Python {
            python: python.to_string(),
            source: std::io::Error::other(format!(
                "`{python}` does not run even without isolation: {last_failure}"
            )),
        })
    }

    /// The program run for `code`: the problem's own header (imports and
    /// signature), the code exactly as generated, the tests.
    pub fn program(problem: &Problem, code: &str) -> String {
        format!(
            "{}\n{}\n{}\ncheck({})\n",
            problem.code_prompt, code, problem.test, problem.entry_point
        )
    }

    /// Runs `code` against `problem`'s tests.
    pub fn check(&self, problem: &Problem, code: &str) -> Result<Outcome, EvalError> {
        self.run(&Self::program(problem, code))
    }

    /// Runs `program` in a fresh private folder; it passes when it prints
    /// the run's sentinel after its last line and exits with status 0.
    pub fn run(&self, program: &str) -> Result<Outcome, EvalError> {
        let io = |source| EvalError::Python {
            python: self.python.clone(),
            source,
        };
        let dir = tempfile::Builder::new()
            .prefix("edgespec-eval-")
            .tempdir_in(&self.temp_root)
            .map_err(io)?;
        let as_nobody = is_root();
        if as_nobody {
            std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).map_err(io)?;
        }
        let sentinel = sentinel();
        let file = dir.path().join("candidate.py");
        std::fs::write(
            &file,
            format!("{program}\nprint({sentinel:?}, flush=True)\n"),
        )
        .map_err(io)?;
        let mut command = self.command(dir.path(), &file, as_nobody);
        let mut child = command.spawn().map_err(io)?;
        let stdout = read_tail(child.stdout.take());
        let stderr = read_tail(child.stderr.take());

        let deadline = Instant::now() + self.timeout;
        let mut timed_out = false;
        while !has_exited(&child).map_err(io)? {
            if Instant::now() >= deadline {
                timed_out = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // The whole group goes, whatever the candidate left running; the
        // leader is not reaped yet, so its id still names this group.
        kill_group(&child);
        let status = child.wait().map_err(io)?;
        // Both streams close once every process holding them is gone (under
        // bubblewrap the PID namespace dies with its first process, but not
        // at once): waiting for that keeps the leftovers from outliving the
        // call.
        let stdout = stdout.recv_timeout(READER_GRACE).unwrap_or_default();
        let stderr = stderr.recv_timeout(READER_GRACE).unwrap_or_default();
        if timed_out {
            return Ok(Outcome::TimedOut);
        }
        let finished = String::from_utf8_lossy(&stdout)
            .lines()
            .next_back()
            .is_some_and(|line| line == sentinel);
        Ok(if status.success() && finished {
            Outcome::Passed
        } else {
            let err = String::from_utf8_lossy(&stderr);
            let mut tail: Vec<&str> = err.lines().rev().take(3).collect();
            if tail.is_empty() {
                tail.push(if status.success() {
                    "exited before the tests finished"
                } else {
                    "exited with an error and no message"
                });
            }
            Outcome::Failed(tail.join(" | "))
        })
    }

    /// The command line for this isolation, with the limits and the user
    /// change applied in the child before it executes anything.
    fn command(&self, dir: &Path, file: &Path, as_nobody: bool) -> Command {
        let mut command = match self.isolation {
            Isolation::Bubblewrap => {
                let mut c = Command::new("bwrap");
                c.args(["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"])
                    .args(["--tmpfs", "/tmp", "--bind"])
                    .args([dir, dir])
                    .args(["--unshare-all", "--die-with-parent", "--new-session"])
                    .arg("--chdir")
                    .arg(dir)
                    .arg("--")
                    .arg(&self.python);
                c
            }
            Isolation::UnshareNetwork => {
                let mut c = Command::new("unshare");
                c.args(["-rn", "--", &self.python]);
                c
            }
            Isolation::None => Command::new(&self.python),
        };
        command
            .arg("-I")
            .arg(file)
            .current_dir(dir)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let user = if as_nobody { NOBODY } else { real_uid() };
        let processes = tasks_of_user(user) + self.limits.processes;
        let limits = [
            (libc::RLIMIT_AS, self.limits.memory_bytes),
            (libc::RLIMIT_FSIZE, self.limits.file_bytes),
            (libc::RLIMIT_CPU, self.timeout.as_secs() + 1),
            (libc::RLIMIT_NPROC, processes),
            (libc::RLIMIT_CORE, 0),
        ];
        // SAFETY: the closure runs in the forked child before exec and only
        // makes async-signal-safe system calls on values computed before
        // the fork; it allocates nothing.
        unsafe {
            command.pre_exec(move || {
                for (resource, value) in limits {
                    let limit = libc::rlimit {
                        rlim_cur: value,
                        rlim_max: value,
                    };
                    if libc::setrlimit(resource, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if as_nobody
                    && (libc::setgroups(0, std::ptr::null()) != 0
                        || libc::setgid(NOBODY) != 0
                        || libc::setuid(NOBODY) != 0)
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        command
    }
}

/// Whether the child has exited, without reaping it (its process id keeps
/// naming its group until it is waited for).
fn has_exited(child: &Child) -> std::io::Result<bool> {
    // SAFETY: an all-zero siginfo_t is a valid value of this plain C struct.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our own unreaped child and `info` a valid
    // out-pointer; WNOWAIT leaves the child waitable.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            child.id(),
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: waitid filled `info`; si_pid is 0 while the child runs.
    Ok(unsafe { info.si_pid() } != 0)
}

/// SIGKILL to the child's whole process group.
fn kill_group(child: &Child) {
    // SAFETY: plain system call; the group id is our unreaped child's pid,
    // which the kernel cannot hand to another process yet.
    unsafe {
        libc::killpg(child.id() as libc::pid_t, libc::SIGKILL);
    }
}

/// Reads `stream` to its end on a thread, keeping the last [`OUTPUT_CAP`]
/// bytes; the receiver gets them once the stream closes.
fn read_tail(stream: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (send, receive) = mpsc::channel();
    if let Some(mut stream) = stream {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * OUTPUT_CAP {
                    kept.drain(..kept.len() - OUTPUT_CAP);
                }
            }
            let start = kept.len().saturating_sub(OUTPUT_CAP);
            let _ = send.send(kept.split_off(start));
        });
    }
    receive
}

/// A line no candidate can print by chance.
fn sentinel() -> String {
    static RUNS: AtomicU64 = AtomicU64::new(0);
    let mut h = Sha256::new();
    h.update(std::process::id().to_le_bytes());
    h.update(RUNS.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    h.update(now.as_nanos().to_le_bytes());
    let digest: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("edgespec-tests-finished-{digest}")
}

fn is_root() -> bool {
    // SAFETY: plain system call without arguments.
    unsafe { libc::geteuid() == 0 }
}

fn real_uid() -> u32 {
    // SAFETY: plain system call without arguments.
    unsafe { libc::getuid() }
}

/// Tasks (threads included: RLIMIT_NPROC counts them) that `uid` runs now.
fn tasks_of_user(uid: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("status")).ok())
        .filter(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next())
                .is_some_and(|real| real == uid.to_string())
        })
        .filter_map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::tests::problem;

    const ADD: &str = "def add(a, b):\n    return a + b\n";

    fn sandbox(timeout_ms: u64) -> Sandbox {
        let sandbox = Sandbox::new("python3", Duration::from_millis(timeout_ms)).unwrap();
        eprintln!("isolation in force: {:?}", sandbox.isolation);
        sandbox
    }

    /// The sandbox under every isolation that works here (the weaker ones
    /// are what other machines fall back to).
    fn every_working_isolation(timeout_ms: u64, temp_root: &Path) -> Vec<Sandbox> {
        let mut sandbox = sandbox(timeout_ms);
        sandbox.temp_root = temp_root.to_owned();
        Isolation::ALL
            .into_iter()
            .map(|isolation| Sandbox {
                isolation,
                ..sandbox.clone()
            })
            .filter(|s| s.run("pass\n").is_ok_and(|o| o.passed()))
            .collect()
    }

    /// Processes whose command line mentions `dir` (the candidate's path
    /// is on it).
    fn processes_in(dir: &Path) -> usize {
        let needle = dir.to_string_lossy().into_owned();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .filter(|cmdline| String::from_utf8_lossy(cmdline).contains(&needle))
            .count()
    }

    /// No process mentions `dir` any more (those SIGKILLed get 5 s to go).
    fn assert_none_left(dir: &Path, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while processes_in(dir) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(processes_in(dir), 0, "{what} left a process");
    }

    #[test]
    fn tells_pass_from_fail_and_timeout() {
        let mut sandbox = sandbox(5000);
        let p = problem();
        assert_eq!(sandbox.check(&p, ADD).unwrap(), Outcome::Passed);
        let wrong = "def add(a, b):\n    return a - b\n";
        let r = sandbox.check(&p, wrong).unwrap();
        assert!(
            matches!(&r, Outcome::Failed(e) if e.contains("AssertionError")),
            "{r:?}"
        );
        let syntax = "def add(a, b)\n    return a + b\n";
        assert!(
            matches!(sandbox.check(&p, syntax).unwrap(), Outcome::Failed(e) if e.contains("SyntaxError"))
        );
        sandbox.timeout = Duration::from_millis(500);
        let slow = "def add(a, b):\n    while True:\n        pass\n";
        assert_eq!(sandbox.check(&p, slow).unwrap(), Outcome::TimedOut);
        // The header's imports are there; the memory limit holds.
        let hungry = "def add(a, b):\n    x = bytearray(8 << 30)\n    return a + b\n";
        sandbox.timeout = Duration::from_secs(5);
        assert!(
            matches!(sandbox.check(&p, hungry).unwrap(), Outcome::Failed(e) if e.contains("MemoryError"))
        );
    }

    #[test]
    fn an_early_exit_with_status_zero_is_not_a_pass() {
        let p = problem();
        let root = tempfile::tempdir().unwrap();
        for (sandbox, early) in every_working_isolation(5000, root.path())
            .iter()
            .flat_map(|s| {
                [
                    "import sys\nsys.exit(0)\n",
                    "import os\nos._exit(0)\n",
                    "def add(a, b):\n    import os; os._exit(0)\n",
                ]
                .map(|early| (s, early))
            })
        {
            let r = sandbox.check(&p, early).unwrap();
            assert!(
                matches!(&r, Outcome::Failed(e) if e.contains("before the tests finished")),
                "{early:?}: {r:?}"
            );
        }
    }

    #[test]
    fn nothing_the_candidate_starts_outlives_it() {
        let root = tempfile::tempdir().unwrap();
        let p = problem();
        // A fork that outlives the parent, and a grandchild holding stderr
        // (and stdout) open after the parent has passed.
        let orphan = "import os, time\nif os.fork() == 0:\n    time.sleep(60)\n    os._exit(0)\n";
        let holder = "import os, time\nif os.fork() == 0:\n    if os.fork() == 0:\n        time.sleep(60)\n    os._exit(0)\n";
        for sandbox in every_working_isolation(3000, root.path()) {
            let iso = sandbox.isolation;
            for leftover in [orphan, holder] {
                let started = Instant::now();
                let r = sandbox.check(&p, &format!("{leftover}{ADD}")).unwrap();
                assert_eq!(r, Outcome::Passed, "{iso:?} {leftover:?}");
                // Not the 60 s the leftover sleeps.
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "{iso:?} {leftover:?}"
                );
                assert_none_left(root.path(), &format!("{iso:?}: {leftover:?}"));
            }
        }
    }

    #[test]
    fn a_fork_bomb_is_contained() {
        let root = tempfile::tempdir().unwrap();
        let bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n";
        for sandbox in every_working_isolation(3000, root.path()) {
            let iso = sandbox.isolation;
            let started = Instant::now();
            let r = sandbox.check(&problem(), bomb).unwrap();
            assert!(!r.passed(), "{iso:?}: {r:?}");
            assert!(started.elapsed() < Duration::from_secs(10), "{iso:?}");
            assert_none_left(root.path(), &format!("{iso:?}"));
        }
    }

    #[test]
    fn a_megabyte_on_stderr_is_a_failure_with_its_tail() {
        let sandbox = sandbox(5000);
        let loud =
            "import sys\nsys.stderr.write('x' * (1 << 20) + '\\n')\nassert False, 'the end'\n";
        let r = sandbox.check(&problem(), loud).unwrap();
        assert!(
            matches!(&r, Outcome::Failed(e) if e.contains("the end")),
            "{r:?}"
        );
    }

    #[test]
    fn writes_outside_the_private_folder_are_refused() {
        let sandbox = sandbox(5000);
        // A folder anyone may write to, outside /tmp: only the sandbox stops
        // the candidate.
        let outside = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        std::fs::set_permissions(
            outside.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .unwrap();
        let target = outside.path().join("results.jsonl");
        let code = format!(
            "open({:?}, 'w').write('lost')\n{ADD}",
            target.to_str().unwrap()
        );
        let r = sandbox.check(&problem(), &code).unwrap();
        if sandbox.isolation != Isolation::Bubblewrap {
            eprintln!("SKIPPED: bubblewrap cannot run here; the filesystem is not isolated");
            return;
        }
        // Read-only where the folder is seen; absent where it lies under
        // /tmp (a clone there), which the sandbox replaces with its own.
        assert!(
            matches!(&r, Outcome::Failed(e)
                if e.contains("Read-only file system") || e.contains("No such file or directory")),
            "{r:?}"
        );
        assert!(!target.exists());
    }

    #[test]
    fn network_is_unreachable_when_isolated() {
        let sandbox = sandbox(5000);
        if sandbox.isolation == Isolation::None {
            eprintln!("SKIPPED: neither bubblewrap nor unshare can isolate the network here");
            return;
        }
        let net = "import socket\ndef add(a, b):\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n    return a + b\n";
        assert!(matches!(
            sandbox.check(&problem(), net).unwrap(),
            Outcome::Failed(_)
        ));
    }
}
