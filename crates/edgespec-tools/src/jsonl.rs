//! The JSON-lines files the tools stream (bench runs, eval results): one
//! record a line, appended as each finishes, so an interrupted run leaves
//! every finished record and at most a torn last line.

use serde::de::DeserializeOwned;

/// A line that is not a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: usize,
    /// Why it does not parse.
    pub reason: String,
}

/// The records of `text`, one per non-empty line. A last line that does not
/// parse is what an interrupt leaves mid-write: it is skipped with a
/// warning naming `source`. A bad line anywhere else is an error.
pub fn parse<T: DeserializeOwned>(text: &str, source: &str) -> Result<Vec<T>, BadLine> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let mut records = Vec::with_capacity(lines.len());
    for (k, &(i, line)) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(record) => records.push(record),
            Err(e) if k + 1 == lines.len() && !text.ends_with('\n') => {
                log::warn!("{source}:{}: skipping a torn last line ({e})", i + 1);
            }
            Err(e) => {
                return Err(BadLine {
                    line: i + 1,
                    reason: e.to_string(),
                })
            }
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_skipped_and_any_other_bad_line_is_an_error() {
        let parse = |text: &str| parse::<Vec<u32>>(text, "t.jsonl");
        assert_eq!(parse("[1]\n[2]\n"), Ok(vec![vec![1], vec![2]]));
        assert_eq!(parse("[1]\n\n[2]\n[3"), Ok(vec![vec![1], vec![2]]));
        // A complete last line (ended by a newline) that does not parse was
        // written whole: an error, not an interrupt.
        assert_eq!(parse("[1]\n[2\n").map_err(|e| e.line), Err(2));
        assert_eq!(parse("[1]\n{x}\n[3]\n").map_err(|e| e.line), Err(2));
        assert_eq!(parse(""), Ok(vec![]));
    }
}
