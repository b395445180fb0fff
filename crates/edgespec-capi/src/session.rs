//! Sessions: a target (and optional drafter) ready to generate.

use std::ffi::{c_char, c_void};

use super::error::{edgespec_result, fail, Failure};
use super::{c_str, edgespec_model, free_handle, guard, handle_mut};
use crate::versioned::{check_writable, read_struct, write_struct, Versioned};
use edgespec::draft::{DraftLength, DraftModel, Trees, MAX_DRAFT};
use edgespec::ead::EadConfig;
use edgespec::engine::{CacheType, ContextParams, FlashAttention, Token};
use edgespec::generate::Piece;
use edgespec::generate::StopReason;
use edgespec::sampling::{Mirostat, Penalties, SamplingParams, DEFAULT_MIROSTAT};
use edgespec::session::{Conversation, DraftKind, Outcome, Session, SessionConfig, WhenFull};
use edgespec::PolicyConfig;

/// Drafter kinds for `edgespec_session_params.draft_kind`.
pub type edgespec_draft_kind = i32;
/// No drafter: the target alone.
pub const EDGESPEC_DRAFT_NONE: edgespec_draft_kind = 0;
/// A drafter model (same vocabulary as the target).
pub const EDGESPEC_DRAFT_MODEL: edgespec_draft_kind = 1;
/// Prompt lookup (no model needed).
pub const EDGESPEC_DRAFT_LOOKUP: edgespec_draft_kind = 2;
/// Lookup on long matches, the drafter model otherwise.
pub const EDGESPEC_DRAFT_HYBRID: edgespec_draft_kind = 3;
/// Entropy-adaptive decoding: the drafter model is the small model and
/// generates while confident, the target takes over where the small model's
/// rolling entropy exceeds `ead_threshold_bits` (not lossless by design).
pub const EDGESPEC_DRAFT_EAD: edgespec_draft_kind = 4;
/// EAD with the small model drafting for the target inside target regions
/// (`gamma` tokens, or the cost-aware length up to `gamma_max` when gamma is
/// -1); those regions are lossless.
pub const EDGESPEC_DRAFT_EAD_SPEC: edgespec_draft_kind = 5;

/// Generation ended at an end-of-generation token.
pub const EDGESPEC_STOP_EOG: i32 = 0;
/// Generation ended at `max_tokens`.
pub const EDGESPEC_STOP_MAX_TOKENS: i32 = 1;
/// Generation ended because the context window is full.
pub const EDGESPEC_STOP_CONTEXT_FULL: i32 = 2;
/// The callback returned false.
pub const EDGESPEC_STOP_CALLBACK: i32 = 3;
/// The output reached a stop string (left out of the text).
pub const EDGESPEC_STOP_STRING: i32 = 4;
/// The grammar allows no further token.
pub const EDGESPEC_STOP_GRAMMAR: i32 = 5;

/// Streaming callback: `text` is the newly complete UTF-8 text (NUL-terminated,
/// `text_len` bytes, possibly empty while a multi-byte character is
/// incomplete), `token` the token id (-1 for a final flush). Return false to
/// stop generation. The text pointer is valid only during the call.
pub type edgespec_token_callback = Option<
    unsafe extern "C" fn(
        text: *const c_char,
        text_len: usize,
        token: i32,
        user_data: *mut c_void,
    ) -> bool,
>;

