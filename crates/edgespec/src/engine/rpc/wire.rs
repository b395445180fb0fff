//! What crosses the wire between ggml's RPC client and server, as far as
//! edgespec's two ends (the client's [guard](super::guard) and the
//! server's [front](super::front)) need to know it.
//!
//! ggml's framing (protocol 7.x): a request is one command byte, a 64-bit
//! little-endian size and the payload; a reply is a size and a payload.
//! Which commands wait for a reply, and of what size, is [`reply_to`].
//!
//! edgespec's one extension, spoken only between its own two ends: a
//! server front marks its HELLO reply ([`FRONT_MARK`] in the padding byte
//! that ggml leaves zero and ignores), and a guard that saw the mark may
//! ask for a logits tensor's rows as only their largest entries
//! ([`TOP_ROWS`]): the front reads the rows from ggml's server on its own
//! machine and sends back a few ids and values per row instead of a whole
//! vocabulary of f32s: each row's largest entries, as many as the pass's
//! [`LogitsKept`] says its sampler reads (a count, or a cut by probability,
//! which version 2 of the extension carries). The guard widens them back
//! to rows of the size ggml asked for, every other entry [`FILLER`], so
//! llama.cpp and the samplers read logits as always. Version 3 adds
//! [`DRAWN_ROWS`]: for a sampler that draws at a temperature alone, which
//! reads every entry of a row, the front draws each row's token itself
//! with the uniform number the client sends for it ([`RowDraws`]) and
//! sends the tokens back besides a few of the largest entries. A plain
//! ggml server never sees the commands (no mark), and a plain ggml client
//! never sends them.

use crate::engine::{draw_at_temperature, LogitsKept, Nucleus, RowDraws, Token};

/// `RPC_CMD_HELLO`: the one command every protocol version keeps.
pub(super) const HELLO: u8 = 14;
/// `RPC_CMD_GET_TENSOR`.
pub(super) const GET_TENSOR: u8 = 8;
/// `RPC_CONN_CAPS_SIZE`: the transport capabilities in HELLO.
pub(super) const CAPS: usize = 24;
/// The HELLO reply: major, minor, patch, padding, capabilities.
pub(super) const HELLO_REPLY: u64 = 4 + CAPS as u64;
/// The protocol major version this build's ggml speaks.
pub(super) const PROTOCOL_MAJOR: u8 = 7;
/// The newest minor version of it this build's ggml understands.
pub(super) const PROTOCOL_MINOR: u8 = 0;
/// The largest request that waits for a reply (they are fixed structs of
/// a few KiB); a larger one means the framing is lost.
pub(super) const MAX_SMALL_REQUEST: u64 = 1 << 20;

/// Where an edgespec server front puts [`FRONT_MARK`] in its HELLO reply.
pub(super) const MARK_AT: usize = 3;
/// The mark of an edgespec server front.
pub(super) const FRONT_MARK: u8 = 0xE5;
/// The version of the extension a front speaks, in the byte after its
/// mark (version 1 fronts left it zero): 2 reads cuts by probability,
/// 3 draws rows ([`DRAWN_ROWS`]).
pub(super) const FRONT_VERSION: u8 = 3;
/// edgespec's command: a GET_TENSOR request followed by a little-endian
/// u32 `top`, and from version 2 optionally the f32s `top_p` and `min_p`
/// of a [`Nucleus`]; the reply holds each row's largest entries, as many
/// as [`LogitsKept::entries`] counts (see [`top_rows`]).
pub(super) const TOP_ROWS: u8 = 0xE5;
/// edgespec's command from version 3: a GET_TENSOR request followed by a
/// little-endian u32 `top`, an f32 temperature and one f64 uniform number
/// per row asked for; the reply holds each row's drawn token as a u32,
/// then a [`top_rows`] reply keeping `top` entries of each row (see
/// [`drawn_rows`]).
pub(super) const DRAWN_ROWS: u8 = 0xE6;
/// What a widened row holds where the front sent nothing: below every
/// logit, so no sampler keeps it.
pub(super) const FILLER: f32 = f32::NEG_INFINITY;

