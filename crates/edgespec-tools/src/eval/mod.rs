//! Functional-correctness evaluation: HumanEval problems as chat prompts,
//! code extracted from the reply and executed against the problem's tests in
//! a python3 subprocess (time-limited, memory-limited, without network where
//! the system allows an unprivileged network namespace).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub mod humaneval;

/// Errors of the evaluation harness (not of the evaluated code).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The problems file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A problem line is not what HumanEval ships.
    #[error("{path}:{line}: {reason}")]
    BadProblem {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why.
        reason: String,
    },
    /// A results file line that is not a record.
    #[error("{path}:{line}: not a result record: {reason}")]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why.
        reason: String,
    },
    /// The results file cannot be written.
    #[error("writing results: {source}")]
    Write {
        /// Why.
        source: std::io::Error,
    },
    /// Generation failed.
    #[error(transparent)]
    Generate(#[from] edgespec::error::GenerateError),
    /// Tokenizing a prompt failed.
    #[error(transparent)]
    Engine(#[from] edgespec::engine::EngineError),
    /// python3 cannot be started.
    #[error("cannot run {python}: {source} (install python3)")]
    Python {
        /// The interpreter.
        python: String,
        /// Why.
        source: std::io::Error,
    },
}

/// One HumanEval problem (the JSONL lines benches/prompts/fetch-humaneval.py writes).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Problem {
    /// e.g. "HumanEval/0".
    pub task_id: String,
    /// The chat prompt (instruction + the function header and docstring).
    pub prompt: String,
    /// The problem's test code (defines `check(candidate)`).
    pub test: String,
    /// Name of the function under test.
    pub entry_point: String,
    /// The original HumanEval prompt: imports, signature, docstring.
    pub code_prompt: String,
}

/// Reads problems from a JSONL file; blank lines are skipped.
pub fn load_problems(path: &Path) -> Result<Vec<Problem>, EvalError> {
    let io = |source| EvalError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut problems = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let problem: Problem = serde_json::from_str(&line).map_err(|e| EvalError::BadProblem {
            path: path.to_owned(),
            line: i + 1,
            reason: e.to_string(),
        })?;
        problems.push(problem);
    }
    Ok(problems)
}

/// The code in a model's reply: the first fenced block marked python (or
/// unmarked); the whole reply when it has no fence. Nothing is rewritten.
pub fn extract_code(reply: &str) -> String {
    let mut rest = reply;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let (tag, body) = after.split_once('\n').unwrap_or((after, ""));
        let tag = tag.trim().to_ascii_lowercase();
        let end = body.find("```").unwrap_or(body.len());
        if tag.is_empty() || tag == "python" || tag == "py" || tag == "python3" {
            return body[..end].to_string();
        }
        rest = body.get(end + 3..).unwrap_or("");
    }
    reply.to_string()
}

/// The result of running a candidate against a problem's tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Every assertion held.
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

/// Runs candidate programs.
#[derive(Debug, Clone)]
pub struct Sandbox {
    /// The interpreter.
    pub python: String,
    /// Wall-clock limit per program.
    pub timeout: Duration,
    /// Address-space limit per program.
    pub memory_bytes: u64,
    /// Run inside an empty network namespace (`unshare -rn`).
    pub isolate_network: bool,
}

/// Limits the program sets on itself before anything else runs.
const PREAMBLE: &str = "import resource as _r\n\
_r.setrlimit(_r.RLIMIT_AS, ({mem}, {mem}))\n\
del _r\n";