/// Session settings. Start from `edgespec_session_params_default()`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct edgespec_session_params {
    /// `sizeof(edgespec_session_params)` as the caller's header has it (set
    /// by the _default function): fields added by later versions keep
    /// their defaults for older callers.
    pub struct_size: u32,
    /// Context window in tokens (1..=1048576).
    pub n_ctx: u32,
    /// CPU threads (1..=1024).
    pub n_threads: i32,
    /// One of EDGESPEC_DRAFT_*.
    pub draft_kind: edgespec_draft_kind,
    /// Draft length 0..=64, or -1 for the cost-aware automatic length.
    pub gamma: i32,
    /// Longest model draft the automatic length considers (1..=64); prompt-lookup drafts may run to 64.
    pub gamma_max: u32,
    /// Stop drafting below this drafter probability; negative: off.
    pub p_min: f32,
    /// Sampling temperature; 0 is greedy.
    pub temperature: f32,
    /// Top-k; 0 is off.
    pub top_k: i32,
    /// Top-p in (0, 1]; 1 is off.
    pub top_p: f32,
    /// RNG seed.
    pub seed: u64,
    /// EAD: switching threshold on the small model's rolling mean entropy, bits (>= 0).
    pub ead_threshold_bits: f64,
    /// EAD: entropy values in the rolling mean (1..=4096).
    pub ead_window: u32,
    /// EAD: tokens generated after a switch before the next one.
    pub ead_dwell: u32,
    /// Min-p in [0, 1]: drop tokens less likely than this times the most likely one; 0 is off.
    pub min_p: f32,
    /// Divide a repeated token's logit by this (multiply if negative), > 0; 1 is off.
    pub repeat_penalty: f32,
    /// Tokens the penalties look back on; -1: the whole context; 0: off.
    pub repeat_last_n: i32,
    /// Subtracted from a repeated token's logit per occurrence; 0 is off.
    pub frequency_penalty: f32,
    /// Subtracted once from a repeated token's logit; 0 is off.
    pub presence_penalty: f32,
    /// Mirostat: 0 off, 2 Mirostat 2.0 (in place of penalties, top-k, top-p and min-p).
    pub mirostat: i32,
    /// Mirostat's target surprise τ in bits (> 0).
    pub mirostat_tau: f32,
    /// Mirostat's learning rate η (> 0).
    pub mirostat_eta: f32,
    /// Draft trees from free drafts (lookup, hybrid): 0 where the policy
    /// expects a branch to pay, 1 chains only, 2 every branch offered.
    pub draft_tree: i32,
    /// 1: exact mode, greedy speculative output byte-identical to the
    /// target alone's in exact mode (the target loaded with `repack`
    /// false; drafts of at most 6 tokens, lone tokens padded); 0: off.
    pub exact: i32,
    /// Flash attention: -1 auto (llama.cpp's choice), 0 off, 1 on.
    pub flash_attn: i32,
    /// KV cache type for keys: one of EDGESPEC_CACHE_*.
    pub cache_type_k: i32,
    /// KV cache type for values: one of EDGESPEC_CACHE_*; a quantized one
    /// needs flash attention (not 0).
    pub cache_type_v: i32,
}

/// KV cache stored in half precision (llama.cpp's default).
pub const EDGESPEC_CACHE_F16: i32 = 0;
/// KV cache stored as 8-bit blocks.
pub const EDGESPEC_CACHE_Q8_0: i32 = 1;
/// KV cache stored as 4-bit blocks.
pub const EDGESPEC_CACHE_Q4_0: i32 = 2;

// SAFETY: repr(C), struct_size: u32 first; integers and floats only.
unsafe impl Versioned for edgespec_session_params {
    const NAME: &'static str = "edgespec_session_params";
    const FIRST_SIZE: usize =
        std::mem::offset_of!(Self, presence_penalty) + std::mem::size_of::<f32>();
}

/// Defaults: 4096-token context, all cores, no drafter, automatic γ up to 8,
/// greedy, no penalties; `struct_size` set.
#[no_mangle]
pub extern "C" fn edgespec_session_params_default() -> edgespec_session_params {
    let penalties = Penalties::OFF;
    edgespec_session_params {
        struct_size: std::mem::size_of::<edgespec_session_params>() as u32,
        n_ctx: 4096,
        n_threads: std::thread::available_parallelism().map_or(1, |n| n.get()) as i32,
        draft_kind: EDGESPEC_DRAFT_NONE,
        gamma: -1,
        gamma_max: 8,
        p_min: -1.0,
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        seed: 0,
        ead_threshold_bits: EadConfig::default().threshold_bits,
        ead_window: EadConfig::default().window as u32,
        ead_dwell: EadConfig::default().min_dwell as u32,
        min_p: 0.0,
        repeat_penalty: penalties.repeat,
        repeat_last_n: penalties.last_n as i32,
        frequency_penalty: penalties.frequency,
        presence_penalty: penalties.presence,
        mirostat: 0,
        mirostat_tau: DEFAULT_MIROSTAT.tau,
        mirostat_eta: DEFAULT_MIROSTAT.eta,
        draft_tree: 0,
        exact: 0,
        flash_attn: -1,
        cache_type_k: EDGESPEC_CACHE_F16,
        cache_type_v: EDGESPEC_CACHE_F16,
    }
}