/// ggml's `rpc_msg_get_tensor_req`: a packed `rpc_tensor` (296 bytes), the
/// offset and the size.
const GET_TENSOR_REQUEST: usize = 312;
/// Offsets in the packed `rpc_tensor`.
const TYPE_AT: usize = 8;
const NE_AT: usize = 20;
const NAME_AT: usize = 228;
const NAME_LEN: usize = 64;
/// The name llama.cpp gives the logits tensor of every architecture.
const LOGITS_NAME: &[u8] = b"result_output";
/// `GGML_TYPE_F32`.
const F32: u32 = 0;
/// A row count that means the whole row follows.
const WHOLE_ROW: u32 = u32::MAX;

/// What ggml waits for after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reply {
    /// Nothing: the command is pipelined.
    Nothing,
    /// A reply of this many bytes.
    Fixed(u64),
    /// A reply as large as the request's last 8 bytes say (GET_TENSOR).
    SizeInRequest,
}

/// ggml-rpc's `rpc_cmd` table (protocol 7): which commands wait for a
/// reply, and of what size (the `rpc_msg_*_rsp` structs).
pub(super) fn reply_to(cmd: u8) -> Option<Reply> {
    Some(match cmd {
        0 => Reply::Fixed(16),             // ALLOC_BUFFER: remote_ptr, remote_size
        1 | 2 | 3 | 13 => Reply::Fixed(8), // GET_ALIGNMENT, GET_MAX_SIZE, BUFFER_GET_BASE, GET_ALLOC_SIZE
        4 | 5 | 6 | 10 | 12 | 16 | 17 => Reply::Nothing, // FREE_BUFFER, BUFFER_CLEAR, SET_TENSOR, GRAPH_COMPUTE, INIT_TENSOR, GRAPH_RECOMPUTE, MEMSET_TENSOR
        7 | 9 => Reply::Fixed(1), // SET_TENSOR_HASH, COPY_TENSOR: a result byte
        GET_TENSOR => Reply::SizeInRequest,
        11 => Reply::Fixed(16), // GET_DEVICE_MEMORY: free, total
        HELLO => Reply::Fixed(HELLO_REPLY),
        15 => Reply::Fixed(4), // DEVICE_COUNT
        _ => return None,
    })
}

/// The size of the reply a request waits for, from its command and payload.
pub(super) fn reply_size(reply: Reply, request: &[u8]) -> Option<u64> {
    match reply {
        Reply::Nothing => None,
        Reply::Fixed(n) => Some(n),
        Reply::SizeInRequest => {
            let tail = request.len().checked_sub(8).map(|at| &request[at..])?;
            Some(u64::from_le_bytes(tail.try_into().ok()?))
        }
    }
}

/// A GET_TENSOR request for whole rows of llama.cpp's logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct LogitsRows {
    /// Entries per row (the vocabulary).
    pub(super) width: usize,
    /// Rows asked for.
    pub(super) rows: usize,
}

impl LogitsRows {
    /// The rows a GET_TENSOR request asks for, if it asks for whole rows
    /// of an f32 tensor named as llama.cpp names its logits.
    pub(super) fn of(request: &[u8]) -> Option<Self> {
        if request.len() != GET_TENSOR_REQUEST {
            return None;
        }
        let u32_at =
            |at: usize| u32::from_le_bytes(request[at..at + 4].try_into().unwrap_or([0; 4]));
        let u64_at =
            |at: usize| u64::from_le_bytes(request[at..at + 8].try_into().unwrap_or([0; 8]));
        let name = &request[NAME_AT..NAME_AT + NAME_LEN];
        let named = name.starts_with(LOGITS_NAME) && name[LOGITS_NAME.len()] == 0;
        if !named || u32_at(TYPE_AT) != F32 {
            return None;
        }
        let width = usize::try_from(u32_at(NE_AT)).ok()?;
        let row_bytes = u64::try_from(width).ok()?.checked_mul(4)?;
        let (offset, size) = (
            u64_at(GET_TENSOR_REQUEST - 16),
            u64_at(GET_TENSOR_REQUEST - 8),
        );
        if width == 0 || size == 0 || offset % row_bytes != 0 || size % row_bytes != 0 {
            return None;
        }
        Some(Self {
            width,
            rows: usize::try_from(size / row_bytes).ok()?,
        })
    }

    /// Bytes of the rows as ggml expects them.
    pub(super) fn bytes(&self) -> usize {
        self.width * self.rows * 4
    }

