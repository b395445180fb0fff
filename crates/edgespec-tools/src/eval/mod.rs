//! Functional-correctness evaluation: HumanEval problems as chat prompts,
//! code extracted from the reply and executed against the problem's tests
//! in the [`sandbox`].

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod humaneval;
pub mod sandbox;

pub use sandbox::{Isolation, Limits, Outcome, Sandbox};

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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A problem whose tests check `add(2, 3) == 5`.
    pub(crate) fn problem() -> Problem {
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