impl Sandbox {
    /// A sandbox with `timeout`; network isolation if `unshare -rn` works here.
    pub fn new(python: &str, timeout: Duration) -> Result<Self, EvalError> {
        let probe = Command::new(python)
            .arg("-c")
            .arg("pass")
            .status()
            .map_err(|source| EvalError::Python {
                python: python.to_string(),
                source,
            })?;
        if !probe.success() {
            return Err(EvalError::Python {
                python: python.to_string(),
                source: std::io::Error::other(format!("`{python} -c pass` exited with {probe}")),
            });
        }
        let isolate_network = Command::new("unshare")
            .args(["-rn", python, "-c", "pass"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        Ok(Self {
            python: python.to_string(),
            timeout,
            memory_bytes: 4 << 30,
            isolate_network,
        })
    }

    /// The program run for `code`: the limits, the problem's own header
    /// (imports and signature), the code exactly as generated, the tests.
    pub fn program(&self, problem: &Problem, code: &str) -> String {
        format!(
            "{}{}\n{}\n{}\ncheck({})\n",
            PREAMBLE.replace("{mem}", &self.memory_bytes.to_string()),
            problem.code_prompt,
            code,
            problem.test,
            problem.entry_point
        )
    }

    /// Runs `code` against `problem`'s tests in a fresh temporary folder.
    pub fn check(&self, problem: &Problem, code: &str) -> Result<Outcome, EvalError> {
        let io = |source| EvalError::Python {
            python: self.python.clone(),
            source,
        };
        static RUNS: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "edgespec-eval-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(io)?;
        let file = dir.join("candidate.py");
        std::fs::write(&file, self.program(problem, code)).map_err(io)?;
        let mut command = if self.isolate_network {
            let mut c = Command::new("unshare");
            c.args(["-rn", &self.python]);
            c
        } else {
            Command::new(&self.python)
        };
        let mut child = command
            .arg("-I")
            .arg(&file)
            .current_dir(&dir)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io)?;
        let deadline = Instant::now() + self.timeout;
        let outcome = loop {
            if let Some(status) = child.try_wait().map_err(io)? {
                let output = child.wait_with_output().map_err(io)?;
                break if status.success() {
                    Outcome::Passed
                } else {
                    let err = String::from_utf8_lossy(&output.stderr);
                    let tail: String = err.lines().rev().take(3).collect::<Vec<_>>().join(" | ");
                    Outcome::Failed(tail)
                };
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break Outcome::TimedOut;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let _ = std::fs::remove_dir_all(&dir);
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem() -> Problem {
        Problem {
            task_id: "Test/0".into(),
            prompt: String::new(),
            test: "def check(candidate):\n    assert candidate(2, 3) == 5\n".into(),
            entry_point: "add".into(),
            code_prompt:
                "from typing import List\n\ndef add(a: int, b: int) -> int:\n    \"\"\"Add.\"\"\"\n"
                    .into(),
        }
    }

    #[test]
    fn extracts_the_first_python_block() {
        let reply = "Here:\n```text\nnot code\n```\n```python\ndef f():\n    return 1\n```\nDone.";
        assert_eq!(extract_code(reply), "def f():\n    return 1\n");
        assert_eq!(extract_code("```\nx = 1\n```"), "x = 1\n");
        // An unterminated block (reply cut at -n) keeps what is there.
        assert_eq!(extract_code("```py\nx = 1\ny"), "x = 1\ny");
        assert_eq!(extract_code("def g(): pass"), "def g(): pass");
    }

    #[test]
    fn runs_candidates_and_tells_pass_from_fail_and_timeout() {
        let mut sandbox = Sandbox::new("python3", Duration::from_secs(5)).unwrap();
        let p = problem();
        let ok = "def add(a, b):\n    return a + b\n";
        assert_eq!(sandbox.check(&p, ok).unwrap(), Outcome::Passed);
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
    fn network_is_unreachable_when_isolated() {
        let sandbox = Sandbox::new("python3", Duration::from_secs(5)).unwrap();
        if !sandbox.isolate_network {
            eprintln!("SKIPPED: unprivileged network namespaces are not available here");
            return;
        }
        let p = problem();
        let net = "import socket\ndef add(a, b):\n    socket.create_connection(('1.1.1.1', 53), timeout=2)\n    return a + b\n";
        assert!(matches!(
            sandbox.check(&p, net).unwrap(),
            Outcome::Failed(_)
        ));
    }

    #[test]
    fn bad_problem_lines_name_the_line() {
        let dir = std::env::temp_dir().join(format!("edgespec-eval-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("p.jsonl");
        let good = serde_json::to_string(&problem()).unwrap();
        std::fs::write(&path, format!("{good}\n\n{{\"task_id\": 1}}\n")).unwrap();
        let err = load_problems(&path).unwrap_err().to_string();
        assert!(err.contains(":3:"), "{err}");
        std::fs::write(&path, format!("{good}\n")).unwrap();
        assert_eq!(load_problems(&path).unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