    /// The most bytes a [`top_rows`] reply for these rows may hold.
    pub(super) fn max_reply(&self) -> usize {
        self.rows * 4 + self.bytes()
    }
}

/// The extension version a front's HELLO reply announces (0: not a
/// front).
pub(super) fn front_version(hello: &[u8]) -> u8 {
    match hello.get(MARK_AT..=MARK_AT + 1) {
        Some(&[FRONT_MARK, version]) => version.max(1),
        _ => 0,
    }
}

/// Whether a front of extension `version` can cut rows as `keep` asks.
pub(super) fn front_serves(version: u8, keep: &LogitsKept) -> bool {
    version >= 1 && (keep.nucleus.is_none() || version >= 2)
}

/// Whether a front of extension `version` draws rows ([`DRAWN_ROWS`]).
pub(super) fn front_draws(version: u8) -> bool {
    version >= 3
}

/// The [`DRAWN_ROWS`] message for a GET_TENSOR `request` whose rows are
/// drawn at `temperature` with `uniforms`, one per row, `top` entries of
/// each kept besides.
pub(super) fn drawn_rows_message(
    request: &[u8],
    temperature: f32,
    uniforms: &[f64],
    top: usize,
) -> Vec<u8> {
    let mut tail = u32::try_from(top)
        .unwrap_or(u32::MAX)
        .to_le_bytes()
        .to_vec();
    tail.extend(temperature.to_le_bytes());
    tail.extend(uniforms.iter().flat_map(|u| u.to_le_bytes()));
    extension_message(DRAWN_ROWS, request, &tail)
}

/// An extension command `cmd` whose payload is a GET_TENSOR `request`
/// followed by `tail`, framed as ggml frames a request.
fn extension_message(cmd: u8, request: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(9 + request.len() + tail.len());
    message.push(cmd);
    message.extend(((request.len() + tail.len()) as u64).to_le_bytes());
    message.extend_from_slice(request);
    message.extend_from_slice(tail);
    message
}

/// A [`DRAWN_ROWS`] payload as the GET_TENSOR request, its rows and the
/// draws to make, or why not: a temperature that is not a finite number
/// above 0, a uniform number outside [0, 1), or another count of them
/// than rows.
pub(super) fn parse_drawn_rows(
    payload: &[u8],
) -> Result<(&[u8], LogitsRows, RowDraws), &'static str> {
    let tail = payload
        .len()
        .checked_sub(GET_TENSOR_REQUEST + 8)
        .filter(|t| t % 8 == 0)
        .ok_or("a drawn-rows request of another size")?;
    let (get, rest) = payload.split_at(GET_TENSOR_REQUEST);
    let word = |at: usize| <[u8; 4]>::try_from(&rest[at..at + 4]).unwrap_or([0; 4]);
    let draws = RowDraws {
        top: usize::try_from(u32::from_le_bytes(word(0))).unwrap_or(usize::MAX),
        temperature: f32::from_le_bytes(word(4)),
        uniforms: rest[8..]
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .collect(),
    };
    if !draws.is_valid() {
        return Err("a draw out of range");
    }
    let rows = LogitsRows::of(get).ok_or("draws asked of a tensor that is not logits rows")?;
    if rows.rows != tail / 8 {
        return Err("another count of uniform numbers than rows");
    }
    Ok((get, rows, draws))
}

/// Each `width`-entry row of little-endian f32s in `data` drawn from as
/// `draws` says: the drawn tokens as u32s, then the [`top_rows`] reply
/// keeping `draws.top` entries of each row.
pub(super) fn drawn_rows(data: &[u8], width: usize, draws: &RowDraws) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut row, mut scratch) = (Vec::with_capacity(width), Vec::with_capacity(width));
    for (bytes, &u) in data.chunks_exact(width * 4).zip(&draws.uniforms) {
        row.clear();
        row.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        let token = draw_at_temperature(&row, draws.temperature, u, &mut scratch);
        out.extend((token as u32).to_le_bytes());
    }
    out.extend(top_rows(data, width, &LogitsKept::top(draws.top)));
    out
}