/// What one generation measured. Give the generating functions one from
/// `edgespec_stats_init()` (it sets `struct_size`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct edgespec_stats {
    /// `sizeof(edgespec_stats)` as the caller's header has it (set by
    /// `edgespec_stats_init()`): a later version writes no further.
    pub struct_size: u32,
    /// Prompt tokens.
    pub prompt_tokens: u32,
    /// Generated tokens.
    pub generated_tokens: u32,
    /// Prompt tokens per second.
    pub prompt_tok_s: f64,
    /// Decode tokens per second.
    pub decode_tok_s: f64,
    /// Time to first token, ms.
    pub ttft_ms: f64,
    /// Target forward passes after the prompt.
    pub target_calls: u32,
    /// Drafted tokens.
    pub drafted: u32,
    /// Accepted drafted tokens.
    pub accepted: u32,
    /// Acceptance rate α.
    pub acceptance: f64,
    /// Tokens per target call τ.
    pub tau: f64,
    /// Memory-bound speed-up τ / (γ·c + 1).
    pub mbsu: f64,
    /// Share of generated tokens that came from the drafter (accepted drafts).
    pub drafter_share: f64,
    /// One of EDGESPEC_STOP_*.
    pub stop_reason: i32,
    /// EAD: share of generated tokens that came from the target (large) model.
    pub large_share: f64,
    /// EAD: switches between the models.
    pub switches: u32,
    /// Network round trips to a remote target (`edgespec_model_params.target_rpc`),
    /// prompt included; 0 for a local target.
    pub round_trips: u64,
}

// SAFETY: repr(C), struct_size: u32 first; integers and floats only.
unsafe impl Versioned for edgespec_stats {
    const NAME: &'static str = "edgespec_stats";
    const FIRST_SIZE: usize = std::mem::offset_of!(Self, switches) + std::mem::size_of::<u32>();
}

/// Zeroed statistics with `struct_size` set: what the generating functions fill.
#[no_mangle]
pub extern "C" fn edgespec_stats_init() -> edgespec_stats {
    edgespec_stats {
        struct_size: std::mem::size_of::<edgespec_stats>() as u32,
        ..Default::default()
    }
}

/// A generation session (opaque). One thread at a time. It also holds a
/// conversation (`edgespec_session_add_message`, `edgespec_session_respond`).
pub struct edgespec_session {
    conversation: Conversation,
    text: Vec<u8>,
}

fn invalid(message: String) -> Failure {
    fail(edgespec_result::EDGESPEC_ERR_INVALID_PARAMETER, message)
}

/// Translates the C settings into the session's configuration; the session
/// validates the rest.
fn config(
    p: &edgespec_session_params,
    target: &edgespec_model,
    drafter: Option<&edgespec_model>,
) -> Result<SessionConfig, Failure> {
    let kind = usize::try_from(p.draft_kind)
        .ok()
        .filter(|&k| k <= EDGESPEC_DRAFT_EAD_SPEC as usize)
        .map(|k| DraftKind::ALL[k])
        .ok_or_else(|| {
            invalid(format!(
                "draft_kind = {} is not an EDGESPEC_DRAFT_* value",
                p.draft_kind
            ))
        })?;
    // Values that do not fit usize map to one past the limit, which the
    // session's rule rejects.
    let length = match p.gamma {
        -1 => DraftLength::Auto {
            max: usize::try_from(p.gamma_max).unwrap_or(MAX_DRAFT + 1),
        },
        g => DraftLength::Fixed(usize::try_from(g).map_err(|_| {
            invalid(format!(
                "gamma = {g} must be -1 (auto) or in 0..={MAX_DRAFT}"
            ))
        })?),
    };
    let top_k = usize::try_from(p.top_k)
        .map_err(|_| invalid(format!("top_k = {} must be >= 0", p.top_k)))?;
    let mirostat = match p.mirostat {
        0 => None,
        2 => Some(Mirostat {
            tau: p.mirostat_tau,
            eta: p.mirostat_eta,
        }),
        m => return Err(invalid(format!("mirostat = {m} must be 0 (off) or 2"))),
    };
    let trees = match p.draft_tree {
        0 => Trees::Auto,
        1 => Trees::Off,
        2 => Trees::Always,
        t => {
            return Err(invalid(format!(
                "draft_tree = {t} must be 0 (auto), 1 (chains only) or 2 (always)"
            )))
        }
    };
    let last_n = match p.repeat_last_n {
        -1 => usize::MAX,
        n => usize::try_from(n).map_err(|_| {
            invalid(format!(
                "repeat_last_n = {n} must be -1 (the whole context) or >= 0"
            ))
        })?,
    };
    let cache_type = |name: &str, value: i32| match value {
        EDGESPEC_CACHE_F16 => Ok(CacheType::F16),
        EDGESPEC_CACHE_Q8_0 => Ok(CacheType::Q8_0),
        EDGESPEC_CACHE_Q4_0 => Ok(CacheType::Q4_0),
        v => Err(invalid(format!(
            "{name} = {v} is not an EDGESPEC_CACHE_* value"
        ))),
    };
    let context = ContextParams {
        n_ctx: p.n_ctx,
        n_batch: 512,
        n_threads: p.n_threads,
        n_threads_batch: p.n_threads,
        flash_attn: match p.flash_attn {
            -1 => FlashAttention::Auto,
            0 => FlashAttention::Off,
            1 => FlashAttention::On,
            f => {
                return Err(invalid(format!(
                    "flash_attn = {f} must be -1 (auto), 0 (off) or 1 (on)"
                )))
            }
        },
        type_k: cache_type("cache_type_k", p.cache_type_k)?,
        type_v: cache_type("cache_type_v", p.cache_type_v)?,
        ..ContextParams::default()
    };
    let exact = match p.exact {
        0 => false,
        1 => true,
        e => return Err(invalid(format!("exact = {e} must be 0 or 1"))),
    };
    Ok(SessionConfig {
        kind,
        drafter: drafter.map(|d| DraftModel::Full(d.inner.clone())),
        ead: EadConfig {
            threshold_bits: p.ead_threshold_bits,
            window: p.ead_window as usize,
            min_dwell: p.ead_dwell as usize,
            large_share: None,
            fallback: true,
        },
        policy: PolicyConfig {
            length,
            p_min: (p.p_min >= 0.0).then_some(p.p_min),
            trees,
            exact,
        },
        sampling: SamplingParams {
            temperature: p.temperature,
            top_k,
            top_p: p.top_p,
            min_p: p.min_p,
            penalties: Penalties {
                repeat: p.repeat_penalty,
                frequency: p.frequency_penalty,
                presence: p.presence_penalty,
                last_n,
            },
            mirostat,
            seed: p.seed,
        },
        ..SessionConfig::new(target.inner.clone(), context)
    })
}

