//! The encrypted, authenticated link between edgespec's two RPC ends (the
//! client's [guard](super::guard), the server's [front](super::front)),
//! keyed by a file both sides hold.
//!
//! The link is the Noise protocol's `NNpsk0` handshake (X25519, ChaCha20-
//! Poly1305, BLAKE2s; the `snow` crate does all of the cryptography) with
//! the key file's 32 bytes as the pre-shared key: fresh keys each
//! connection, and only a peer holding the same key completes the
//! handshake, so a client without it is refused before ggml's server hears
//! a byte from it. Afterwards every message travels in frames of at most
//! 64 KiB: a big-endian u16 length, then the ciphertext.
//!
//! A keyed client opens with [`OPENING`], which no ggml command uses. A
//! keyed server that hears a plain ggml HELLO instead answers it with a
//! HELLO reply naming protocol [`KEY_REQUIRED`] (an edgespec client turns
//! that into "this server needs a key"; llama.cpp's client sees a version
//! it does not speak), and one whose handshake fails gets an empty frame
//! (refused) before the connection closes.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Read, Write};
use std::path::Path;

use super::wire::{HELLO, HELLO_REPLY};
use super::RpcError;

/// The Noise protocol of the link.
const PATTERN: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";
/// The first byte a keyed client sends (ggml's first is always HELLO).
pub(super) const OPENING: u8 = 0xE6;
/// The protocol major version a keyed server's refusal of a plain client
/// names (no ggml version is this high).
pub(super) const KEY_REQUIRED: u8 = 0xFF;
/// The largest Noise message.
const MAX_MESSAGE: usize = 65_535;
/// Noise's authentication tag.
const TAG: usize = 16;

/// A pre-shared key: 32 random bytes, kept in a file as 64 hex digits.
#[derive(Clone, PartialEq, Eq)]
pub struct RpcKey([u8; 32]);

impl fmt::Debug for RpcKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RpcKey(…)")
    }
}

impl RpcKey {
    /// Reads a key file (64 hex digits; surrounding whitespace ignored).
    pub fn load(path: &Path) -> Result<Self, RpcError> {
        let bad = |reason: String| RpcError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let hex = text.trim();
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("not a key: a key file holds 64 hex digits (edgespec rpc-server --key-file makes one)".into()));
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte =
                u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| bad(e.to_string()))?;
        }
        Ok(Self(key))
    }

    /// Makes a new random key and writes it to `path`, readable by its
    /// owner only; an existing file is left alone (an error).
    pub fn create(path: &Path) -> Result<Self, RpcError> {
        let bad = |reason: String| RpcError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| bad(format!("no random bytes: {e}")))?;
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| bad(e.to_string()))?;
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        writeln!(file, "{hex}").map_err(|e| bad(e.to_string()))?;
        Ok(Self(key))
    }

    fn handshake(&self, initiator: bool) -> io::Result<snow::HandshakeState> {
        let builder = snow::Builder::new(PATTERN.parse().map_err(noise)?)
            .psk(0, &self.0)
            .map_err(noise)?;
        if initiator {
            builder.build_initiator()
        } else {
            builder.build_responder()
        }
        .map_err(noise)
    }
}

fn noise(e: snow::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// How a keyed handshake failed, as the client sees it.
#[derive(Debug)]
pub(super) enum Refused {
    /// The server refused the key, or closed the connection at the
    /// handshake (a server without a key does).
    Key,
    /// The connection failed.
    Io(io::Error),
}

impl From<io::Error> for Refused {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => Self::Key,
            _ => Self::Io(e),
        }
    }
}

/// A stream whose bytes travel encrypted and authenticated.
pub(super) struct Sealed<S> {
    inner: S,
    noise: snow::TransportState,
    /// Decrypted bytes not read yet.
    plain: Vec<u8>,
    at: usize,
    buf: Vec<u8>,
}

/// Sends one frame.
fn send_frame<S: Write>(stream: &mut S, frame: &[u8]) -> io::Result<()> {
    let len = u16::try_from(frame.len()).map_err(|_| io::Error::other("frame too long"))?;
    let mut message = Vec::with_capacity(2 + frame.len());
    message.extend(len.to_be_bytes());
    message.extend_from_slice(frame);
    stream.write_all(&message)
}

/// Reads one frame into `buf`.
fn read_frame<S: Read>(stream: &mut S, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    buf.resize(usize::from(u16::from_be_bytes(len)), 0);
    stream.read_exact(buf)
}

/// The client's side: opens the link on `stream` with `key`.
pub(super) fn client<S: Read + Write>(mut stream: S, key: &RpcKey) -> Result<Sealed<S>, Refused> {
    let mut hs = key.handshake(true)?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    let n = hs.write_message(&[], &mut buf).map_err(noise)?;
    stream.write_all(&[OPENING])?;
    send_frame(&mut stream, &buf[..n])?;
    let mut frame = Vec::new();
    read_frame(&mut stream, &mut frame)?;
    if frame.is_empty() {
        return Err(Refused::Key);
    }
    hs.read_message(&frame, &mut buf)
        .map_err(|_| Refused::Key)?;
    Ok(Sealed::new(
        stream,
        hs.into_transport_mode().map_err(noise)?,
    ))
}

