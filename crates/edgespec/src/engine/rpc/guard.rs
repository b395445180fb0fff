//! The guard between ggml's RPC client and a server.
//!
//! ggml's client aborts the process when a server goes away mid-request
//! (`RPC_STATUS_ASSERT`) and waits forever on one that stops answering: no
//! deadline, no error to return. So ggml never talks to the server itself:
//! it talks to a guard on a loopback port of this process, which forwards
//! every message unchanged, with a deadline on each read and write to the
//! server. When the server fails (refuses, closes, stops answering within
//! the deadline, answers out of protocol) the guard records why and from
//! then on answers ggml itself, with replies of the size ggml expects and
//! zero contents, so llama.cpp's call returns instead of aborting; the
//! engine checks [`Health::failures`] after every decode and turns the
//! failure into a typed error (the results of that decode are discarded).
//! The guard counts round trips (requests that wait for a reply) and the
//! bytes that come back on the way. It knows ggml's framing and one
//! message's meaning ([`wire`]): when the server is an edgespec front and
//! the engine says the pass in flight needs only each logits row's largest
//! entries ([`Health::set_keep`]), it asks the front for those and widens
//! them back to the rows ggml expects.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::secure::{self, Refused, RpcKey};
use super::wire::{
    self, reply_size, reply_to, LogitsRows, Reply, GET_TENSOR, HELLO, HELLO_REPLY, MARK_AT,
    MAX_SMALL_REQUEST, PROTOCOL_MAJOR,
};
use super::{RpcEndpoint, RpcError};
use crate::engine::{LogitsKept, RowDraws, Token};

/// A connection to the server: plain TCP, or a keyed link over it.
trait Link: Read + Write + Send {}

impl<T: Read + Write + Send> Link for T {}

/// Bytes copied at a time.
const CHUNK: usize = 1 << 20;

/// The reply the guard gives in a failed server's place: zero contents,
/// except a HELLO that names this protocol and an alignment ggml accepts.
fn stand_in(cmd: u8, size: u64) -> Vec<u8> {
    let mut reply = vec![0u8; usize::try_from(size).unwrap_or(0)];
    match cmd {
        HELLO => reply[0] = PROTOCOL_MAJOR,
        1 => reply[..8].copy_from_slice(&32u64.to_le_bytes()),
        2 => reply[..8].copy_from_slice(&(1u64 << 40).to_le_bytes()),
        _ => {}
    }
    reply
}

/// The draws of a pass in flight ([`Health::set_draws`]).
#[derive(Debug, Default)]
struct PassDraws {
    draws: Option<RowDraws>,
    drawn: Vec<Token>,
}

/// What a guard has seen of its server: shared by its connections and
/// read by the engine.
#[derive(Debug, Default)]
pub(super) struct Health {
    round_trips: AtomicU64,
    /// Bytes of the server's replies, sizes included.
    bytes_received: AtomicU64,
    failures: AtomicU64,
    timeout_ms: AtomicU64,
    /// What of each logits row the pass in flight needs (None: whole rows).
    keep: Mutex<Option<LogitsKept>>,
    /// How the pass in flight's rows are drawn on the server, and the
    /// tokens drawn so far.
    draws: Mutex<PassDraws>,
    last_failure: Mutex<Option<String>>,
}

impl Health {
    /// Requests that waited for the server's reply.
    pub(super) fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Bytes of the server's replies, their sizes included.
    pub(super) fn bytes_received(&self) -> u64 {
        self.bytes_received.load(Ordering::Relaxed)
    }

    /// Failures of the server, and requests answered in a failed server's
    /// place: a change means results computed since are not the server's.
    pub(super) fn failures(&self) -> u64 {
        self.failures.load(Ordering::Acquire)
    }

    /// Why the last failure happened.
    pub(super) fn last_failure(&self) -> String {
        self.last_failure
            .lock()
            .map(|l| l.clone().unwrap_or_default())
            .unwrap_or_default()
    }