/// Creates a session on `target`, with `drafter` (may be NULL unless the
/// draft kind needs a model). `params` may be NULL for the defaults. The
/// session keeps both models alive.
///
/// # Safety
/// `target`/`drafter` must be NULL or live model handles; `params` NULL or
/// valid; `out` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgespec_session_new(
    target: *const edgespec_model,
    drafter: *const edgespec_model,
    params: *const edgespec_session_params,
    out: *mut *mut edgespec_session,
) -> edgespec_result {
    guard(|| {
        if out.is_null() {
            return Err(fail(
                edgespec_result::EDGESPEC_ERR_NULL_ARGUMENT,
                "out is NULL",
            ));
        }
        // SAFETY: NULL or live handles per the caller's contract.
        let (target, drafter) = unsafe { (target.as_ref(), drafter.as_ref()) };
        let target = target.ok_or_else(|| {
            fail(
                edgespec_result::EDGESPEC_ERR_NULL_ARGUMENT,
                "target is NULL",
            )
        })?;
        let p = if params.is_null() {
            edgespec_session_params_default()
        } else {
            // SAFETY: non-null and readable for its struct_size per the caller's contract.
            unsafe { read_struct(params, edgespec_session_params_default())? }
        };
        let session = Session::new(config(&p, target, drafter)?)?;
        let session = Box::into_raw(Box::new(edgespec_session {
            conversation: Conversation::new(session, WhenFull::Error),
            text: Vec::with_capacity(64),
        }));
        // SAFETY: out is non-null and writable per the caller's contract.
        unsafe { *out = session };
        Ok(())
    })
}

/// Releases a session and sets `*session` to NULL. NULL and `*session == NULL` are no-ops.
///
/// # Safety
/// `session` must be NULL or point to NULL or to a handle from `edgespec_session_new`.
#[no_mangle]
pub unsafe extern "C" fn edgespec_session_free(session: *mut *mut edgespec_session) {
    // SAFETY: forwarded caller contract; session handles come from Box::into_raw.
    unsafe { free_handle(session) }
}

/// Forgets the previous prompt and the conversation's messages (its system
/// messages stay): empties every model's cache, drafters' and EAD's small
/// model's included (each one-shot generate call also starts afresh). What
/// the session measured and learned (pass costs, acceptance) stays.
///
/// # Safety
/// `session` must be NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn edgespec_session_reset(session: *mut edgespec_session) -> edgespec_result {
    guard(|| {
        // SAFETY: NULL or a live handle per the caller's contract.
        let s = unsafe { handle_mut(session, "session")? };
        s.conversation.reset();
        Ok(())
    })
}

