//! llama.cpp's own tools as peers: `llama-completion` (target alone) and
//! `llama-speculative-simple` (draft-simple and ngram-mod), run on the same
//! prompts, their printed summaries parsed into our measurements.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};

/// A peer run's numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerRun {
    /// Tokens generated.
    pub tokens: usize,
    /// Decode tokens per second as the tool reports it.
    pub decode_tok_s: f64,
    /// Drafted tokens (speculative tools).
    pub drafted: Option<usize>,
    /// Accepted drafted tokens.
    pub accepted: Option<usize>,
    /// The target's prompt reading in ms, where the tool prints it (its
    /// time to first token, less sampling).
    pub prompt_ms: Option<f64>,
    /// The tool process's peak resident memory, bytes (Linux).
    pub peak_rss_bytes: Option<u64>,
}

/// Which llama.cpp tool and setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerMode {
    /// `llama-completion`, target alone.
    Completion,
    /// `llama-speculative-simple --spec-type draft-simple` (n_max 3, p_min 0.75).
    DraftSimple,
    /// `llama-speculative-simple --spec-type ngram-mod` (a hash pool of
    /// n-grams shared across the run).
    NgramMod,
    /// `llama-speculative-simple --spec-type ngram-map-k` (n-gram keys to
    /// several continuations with hit counts).
    NgramMapK,
    /// `llama-speculative-simple --spec-type ngram-cache` (n-gram
    /// statistics gathered as it generates).
    NgramCache,
}

impl PeerMode {
    /// The model-free `--spec-type` this mode runs, if it is one.
    fn ngram_type(self) -> Option<&'static str> {
        match self {
            Self::NgramMod => Some("ngram-mod"),
            Self::NgramMapK => Some("ngram-map-k"),
            Self::NgramCache => Some("ngram-cache"),
            Self::Completion | Self::DraftSimple => None,
        }
    }
}

/// What a peer run needs.
#[derive(Debug, Clone)]
pub struct PeerSetup {
    /// Folder holding the tools (benches/peer/bin).
    pub bin_dir: PathBuf,
    /// Target model.
    pub target: PathBuf,
    /// Drafter model (draft-simple).
    pub draft: Option<PathBuf>,
    /// Context size.
    pub ctx_size: u32,
    /// The target's RPC servers (`HOST:PORT,…`), as llama.cpp's `--rpc`
    /// takes them: every target layer there, a drafter model here.
    pub rpc: Option<String>,
}

/// A peer tool that failed or printed nothing parseable.
#[derive(Debug, thiserror::Error)]
#[error("llama.cpp peer {tool}: {reason}")]
pub struct PeerError {
    /// The tool.
    pub tool: String,
    /// What went wrong.
    pub reason: String,
}

impl PeerSetup {
    /// True when the tools are built.
    pub fn available(bin_dir: &Path) -> bool {
        ["llama-completion", "llama-speculative-simple"]
            .iter()
            .all(|t| bin_dir.join(t).is_file())
    }

    /// Runs `mode` on an already chat-formatted prompt, greedy, on `threads` threads.
    pub fn run(
        &self,
        mode: PeerMode,
        formatted_prompt: &str,
        max_tokens: usize,
        threads: i32,
    ) -> Result<PeerRun, PeerError> {
        let tool = match mode {
            PeerMode::Completion => "llama-completion",
            _ => "llama-speculative-simple",
        };
        let mut cmd = Command::new(self.bin_dir.join(tool));
        cmd.arg("-m").arg(&self.target);
        cmd.args([
            "-p",
            formatted_prompt,
            "-n",
            &max_tokens.to_string(),
            "-t",
            &threads.to_string(),
        ]);
        cmd.args([
            "-c",
            &self.ctx_size.to_string(),
            "--temp",
            "0",
            "--seed",
            "1",
        ]);
        if let Some(servers) = &self.rpc {
            cmd.args(["--rpc", servers, "-ngl", "99"]);
        }
        match mode {
            PeerMode::Completion => {
                cmd.args(["-no-cnv", "--no-display-prompt"]);
            }
            PeerMode::DraftSimple => {
                let draft = self.draft.as_ref().ok_or_else(|| PeerError {
                    tool: tool.into(),
                    reason: "draft-simple needs a drafter model".into(),
                })?;
                cmd.arg("-md").arg(draft);
                if self.rpc.is_some() {
                    cmd.args(["-ngld", "0"]);
                }
                cmd.args([
                    "--spec-type",
                    "draft-simple",
                    "--spec-draft-n-max",
                    "3",
                    "--spec-draft-p-min",
                    "0.75",
                ]);
            }
            PeerMode::NgramMod | PeerMode::NgramMapK | PeerMode::NgramCache => {
                cmd.args(["--spec-type", mode.ngram_type().unwrap_or_default()]);
            }
        }
        let (out, peak_rss_bytes) = output_and_peak_rss(&mut cmd).map_err(|e| PeerError {
            tool: tool.into(),
            reason: e.to_string(),
        })?;
        let log = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
            return Err(PeerError {
                tool: tool.into(),
                reason: format!("exit {}: {tail}", out.status),
            });
        }
        let run = parse_peer_log(mode, &log).ok_or_else(|| PeerError {
            tool: tool.into(),
            reason: "no timing summary in its output".into(),
        })?;
        Ok(PeerRun {
            peak_rss_bytes,
            ..run
        })
    }
}

