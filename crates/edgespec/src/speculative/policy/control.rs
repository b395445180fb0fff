//! The policy's side of one round, as the drafters see it
//! ([`crate::draft::DraftControl`]): whether a draft starts, how far it
//! runs, which of two drafts to keep, where a tree branches.

use super::stopping::worth_extending;
use super::{Policy, PLAIN_EVERY, PROBE_EVERY, STEADY_BEHIND};
use crate::draft::{Draft, DraftControl, DraftLength, DraftSource, Next, Trees, MAX_DRAFT};

/// Most nodes a tree holds with [`Trees::Always`].
const ALWAYS_NODES: usize = 16;

/// The share of a request's cost so far that an untried drafter's first
/// try may risk: a try that fails then costs at most this much of the
/// request (the bar: no prompt below 0.9x).
const EXPLORE_SHARE: f64 = 0.1;

impl Policy {
    /// The policy's side of one round's drafting, with `room` tokens left
    /// before the output or the context is full.
    pub fn round(&mut self, room: usize) -> RoundControl<'_> {
        let probe = self.rounds_without_draft >= self.probe_interval.max(PROBE_EVERY);
        let plain = matches!(self.config.length, DraftLength::Auto { .. })
            && (!self.plain_measured || self.rounds_since_plain >= PLAIN_EVERY);
        self.probing = false;
        RoundControl {
            policy: self,
            room: if plain { 0 } else { room },
            cumulative: heapless::Vec::new(),
            probe,
        }
    }
}

/// The policy's view of one round, handed to the drafter.
pub struct RoundControl<'a> {
    policy: &'a mut Policy,
    /// Tokens left before the output or the context is full.
    room: usize,
    cumulative: heapless::Vec<f64, MAX_DRAFT>,
    /// A probe is due: a model draft of one token may run whatever the
    /// estimates say.
    probe: bool,
}