/// Generates from UTF-8 `prompt` (wrapped in the model's chat template as a
/// user message when `chat`), streaming to `callback` (may be NULL). Writes
/// `*stats` on success when `stats` is not NULL.
///
/// # Safety
/// `session` NULL or live; `prompt` NULL or NUL-terminated; `callback` NULL
/// or a function safe to call with `user_data`; `stats` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgespec_session_generate(
    session: *mut edgespec_session,
    prompt: *const c_char,
    chat: bool,
    max_tokens: u32,
    callback: edgespec_token_callback,
    user_data: *mut c_void,
    stats: *mut edgespec_stats,
) -> edgespec_result {
    guard(|| {
        // SAFETY: NULL or a live handle per the caller's contract.
        let s = unsafe { handle_mut(session, "session")? };
        // SAFETY: checked by c_str.
        let prompt = unsafe { c_str(prompt, "prompt")? };
        if prompt.is_empty() {
            return Err(invalid("prompt is empty".into()));
        }
        let tokens = s.conversation.session().prompt_tokens(prompt, chat)?;
        run(s, &tokens, max_tokens, callback, user_data, stats)
    })
}

/// Like `edgespec_session_generate` with the prompt given as `n_tokens` token ids.
///
/// # Safety
/// `tokens` must be NULL or point to `n_tokens` readable ids; otherwise as
/// `edgespec_session_generate`.
#[no_mangle]
pub unsafe extern "C" fn edgespec_session_generate_tokens(
    session: *mut edgespec_session,
    tokens: *const i32,
    n_tokens: usize,
    max_tokens: u32,
    callback: edgespec_token_callback,
    user_data: *mut c_void,
    stats: *mut edgespec_stats,
) -> edgespec_result {
    guard(|| {
        // SAFETY: NULL or a live handle per the caller's contract.
        let s = unsafe { handle_mut(session, "session")? };
        if tokens.is_null() {
            return Err(fail(
                edgespec_result::EDGESPEC_ERR_NULL_ARGUMENT,
                "tokens is NULL",
            ));
        }
        if n_tokens == 0 {
            return Err(invalid("n_tokens is 0".into()));
        }
        // SAFETY: non-null, n_tokens readable ids per the caller's contract.
        let ids = unsafe { std::slice::from_raw_parts(tokens, n_tokens) }.to_vec();
        run(s, &ids, max_tokens, callback, user_data, stats)
    })
}

fn run(
    s: &mut edgespec_session,
    prompt: &[Token],
    max_tokens: u32,
    callback: edgespec_token_callback,
    user_data: *mut c_void,
    stats: *mut edgespec_stats,
) -> Result<(), Failure> {
    if max_tokens == 0 {
        return Err(invalid("max_tokens is 0".into()));
    }
    check_stats(stats)?;
    let on_token = streamer(&mut s.text, callback, user_data);
    let outcome = s
        .conversation
        .session_mut()
        .generate(prompt, max_tokens as usize, on_token)?;
    write_stats(&outcome, stats);
    Ok(())
}

/// Most stop strings a session takes (more is a mistake, not a use).
const MAX_STOP_STRINGS: usize = 64;

/// Sets the stop strings of the session's later generations and answers:
/// the output ends where its text first holds one of them, which is left
/// out (stop reason EDGESPEC_STOP_STRING); streamed text that could still
/// become one is held back until it cannot. `stops` holds `n_stops`
/// NUL-terminated UTF-8 strings (at most 64); `n_stops` 0 clears them
/// (`stops` may then be NULL).
///
/// # Safety
/// `session` NULL or live; `stops` NULL or pointing to `n_stops` pointers,
/// each NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn edgespec_session_set_stop_strings(
    session: *mut edgespec_session,
    stops: *const *const c_char,
    n_stops: usize,
) -> edgespec_result {
    guard(|| {
        // SAFETY: NULL or a live handle per the caller's contract.
        let s = unsafe { handle_mut(session, "session")? };
        if n_stops > MAX_STOP_STRINGS {
            return Err(invalid(format!(
                "n_stops = {n_stops}: at most {MAX_STOP_STRINGS} stop strings"
            )));
        }
        let pointers: &[*const c_char] = match (n_stops, stops.is_null()) {
            (0, _) => &[],
            (_, true) => {
                return Err(fail(
                    edgespec_result::EDGESPEC_ERR_NULL_ARGUMENT,
                    "stops is NULL",
                ))
            }
            // SAFETY: non-null, n_stops readable pointers per the caller's contract.
            _ => unsafe { std::slice::from_raw_parts(stops, n_stops) },
        };
        let texts = pointers
            .iter()
            .enumerate()
            // SAFETY: each NULL or NUL-terminated per the caller's contract; checked by c_str.
            .map(|(i, &p)| unsafe { c_str(p, &format!("stops[{i}]")) }.map(str::to_owned))
            .collect::<Result<Vec<_>, _>>()?;
        s.conversation.session_mut().set_stop_strings(texts);
        Ok(())
    })
}

