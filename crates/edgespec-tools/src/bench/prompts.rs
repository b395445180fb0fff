//! Prompt files: plain text (one prompt per line) or JSONL whose lines hold
//! a `prompt`, `text` or MT-bench/Spec-Bench style `turns` field (the first
//! turn is used), or a conversation: `messages`, a list of `{role,
//! content}` ending in a user message (the earlier turns are read as the
//! prompt's history).

use std::path::{Path, PathBuf};

use edgespec::engine::{ChatMessage, EngineError, Model, Token};
use edgespec::generate::prompt_tokens;

/// One prompt: a user message, after the earlier turns of its conversation
/// (none for a single-turn prompt).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// Earlier messages (user and assistant), oldest first.
    pub history: Vec<ChatMessage>,
    /// The user message to answer (the raw text without a chat template).
    pub text: String,
}

impl Prompt {
    /// A single-turn prompt.
    pub fn single(text: impl Into<String>) -> Self {
        Self {
            history: Vec::new(),
            text: text.into(),
        }
    }

    /// The prompt's tokens and its text as the model reads it: through the
    /// chat template when `chat` (the history with it), else raw (a
    /// conversation needs the template: refused).
    pub fn format(&self, model: &Model, chat: bool) -> Result<(Vec<Token>, String), EngineError> {
        if !chat {
            if !self.history.is_empty() {
                return Err(EngineError::InvalidParam {
                    name: "prompt",
                    value: format!("a conversation of {} earlier messages", self.history.len()),
                    reason: "a conversation is read through the chat template (--chat)",
                });
            }
            return Ok((prompt_tokens(model, &self.text, false)?, self.text.clone()));
        }
        let mut messages = self.history.clone();
        messages.push(ChatMessage::user(self.text.as_str()));
        let text = model.apply_chat_template(&messages)?;
        Ok((model.tokenize(&text, true, true)?, text))
    }
}

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
pub fn load_prompts(path: &Path) -> Result<Vec<Prompt>, PromptError> {
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
pub fn parse_prompts(text: &str) -> Result<Vec<Prompt>, (usize, String)> {
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
            prompts.push(Prompt::single(line));
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| (i + 1, format!("invalid JSON: {e}")))?;
        if let Some(messages) = value.get("messages") {
            prompts.push(conversation(messages).map_err(|reason| (i + 1, reason))?);
            continue;
        }
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
                    "no string field `prompt`, `text` or `turns[0]`, and no `messages`".to_owned(),
                )
            })?;
        prompts.push(Prompt::single(prompt));
    }
    Ok(prompts)
}

/// A `messages` list: `{role, content}` objects, roles `system`, `user` or
/// `assistant`, the last one a user message.
fn conversation(messages: &serde_json::Value) -> Result<Prompt, String> {
    let list = messages
        .as_array()
        .ok_or("`messages` is not a list")?
        .iter()
        .map(|m| {
            let field = |k: &str| m.get(k).and_then(|v| v.as_str());
            match (field("role"), field("content")) {
                (Some(role @ ("system" | "user" | "assistant")), Some(content)) => {
                    Ok(ChatMessage::new(role, content))
                }
                _ => Err(
                    "a message needs a `role` (system, user or assistant) and a `content` string"
                        .to_owned(),
                ),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let Some((last, history)) = list.split_last() else {
        return Err("`messages` is empty".into());
    };
    if last.role != "user" {
        return Err("the last message must be the user's".into());
    }
    Ok(Prompt {
        history: history.to_vec(),
        text: last.content.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_one_per_line() {
        assert_eq!(
            parse_prompts("a\n\n b \r\nc").unwrap(),
            vec![
                Prompt::single("a"),
                Prompt::single(" b "),
                Prompt::single("c")
            ]
        );
    }

    #[test]
    fn jsonl_fields() {
        let text = "{\"prompt\": \"p\"}\n{\"text\": \"t\"}\n\n{\"turns\": [\"first\", \"second\"], \"id\": 3}\n";
        let texts: Vec<String> = parse_prompts(text)
            .unwrap()
            .into_iter()
            .map(|p| p.text)
            .collect();
        assert_eq!(texts, ["p", "t", "first"]);
    }

    #[test]
    fn conversations() {
        let text = r#"{"messages": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "q2"}]}"#;
        let prompts = parse_prompts(text).unwrap();
        assert_eq!(
            prompts,
            [Prompt {
                history: vec![ChatMessage::user("q1"), ChatMessage::new("assistant", "a1")],
                text: "q2".into()
            }]
        );
        for bad in [
            r#"{"messages": []}"#,
            r#"{"messages": "q"}"#,
            r#"{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}"#,
            r#"{"messages": [{"role": "robot", "content": "q"}]}"#,
            r#"{"messages": [{"role": "user"}]}"#,
        ] {
            assert_eq!(parse_prompts(bad).unwrap_err().0, 1, "{bad}");
        }
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