    /// Says how much of each logits row the passes from now on need
    /// ([`LogitsKept`]), or (None) whole rows. A server front then sends
    /// only those (see [`wire`]).
    pub(super) fn set_keep(&self, keep: Option<LogitsKept>) {
        if let Ok(mut k) = self.keep.lock() {
            *k = keep.map(|k| k.with_top_at_least(1));
        }
    }

    fn keep(&self) -> Option<LogitsKept> {
        self.keep.lock().ok().and_then(|k| *k)
    }

    /// Says how the rows of the passes from now on are drawn on a server
    /// front that draws ([`wire::DRAWN_ROWS`]), or (None) that they are
    /// not; forgets the tokens drawn before.
    pub(super) fn set_draws(&self, draws: Option<RowDraws>) {
        if let Ok(mut d) = self.draws.lock() {
            *d = PassDraws {
                draws,
                drawn: Vec::new(),
            };
        }
    }

    /// The tokens drawn on the server since [`Self::set_draws`], one per
    /// logits row in the order ggml read them.
    pub(super) fn take_drawn(&self) -> Vec<Token> {
        self.draws
            .lock()
            .map(|mut d| std::mem::take(&mut d.drawn))
            .unwrap_or_default()
    }

    /// The temperature, uniform numbers and kept entries for the next
    /// `rows` rows of the pass, if it is drawn (rows past its numbers take
    /// the last one).
    fn next_draws(&self, rows: usize) -> Option<RowDraws> {
        let d = self.draws.lock().ok()?;
        let draws = d.draws.as_ref()?;
        let last = *draws.uniforms.last()?;
        let from = d.drawn.len();
        Some(RowDraws {
            uniforms: (from..from + rows)
                .map(|r| draws.uniforms.get(r).copied().unwrap_or(last))
                .collect(),
            ..*draws
        })
    }

    fn add_drawn(&self, tokens: Vec<Token>) {
        if let Ok(mut d) = self.draws.lock() {
            d.drawn.extend(tokens);
        }
    }

    fn set_timeout(&self, timeout: Duration) {
        let ms = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        self.timeout_ms.store(ms, Ordering::Relaxed);
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed).max(1))
    }

    /// A reply (or request) that a failed server's stand-in handled: every
    /// one counts, so a model linked after the failure, whose requests
    /// still go down the failed connection, sees it too.
    fn stood_in(&self) {
        self.failures.fetch_add(1, Ordering::Release);
    }

    fn fail(&self, why: String) {
        log::warn!(target: "edgespec::rpc", "{why}");
        if let Ok(mut last) = self.last_failure.lock() {
            *last = Some(why);
        }
        self.failures.fetch_add(1, Ordering::Release);
    }
}

/// A guard: a loopback port that ggml connects to in place of the server.
#[derive(Debug)]
pub(super) struct Guard {
    local: SocketAddr,
    health: Arc<Health>,
    key: Arc<Mutex<Option<RpcKey>>>,
}

impl Guard {
    /// Starts a guard for the server at `addrs`, with `timeout` as the
    /// deadline of every read and write to it, over a link keyed with
    /// `key` when one is given.
    pub(super) fn start(
        endpoint: &RpcEndpoint,
        addrs: Vec<SocketAddr>,
        timeout: Duration,
        key: Option<RpcKey>,
    ) -> Result<Self, RpcError> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| RpcError::Guard(e.to_string()))?;
        let local = listener
            .local_addr()
            .map_err(|e| RpcError::Guard(e.to_string()))?;
        let health = Arc::new(Health::default());
        let key = Arc::new(Mutex::new(key));
        let server = Server {
            name: endpoint.to_string(),
            addrs,
            health: health.clone(),
            key: key.clone(),
        };
        server.health.set_timeout(timeout);
        std::thread::Builder::new()
            .name("edgespec-rpc-guard".into())
            .spawn(move || {
                for client in listener.incoming().flatten() {
                    let server = server.clone();
                    // A connection that cannot get a thread is dropped:
                    // ggml sees a closed socket, as with a server that is down.
                    let _ = std::thread::Builder::new()
                        .name("edgespec-rpc-relay".into())
                        .spawn(move || server.relay(client));
                }
            })
            .map_err(|e| RpcError::Guard(e.to_string()))?;
        Ok(Self { local, health, key })
    }

    /// The `HOST:PORT` ggml connects to.
    pub(super) fn local_endpoint(&self) -> String {
        self.local.to_string()
    }

    /// What it has seen of the server.
    pub(super) fn health(&self) -> &Health {
        &self.health
    }

    /// Sets the deadline of connections made from now on.
    pub(super) fn set_timeout(&self, timeout: Duration) {
        self.health.set_timeout(timeout);
    }

    /// Sets the key of connections made from now on.
    pub(super) fn set_key(&self, key: Option<RpcKey>) {
        *self.key.lock().unwrap_or_else(|e| e.into_inner()) = key;
    }
}