/// Sets the grammar of the session's later generations and answers: the
/// output follows `gbnf` (llama.cpp's GBNF, start rule `root`), greedy or
/// sampled, speculative output still exact; a generation ends with
/// EDGESPEC_STOP_GRAMMAR where the grammar allows no further token. NULL
/// removes it. A grammar that does not parse, or an EAD session, is
/// refused (EDGESPEC_ERR_INVALID_PARAMETER) and the grammar before stays.
///
/// # Safety
/// `session` NULL or live; `gbnf` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn edgespec_session_set_grammar(
    session: *mut edgespec_session,
    gbnf: *const c_char,
) -> edgespec_result {
    guard(|| {
        // SAFETY: NULL or a live handle per the caller's contract.
        let s = unsafe { handle_mut(session, "session")? };
        let text = if gbnf.is_null() {
            None
        } else {
            // SAFETY: non-null and NUL-terminated per the caller's contract.
            Some(unsafe { c_str(gbnf, "gbnf") }?)
        };
        s.conversation
            .session_mut()
            .set_grammar(text)
            .map_err(|e| invalid(e.to_string()))
    })
}

/// Adds a message to the session's conversation: `role` is "system",
/// "user" or "assistant", `content` UTF-8. Nothing is generated.
///
/// # Safety
/// `session` NULL or live; `role` and `content` NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn edgespec_session_add_message(
    session: *mut edgespec_session,
    role: *const c_char,
    content: *const c_char,
) -> edgespec_result {
    guard(|| {
        // SAFETY: NULL or a live handle per the caller's contract.
        let s = unsafe { handle_mut(session, "session")? };
        // SAFETY: checked by c_str.
        let (role, content) = unsafe { (c_str(role, "role")?, c_str(content, "content")?) };
        if !matches!(role, "system" | "user" | "assistant") {
            return Err(invalid(format!(
                "role {role:?} is not \"system\", \"user\" or \"assistant\""
            )));
        }
        s.conversation.add(role, content);
        Ok(())
    })
}

/// Generates the assistant's answer to the conversation (which must end
/// with a user message), streaming to `callback` (may be NULL); the answer
/// joins the conversation. Only the tokens the caches do not hold yet are
/// read: a new turn costs its own tokens, not the whole history. Writes
/// `*stats` on success when `stats` is not NULL.
///
/// # Safety
/// As `edgespec_session_generate`.
#[no_mangle]
pub unsafe extern "C" fn edgespec_session_respond(
    session: *mut edgespec_session,
    max_tokens: u32,
    callback: edgespec_token_callback,
    user_data: *mut c_void,
    stats: *mut edgespec_stats,
) -> edgespec_result {
    guard(|| {
        // SAFETY: NULL or a live handle per the caller's contract.
        let s = unsafe { handle_mut(session, "session")? };
        if max_tokens == 0 {
            return Err(invalid("max_tokens is 0".into()));
        }
        if s.conversation.messages().last().map(|m| m.role.as_str()) != Some("user") {
            return Err(invalid(
                "the conversation must end with a user message".into(),
            ));
        }
        check_stats(stats)?;
        let text_buf = &mut s.text;
        let on_token = streamer(text_buf, callback, user_data);
        let outcome = s.conversation.answer(max_tokens as usize, on_token)?;
        write_stats(&outcome, stats);
        Ok(())
    })
}

/// Reads the conversation so far (typically a long system prompt or a
/// document) into every model's cache, then saves the caches to the file
/// at `path` (UTF-8), written whole or not at all. An existing file is
/// replaced only when it is a prompt cache (EDGESPEC_ERR_PROMPT_CACHE
/// otherwise, the file untouched). `*n_tokens` (may be NULL) receives the
/// tokens saved.
///
/// # Safety
/// `session` NULL or live; `path` NULL or a NUL-terminated string;
/// `n_tokens` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgespec_session_save_cache(
    session: *mut edgespec_session,
    path: *const c_char,
    n_tokens: *mut u32,
) -> edgespec_result {
    guard(|| {
        // SAFETY: NULL or a live handle per the caller's contract.
        let s = unsafe { handle_mut(session, "session")? };
        // SAFETY: checked by c_str.
        let path = unsafe { c_str(path, "path")? };
        if s.conversation.messages().is_empty() {
            return Err(invalid(
                "the conversation is empty: add the messages to save first".into(),
            ));
        }
        let history = s.conversation.render().map_err(Failure::from)?;
        let session = s.conversation.session_mut();
        session.prefill(&history)?;
        let saved = session.save_prompt_cache(std::path::Path::new(path))?;
        // SAFETY: NULL or writable per the caller's contract.
        unsafe { write_count(n_tokens, saved) };
        Ok(())
    })
}