impl DraftControl for RoundControl<'_> {
    fn room(&self, source: DraftSource) -> usize {
        self.policy.config.cap_for(source).min(self.room)
    }

    fn start(&mut self, source: DraftSource, behind: usize) -> bool {
        let room = self.room(source);
        if room == 0 {
            return false;
        }
        if let DraftLength::Fixed(_) = self.policy.config.length {
            return true;
        }
        let policy = &*self.policy;
        // Judge drafting by its steady state: a drafting round leaves the
        // drafter at most STEADY_BEHIND tokens behind, and its catch-up
        // yields the first draft token. A longer backlog (the prompt, or the
        // tokens other drafts produced) is a one-time premium: paid when
        // what drafting saves until the drafter next falls behind (an
        // episode: as long as the last ones) covers it, at most the rest
        // of the request. How much longer the request runs is not known.
        // A model drafter alone takes it to use its room. Beside free
        // drafts, it is an addition and must not cost: what the request has
        // run so far is the evidence (Lindy): having run t tokens, it runs x
        // more with probability t / (t + x), which over the r tokens of
        // room left expects t·ln(1 + r/t) of them. This keeps the premium
        // from being paid at the start of a short answer (where a 15-token
        // reply would repay the whole prompt's catch-up over its token
        // limit), yet pays it early in a long one.
        let steady = behind.min(STEADY_BEHIND);
        let (saved, tokens) = policy.model_round(room);
        let net =
            saved - policy.costs.catch_up_ms(steady.max(1)) + policy.estimate_error.correction();
        if net > 0.0 {
            let premium = policy.costs.catch_up_ms(behind) - policy.costs.catch_up_ms(steady);
            if premium <= 0.0 {
                return true;
            }
            let room = self.room as f64;
            let done = policy.request_tokens.max(1) as f64;
            let ahead = if policy.beside_free {
                done * (1.0 + room / done).ln()
            } else {
                room
            };
            let episode = policy.episode_length.get().map_or(ahead, |e| e.min(ahead));
            // An untried drafter beside free drafts is valued at full
            // acceptance (optimism); what its first try risks if that is
            // wrong, the premium and a step, is bounded by a share of
            // what the request has cost so far (its prompt's read, the
            // drafter's backlog less the tokens produced, and its decoding),
            // so a short answer never pays a try it cannot repay (issue 32:
            // a 23-token answer to an 18-token question paid a 0.3 s try
            // and ran at 0.84x).
            let untried = policy.estimate_error.process.get().is_none();
            let risk = premium + policy.costs.draft_ms().unwrap_or(0.0);
            let prompt = behind.saturating_sub(policy.request_tokens);
            let spent = policy.costs.verify_ms(prompt.max(1)) + done * policy.costs.verify_ms(1);
            let affordable = !(untried && policy.beside_free) || risk <= EXPLORE_SHARE * spent;
            if affordable && net * episode / tokens > premium {
                self.policy.close_episode();
                return true;
            }
        }
        // A probe refreshes the estimates. It pays the whole backlog's
        // catch-up, so it runs only if drafting would pay even at that price
        // with every token accepted; otherwise the drafter stays off.
        let probe = self.probe
            && worth_extending(
                &[],
                |_| 1.0,
                room,
                policy.draft_cost(source, behind),
                &policy.costs,
                policy.best_rate(),
            );
        self.policy.probing = probe;
        if probe {
            self.policy.close_episode();
        }
        probe
    }

    fn prefer(&mut self, draft: &Draft, alternative: DraftSource) -> bool {
        let policy = &*self.policy;
        if matches!(policy.config.length, DraftLength::Fixed(_)) {
            return false;
        }
        // The draft in hand: its tokens' cumulative estimates (from next()).
        let k = draft.len().min(self.cumulative.len());
        let tokens = 1.0 + self.cumulative[..k].iter().sum::<f64>();
        let in_hand = tokens / policy.costs.verify_ms(k + 1).max(1e-6);
        if alternative.is_free() {
            // Another free draft: its best length's expected tokens per ms
            // of verification, from what its source has shown by position.
            let (mut best, mut expected, mut p) = (0.0f64, 1.0, 1.0);
            for j in 1..=self.room(alternative) {
                p *= policy.token_estimate(alternative, None, j - 1);
                expected += p;
                best = best.max(expected / policy.costs.verify_ms(j + 1).max(1e-6));
            }
            return best > in_hand;
        }
        // A model round: its tokens in the time plain decoding takes for
        // them, less what it saves, plus its catch-up.
        let (saved, model_tokens) = policy.model_round(self.room);
        let plain = policy.costs.verify_ms(1);
        let model_ms = model_tokens * plain - saved + policy.costs.catch_up_ms(STEADY_BEHIND);
        model_ms > 0.0 && model_tokens / model_ms > in_hand.max(policy.best_rate())
    }

    fn may_branch(&self) -> bool {
        let policy = &*self.policy;
        let allowed = match (policy.config.trees(), policy.config.length) {
            (Trees::Off, _) | (Trees::Auto, DraftLength::Fixed(_)) => false,
            (Trees::Always, _) => true,
            (Trees::Auto, DraftLength::Auto { .. }) => !policy.probing,
        };
        allowed && self.room > 0
    }

    fn grow(&mut self, draft: &Draft, parent: usize, share: f64) -> bool {
        // A tree's nodes are bounded by the round's room (each could be
        // emitted, and each takes a cell of the context), not by the
        // chain's cap for its source.
        let n = draft.len();
        let room = self.room.min(MAX_DRAFT);
        let policy = &*self.policy;
        match (policy.config.trees(), policy.config.length) {
            (Trees::Off, _) | (Trees::Auto, DraftLength::Fixed(_)) => return false,
            (Trees::Always, _) => return n < room.min(ALWAYS_NODES),
            (Trees::Auto, DraftLength::Auto { .. }) if n >= room || policy.probing => return false,
            (Trees::Auto, DraftLength::Auto { .. }) => {}
        }
        // Estimates by node: the chain's from next(), branches' from here.
        self.cumulative.truncate(n);
        let reach_parent = match parent {
            0 => 1.0,
            p => match self.cumulative.get(p - 1) {
                Some(&r) => r,
                None => return false,
            },
        };
        // Until branches of this kind have outcomes, a node is assumed as
        // likely as its source's chain token at its depth, scaled by its
        // share of the evidence.
        let source = draft.source();
        let depth = if parent == 0 {
            0
        } else {
            draft.depth(parent - 1)
        };
        let prior = share * policy.token_estimate(source, None, depth);
        let reach = reach_parent * policy.branches.of(source).predict_from(share as f32, prior);
        // The node pays if the tokens it is expected to add come faster
        // than the best rate, by what it adds to the batch's time.
        let costs = &policy.costs;
        let marginal_ms = costs.verify_ms(n + 2) - costs.verify_ms(n + 1);
        let pays = marginal_ms <= 0.0 || reach / marginal_ms > policy.best_rate();
        pays && self.cumulative.len() == n && self.cumulative.push(reach).is_ok()
    }

    fn next(&mut self, draft: &Draft) -> Next {
        let k = draft.len();
        let confidence = draft.confidence()[k - 1];
        if let (1, DraftSource::Model, Some(c)) = (k, draft.source(), confidence) {
            self.policy.observe_first_confidence(c);
        }
        let config = self.policy.config;
        if let (Some(p_min), Some(c)) = (config.p_min, confidence) {
            if c < p_min {
                return Next::DropLastAndStop;
            }
        }
        let room = self.room(draft.source());
        if k >= room {
            return Next::Stop;
        }
        if let DraftLength::Fixed(_) = config.length {
            return Next::Continue;
        }
        let policy = &*self.policy;
        let source = draft.source();
        let a = policy.token_estimate(source, confidence, k - 1);
        // Aligned with the draft in hand (a hybrid may have dropped a lookup attempt).
        self.cumulative.truncate(k - 1);
        let previous = self.cumulative.last().copied().unwrap_or(1.0);
        let _ = self.cumulative.push(previous * a);
        if policy.probing {
            return Next::Stop;
        }
        // Further tokens: a lookup copy's rates by position (conditional on
        // the span so far); a model's, this one's.
        let next = |position: usize| match source {
            DraftSource::Model => a,
            _ => policy.token_estimate(source, None, position),
        };
        let costs = &policy.costs;
        let best = policy.best_rate();
        let more = worth_extending(
            &self.cumulative,
            next,
            room - k,
            policy.draft_cost(source, 0),
            costs,
            best,
        );
        // Stopping here: keep the last token only if verifying it pays for
        // itself. (Mid-way, a token that does not pay alone may still lead
        // to a longer draft that does: the verify cost per token falls with
        // batch size.)
        let marginal_ms = costs.verify_ms(k + 1) - costs.verify_ms(k);
        if more {
            Next::Continue
        } else if marginal_ms > 0.0 && self.cumulative[k - 1] / marginal_ms < best {
            Next::DropLastAndStop
        } else {
            Next::Stop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::speculative::policy::testing::*;
    use crate::speculative::policy::{PolicyConfig, RoundOutcome};

    /// Branches are priced by their expected tokens against what they add
    /// to the batch: on the compute-bound profile (each token ~20 ms more)
    /// only a well-backed branch pays, on the memory-bound one (a batch of
    /// 3 costs what 2 does) a weakly backed one too, unless its source's
    /// drafts fail; branches that keep failing stop being taken; `off` and fixed lengths never branch,
    /// `always` always does.
    #[test]
    fn a_branch_is_taken_where_its_expected_tokens_pay_for_its_place() {
        // Before branches have outcomes, a branch is as likely as its
        // source's chain tokens scaled by its share: lookup drafts that
        // have held.
        let copying = |costs| {
            let mut p = auto_policy(costs);
            for _ in 0..40 {
                record_round(&mut p, DraftSource::Lookup { matched: 8 }, 4, 4);
            }
            // A new request: the rate to beat is plain decoding's again.
            p.begin_request();
            p
        };
        let mut compute = copying(compute_bound());
        assert!(takes_root_branch(&mut compute, 0.9));
        assert!(!takes_root_branch(&mut compute, 0.3));
        let mut memory = copying(memory_bound());
        assert!(takes_root_branch(&mut memory, 0.3));
        // Lookup drafts that fail make their branches unlikely too.
        let mut failing = auto_policy(compute_bound());
        for _ in 0..40 {
            record_round(&mut failing, DraftSource::Lookup { matched: 8 }, 4, 0);
        }
        failing.begin_request();
        assert!(!takes_root_branch(&mut failing, 0.9));

        // Well-backed branches that the target never takes.
        for _ in 0..200 {
            let mut draft = Draft::default();
            draft.clear(DraftSource::Lookup { matched: 8 });
            draft.push(1, None);
            draft.branch(0, 2, Some(0.9));
            compute.record(RoundOutcome {
                draft: &draft,
                path: &[],
                emitted: 1,
                draft_ms: 0.0,
                verify_ms: 60.0,
            });
        }
        assert!(!takes_root_branch(&mut compute, 0.9));

        for (trees, length, takes) in [
            (Trees::Off, DraftLength::Auto { max: 8 }, false),
            (Trees::Auto, DraftLength::Fixed(4), false),
            (Trees::Always, DraftLength::Fixed(4), true),
            (Trees::Always, DraftLength::Auto { max: 8 }, true),
        ] {
            let mut p = Policy::new(PolicyConfig {
                length,
                p_min: None,
                trees,
                exact: false,
            })
            .unwrap();
            *p.costs_mut() = compute_bound();
            record_round(&mut p, DraftSource::Model, 0, 0);
            assert_eq!(
                takes_root_branch(&mut p, 0.01),
                takes,
                "{trees:?} {length:?}"
            );
        }
    }

    /// Cause 1 of the chat regression: lookup drafts were as long as the
    /// model cap allowed (64) whatever the match. A match sharing three
    /// tokens of context now drafts at most three; a copy grows as it holds.
    #[test]
    fn a_lookup_draft_is_no_longer_than_the_context_its_match_shares() {
        let auto = PolicyConfig::default();
        assert_eq!(auto.cap_for(DraftSource::Lookup { matched: 3 }), 3);
        assert_eq!(auto.cap_for(DraftSource::Lookup { matched: 40 }), 40);
        assert_eq!(
            auto.cap_for(DraftSource::Lookup { matched: 500 }),
            MAX_DRAFT
        );
        assert_eq!(auto.cap_for(DraftSource::Model), 8);
        let fixed = PolicyConfig {
            length: DraftLength::Fixed(3),
            p_min: None,
            ..PolicyConfig::default()
        };
        assert_eq!(fixed.cap_for(DraftSource::Model), 3);
        assert_eq!(fixed.cap_for(DraftSource::Lookup { matched: 40 }), 3);
        let mut p = auto_policy(memory_bound());
        assert!(lookup_draft(&mut p, 3, 64) <= 3);
    }

    /// The warm-up tax measured on the compute-bound VM: in the first
    /// requests of a process a lookup token was a coin flip, so answers
    /// copying the prompt verbatim were drafted a token at a time while
    /// llama.cpp's map-k drafted them whole. A fresh policy now prices a
    /// copy from its own evidence: a long shared context is drafted whole
    /// at once, as long as after a hundred requests whose copies held, on
    /// both kinds of machine; a short coincidental match stays short, and a
    /// split vote is drafted less far than a unanimous one.
    #[test]
    fn a_fresh_process_drafts_a_long_exact_match_whole() {
        for costs in [compute_bound(), memory_bound()] {
            let mut fresh = auto_policy(costs.clone());
            // Whole, but for a last token or few whose verification on the
            // compute-bound curve (~16 ms each) costs more than the copy's
            // fading odds are worth.
            for matched in [12, 40] {
                let n = lookup_draft(&mut fresh, matched, 64);
                assert!(n >= matched * 85 / 100, "{matched}: {n}");
            }
            let mut warm = auto_policy(costs.clone());
            for _ in 0..100 {
                for _ in 0..4 {
                    record_round(&mut warm, DraftSource::Lookup { matched: 12 }, 12, 12);
                    record_round(&mut warm, DraftSource::Lookup { matched: 40 }, 40, 40);
                }
                // Its periodic plain round.
                record_round(&mut warm, DraftSource::Model, 0, 0);
                warm.begin_request();
            }
            assert_eq!(lookup_draft(&mut warm, 12, 64), 12);
            assert_eq!(lookup_draft(&mut warm, 40, 64), 40);
            assert!(lookup_draft(&mut fresh, 2, 64) <= 2);
        }
        // The same 12-token match, the earlier places split two ways at
        // every token: each token is a coin flip at best, drafted shorter.
        let mut p = auto_policy(compute_bound());
        let mut ctl = p.round(64);
        let mut draft = Draft::default();
        draft.clear(DraftSource::Lookup { matched: 12 });
        let mut split = 0;
        while draft.push_and_ask(split, Some(0.5), &mut ctl, 12) {
            split += 1;
        }
        assert!(draft.len() < 12, "{}", draft.len());
    }

    /// Cause 2: acceptance learned on copy-heavy text carried over to the
    /// next request at full weight and was unlearned over hundreds of
    /// tokens. On the board-like profile, after a code request whose copies
    /// held, a chat request whose copies break at once or after a token
    /// soon stops drafting them.
    #[test]
    fn a_chat_request_after_code_stops_drafting_rejected_copies_within_a_few_rounds() {
        let mut p = auto_policy(memory_bound());
        let copy = DraftSource::Lookup { matched: 12 };
        for _ in 0..40 {
            record_round(&mut p, copy, 12, 12);
        }
        assert!(
            lookup_draft(&mut p, 12, 64) >= 8,
            "code copies are drafted whole"
        );
        p.begin_request();
        let mut drafted = Vec::new();
        for round in 0..10 {
            let n = lookup_draft(&mut p, 12, 64);
            drafted.push(n);
            record_round(&mut p, copy, n, usize::from(round % 3 == 2).min(n));
        }
        // After the first rejection only short drafts, which on this curve
        // cost little more than a plain step (4 tokens: 1.27× one).
        assert!(drafted[1..].iter().all(|&n| n <= 3), "{drafted:?}");
        assert!(drafted.iter().sum::<usize>() <= 40, "{drafted:?}");
    }

    /// The hybrid keeps a free lookup draft unless the model is expected to
    /// yield more per millisecond.
    #[test]
    fn a_hybrid_keeps_a_promising_lookup_draft_and_drops_a_weak_one() {
        let mut p = auto_policy(memory_bound());
        for _ in 0..20 {
            record_round(&mut p, DraftSource::Model, 4, 4);
        }
        let copy = DraftSource::Lookup { matched: 30 };
        for _ in 0..20 {
            record_round(&mut p, copy, 16, 16);
        }
        let weak = DraftSource::Lookup { matched: 2 };
        for _ in 0..20 {
            record_round(&mut p, weak, 2, 0);
        }
        for (source, keep) in [(copy, true), (weak, false)] {
            let mut ctl = p.round(64);
            let mut draft = Draft::default();
            draft.clear(source);
            draft.push(1, None);
            ctl.next(&draft);
            assert_eq!(!ctl.prefer(&draft, DraftSource::Model), keep, "{source:?}");
        }
    }

    /// Cause 6: on the board-like curve two tokens cost as much as four; a
    /// draft of one token must not stop there when three more are as cheap.
    #[test]
    fn a_non_convex_verify_curve_drafts_past_the_dear_batch_size() {
        let mut p = auto_policy(memory_bound());
        for _ in 0..20 {
            record_round(&mut p, DraftSource::Model, 4, 4);
        }
        let mut ctl = p.round(64);
        assert!(ctl.start(DraftSource::Model, 2));
        let mut draft = Draft::default();
        draft.clear(DraftSource::Model);
        draft.push(1, Some(0.99));
        assert_eq!(ctl.next(&draft), Next::Continue);
    }

    #[test]
    fn plain_rounds_keep_the_baseline_measured() {
        let mut p = Policy::new(PolicyConfig::default()).unwrap();
        *p.costs_mut() = memory_bound();
        p.begin_request();
        // The process's first automatic round decodes plainly, whatever
        // the draft would be worth.
        assert_eq!(lookup_draft(&mut p, 8, 64), 0);
        record_round(&mut p, DraftSource::Lookup { matched: 8 }, 0, 0);
        assert!(lookup_draft(&mut p, 8, 64) > 0);
        // After PLAIN_EVERY drafting rounds, one plain round.
        for _ in 0..PLAIN_EVERY {
            record_round(&mut p, DraftSource::Lookup { matched: 8 }, 8, 8);
        }
        assert_eq!(lookup_draft(&mut p, 8, 64), 0);
        record_round(&mut p, DraftSource::Lookup { matched: 8 }, 0, 0);
        assert!(lookup_draft(&mut p, 8, 64) > 0);
        // A fixed length is never overridden.
        let mut fixed = Policy::new(PolicyConfig {
            length: DraftLength::Fixed(4),
            p_min: None,
            ..PolicyConfig::default()
        })
        .unwrap();
        assert_eq!(lookup_draft(&mut fixed, 8, 64), 4);
    }
}
