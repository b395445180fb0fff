//! Prompt files: plain text (one prompt per line) or JSONL whose lines hold
//! a `prompt`, `text` or MT-bench/Spec-Bench style `turns` field (the first
//! turn is used).

use std::path::{Path, PathBuf};

/// A prompt file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// The file cannot be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A JSONL line that is not JSON or has no prompt field.
    #[error("{path}:{line}: {reason}")]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// No prompts at all.
    #[error("{path}: no prompts")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Reads prompts from `path`. A file whose first non-empty line starts with
/// `{` is JSONL; anything else is one prompt per line. Blank lines are skipped.
pub fn load_prompts(path: &Path) -> Result<Vec<String>, PromptError> {
    let text = std::fs::read_to_string(path).map_err(|source| PromptError::Io {
        path: path.to_owned(),
        source,
    })?;
    let prompts = parse_prompts(&text).map_err(|(line, reason)| PromptError::BadLine {
        path: path.to_owned(),
        line,
        reason,
    })?;
    if prompts.is_empty() {
        return Err(PromptError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(prompts)
}

/// Parses prompt text; errors carry (1-based line, reason).
pub fn parse_prompts(text: &str) -> Result<Vec<String>, (usize, String)> {
    let jsonl = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| l.trim_start().starts_with('{'));
    let mut prompts = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if !jsonl {
            prompts.push(line.to_owned());
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| (i + 1, format!("invalid JSON: {e}")))?;
        let prompt = ["prompt", "text"]
            .iter()
            .find_map(|k| value.get(*k).and_then(|v| v.as_str()))
            .or_else(|| {
                value
                    .get("turns")
                    .and_then(|t| t.get(0))
                    .and_then(|t| t.as_str())
            })
            .ok_or_else(|| {
                (
                    i + 1,
                    "no string field `prompt`, `text` or `turns[0]`".to_owned(),
                )
            })?;
        prompts.push(prompt.to_owned());
    }
    Ok(prompts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_one_per_line() {
        assert_eq!(
            parse_prompts("a\n\n b \r\nc").unwrap(),
            vec!["a", " b ", "c"]
        );
    }

    #[test]
    fn jsonl_fields() {
        let text = "{\"prompt\": \"p\"}\n{\"text\": \"t\"}\n\n{\"turns\": [\"first\", \"second\"], \"id\": 3}\n";
        assert_eq!(parse_prompts(text).unwrap(), vec!["p", "t", "first"]);
    }

    #[test]
    fn malformed_lines_are_named() {
        assert_eq!(
            parse_prompts("{\"prompt\": \"p\"}\n{oops\n").unwrap_err().0,
            2
        );
        let (line, reason) = parse_prompts("{\"prompt\": \"p\"}\n\n{\"other\": 1}").unwrap_err();
        assert_eq!(line, 3);
        assert!(reason.contains("prompt"));
    }

    #[test]
    fn empty_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, "\n\n").unwrap();
        assert!(matches!(
            load_prompts(&empty),
            Err(PromptError::Empty { .. })
        ));
        assert!(matches!(
            load_prompts(&dir.path().join("none.txt")),
            Err(PromptError::Io { .. })
        ));
    }
}