/// A [`drawn_rows`] reply as the drawn tokens and the rows widened back
/// ([`widen_rows`]), or why it does not describe exactly those rows.
pub(super) fn split_drawn_rows(
    reply: &[u8],
    rows: LogitsRows,
) -> Result<(Vec<Token>, Vec<u8>), &'static str> {
    let tokens_end = rows.rows * 4;
    let tokens = reply
        .get(..tokens_end)
        .ok_or("a reply shorter than its tokens")?
        .chunks_exact(4)
        .map(|b| {
            let id = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            usize::try_from(id)
                .ok()
                .filter(|&id| id < rows.width)
                .map(|id| id as Token)
                .ok_or("a drawn token past the row")
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((tokens, widen_rows(&reply[tokens_end..], rows)?))
}

/// The [`TOP_ROWS`] message for a GET_TENSOR `request`: what `keep` asks
/// of each row (a version 1 front understands a count alone).
pub(super) fn top_rows_message(request: &[u8], keep: &LogitsKept) -> Vec<u8> {
    let mut tail = u32::try_from(keep.top)
        .unwrap_or(u32::MAX)
        .to_le_bytes()
        .to_vec();
    if let Some(n) = keep.nucleus {
        tail.extend(n.top_p.to_le_bytes());
        tail.extend(n.min_p.to_le_bytes());
    }
    extension_message(TOP_ROWS, request, &tail)
}

/// A [`TOP_ROWS`] payload as the GET_TENSOR request and what to keep, or
/// why not.
pub(super) fn parse_top_rows(payload: &[u8]) -> Result<(&[u8], LogitsKept), &'static str> {
    let f32_at = |at: usize| f32::from_le_bytes(payload[at..at + 4].try_into().unwrap_or([0; 4]));
    let (tail, nucleus) = match payload.len().checked_sub(GET_TENSOR_REQUEST) {
        Some(4) => (4, None),
        Some(12) => {
            let at = GET_TENSOR_REQUEST + 4;
            let nucleus = Nucleus {
                top_p: f32_at(at),
                min_p: f32_at(at + 4),
            };
            let valid =
                nucleus.top_p > 0.0 && nucleus.top_p <= 1.0 && (0.0..=1.0).contains(&nucleus.min_p);
            if !valid {
                return Err("a cut by probability out of range");
            }
            (12, Some(nucleus))
        }
        _ => return Err("a top-rows request of another size"),
    };
    let (get, rest) = payload.split_at(payload.len() - tail);
    let top = u32::from_le_bytes(rest[..4].try_into().unwrap_or([0; 4]));
    let top = usize::try_from(top).unwrap_or(usize::MAX);
    Ok((get, LogitsKept { top, nucleus }))
}

/// Each `width`-entry row of little-endian f32s in `data`, as its largest
/// entries ([`LogitsKept::entries`] of them), ties with the last one
/// included (so a reader that breaks ties by id chooses as it would on the
/// whole row): a u32 count, then count × (u32 id, f32 value), ids
/// ascending. NaN entries are never kept. A row where that would not save
/// bytes is sent whole: the count [`WHOLE_ROW`], then the row.
pub(super) fn top_rows(data: &[u8], width: usize, kept: &LogitsKept) -> Vec<u8> {
    let mut out = Vec::new();
    let mut values = Vec::with_capacity(width);
    for row in data.chunks_exact(width * 4) {
        values.clear();
        values.extend(
            row.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        let keep = kept.entries(&values);
        values.retain(|v| !v.is_nan());
        let threshold = if keep == 0 || keep > values.len() {
            None
        } else {
            let (_, nth, _) = values.select_nth_unstable_by(keep - 1, |a, b| b.total_cmp(a));
            Some(*nth)
        };
        let kept = threshold.map(|t| {
            row.chunks_exact(4)
                .enumerate()
                .map(|(id, b)| (id, f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .filter(|&(_, v)| v >= t)
                .collect::<Vec<_>>()
        });
        match kept {
            Some(kept) if kept.len() * 8 < width * 4 => {
                out.extend((kept.len() as u32).to_le_bytes());
                for (id, v) in kept {
                    out.extend((id as u32).to_le_bytes());
                    out.extend(v.to_le_bytes());
                }
            }
            _ => {
                out.extend(WHOLE_ROW.to_le_bytes());
                out.extend_from_slice(row);
            }
        }
    }
    out
}

/// Widens a [`top_rows`] reply back to `rows` rows of `width` f32s,
/// [`FILLER`] where nothing was sent. Fails on a reply that does not
/// describe exactly those rows.
pub(super) fn widen_rows(reply: &[u8], rows: LogitsRows) -> Result<Vec<u8>, &'static str> {
    let filler = FILLER.to_le_bytes();
    let row_bytes = rows.width * 4;
    let mut out = Vec::with_capacity(rows.bytes());
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], &'static str> {
        let piece = reply
            .get(at..at + n)
            .ok_or("a reply shorter than its rows")?;
        at += n;
        Ok(piece)
    };
    for _ in 0..rows.rows {
        let count = u32::from_le_bytes(take(4)?.try_into().map_err(|_| "bad count")?);
        if count == WHOLE_ROW {
            out.extend_from_slice(take(row_bytes)?);
            continue;
        }
        let start = out.len();
        out.extend(std::iter::repeat_n(filler, rows.width).flatten());
        let entries = take(usize::try_from(count).map_err(|_| "bad count")? * 8)?;
        for entry in entries.chunks_exact(8) {
            let id = u32::from_le_bytes(entry[..4].try_into().map_err(|_| "bad id")?);
            let id = usize::try_from(id).map_err(|_| "bad id")?;
            if id >= rows.width {
                return Err("an id past the row");
            }
            out[start + id * 4..start + id * 4 + 4].copy_from_slice(&entry[4..]);
        }
    }
    if at != reply.len() {
        return Err("a reply longer than its rows");
    }
    Ok(out)
}