/// The server a guard forwards to.
#[derive(Debug, Clone)]
struct Server {
    name: String,
    addrs: Vec<SocketAddr>,
    health: Arc<Health>,
    key: Arc<Mutex<Option<RpcKey>>>,
}

/// Why forwarding one message stopped.
enum Broken {
    /// ggml's side closed or failed: the connection is over.
    Client,
    /// The server failed (why, in words).
    Server(String),
}

impl Server {
    /// Connects to the server within the deadline, keyed when the guard
    /// has a key.
    fn connect(&self) -> Result<Box<dyn Link>, String> {
        let timeout = self.health.timeout();
        let mut last = String::from("no address");
        for addr in &self.addrs {
            match TcpStream::connect_timeout(addr, timeout) {
                Ok(stream) => {
                    stream
                        .set_read_timeout(Some(timeout))
                        .and_then(|()| stream.set_write_timeout(Some(timeout)))
                        .and_then(|()| stream.set_nodelay(true))
                        .map_err(|e| e.to_string())?;
                    let key = self.key.lock().unwrap_or_else(|e| e.into_inner()).clone();
                    let Some(key) = key else {
                        return Ok(Box::new(stream));
                    };
                    return match secure::client(stream, &key) {
                        Ok(link) => Ok(Box::new(link)),
                        Err(Refused::Key) => Err("it refused the key".into()),
                        Err(Refused::Io(e)) => Err(describe(&e, timeout)),
                    };
                }
                Err(e) => last = describe(&e, timeout),
            }
        }
        Err(last)
    }

    fn fail(&self, why: &str) {
        self.health.fail(format!("RPC server {}: {why}", self.name));
    }

    /// Serves one ggml connection until ggml closes it.
    fn relay(&self, mut client: TcpStream) {
        let _ = client.set_nodelay(true);
        let mut upstream = match self.connect() {
            Ok(s) => Some(s),
            Err(why) => {
                self.fail(&why);
                None
            }
        };
        // The extension version of the edgespec front the server is (its
        // HELLO reply says so; 0: not one).
        let mut front = 0u8;
        loop {
            let mut head = [0u8; 9];
            if client.read_exact(&mut head).is_err() {
                return;
            }
            let cmd = head[0];
            let mut size = [0u8; 8];
            size.copy_from_slice(&head[1..]);
            let size = u64::from_le_bytes(size);
            let Some(reply) = reply_to(cmd) else {
                // The framing is lost: nothing to answer with.
                self.fail(&format!(
                    "ggml sent command {cmd}, unknown to protocol {PROTOCOL_MAJOR}"
                ));
                return;
            };
            let result = if reply == Reply::Nothing {
                self.pass_on(&mut client, &mut upstream, &head, size)
            } else {
                self.ask(&mut client, &mut upstream, &mut front, &head, size, reply)
            };
            if result.is_err() {
                return;
            }
        }
    }

