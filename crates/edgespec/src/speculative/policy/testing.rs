//! What the policy's tests share: the two machine kinds' cost curves and
//! drivers that draft, decode and record rounds as the live loop does.

use super::{DraftCost, Policy, PolicyConfig, RoundOutcome};
use crate::costs::CostModel;
use crate::draft::{Draft, DraftControl, DraftSource, Next};

/// The compute-bound VM (../shared/cost-profiles.json, llama-bench):
/// 1 → 37 ms, 2 → 48, 4 → 88, 8 → 167; drafter step 23 ms.
pub(super) fn compute_bound() -> CostModel {
    let mut c = CostModel::default();
    for (b, ms) in [(1, 37.0), (2, 48.0), (4, 88.0), (8, 167.0), (65, 1036.0)] {
        c.observe_verify(b, ms);
    }
    c.observe_draft(1, 23.0);
    for (b, ms) in [(1, 23.0), (2, 30.0), (4, 52.0)] {
        c.observe_catch_up(b, ms);
    }
    c
}

/// The board-like VM: 1 → 76.3 ms, 2 → 99.6, 4 → 97.1 (cheaper than 2),
/// 8 → 183, 16 → 214, 64 → 773; drafter step 35.8 ms, a batch of 4 56 ms.
pub(super) fn memory_bound() -> CostModel {
    let mut c = CostModel::default();
    for (b, ms) in [
        (1, 76.3),
        (2, 99.6),
        (4, 97.1),
        (8, 183.0),
        (16, 214.0),
        (64, 773.0),
    ] {
        c.observe_verify(b, ms);
    }
    c.observe_draft(1, 35.8);
    for (b, ms) in [(1, 35.8), (4, 56.0)] {
        c.observe_catch_up(b, ms);
    }
    c
}

/// An automatic policy on `costs` past its first (plain) round.
pub(super) fn auto_policy(costs: CostModel) -> Policy {
    let mut p = Policy::new(PolicyConfig::default()).unwrap();
    *p.costs_mut() = costs;
    record_round(&mut p, DraftSource::Model, 0, 0);
    p.begin_request();
    p
}

pub(super) fn per_token(ms: f64) -> DraftCost {
    DraftCost {
        upfront_ms: 0.0,
        per_token_ms: ms,
    }
}

/// Drafts like the lookup drafter: tokens of a match sharing `matched`
/// tokens of context until the policy stops. Returns the draft length.
pub(super) fn lookup_draft(policy: &mut Policy, matched: usize, room: usize) -> usize {
    let mut ctl = policy.round(room);
    let source = DraftSource::Lookup { matched };
    let mut draft = Draft::default();
    draft.clear(source);
    for t in 0..ctl.room(source) {
        draft.push(t as i32, None);
        match ctl.next(&draft) {
            Next::Continue => {}
            Next::Stop => break,
            Next::DropLastAndStop => {
                draft.pop();
                break;
            }
        }
    }
    draft.len()
}

/// A one-token lookup chain (matched 8) and whether the policy then
/// takes a branch at the root that `share` of the evidence backs.
pub(super) fn takes_root_branch(policy: &mut Policy, share: f64) -> bool {
    let mut ctl = policy.round(64);
    let mut draft = Draft::default();
    draft.clear(DraftSource::Lookup { matched: 8 });
    draft.push(1, None);
    let _ = ctl.next(&draft);
    ctl.grow(&draft, 0, share)
}

/// Drafts like the model drafter with every token at `confidence`, after
/// a backlog of `behind` tokens. Returns the draft length.
pub(super) fn model_draft(policy: &mut Policy, behind: usize, confidence: f32) -> usize {
    let mut ctl = policy.round(127);
    let mut draft = Draft::default();
    draft.clear(DraftSource::Model);
    if !ctl.start(DraftSource::Model, behind) {
        return 0;
    }
    loop {
        draft.push(1, Some(confidence));
        match ctl.next(&draft) {
            Next::Continue if draft.len() < ctl.room(DraftSource::Model) => {}
            Next::DropLastAndStop => {
                draft.pop();
                break;
            }
            _ => break,
        }
    }
    draft.len()
}

/// Rounds of plain decoding: the request produces `tokens` tokens.
pub(super) fn decode_plainly(policy: &mut Policy, tokens: usize) {
    for _ in 0..tokens {
        record_round(policy, DraftSource::Model, 0, 0);
    }
}

/// Tokens a request of `length` produces plainly before the policy
/// starts a model drafter `behind` tokens behind (None: not in it).
pub(super) fn tokens_before_start(
    policy: &mut Policy,
    length: usize,
    behind: usize,
) -> Option<usize> {
    (0..length).find(|&done| {
        let start = policy
            .round(length - done)
            .start(DraftSource::Model, behind);
        if !start {
            decode_plainly(policy, 1);
        }
        start
    })
}

pub(super) fn record_round(
    policy: &mut Policy,
    source: DraftSource,
    drafted: usize,
    accepted: usize,
) {
    let mut draft = Draft::default();
    draft.clear(source);
    let confidence = (source == DraftSource::Model).then_some(0.9);
    for t in 0..drafted {
        draft.push(t as i32, confidence);
    }
    let costs = policy.costs();
    let draft_ms = match source {
        DraftSource::Model if drafted > 0 => {
            let catch_up = costs.catch_up_ms(2);
            draft.set_catch_up(2, std::time::Duration::from_secs_f64(catch_up / 1e3));
            catch_up + (drafted - 1) as f64 * costs.draft_ms().unwrap_or(0.0)
        }
        _ => 0.0,
    };
    let verify_ms = costs.verify_ms(drafted + 1);
    policy.record(RoundOutcome {
        draft: &draft,
        path: crate::speculative::chain_path(accepted),
        emitted: accepted + 1,
        draft_ms,
        verify_ms,
    });
}