/// Restores the caches saved by `edgespec_session_save_cache` (in any
/// process, with the same target model and edgespec version) into this
/// session. Add the same messages the cache was made from (the file holds
/// the caches, not the messages): the next `edgespec_session_respond` then
/// reads only the tokens after them. A file that is not a prompt cache, is
/// damaged, or was made by another edgespec version or with another target
/// model is refused with EDGESPEC_ERR_PROMPT_CACHE (EDGESPEC_ERR_IO when it
/// cannot be read, EDGESPEC_ERR_CONTEXT_FULL when it holds more than the
/// context); the session's caches are then empty and it goes on working.
///
/// # Safety
/// `session` NULL or live; `path` NULL or a NUL-terminated string;
/// `n_tokens` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn edgespec_session_load_cache(
    session: *mut edgespec_session,
    path: *const c_char,
    n_tokens: *mut u32,
) -> edgespec_result {
    guard(|| {
        // SAFETY: NULL or a live handle per the caller's contract.
        let s = unsafe { handle_mut(session, "session")? };
        // SAFETY: checked by c_str.
        let path = unsafe { c_str(path, "path")? };
        let restored = s
            .conversation
            .session_mut()
            .load_prompt_cache(std::path::Path::new(path))?;
        // SAFETY: NULL or writable per the caller's contract.
        unsafe { write_count(n_tokens, restored) };
        Ok(())
    })
}

/// Saves the session's memory of earlier outputs (what its free drafts draw
/// on: lookup and hybrid draft kinds) to the file at `path` (UTF-8), written
/// whole or not at all. An existing file is replaced only when it is a
/// lookup memory of this target model or a damaged one: another model's
/// memory or a file that is not a memory is refused with
/// EDGESPEC_ERR_LOOKUP_MEMORY, the file untouched.
///
/// # Safety
/// `session` NULL or live; `path` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn edgespec_session_save_lookup_memory(
    session: *mut edgespec_session,
    path: *const c_char,
) -> edgespec_result {
    guard(|| {
        // SAFETY: NULL or a live handle per the caller's contract.
        let s = unsafe { handle_mut(session, "session")? };
        // SAFETY: checked by c_str.
        let path = unsafe { c_str(path, "path")? };
        Ok(s.conversation
            .session()
            .save_lookup_memory(std::path::Path::new(path))?)
    })
}

/// Replaces the session's memory of earlier outputs with the one saved at
/// `path` by `edgespec_session_save_lookup_memory` with the same target
/// model (its newest outputs, as many as the memory holds). A file that is
/// not a lookup memory, is damaged or was made with another target model is
/// refused with EDGESPEC_ERR_LOOKUP_MEMORY (EDGESPEC_ERR_IO when it cannot
/// be read); the memory is then as it was.
///
/// # Safety
/// `session` NULL or live; `path` NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn edgespec_session_load_lookup_memory(
    session: *mut edgespec_session,
    path: *const c_char,
) -> edgespec_result {
    guard(|| {
        // SAFETY: NULL or a live handle per the caller's contract.
        let s = unsafe { handle_mut(session, "session")? };
        // SAFETY: checked by c_str.
        let path = unsafe { c_str(path, "path")? };
        Ok(s.conversation
            .session_mut()
            .load_lookup_memory(std::path::Path::new(path))?)
    })
}

/// Writes `count` (saturated to u32) to `out` unless it is NULL.
///
/// # Safety
/// `out` NULL or writable.
unsafe fn write_count(out: *mut u32, count: usize) {
    if !out.is_null() {
        // SAFETY: non-NULL and writable per the caller's contract.
        unsafe { *out = count.min(u32::MAX as usize) as u32 };
    }
}

