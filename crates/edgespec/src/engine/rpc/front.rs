//! The server's front: `edgespec rpc-server` listens on its port with
//! this, and ggml's own server listens on a loopback port of the same
//! process behind it.
//!
//! The front passes ggml's messages through unchanged, one connection to
//! ggml's server per client (which serves one client at a time, as it
//! always has), with two exceptions ([`wire`]): it marks its HELLO reply,
//! so an edgespec client knows it may ask for less, and it answers
//! [`TOP_ROWS`] and [`DRAWN_ROWS`] itself: it reads the logits rows from
//! ggml's server over loopback and sends back only each row's largest
//! entries, or the tokens drawn from the rows besides a few of them. Transport
//! upgrades (ggml's RDMA) are refused, as the front speaks plain TCP.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::secure::{self, Opened, RpcKey};
use super::wire::{
    drawn_rows, parse_drawn_rows, parse_top_rows, reply_size, reply_to, top_rows, LogitsRows,
    Reply, DRAWN_ROWS, FRONT_MARK, FRONT_VERSION, GET_TENSOR, HELLO, HELLO_REPLY, MARK_AT,
    MAX_SMALL_REQUEST, TOP_ROWS,
};

/// Bytes copied at a time.
const CHUNK: usize = 1 << 20;
/// How long a client may take over a keyed link's handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// Serves every client that connects to `listener` through ggml's server
/// at `ggml`, each on a thread of its own; given a `key`, only clients
/// that hold it, over a keyed link. Returns only when the listener fails.
pub(super) fn run(listener: &TcpListener, ggml: SocketAddr, key: Option<Arc<RpcKey>>) -> io::Error {
    loop {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if is_transient(&e) => {
                // Out of descriptors: give the connections time to close.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => return e,
        };
        // A connection that cannot get a thread is dropped: the client
        // sees a closed socket, as with a server that is down.
        let key = key.clone();
        let _ = std::thread::Builder::new()
            .name("edgespec-rpc-front".into())
            .spawn(move || serve_client(client, ggml, key.as_deref()));
    }
}

/// Accept errors that concern one connection, not the listener.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || e.raw_os_error() == Some(24) // EMFILE: out of descriptors for now
}