    /// Forwards a request that waits for nothing, streaming its payload;
    /// a server that fails on the way is dropped and the rest of the
    /// payload read and discarded.
    fn pass_on(
        &self,
        client: &mut TcpStream,
        upstream: &mut Option<Box<dyn Link>>,
        head: &[u8; 9],
        size: u64,
    ) -> Result<(), Broken> {
        if upstream.is_none() {
            self.health.stood_in();
        }
        self.send(upstream, head);
        let mut buf = vec![0u8; CHUNK.min(usize::try_from(size).unwrap_or(CHUNK))];
        let mut left = size;
        while left > 0 {
            let n = buf.len().min(usize::try_from(left).unwrap_or(CHUNK));
            from_client(client, &mut buf[..n])?;
            self.send(upstream, &buf[..n]);
            left -= n as u64;
        }
        Ok(())
    }

    /// Writes `bytes` to a live server; one that fails is dropped.
    fn send(&self, upstream: &mut Option<Box<dyn Link>>, bytes: &[u8]) {
        if let Some(up) = upstream.as_mut() {
            if let Err(e) = up.write_all(bytes) {
                self.fail(&describe(&e, self.health.timeout()));
                *upstream = None;
            }
        }
    }

    /// Forwards a request that waits for a reply and brings the reply
    /// back; when the server fails, answers in its place.
    fn ask(
        &self,
        client: &mut TcpStream,
        upstream: &mut Option<Box<dyn Link>>,
        front: &mut u8,
        head: &[u8; 9],
        size: u64,
        reply: Reply,
    ) -> Result<(), Broken> {
        let cmd = head[0];
        if size > MAX_SMALL_REQUEST {
            self.fail(&format!(
                "ggml sent a {size}-byte request {cmd}: framing lost"
            ));
            return Err(Broken::Client);
        }
        let mut request = vec![0u8; size as usize];
        from_client(client, &mut request)?;
        if cmd == HELLO {
            // No transport upgrade (RDMA) past the guard: plain TCP.
            request.fill(0);
        }
        let Some(expected) = reply_size(reply, &request) else {
            self.fail(&format!("ggml sent a short request {cmd}: framing lost"));
            return Err(Broken::Client);
        };
        let mut sent = 0u64;
        if upstream.is_none() {
            self.health.stood_in();
        }
        if let Some(up) = upstream.as_mut() {
            let rows = (cmd == GET_TENSOR)
                .then(|| LogitsRows::of(&request))
                .flatten();
            let draws = rows
                .filter(|_| wire::front_draws(*front))
                .and_then(|r| self.health.next_draws(r.rows));
            let keep = self
                .health
                .keep()
                .filter(|keep| wire::front_serves(*front, keep));
            let result = match (rows, draws, keep) {
                (Some(rows), Some(draws), _) => {
                    let message = wire::drawn_rows_message(
                        &request,
                        draws.temperature,
                        &draws.uniforms,
                        draws.top,
                    );
                    self.cut_rows(up, client, &message, rows, true, &mut sent)
                }
                (Some(rows), None, Some(keep)) => {
                    let message = wire::top_rows_message(&request, &keep);
                    self.cut_rows(up, client, &message, rows, false, &mut sent)
                }
                _ => self.exchange(up, client, head, &request, expected, front, &mut sent),
            };
            match result {
                Ok(()) => {
                    self.health.round_trips.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(Broken::Client) => return Err(Broken::Client),
                Err(Broken::Server(why)) => {
                    self.fail(&why);
                    *upstream = None;
                }
            }
        }
        // In the server's place: the size, then zeros where the server's
        // bytes stopped.
        let mut message = expected.to_le_bytes().to_vec();
        message.extend(stand_in(cmd, expected));
        let from = usize::try_from(sent)
            .unwrap_or(usize::MAX)
            .min(message.len());
        client
            .write_all(&message[from..])
            .map_err(|_| Broken::Client)
    }

    /// One request and its reply through a live server; `sent` counts the
    /// reply's bytes (size first) that reached ggml. A HELLO reply that
    /// carries an edgespec front's mark sets `front` to its extension
    /// version (ggml sees the reply without it).
    #[allow(clippy::too_many_arguments)]
    fn exchange(
        &self,
        up: &mut dyn Link,
        client: &mut TcpStream,
        head: &[u8; 9],
        request: &[u8],
        expected: u64,
        front: &mut u8,
        sent: &mut u64,
    ) -> Result<(), Broken> {
        let server = |e: io::Error| Broken::Server(describe(&e, self.health.timeout()));
        up.write_all(head).map_err(server)?;
        up.write_all(request).map_err(server)?;
        let mut size = [0u8; 8];
        up.read_exact(&mut size).map_err(server)?;
        let size = u64::from_le_bytes(size);
        if size != expected {
            return Err(Broken::Server(format!(
                "answered command {} with {size} bytes where {expected} belong",
                head[0]
            )));
        }
        // Counted before ggml sees them, so a pass's bytes are in by the
        // time it returns.
        self.health
            .bytes_received
            .fetch_add(8 + size, Ordering::Relaxed);
        let mut buf = vec![0u8; CHUNK.min(usize::try_from(size).unwrap_or(CHUNK))];
        let mut left = size;
        let mut first = true;
        while left > 0 {
            let n = buf.len().min(usize::try_from(left).unwrap_or(CHUNK));
            up.read_exact(&mut buf[..n]).map_err(server)?;
            if head[0] == HELLO && n as u64 == HELLO_REPLY {
                *front = wire::front_version(&buf[..n]);
                buf[MARK_AT..n].fill(0);
            }
            if first {
                client
                    .write_all(&size.to_le_bytes())
                    .map_err(|_| Broken::Client)?;
                *sent = 8;
                first = false;
            }
            client.write_all(&buf[..n]).map_err(|_| Broken::Client)?;
            *sent += n as u64;
            left -= n as u64;
        }
        if first {
            client
                .write_all(&size.to_le_bytes())
                .map_err(|_| Broken::Client)?;
            *sent = 8;
        }
        Ok(())
    }

    /// Sends an edgespec front an extension `message` for a GET_TENSOR's
    /// logits `rows` ([`wire::TOP_ROWS`], or [`wire::DRAWN_ROWS`] when
    /// `drawn`) and gives ggml the rows widened back to their size; the
    /// drawn tokens go to [`Health::take_drawn`].
    fn cut_rows(
        &self,
        up: &mut dyn Link,
        client: &mut TcpStream,
        message: &[u8],
        rows: LogitsRows,
        drawn: bool,
        sent: &mut u64,
    ) -> Result<(), Broken> {
        let server = |e: io::Error| Broken::Server(describe(&e, self.health.timeout()));
        up.write_all(message).map_err(server)?;
        let mut size = [0u8; 8];
        up.read_exact(&mut size).map_err(server)?;
        let size = u64::from_le_bytes(size);
        let most = rows.max_reply() + if drawn { rows.rows * 4 } else { 0 };
        if size > most as u64 {
            return Err(Broken::Server(format!(
                "answered {} logits rows with {size} bytes",
                rows.rows
            )));
        }
        let mut reply = vec![0u8; size as usize];
        up.read_exact(&mut reply).map_err(server)?;
        self.health
            .bytes_received
            .fetch_add(8 + size, Ordering::Relaxed);
        let out_of_protocol =
            |why| Broken::Server(format!("answered logits rows out of protocol: {why}"));
        let wide = if drawn {
            let (tokens, wide) = wire::split_drawn_rows(&reply, rows).map_err(out_of_protocol)?;
            self.health.add_drawn(tokens);
            wide
        } else {
            wire::widen_rows(&reply, rows).map_err(out_of_protocol)?
        };
        let mut message = (wide.len() as u64).to_le_bytes().to_vec();
        message.extend(wide);
        client.write_all(&message).map_err(|_| Broken::Client)?;
        *sent = message.len() as u64;
        Ok(())
    }
}

/// Reads exactly `buf.len()` bytes from ggml.
fn from_client(client: &mut TcpStream, buf: &mut [u8]) -> Result<(), Broken> {
    client.read_exact(buf).map_err(|_| Broken::Client)
}

/// A server error in words, naming the deadline when it ran out.
pub(super) fn describe(e: &io::Error, timeout: Duration) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("no answer within {:.1} s", timeout.as_secs_f64())
        }
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::UnexpectedEof => "the server closed the connection".into(),
        _ => e.to_string(),
    }
}