/// Chooses what `edgespec_session_respond` does when the conversation no
/// longer fits in the context: EDGESPEC_WHEN_FULL_ERROR (the default: the
/// call fails with EDGESPEC_ERR_CONTEXT_FULL, the conversation stays) or
/// EDGESPEC_WHEN_FULL_DROP_OLDEST (the oldest exchanges after the system
/// messages are dropped until it fits).
///
/// # Safety
/// `session` NULL or live.
#[no_mangle]
pub unsafe extern "C" fn edgespec_session_set_when_full(
    session: *mut edgespec_session,
    when_full: i32,
) -> edgespec_result {
    guard(|| {
        // SAFETY: NULL or a live handle per the caller's contract.
        let s = unsafe { handle_mut(session, "session")? };
        let policy = match when_full {
            EDGESPEC_WHEN_FULL_ERROR => WhenFull::Error,
            EDGESPEC_WHEN_FULL_DROP_OLDEST => WhenFull::DropOldest,
            other => {
                return Err(invalid(format!(
                    "when_full = {other} is not an EDGESPEC_WHEN_FULL_* value"
                )))
            }
        };
        s.conversation.set_when_full(policy);
        Ok(())
    })
}

/// `respond` fails with EDGESPEC_ERR_CONTEXT_FULL when the conversation no longer fits.
pub const EDGESPEC_WHEN_FULL_ERROR: i32 = 0;
/// `respond` drops the oldest exchanges (system messages stay) until it fits.
pub const EDGESPEC_WHEN_FULL_DROP_OLDEST: i32 = 1;

/// A token callback for the engines over the C callback: the text is copied
/// into `text_buf` with a NUL so the callee gets a C string; the end of the
/// stream is token -1, as the header says.
fn streamer<'a>(
    text_buf: &'a mut Vec<u8>,
    callback: edgespec_token_callback,
    user_data: *mut c_void,
) -> impl FnMut(Piece, &str) -> bool + 'a {
    move |piece: Piece, text: &str| -> bool {
        let Some(cb) = callback else { return true };
        let token: Token = match piece {
            Piece::Token(t) => t,
            Piece::End => -1,
        };
        text_buf.clear();
        text_buf.extend_from_slice(text.as_bytes());
        text_buf.push(0);
        // SAFETY: the callback's contract: text is NUL-terminated and valid
        // for the call; user_data is passed through untouched.
        unsafe { cb(text_buf.as_ptr().cast(), text.len(), token, user_data) }
    }
}

/// Refuses a `stats` whose `struct_size` is not set, before any work.
fn check_stats(stats: *mut edgespec_stats) -> Result<(), Failure> {
    if stats.is_null() {
        return Ok(());
    }
    // SAFETY: non-null and writable per the caller's contract.
    unsafe { check_writable(stats) }
}

fn write_stats(outcome: &Outcome, stats: *mut edgespec_stats) {
    if !stats.is_null() {
        // SAFETY: non-null, writable for its struct_size (checked before the run).
        unsafe { write_struct(stats, &to_c_stats(outcome)) };
    }
}

fn to_c_stats(outcome: &Outcome) -> edgespec_stats {
    let g = &outcome.generation;
    let n = g.stats.generated_tokens;
    let mut out = edgespec_stats {
        prompt_tokens: g.stats.prompt_tokens as u32,
        generated_tokens: n as u32,
        prompt_tok_s: g.stats.prompt_tok_per_s(),
        decode_tok_s: g.stats.decode_tok_per_s(),
        ttft_ms: g.stats.time_to_first_token.as_secs_f64() * 1e3,
        round_trips: g.stats.round_trips,
        target_calls: n.saturating_sub(1) as u32,
        tau: 1.0,
        mbsu: 1.0,
        stop_reason: match g.stop {
            StopReason::EndOfGeneration => EDGESPEC_STOP_EOG,
            StopReason::MaxTokens => EDGESPEC_STOP_MAX_TOKENS,
            StopReason::ContextFull => EDGESPEC_STOP_CONTEXT_FULL,
            StopReason::Callback => EDGESPEC_STOP_CALLBACK,
            StopReason::StopString => EDGESPEC_STOP_STRING,
            StopReason::Grammar => EDGESPEC_STOP_GRAMMAR,
        },
        ..Default::default()
    };
    if let Some(s) = &outcome.speculation {
        out.target_calls = s.target_calls as u32;
        out.drafted = s.drafted as u32;
        out.accepted = s.accepted as u32;
        out.acceptance = s.acceptance();
        out.tau = s.tau(n);
        out.mbsu = s.mbsu(n);
        out.drafter_share = if n == 0 {
            0.0
        } else {
            s.accepted as f64 / n as f64
        };
    }
    if let Some(e) = &outcome.ead {
        out.large_share = e.large_share();
        out.switches = e.switches as u32;
        out.drafted = e.drafted as u32;
        out.accepted = e.accepted as u32;
        out.acceptance = e.acceptance();
        out.target_calls = e.large_passes as u32;
    }
    out
}