/// A GET_TENSOR request's payload, as ggml's client builds it (tests).
#[cfg(test)]
pub(super) fn get_tensor_request(
    name: &[u8],
    ty: u32,
    width: u32,
    offset: u64,
    size: u64,
) -> Vec<u8> {
    let mut r = vec![0u8; GET_TENSOR_REQUEST];
    r[TYPE_AT..TYPE_AT + 4].copy_from_slice(&ty.to_le_bytes());
    r[NE_AT..NE_AT + 4].copy_from_slice(&width.to_le_bytes());
    r[NAME_AT..NAME_AT + name.len()].copy_from_slice(name);
    r[GET_TENSOR_REQUEST - 16..GET_TENSOR_REQUEST - 8].copy_from_slice(&offset.to_le_bytes());
    r[GET_TENSOR_REQUEST - 8..].copy_from_slice(&size.to_le_bytes());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &[u8], ty: u32, width: u32, offset: u64, size: u64) -> Vec<u8> {
        get_tensor_request(name, ty, width, offset, size)
    }

    fn bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn floats(bytes: &[u8]) -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    #[test]
    fn only_whole_rows_of_the_logits_are_recognised() {
        let rows = LogitsRows::of(&request(b"result_output", 0, 100, 0, 800));
        assert_eq!(
            rows,
            Some(LogitsRows {
                width: 100,
                rows: 2
            })
        );
        assert_eq!(
            LogitsRows::of(&request(b"result_output", 0, 100, 400, 400)).map(|r| r.rows),
            Some(1)
        );
        // Another tensor, another type, part of a row, a longer name, no row.
        assert_eq!(
            LogitsRows::of(&request(b"result_norm", 0, 100, 0, 800)),
            None
        );
        assert_eq!(
            LogitsRows::of(&request(b"result_output", 1, 100, 0, 800)),
            None
        );
        assert_eq!(
            LogitsRows::of(&request(b"result_output", 0, 100, 0, 200)),
            None
        );
        assert_eq!(
            LogitsRows::of(&request(b"result_output", 0, 100, 4, 400)),
            None
        );
        assert_eq!(
            LogitsRows::of(&request(b"result_output_x", 0, 100, 0, 400)),
            None
        );
        assert_eq!(LogitsRows::of(&request(b"result_output", 0, 0, 0, 0)), None);
        assert_eq!(
            LogitsRows::of(&request(b"result_output", 0, 100, 0, 800)[1..]),
            None
        );
    }

    #[test]
    fn a_row_comes_back_as_its_largest_entries_ties_included() {
        let mut row = vec![0.0f32; 64];
        row[7] = 3.0;
        row[3] = 2.0;
        row[40] = 2.0;
        row[9] = f32::NAN;
        row[20] = 1.0;
        let data = [bytes(&row), bytes(&row)].concat();
        let rows = LogitsRows { width: 64, rows: 2 };
        let reply = top_rows(&data, 64, &LogitsKept::top(2));
        // Per row: a count of 3 (the tie at 2.0 kept), three entries.
        assert_eq!(reply.len(), 2 * (4 + 3 * 8));
        let wide = floats(&widen_rows(&reply, rows).unwrap());
        assert_eq!(wide.len(), 128);
        for r in wide.chunks(64) {
            let kept: Vec<usize> = (0..64).filter(|&i| r[i] != FILLER).collect();
            assert_eq!(kept, [3, 7, 40]);
            assert_eq!((r[3], r[7], r[40]), (2.0, 3.0, 2.0));
        }
        // keep 1: only the argmax.
        let one = floats(&widen_rows(&top_rows(&data, 64, &LogitsKept::top(1)), rows).unwrap());
        assert_eq!(
            (0..64).filter(|&i| one[i] != FILLER).collect::<Vec<_>>(),
            [7]
        );
    }

    #[test]
    fn a_row_not_worth_cutting_comes_back_whole() {
        let row: Vec<f32> = (0..8).map(|i| i as f32).collect();
        let rows = LogitsRows { width: 8, rows: 1 };
        for keep in [0, 4, 8, 9] {
            let reply = top_rows(&bytes(&row), 8, &LogitsKept::top(keep));
            assert_eq!(reply.len(), 4 + 32, "keep {keep}");
            assert_eq!(floats(&widen_rows(&reply, rows).unwrap()), row);
        }
    }

    #[test]
    fn a_reply_that_does_not_fit_its_rows_is_refused() {
        let rows = LogitsRows { width: 8, rows: 1 };
        let good = top_rows(
            &bytes(&[0.0, 1.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0]),
            8,
            &LogitsKept::top(1),
        );
        assert!(widen_rows(&good, rows).is_ok());
        assert!(widen_rows(&good[..good.len() - 1], rows).is_err());
        assert!(widen_rows(&[good.clone(), vec![0]].concat(), rows).is_err());
        let mut past = good.clone();
        past[4..8].copy_from_slice(&8u32.to_le_bytes());
        assert!(widen_rows(&past, rows).is_err());
        let mut huge = good;
        huge[..4].copy_from_slice(&1_000_000u32.to_le_bytes());
        assert!(widen_rows(&huge, rows).is_err());
    }

    /// Version 2 of the extension: a front announces it after its mark,
    /// a guard asks a version 1 front for counts only, and a request's
    /// cut by probability arrives as sent; one out of range is refused.
    #[test]
    fn a_cut_by_probability_needs_a_version_2_front_and_arrives_as_sent() {
        let mut hello = [0u8; HELLO_REPLY as usize];
        assert_eq!(front_version(&hello), 0);
        hello[MARK_AT] = FRONT_MARK;
        assert_eq!(front_version(&hello), 1, "version 1 left the byte zero");
        hello[MARK_AT + 1] = 2;
        assert_eq!(front_version(&hello), 2);
        hello[MARK_AT + 1] = FRONT_VERSION;
        assert_eq!(front_version(&hello), 3);
        let nucleus = LogitsKept {
            top: 3,
            nucleus: Some(Nucleus {
                top_p: 0.9,
                min_p: 0.05,
            }),
        };
        assert!(front_serves(1, &LogitsKept::top(3)));
        assert!(!front_serves(1, &nucleus) && front_serves(2, &nucleus));
        assert!(!front_serves(0, &LogitsKept::top(3)));
        let request = get_tensor_request(b"result_output", 0, 64, 0, 256);
        for kept in [LogitsKept::top(3), nucleus] {
            let message = top_rows_message(&request, &kept);
            assert_eq!(message[0], TOP_ROWS);
            let size = u64::from_le_bytes(message[1..9].try_into().unwrap());
            assert_eq!(size as usize, message.len() - 9);
            let (get, parsed) = parse_top_rows(&message[9..]).unwrap();
            assert_eq!((get, parsed), (&request[..], kept));
        }
        for (top_p, min_p) in [
            (0.0, 0.0),
            (1.5, 0.0),
            (f32::NAN, 0.0),
            (0.9, -0.1),
            (0.9, 2.0),
        ] {
            let bad = LogitsKept {
                top: 1,
                nucleus: Some(Nucleus { top_p, min_p }),
            };
            let message = top_rows_message(&request, &bad);
            assert!(parse_top_rows(&message[9..]).is_err(), "{top_p} {min_p}");
        }
        assert!(parse_top_rows(&request).is_err(), "no count");
    }

    /// Version 3: the rows of a pass drawn on the server. The message
    /// arrives as sent; the reply holds each row's draw, the one
    /// [`draw_at_temperature`] makes from the whole row with that row's
    /// uniform number, and the row's largest entries; draws out of range,
    /// or not one per row, are refused, as is a reply with a token past
    /// the row.
    #[test]
    fn drawn_rows_carry_each_rows_draw_and_its_largest_entries() {
        const WIDTH: usize = 64;
        let rows: Vec<Vec<f32>> = (0..3)
            .map(|r| {
                (0..WIDTH)
                    .map(|i| ((i * 7 + r * 13) % 23) as f32 / 5.0)
                    .collect()
            })
            .collect();
        let data: Vec<u8> = rows.iter().flat_map(|r| bytes(r)).collect();
        let request = get_tensor_request(b"result_output", 0, WIDTH as u32, 0, data.len() as u64);
        let uniforms = [0.1, 0.5, 0.93];
        assert!(!front_draws(2) && front_draws(3));
        let message = drawn_rows_message(&request, 0.7, &uniforms, 2);
        assert_eq!(message[0], DRAWN_ROWS);
        let size = u64::from_le_bytes(message[1..9].try_into().unwrap());
        assert_eq!(size as usize, message.len() - 9);
        let (get, asked, draws) = parse_drawn_rows(&message[9..]).unwrap();
        assert_eq!(get, &request[..]);
        assert_eq!(
            asked,
            LogitsRows {
                width: WIDTH,
                rows: 3
            }
        );
        assert_eq!(
            draws,
            RowDraws {
                temperature: 0.7,
                uniforms: uniforms.to_vec(),
                top: 2
            }
        );
        let reply = drawn_rows(&data, WIDTH, &draws);
        let (tokens, wide) = split_drawn_rows(&reply, asked).unwrap();
        let mut scratch = Vec::new();
        for (r, row) in rows.iter().enumerate() {
            let draw = draw_at_temperature(row, 0.7, uniforms[r], &mut scratch);
            assert_eq!(tokens[r], draw, "row {r}");
            let kept = floats(&wide[r * WIDTH * 4..(r + 1) * WIDTH * 4]);
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            for (i, &v) in kept.iter().enumerate() {
                assert!(v == FILLER || v == row[i], "row {r} id {i}");
            }
            assert!(kept
                .iter()
                .filter(|&&v| v != FILLER)
                .all(|&v| v >= row[i_second(row)]));
            assert!(kept.contains(&max));
        }
        let distinct: std::collections::BTreeSet<_> = tokens.iter().collect();
        assert!(distinct.len() > 1, "draws spread: {tokens:?}");
        // Out of range, or not one number per row.
        for (temperature, uniforms) in [
            (0.0, vec![0.1, 0.5, 0.9]),
            (f32::NAN, vec![0.1, 0.5, 0.9]),
            (0.7, vec![0.1, 1.0, 0.9]),
            (0.7, vec![0.1, 0.5]),
            (0.7, vec![0.1, 0.5, 0.9, 0.2]),
        ] {
            let message = drawn_rows_message(&request, temperature, &uniforms, 2);
            assert!(
                parse_drawn_rows(&message[9..]).is_err(),
                "{temperature} {uniforms:?}"
            );
        }
        let other = get_tensor_request(b"result_norm", 0, WIDTH as u32, 0, data.len() as u64);
        let message = drawn_rows_message(&other, 0.7, &uniforms, 2);
        assert!(parse_drawn_rows(&message[9..]).is_err());
        assert!(parse_drawn_rows(&request).is_err(), "no draws");
        // A reply whose token lies past the row, or that stops short.
        let mut past = reply.clone();
        past[..4].copy_from_slice(&(WIDTH as u32).to_le_bytes());
        assert!(split_drawn_rows(&past, asked).is_err());
        assert!(split_drawn_rows(&reply[..8], asked).is_err());
    }

    /// The id of the second largest entry of `row`.
    fn i_second(row: &[f32]) -> usize {
        let mut ids: Vec<usize> = (0..row.len()).collect();
        ids.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        ids[1]
    }
}