fn serve_client(client: TcpStream, ggml: SocketAddr, key: Option<&RpcKey>) {
    let _ = client.set_nodelay(true);
    let peer = client
        .peer_addr()
        .map_or_else(|_| "a client".into(), |a| a.to_string());
    let result = match key {
        None => to_ggml(client, ggml),
        Some(key) => {
            let _ = client.set_read_timeout(Some(HANDSHAKE));
            match secure::server(client, key) {
                Ok(Opened::Sealed(link)) => {
                    let _ = link.get_ref().set_read_timeout(None);
                    to_ggml(*link, ggml)
                }
                Ok(Opened::Refused(who)) => {
                    log::warn!(target: "edgespec::rpc", "front: refused {peer}: {who}");
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
    };
    if let Err(e) = result {
        if e.kind() != io::ErrorKind::UnexpectedEof {
            log::info!(target: "edgespec::rpc", "front: {peer}'s connection ended: {e}");
        }
    }
}

/// Relays a client (authenticated, if keyed) to a connection of its own
/// to ggml's server.
fn to_ggml(mut client: impl Read + Write, ggml: SocketAddr) -> io::Result<()> {
    let mut server = TcpStream::connect(ggml)?;
    let _ = server.set_nodelay(true);
    relay(&mut client, &mut server)
}

fn protocol(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Relays one client's requests to ggml's server and the replies back,
/// until either side closes.
fn relay<C: Read + Write, S: Read + Write>(client: &mut C, server: &mut S) -> io::Result<()> {
    loop {
        let mut head = [0u8; 9];
        client.read_exact(&mut head)?;
        let cmd = head[0];
        let size = u64::from_le_bytes(head[1..].try_into().unwrap_or([0; 8]));
        if cmd == TOP_ROWS {
            answer_top_rows(client, server, size)?;
            continue;
        }
        if cmd == DRAWN_ROWS {
            answer_drawn_rows(client, server, size)?;
            continue;
        }
        let reply = reply_to(cmd)
            .ok_or_else(|| protocol(format!("command {cmd}, unknown to protocol 7")))?;
        if reply == Reply::Nothing {
            server.write_all(&head)?;
            copy(client, server, size)?;
            continue;
        }
        if size > MAX_SMALL_REQUEST {
            return Err(protocol(format!("a {size}-byte request {cmd}")));
        }
        let mut request = vec![0u8; size as usize];
        client.read_exact(&mut request)?;
        if cmd == HELLO {
            // No transport upgrade (RDMA) through the front.
            request.fill(0);
        }
        let expected = reply_size(reply, &request)
            .ok_or_else(|| protocol(format!("a short request {cmd}")))?;
        server.write_all(&head)?;
        server.write_all(&request)?;
        let mut answer = [0u8; 8];
        server.read_exact(&mut answer)?;
        if u64::from_le_bytes(answer) != expected {
            return Err(protocol(format!(
                "ggml's server answered {cmd} out of size"
            )));
        }
        client.write_all(&answer)?;
        if cmd == HELLO {
            let mut hello = [0u8; HELLO_REPLY as usize];
            server.read_exact(&mut hello)?;
            hello[MARK_AT..].fill(0);
            hello[MARK_AT] = FRONT_MARK;
            hello[MARK_AT + 1] = FRONT_VERSION;
            client.write_all(&hello)?;
        } else {
            copy(server, client, expected)?;
        }
    }
}

/// Copies `size` bytes from one side to the other.
fn copy<R: Read, W: Write>(from: &mut R, to: &mut W, size: u64) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK.min(usize::try_from(size).unwrap_or(CHUNK))];
    let mut left = size;
    while left > 0 {
        let n = buf.len().min(usize::try_from(left).unwrap_or(CHUNK));
        from.read_exact(&mut buf[..n])?;
        to.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

/// [`TOP_ROWS`]: a GET_TENSOR request for logits rows and what of each
/// row to send.
fn answer_top_rows<C: Read + Write, S: Read + Write>(
    client: &mut C,
    server: &mut S,
    size: u64,
) -> io::Result<()> {
    let request = read_request(client, size, 4, "top-rows")?;
    let (get, keep) = parse_top_rows(&request).map_err(|why| protocol(why.into()))?;
    let rows = LogitsRows::of(get)
        .ok_or_else(|| protocol("top rows asked of a tensor that is not logits rows".into()))?;
    let data = logits_rows(server, get, rows)?;
    send(client, top_rows(&data, rows.width, &keep))
}

/// [`DRAWN_ROWS`]: a GET_TENSOR request for logits rows, a token to draw
/// from each and how many of its largest entries to send besides.
fn answer_drawn_rows<C: Read + Write, S: Read + Write>(
    client: &mut C,
    server: &mut S,
    size: u64,
) -> io::Result<()> {
    let request = read_request(client, size, 8, "drawn-rows")?;
    let (get, rows, draws) = parse_drawn_rows(&request).map_err(|why| protocol(why.into()))?;
    let data = logits_rows(server, get, rows)?;
    send(client, drawn_rows(&data, rows.width, &draws))
}

/// An extension request's payload of `size` bytes, at least `least`.
fn read_request<C: Read>(client: &mut C, size: u64, least: u64, what: &str) -> io::Result<Vec<u8>> {
    if !(least..=MAX_SMALL_REQUEST).contains(&size) {
        return Err(protocol(format!("a {size}-byte {what} request")));
    }
    let mut request = vec![0u8; size as usize];
    client.read_exact(&mut request)?;
    Ok(request)
}

/// The logits `rows` that GET_TENSOR payload `get` asks for, read from
/// ggml's server.
fn logits_rows<S: Read + Write>(
    server: &mut S,
    get: &[u8],
    rows: LogitsRows,
) -> io::Result<Vec<u8>> {
    let mut ask = vec![GET_TENSOR];
    ask.extend((get.len() as u64).to_le_bytes());
    ask.extend_from_slice(get);
    server.write_all(&ask)?;
    let mut answer = [0u8; 8];
    server.read_exact(&mut answer)?;
    if u64::from_le_bytes(answer) != rows.bytes() as u64 {
        return Err(protocol(
            "ggml's server answered the logits out of size".into(),
        ));
    }
    let mut data = vec![0u8; rows.bytes()];
    server.read_exact(&mut data)?;
    Ok(data)
}

/// Sends a reply: its size, then it.
fn send<C: Write>(client: &mut C, reply: Vec<u8>) -> io::Result<()> {
    let mut message = (reply.len() as u64).to_le_bytes().to_vec();
    message.extend(reply);
    client.write_all(&message)
}

#[cfg(test)]
mod tests {
    use super::super::guard::Guard;
    use super::super::wire::{get_tensor_request, FILLER};
    use super::super::RpcEndpoint;
    use super::*;
    use crate::engine::{draw_at_temperature, LogitsKept, Nucleus, RowDraws};

    const WIDTH: usize = 1000;
    const ROWS: usize = 2;

    /// Two rows of logits: the largest at ids 17 and 900 (row 0), 3 and
    /// 999 (row 1).
    fn logits() -> Vec<f32> {
        let mut rows: Vec<f32> = (0..WIDTH * ROWS).map(|i| (i % 97) as f32 / 97.0).collect();
        rows[17] = 9.0;
        rows[900] = 8.0;
        rows[WIDTH + 3] = 7.0;
        rows[WIDTH + 999] = 7.5;
        rows
    }

    fn bytes(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// A stand-in for ggml's server: answers HELLO and GET_TENSOR (with
    /// [`logits`]) and closes on anything else, as ggml's does.
    fn fake_ggml() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                loop {
                    let mut head = [0u8; 9];
                    if conn.read_exact(&mut head).is_err() {
                        break;
                    }
                    let size = u64::from_le_bytes(head[1..].try_into().unwrap());
                    let mut payload = vec![0u8; size as usize];
                    conn.read_exact(&mut payload).unwrap();
                    let reply = match head[0] {
                        HELLO => {
                            let mut r = vec![0u8; HELLO_REPLY as usize];
                            r[0] = 7;
                            r
                        }
                        GET_TENSOR => bytes(&logits()),
                        _ => break,
                    };
                    conn.write_all(&(reply.len() as u64).to_le_bytes()).unwrap();
                    conn.write_all(&reply).unwrap();
                }
            }
        });
        addr
    }

    /// A front on a free loopback port before `ggml`.
    fn front(ggml: SocketAddr) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || run(&listener, ggml, None));
        addr
    }

    fn guard(server: SocketAddr) -> Arc<Guard> {
        let endpoint: RpcEndpoint = server.to_string().parse().unwrap();
        Arc::new(Guard::start(&endpoint, vec![server], Duration::from_secs(5), None).unwrap())
    }

    /// What ggml's client does: HELLO, then one GET_TENSOR of the logits.
    fn hello_then_logits(guard: &Guard, keep: Option<LogitsKept>) -> (Vec<u8>, Vec<f32>, u64) {
        let mut ggml = TcpStream::connect(guard.local_endpoint()).unwrap();
        ggml.write_all(&[HELLO]).unwrap();
        ggml.write_all(&24u64.to_le_bytes()).unwrap();
        ggml.write_all(&[0u8; 24]).unwrap();
        let mut hello = vec![0u8; 8 + HELLO_REPLY as usize];
        ggml.read_exact(&mut hello).unwrap();
        guard.health().set_keep(keep);
        let before = guard.health().bytes_received();
        let size = (WIDTH * ROWS * 4) as u64;
        let request = get_tensor_request(b"result_output", 0, WIDTH as u32, 0, size);
        ggml.write_all(&[GET_TENSOR]).unwrap();
        ggml.write_all(&(request.len() as u64).to_le_bytes())
            .unwrap();
        ggml.write_all(&request).unwrap();
        let mut reply = vec![0u8; 8 + size as usize];
        ggml.read_exact(&mut reply).unwrap();
        assert_eq!(u64::from_le_bytes(reply[..8].try_into().unwrap()), size);
        let rows = reply[8..]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let received = guard.health().bytes_received() - before;
        (hello[8..].to_vec(), rows, received)
    }

    /// A pass whose sampler cuts rows by probability.
    fn cut_by(top_p: f32, min_p: f32) -> LogitsKept {
        LogitsKept {
            top: 1,
            nucleus: Some(Nucleus { top_p, min_p }),
        }
    }

    #[test]
    fn through_a_front_a_pass_that_needs_the_largest_logits_gets_only_them() {
        let guard = guard(front(fake_ggml()));
        let (hello, rows, received) = hello_then_logits(&guard, Some(LogitsKept::top(2)));
        assert_eq!(hello[..4], [7, 0, 0, 0], "ggml sees no mark");
        let kept: Vec<usize> = (0..WIDTH * ROWS).filter(|&i| rows[i] != FILLER).collect();
        assert_eq!(kept, [17, 900, WIDTH + 3, WIDTH + 999]);
        assert_eq!(rows[17], 9.0);
        assert_eq!(rows[WIDTH + 999], 7.5);
        assert_eq!(received, 8 + 2 * (4 + 2 * 8), "two ids and values per row");
        assert_eq!(guard.health().failures(), 0);
        // A cut by probability (version 2): min-p 0.1 keeps the entries
        // within ln 10 of each row's largest, the same two.
        let (_, cut, received) = hello_then_logits(&guard, Some(cut_by(1.0, 0.1)));
        assert_eq!(cut, rows);
        assert_eq!(received, 8 + 2 * (4 + 2 * 8));
        // Top-p 0.5: row 0's largest holds more than half the mass alone;
        // row 1 needs its two largest, and enough of the rest that its
        // first does not reach half of what is kept.
        let (_, cut, _) = hello_then_logits(&guard, Some(cut_by(0.5, 0.0)));
        let kept: Vec<usize> = (0..WIDTH * ROWS).filter(|&i| cut[i] != FILLER).collect();
        assert_eq!(kept[0], 17);
        assert!(kept[1] >= WIDTH, "row 0 keeps one entry: {:?}", &kept[..3]);
        let weight = |v: f32| f64::from(v).exp();
        let row1: f64 = cut[WIDTH..].iter().map(|&v| weight(v)).sum();
        assert!(weight(7.5) / row1 < 0.5 && (weight(7.5) + weight(7.0)) / row1 >= 0.5);
        assert!(kept.len() < WIDTH, "{} kept", kept.len());
        // Whole rows when the pass needs them.
        let (_, rows, received) = hello_then_logits(&guard, None);
        assert_eq!(rows, logits());
        assert_eq!(received, 8 + (WIDTH * ROWS * 4) as u64);
    }

    /// A pass drawn on the server (version 3): the guard gets each row's
    /// draw, the one made from the whole row with that row's uniform
    /// number, and ggml the rows cut to their largest entries; the
    /// passes after it are not drawn.
    #[test]
    fn through_a_front_a_drawn_pass_gets_each_rows_token() {
        let guard = guard(front(fake_ggml()));
        let (uniforms, mut scratch) = ([0.3, 0.999], Vec::new());
        let whole = logits();
        let local: Vec<_> = whole
            .chunks(WIDTH)
            .zip(uniforms)
            .map(|(row, u)| draw_at_temperature(row, 2.0, u, &mut scratch))
            .collect();
        guard.health().set_draws(Some(RowDraws {
            temperature: 2.0,
            uniforms: uniforms.to_vec(),
            top: 1,
        }));
        let (_, rows, received) = hello_then_logits(&guard, None);
        assert_eq!(guard.health().take_drawn(), local);
        let kept: Vec<usize> = (0..WIDTH * ROWS).filter(|&i| rows[i] != FILLER).collect();
        assert_eq!(kept, [17, WIDTH + 999]);
        assert_eq!(
            received,
            8 + 2 * 4 + 2 * (4 + 8),
            "a token, an id and a value per row"
        );
        // At temperature 2 the rows are flat enough that other ids than
        // the largest are drawn.
        assert_ne!(local, [17, 999]);
        guard.health().set_draws(None);
        let (_, rows, _) = hello_then_logits(&guard, None);
        assert_eq!(rows, whole);
        assert!(guard.health().take_drawn().is_empty());
        assert_eq!(guard.health().failures(), 0);
    }

    #[test]
    fn a_plain_ggml_server_is_asked_for_whole_rows() {
        let guard = guard(fake_ggml());
        let (_, rows, _) = hello_then_logits(&guard, Some(LogitsKept::top(2)));
        assert_eq!(rows, logits());
        guard.health().set_draws(Some(RowDraws {
            temperature: 1.0,
            uniforms: vec![0.5; ROWS],
            top: 1,
        }));
        let (_, rows, _) = hello_then_logits(&guard, None);
        assert_eq!(rows, logits(), "nothing drawn");
        assert!(guard.health().take_drawn().is_empty());
        assert_eq!(
            guard.health().failures(),
            0,
            "{}",
            guard.health().last_failure()
        );
    }
}