/// What a keyed server made of a connection's opening.
pub(super) enum Opened<S> {
    /// The link, keyed.
    Sealed(Box<Sealed<S>>),
    /// A client without a key (answered), or with another one.
    Refused(&'static str),
}

/// The server's side: answers the client's opening on `stream` with `key`.
pub(super) fn server<S: Read + Write>(mut stream: S, key: &RpcKey) -> io::Result<Opened<S>> {
    let mut first = [0u8; 1];
    stream.read_exact(&mut first)?;
    match first[0] {
        OPENING => {}
        HELLO => {
            // A plain client: answer its HELLO (read whole, so closing
            // leaves nothing unread to reset the reply) with a protocol
            // it does not speak.
            let mut size = [0u8; 8];
            stream.read_exact(&mut size)?;
            let mut request = vec![
                0u8;
                usize::try_from(u64::from_le_bytes(size))
                    .unwrap_or(0)
                    .min(64)
            ];
            stream.read_exact(&mut request)?;
            let mut reply = HELLO_REPLY.to_le_bytes().to_vec();
            reply.push(KEY_REQUIRED);
            reply.resize(8 + HELLO_REPLY as usize, 0);
            let _ = stream.write_all(&reply);
            return Ok(Opened::Refused("a client without a key"));
        }
        _ => {
            return Ok(Opened::Refused(
                "a client that speaks neither ggml RPC nor a keyed link",
            ))
        }
    }
    let mut hs = key.handshake(false)?;
    let mut frame = Vec::new();
    read_frame(&mut stream, &mut frame)?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    if hs.read_message(&frame, &mut buf).is_err() {
        let _ = send_frame(&mut stream, &[]);
        return Ok(Opened::Refused("a client with another key"));
    }
    let n = hs.write_message(&[], &mut buf).map_err(noise)?;
    send_frame(&mut stream, &buf[..n])?;
    let transport = hs.into_transport_mode().map_err(noise)?;
    Ok(Opened::Sealed(Box::new(Sealed::new(stream, transport))))
}

impl<S> Sealed<S> {
    fn new(inner: S, noise: snow::TransportState) -> Self {
        Self {
            inner,
            noise,
            plain: Vec::new(),
            at: 0,
            buf: vec![0u8; MAX_MESSAGE],
        }
    }

    /// The stream the link runs on.
    pub(super) fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Read> Read for Sealed<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.at == self.plain.len() {
            let mut frame = std::mem::take(&mut self.plain);
            match read_frame(&mut self.inner, &mut frame) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            let n = self
                .noise
                .read_message(&frame, &mut self.buf)
                .map_err(noise)?;
            frame.clear();
            frame.extend_from_slice(&self.buf[..n]);
            self.plain = frame;
            self.at = 0;
        }
        let n = out.len().min(self.plain.len() - self.at);
        out[..n].copy_from_slice(&self.plain[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl<S: Write> Write for Sealed<S> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(MAX_MESSAGE - TAG);
        let sealed = self
            .noise
            .write_message(&data[..n], &mut self.buf)
            .map_err(noise)?;
        send_frame(&mut self.inner, &self.buf[..sealed])?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

    fn key_file(dir: &Path, name: &str) -> RpcKey {
        RpcKey::create(&dir.join(name)).unwrap()
    }

    /// A keyed server on loopback that echoes what it reads, once.
    fn echo_server(key: RpcKey) -> (std::net::SocketAddr, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            match server(conn, &key).unwrap() {
                Opened::Sealed(mut link) => {
                    let mut data = vec![0u8; 200_000];
                    link.read_exact(&mut data).unwrap();
                    link.write_all(&data).unwrap();
                    "sealed".into()
                }
                Opened::Refused(why) => why.into(),
            }
        });
        (addr, handle)
    }

    #[test]
    fn a_key_file_round_trips_and_is_its_owners_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = RpcKey::create(&path).unwrap();
        assert_eq!(RpcKey::load(&path).unwrap(), key);
        assert!(
            RpcKey::create(&path).is_err(),
            "an existing key is never replaced"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        assert_ne!(key, key_file(dir.path(), "other"));
        assert_eq!(format!("{key:?}"), "RpcKey(…)");
        std::fs::write(dir.path().join("bad"), "not hex").unwrap();
        assert!(matches!(
            RpcKey::load(&dir.path().join("bad")),
            Err(RpcError::KeyFile { .. })
        ));
    }

    #[test]
    fn the_same_key_opens_a_link_that_carries_bytes_unchanged_and_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let key = key_file(dir.path(), "k");
        let (addr, server) = echo_server(key.clone());
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut link = client(TcpStream::connect(addr).unwrap(), &key).unwrap();
        link.write_all(&data).unwrap();
        let mut back = vec![0u8; data.len()];
        link.read_exact(&mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(server.join().unwrap(), "sealed");
    }

    #[test]
    fn another_key_or_none_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, server) = echo_server(key_file(dir.path(), "server"));
        let other = key_file(dir.path(), "client");
        assert!(matches!(
            client(TcpStream::connect(addr).unwrap(), &other),
            Err(Refused::Key)
        ));
        assert_eq!(server.join().unwrap(), "a client with another key");
        // A plain ggml client's HELLO gets a protocol it does not speak.
        let (addr, server) = echo_server(key_file(dir.path(), "server2"));
        let mut plain = TcpStream::connect(addr).unwrap();
        plain.write_all(&[HELLO]).unwrap();
        plain.write_all(&24u64.to_le_bytes()).unwrap();
        plain.write_all(&[0u8; 24]).unwrap();
        let mut reply = vec![0u8; 8 + HELLO_REPLY as usize];
        plain.read_exact(&mut reply).unwrap();
        assert_eq!(reply[8], KEY_REQUIRED);
        assert_eq!(server.join().unwrap(), "a client without a key");
    }
}