/// Runs a command to its end as [`Command::output`] does, with the child's
/// peak resident memory from the kernel's accounting of it (Linux).
#[cfg(target_os = "linux")]
fn output_and_peak_rss(cmd: &mut Command) -> std::io::Result<(Output, Option<u64>)> {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    fn drain(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    }
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let pid = libc::pid_t::try_from(child.id()).map_err(std::io::Error::other)?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of that plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = loop {
        // SAFETY: pid is our own child, not yet waited for (Child::wait is
        // never called on it); status and usage are valid for writes.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            break r;
        }
    };
    if reaped < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let output = Output {
        status: ExitStatus::from_raw(status),
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    };
    // ru_maxrss is in kilobytes on Linux.
    let peak = u64::try_from(usage.ru_maxrss).ok().map(|kb| kb * 1024);
    Ok((output, peak))
}

#[cfg(not(target_os = "linux"))]
fn output_and_peak_rss(cmd: &mut Command) -> std::io::Result<(Output, Option<u64>)> {
    Ok((cmd.output()?, None))
}

/// Parses a tool's printed summary.
pub fn parse_peer_log(mode: PeerMode, log: &str) -> Option<PeerRun> {
    let number_after = |line: &str, key: &str| -> Option<f64> {
        let rest = &line[line.find(key)? + key.len()..];
        let rest = rest.trim_start_matches([' ', '=', ':']);
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        rest[..end].parse().ok()
    };
    // "prompt eval time = X ms / N tokens": the first (the target's) context.
    let prompt_ms = log
        .lines()
        .find(|l| l.contains("prompt eval time ="))
        .and_then(|l| number_after(l, "prompt eval time ="));
    match mode {
        PeerMode::Completion => {
            // "eval time = X ms / N runs ( ... ms per token, Y tokens per second)"
            let line = log
                .lines()
                .rev()
                .find(|l| l.contains(" eval time =") && !l.contains("prompt eval"))?;
            let runs = number_after(line, "ms /")?;
            let tok_s = line
                .split(',')
                .next_back()
                .and_then(|s| number_after(s, ""))?;
            Some(PeerRun {
                tokens: runs as usize + 1,
                decode_tok_s: tok_s,
                drafted: None,
                accepted: None,
                prompt_ms,
                peak_rss_bytes: None,
            })
        }
        _ => {
            // "decoded N tokens in X seconds, speed: Y t/s", "n_drafted = D", "n_accept = A"
            let decoded = log
                .lines()
                .rev()
                .find(|l| l.contains("decoded") && l.contains("speed:"))?;
            let tokens = number_after(decoded, "decoded")? as usize;
            let tok_s = number_after(decoded, "speed:")?;
            let field = |key: &str| {
                log.lines()
                    .rev()
                    .find(|l| l.contains(key))
                    .and_then(|l| number_after(l, key))
            };
            Some(PeerRun {
                tokens,
                decode_tok_s: tok_s,
                drafted: field("n_drafted").map(|v| v as usize),
                accepted: field("n_accept").map(|v| v as usize),
                prompt_ms,
                peak_rss_bytes: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_completion_summary() {
        let log = "x\n0.00.735.046 I common_perf_print: prompt eval time =      18.87 ms /     4 tokens (    4.72 ms per token,   211.93 tokens per second)\n\
                   0.00.735.069 I common_perf_print:        eval time =     248.11 ms /    31 runs   (    8.00 ms per token,   124.94 tokens per second)\n";
        let r = parse_peer_log(PeerMode::Completion, log).unwrap();
        assert_eq!(r.tokens, 32);
        assert_eq!(r.decode_tok_s, 124.94);
        assert_eq!(r.prompt_ms, Some(18.87));
    }

    /// The child's output and exit status as `Command::output` gives them,
    /// and its own peak memory: a child that touches 64 MB peaks above it.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_childs_output_status_and_peak_memory_are_kept() {
        let (out, peak) =
            output_and_peak_rss(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]))
                .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(
            (&out.stdout[..], &out.stderr[..]),
            (&b"out\n"[..], &b"err\n"[..])
        );
        let small = peak.unwrap();
        assert!(small > 0 && small < 64 << 20, "{small}");
        let (out, peak) = output_and_peak_rss(Command::new("dd").args([
            "if=/dev/zero",
            "of=/dev/null",
            "bs=64M",
            "count=1",
        ]))
        .unwrap();
        assert!(out.status.success(), "{out:?}");
        let big = peak.unwrap();
        assert!(big > 64 << 20, "{big}");
    }

    #[test]
    fn parses_speculative_summary() {
        let log = "0.10.054.774 I decoded   30 tokens in    8.183 seconds, speed:    3.666 t/s\n\
                   0.10.055.604 I n_drafted = 6\n0.10.055.876 I n_accept  = 5\n";
        let r = parse_peer_log(PeerMode::DraftSimple, log).unwrap();
        assert_eq!((r.tokens, r.drafted, r.accepted), (30, Some(6), Some(5)));
        assert_eq!(r.decode_tok_s, 3.666);
        assert_eq!(r.prompt_ms, None);
        assert_eq!(parse_peer_log(PeerMode::NgramMod, "nothing here"), None);
    }
}
