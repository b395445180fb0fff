//! The ceiling of copying: what a drafter that copies the request's own
//! text could reach on a trace if it knew the output. Every round it drafts
//! the correct continuation of an earlier place whose last tokens equal the
//! text's (at least as many as the lookup drafter asks for), as long as
//! is best: the lengths of all rounds are chosen together, by dynamic
//! programming over the profile's batch curve, to minimise the request's
//! time. No drafter that copies the request (lookup, llama.cpp's n-gram
//! modes) can do better on that trace and machine; the gap between one
//! and this ceiling is what is left to win.

use super::ReplayRun;
use crate::trace::Trace;
use edgespec::costs::BatchCurve;
use edgespec::draft::{LookupDrafter, MAX_DRAFT};
use edgespec::engine::Token;

/// The longest correct copy at each output position: `longest[i]` for the
/// round that starts after the prompt and the output's first `i` tokens
/// (at most [`MAX_DRAFT`], and never past the output's last token).
fn longest_copies(trace: &Trace) -> Vec<usize> {
    let output = &trace.output;
    let mut text: Vec<Token> = trace.prompt.clone();
    let mut longest = vec![0; output.len()];
    // Tokens an earlier place must share with the end of the text.
    let min_match = LookupDrafter::default().min_ngram;
    for (done, best) in longest.iter_mut().enumerate().skip(1) {
        text.push(output[done - 1]);
        let len = text.len();
        let room = (output.len() - done - 1).min(MAX_DRAFT);
        let tail = &text[len - min_match..];
        for start in min_match..len {
            if text[start - min_match..start] != *tail {
                continue;
            }
            // Past the end of the text a copy repeats itself (the lookup
            // drafter's reading of a match that reaches the end).
            let period = len - start;
            let copied = (0..room)
                .take_while(|&k| text[start + k % period] == output[done + k])
                .count();
            *best = (*best).max(copied);
        }
    }
    longest
}

/// The ceiling on `trace`: the fastest sequence of correct copies, priced
/// by `target` (the first output token comes from the prompt's pass, as in
/// every replay).
pub fn ceiling(trace: &Trace, target: &BatchCurve) -> ReplayRun {
    let n = trace.output.len();
    let longest = longest_copies(trace);
    // fastest[i]: least ms from i tokens done to n; choice[i]: its draft.
    let mut fastest = vec![0.0f64; n + 1];
    let mut choice = vec![0usize; n + 1];
    for done in (1..n).rev() {
        let (ms, draft) = (0..=longest[done])
            .map(|d| (target.ms(d + 1) + fastest[done + d + 1], d))
            .fold((f64::INFINITY, 0), |a, b| if b.0 < a.0 { b } else { a });
        fastest[done] = ms;
        choice[done] = draft;
    }
    let mut run = ReplayRun {
        tokens: n,
        ms: fastest[1.min(n)],
        target_ms: n.saturating_sub(1) as f64 * target.ms(1),
        ..ReplayRun::default()
    };
    let mut done = 1;
    while done < n {
        let d = choice[done];
        run.rounds += 1;
        run.drafted += d;
        run.accepted += d;
        done += d + 1;
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::TRACE_VERSION;

    fn trace(prompt: &[Token], output: &[Token]) -> Trace {
        Trace {
            version: TRACE_VERSION,
            set: "t".into(),
            prompt_index: 0,
            target: "m".into(),
            prompt: prompt.to_vec(),
            output: output.to_vec(),
            target_ms: vec![1.0; output.len()],
            drafters: Default::default(),
            top: Vec::new(),
            end_tokens: Vec::new(),
        }
    }

    /// One token costs 10 ms, each more in a batch 2 ms.
    fn curve() -> BatchCurve {
        line(10.0, 136.0)
    }

    /// A curve measured at 1 and 64 tokens.
    fn line(one: f64, sixty_four: f64) -> BatchCurve {
        let mut c = BatchCurve::default();
        c.observe(1, one);
        c.observe(64, sixty_four);
        c
    }

    #[test]
    fn a_copy_of_the_prompt_is_drafted_whole_and_nothing_else_is() {
        // The output copies the prompt's "0 1 2 3 4 5 6", then writes 9 8 7.
        let t = trace(&[0, 1, 2, 3, 4, 5, 6, 0], &[1, 2, 3, 4, 5, 6, 9, 8, 7]);
        assert_eq!(longest_copies(&t), vec![0, 5, 4, 3, 2, 1, 0, 0, 0]);
        let run = ceiling(&t, &curve());
        // Rounds: after "0 1": 5 drafted (2 … 6) and the target's 9 in a
        // batch of 6; then 8 and 7 plainly.
        assert_eq!((run.rounds, run.drafted, run.accepted), (3, 5, 5));
        assert!((run.ms - (20.0 + 10.0 + 10.0)).abs() < 1e-9, "{}", run.ms);
        assert!((run.target_ms - 80.0).abs() < 1e-9);
        // Where a batch costs as much as its tokens alone, nothing pays.
        let flat = line(10.0, 640.0);
        assert!((ceiling(&t, &flat).speedup() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_copy_reaching_the_end_of_the_text_repeats_itself() {
        // "5 6 5 6 …": from the second output token on, the end of the
        // text matches an earlier "5 6" whose copy runs into itself.
        let t = trace(&[5, 6], &[5, 6, 5, 6, 5, 6, 5]);
        assert_eq!(longest_copies(&t)[1..], [0, 4, 3, 2, 1, 0]);
    }
}
