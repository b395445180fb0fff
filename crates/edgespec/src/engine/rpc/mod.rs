//! A target on another machine through ggml's RPC backend.
//!
//! llama.cpp's RPC backend makes a remote machine's CPU or GPU a ggml
//! device: the target's weights and KV cache live there and every decode
//! is a few requests over TCP, while drafters stay on this device. Nothing
//! here speaks a protocol of its own: [`RemoteTarget`] says which servers
//! and how, [`connect`] checks each server (reachable, speaking this
//! build's protocol) and hands ggml its devices through a [guard](guard)
//! that turns a lost or silent server into a typed error instead of
//! ggml's abort or endless wait, and [`serve`] runs ggml's own server.
//!
//! ggml RPC has neither authentication nor encryption: anyone who reaches
//! a server's port can read and write its memory. Servers and clients
//! therefore stay on loopback unless the caller opts in
//! ([`RemoteTarget::insecure`]); across machines, carry the loopback port
//! through an SSH tunnel or a WireGuard link (docs/remote-target.md).

mod endpoint;
mod front;
mod guard;
mod secure;
mod wire;

use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use llama_cpp_sys_2 as sys;

pub use endpoint::{parse_endpoints, RpcEndpoint};
use guard::Guard;
pub use secure::RpcKey;
use wire::PROTOCOL_MAJOR;

use super::backend::{backend, backend_function, device_info, DeviceInfo};
use super::{LogitsKept, RowDraws, Token};

/// How long a server may take to accept, or to answer any one request,
/// before it counts as lost.
pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the target runs when it is not on this device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTarget {
    /// The servers; the target's layers are split between their devices
    /// by free memory.
    pub servers: Vec<RpcEndpoint>,
    /// Allow servers that are not on loopback (no authentication, no
    /// encryption: only on a network you trust, or through a tunnel).
    pub insecure: bool,
    /// How long connecting, or any one request, may take before the
    /// server counts as lost.
    pub timeout: Duration,
    /// The key the servers hold (`edgespec rpc-server --key-file`): the
    /// link is then encrypted and authenticated, and servers off loopback
    /// need no `insecure`.
    pub key: Option<RpcKey>,
    /// A model file to load on this machine when the servers are lost
    /// (the remote model's own file, or one with its vocabulary): the
    /// target's caches read the text so far into it and generation
    /// carries on there, a pause instead of an error. Loaded only then,
    /// once per remote model.
    pub fallback: Option<PathBuf>,
}

impl RemoteTarget {
    /// `servers`, loopback only, with the default deadline, no key, no
    /// fallback.
    pub fn new(servers: Vec<RpcEndpoint>) -> Self {
        Self {
            servers,
            insecure: false,
            timeout: DEFAULT_RPC_TIMEOUT,
            key: None,
            fallback: None,
        }
    }
}

/// What can go wrong with a remote target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// Not `HOST:PORT`.
    #[error("bad RPC server {text:?}: {reason}")]
    BadEndpoint {
        /// What was given.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The host name does not resolve.
    #[error("RPC server {endpoint}: cannot resolve the host ({reason})")]
    Unresolved {
        /// The server.
        endpoint: String,
        /// The resolver's words.
        reason: String,
    },
    /// A server off loopback without the opt-in.
    #[error(
        "RPC server {endpoint} is not on loopback: ggml RPC has no authentication or encryption; \
         use an SSH tunnel or WireGuard and connect to 127.0.0.1, or pass --insecure-rpc"
    )]
    NotLoopback {
        /// The server.
        endpoint: String,
    },
    /// This build's ggml has no RPC backend.
    #[error("this build of edgespec has no RPC backend (build llama.cpp with GGML_RPC=ON)")]
    NoRpcBackend,
    /// Nobody listens there, or the connection was refused.
    #[error("RPC server {endpoint}: cannot connect ({reason})")]
    Unreachable {
        /// The server.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// Something answered, but not as a ggml RPC server does.
    #[error("{endpoint} does not answer as a ggml RPC server ({reason})")]
    NotRpcServer {
        /// The server.
        endpoint: String,
        /// What it did.
        reason: String,
    },
    /// A ggml RPC server of another protocol version.
    #[error(
        "RPC server {endpoint} speaks protocol {server}, this build {PROTOCOL_MAJOR}.x: \
         run the server of this build (edgespec rpc-server)"
    )]
    VersionMismatch {
        /// The server.
        endpoint: String,
        /// Its version, major.minor.patch.
        server: String,
    },
    /// The server reports no device.
    #[error("RPC server {endpoint} has no device")]
    NoDevices {
        /// The server.
        endpoint: String,
    },
    /// The server failed after connecting: closed, stopped answering within
    /// the deadline, or answered out of protocol.
    #[error("lost the remote target: {reason}")]
    Lost {
        /// What happened, naming the server.
        reason: String,
    },
    /// The guard could not open its loopback port.
    #[error("RPC guard: {0}")]
    Guard(String),
    /// A key file that cannot be read or made, or holds no key.
    #[error("RPC key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The server needs a key and none was given.
    #[error(
        "RPC server {endpoint} needs a key: copy its key file here and pass --rpc-key-file \
         (C: edgespec_model_params.target_rpc_key_file)"
    )]
    KeyRequired {
        /// The server.
        endpoint: String,
    },
    /// The server refused this key, or has none (it closed the connection
    /// at the keyed handshake).
    #[error(
        "RPC server {endpoint} refused the key: it holds another key file, or was started \
         without --key-file"
    )]
    KeyRefused {
        /// The server.
        endpoint: String,
    },
    /// ggml's server could not start (address taken, no device).
    #[error("the RPC server could not start on {endpoint} (address in use?)")]
    ServeFailed {
        /// Where it was to listen.
        endpoint: String,
    },
}

/// `ggml_backend_rpc_add_server`.
type AddServer = unsafe extern "C" fn(*const c_char) -> sys::ggml_backend_reg_t;
/// `ggml_backend_rpc_start_server`.
type StartServer =
    unsafe extern "C" fn(*const c_char, *const c_char, usize, usize, *mut sys::ggml_backend_dev_t);

/// One of ggml's RPC functions, looked up through the backend registry
/// (the RPC header is not part of the bindings).
fn rpc_function(name: &str) -> Result<*mut std::ffi::c_void, RpcError> {
    backend().map_err(|e| RpcError::Guard(e.to_string()))?;
    let c_name = CString::new(name).map_err(|_| RpcError::NoRpcBackend)?;
    backend_function(c"RPC", &c_name)
        .map(NonNull::as_ptr)
        .ok_or(RpcError::NoRpcBackend)
}

/// The target's link to its servers: their ggml devices and the guards
/// that watch them.
#[derive(Debug)]
pub struct RemoteLink {
    servers: Vec<LinkedServer>,
}

#[derive(Debug)]
struct LinkedServer {
    endpoint: RpcEndpoint,
    guard: Arc<Guard>,
    /// The guard's failure count when the link was made.
    failures_before: u64,
    devices: Vec<sys::ggml_backend_dev_t>,
}

// SAFETY: the device handles are owned by ggml's RPC registry, which keeps
// them for the life of the process and guards its own state; the link only
// passes them to llama.cpp and reads their properties.
unsafe impl Send for RemoteLink {}
// SAFETY: see Send; nothing here is written after construction.
unsafe impl Sync for RemoteLink {}

/// The guard of each server, one per server for the life of the process:
/// ggml keeps each endpoint it was given for good.
static GUARDS: Mutex<Option<HashMap<RpcEndpoint, Arc<Guard>>>> = Mutex::new(None);

/// Remote passes run one at a time in the process: what a pass needs of
/// the logits is its guards' setting while it runs ([`RemoteLink::pass`]).
static PASSES: Mutex<()> = Mutex::new(());

/// Checks every server of `target` and makes its devices ggml devices.
pub fn connect(target: &RemoteTarget) -> Result<RemoteLink, RpcError> {
    if target.servers.is_empty() {
        return Err(RpcError::BadEndpoint {
            text: String::new(),
            reason: "no server",
        });
    }
    let add_server = rpc_function("ggml_backend_rpc_add_server")?;
    // SAFETY: the registry returns ggml_backend_rpc_add_server under this
    // name; the signature is ggml-rpc.h's.
    let add_server: AddServer = unsafe { std::mem::transmute(add_server) };
    let mut servers = Vec::with_capacity(target.servers.len());
    for endpoint in &target.servers {
        let addrs = endpoint.checked_addresses(target.insecure || target.key.is_some())?;
        probe(endpoint, &addrs, target.timeout, target.key.as_ref())?;
        let guard = guard_for(endpoint, addrs, target)?;
        let failures_before = guard.health().failures();
        let local =
            CString::new(guard.local_endpoint()).map_err(|e| RpcError::Guard(e.to_string()))?;
        // SAFETY: a NUL-terminated endpoint; ggml copies it. The guard
        // answers every request, so the call returns.
        let reg = unsafe { add_server(local.as_ptr()) };
        if guard.health().failures() != failures_before {
            return Err(RpcError::Lost {
                reason: guard.health().last_failure(),
            });
        }
        if reg.is_null() {
            return Err(RpcError::NoDevices {
                endpoint: endpoint.to_string(),
            });
        }
        // SAFETY: reg is the registry ggml made for this server; indices
        // below its count are valid and the devices live as long as it.
        let devices: Vec<_> = unsafe {
            (0..sys::ggml_backend_reg_dev_count(reg))
                .map(|i| sys::ggml_backend_reg_dev_get(reg, i))
                .filter(|d| !d.is_null())
                .collect()
        };
        if devices.is_empty() {
            return Err(RpcError::NoDevices {
                endpoint: endpoint.to_string(),
            });
        }
        servers.push(LinkedServer {
            endpoint: endpoint.clone(),
            guard,
            failures_before,
            devices,
        });
    }
    Ok(RemoteLink { servers })
}

fn guard_for(
    endpoint: &RpcEndpoint,
    addrs: Vec<SocketAddr>,
    target: &RemoteTarget,
) -> Result<Arc<Guard>, RpcError> {
    let mut guards = GUARDS.lock().unwrap_or_else(|e| e.into_inner());
    let guards = guards.get_or_insert_with(HashMap::new);
    if let Some(g) = guards.get(endpoint) {
        g.set_timeout(target.timeout);
        g.set_key(target.key.clone());
        return Ok(g.clone());
    }
    let guard = Arc::new(Guard::start(
        endpoint,
        addrs,
        target.timeout,
        target.key.clone(),
    )?);
    guards.insert(endpoint.clone(), guard.clone());
    Ok(guard)
}

impl RemoteLink {
    /// Every device of every server, in order: what the target's layers
    /// are placed on.
    pub(super) fn device_handles(&self) -> Vec<sys::ggml_backend_dev_t> {
        self.servers
            .iter()
            .flat_map(|s| s.devices.iter().copied())
            .collect()
    }

    /// The remote devices with their memory, each named with its server.
    pub fn devices(&self) -> Vec<(RpcEndpoint, DeviceInfo)> {
        self.servers
            .iter()
            .flat_map(|s| {
                s.devices
                    .iter()
                    // SAFETY: handles from the server's registry, alive for the process.
                    .map(|&d| (s.endpoint.clone(), unsafe { device_info(d) }))
            })
            .collect()
    }

    /// Requests that waited for a server's reply, all servers together,
    /// since the process started: the network round trips.
    pub fn round_trips(&self) -> u64 {
        self.servers
            .iter()
            .map(|s| s.guard.health().round_trips())
            .sum()
    }

    /// Bytes the servers sent back (their replies, sizes included), all
    /// servers together, since the process started.
    pub fn bytes_received(&self) -> u64 {
        self.servers
            .iter()
            .map(|s| s.guard.health().bytes_received())
            .sum()
    }

    /// Starts a pass that reads only the `keep` largest logits of each row
    /// it outputs (None: whole rows): servers that are edgespec fronts send
    /// only those; or, given `draws`, whose rows a front draws a token
    /// from ([`RemotePass::take_drawn`]). Holds every other remote pass of
    /// the process off until dropped.
    pub(super) fn pass(&self, keep: Option<LogitsKept>, draws: Option<RowDraws>) -> RemotePass<'_> {
        let lock = PASSES.lock().unwrap_or_else(|e| e.into_inner());
        for server in &self.servers {
            server.guard.health().set_keep(keep);
            server.guard.health().set_draws(draws.clone());
        }
        RemotePass {
            link: self,
            _lock: lock,
        }
    }

    /// Returns once every server has done the requests sent to it so
    /// far: a server works through its requests in order, so the reply to
    /// a memory query comes after the passes before it.
    pub(super) fn wait(&self) {
        for server in &self.servers {
            if let Some(&dev) = server.devices.first() {
                let (mut free, mut total) = (0usize, 0usize);
                // SAFETY: a live device of the server's registry; the
                // guard answers even when the server is gone.
                unsafe { sys::ggml_backend_dev_memory(dev, &mut free, &mut total) };
            }
        }
    }

    /// The first server that failed since the link was made, as an error.
    pub fn fault(&self) -> Option<RpcError> {
        self.servers
            .iter()
            .find(|s| s.guard.health().failures() != s.failures_before)
            .map(|s| RpcError::Lost {
                reason: s.guard.health().last_failure(),
            })
    }
}

/// A remote pass in flight ([`RemoteLink::pass`]).
pub(super) struct RemotePass<'a> {
    link: &'a RemoteLink,
    _lock: MutexGuard<'static, ()>,
}

impl RemotePass<'_> {
    /// The tokens a server front drew from the pass's logits rows, one per
    /// row in order (none when it drew none).
    pub(super) fn take_drawn(&self) -> Vec<Token> {
        self.link
            .servers
            .iter()
            .flat_map(|s| s.guard.health().take_drawn())
            .collect()
    }
}

impl Drop for RemotePass<'_> {
    fn drop(&mut self) {
        for server in &self.link.servers {
            server.guard.health().set_keep(None);
            server.guard.health().set_draws(None);
        }
    }
}

/// Connects to a server and says HELLO, within `timeout` (over a keyed
/// link with `key`): a server that is down, refuses, is busy with another
/// client, is not a ggml RPC server of this protocol, or wants another key
/// or none is a typed error before ggml sees it.
fn probe(
    endpoint: &RpcEndpoint,
    addrs: &[SocketAddr],
    timeout: Duration,
    key: Option<&RpcKey>,
) -> Result<(), RpcError> {
    let unreachable = |reason: String| RpcError::Unreachable {
        endpoint: endpoint.to_string(),
        reason,
    };
    let mut stream = None;
    let mut last = String::new();
    for addr in addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = guard::describe(&e, timeout),
        }
    }
    let stream = stream.ok_or_else(|| unreachable(last))?;
    let io = |e: std::io::Error| unreachable(guard::describe(&e, timeout));
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    match key {
        None => hello(endpoint, stream, timeout),
        Some(key) => match secure::client(stream, key) {
            Ok(link) => hello(endpoint, link, timeout),
            Err(secure::Refused::Key) => Err(RpcError::KeyRefused {
                endpoint: endpoint.to_string(),
            }),
            Err(secure::Refused::Io(e)) => Err(io(e)),
        },
    }
}

/// Says HELLO on a connection and checks the reply.
fn hello(
    endpoint: &RpcEndpoint,
    mut stream: impl Read + Write,
    timeout: Duration,
) -> Result<(), RpcError> {
    let unreachable = |reason: String| RpcError::Unreachable {
        endpoint: endpoint.to_string(),
        reason,
    };
    let io = |e: std::io::Error| unreachable(guard::describe(&e, timeout));
    let mut hello = vec![wire::HELLO];
    hello.extend((wire::CAPS as u64).to_le_bytes());
    hello.extend([0u8; wire::CAPS]);
    stream.write_all(&hello).map_err(io)?;
    let not_rpc = |reason: &str| RpcError::NotRpcServer {
        endpoint: endpoint.to_string(),
        reason: reason.to_owned(),
    };
    let mut size = [0u8; 8];
    stream.read_exact(&mut size).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
            not_rpc("it closed the connection at HELLO")
        }
        _ => unreachable(format!(
            "{} (busy with another client?)",
            guard::describe(&e, timeout)
        )),
    })?;
    if u64::from_le_bytes(size) != wire::HELLO_REPLY {
        return Err(not_rpc("its HELLO reply has the wrong size"));
    }
    let mut reply = [0u8; wire::HELLO_REPLY as usize];
    stream.read_exact(&mut reply).map_err(io)?;
    if reply[0] == secure::KEY_REQUIRED {
        return Err(RpcError::KeyRequired {
            endpoint: endpoint.to_string(),
        });
    }
    if reply[0] != PROTOCOL_MAJOR || reply[1] > wire::PROTOCOL_MINOR {
        return Err(RpcError::VersionMismatch {
            endpoint: endpoint.to_string(),
            server: format!("{}.{}.{}", reply[0], reply[1], reply[2]),
        });
    }
    Ok(())
}

/// Serves this machine's devices (its GPUs if it has any, else its CPU
/// with `threads` threads) to RPC clients on `endpoint`, caching large
/// tensors in `cache_dir` if given: ggml's server on a loopback port,
/// behind edgespec's [front](front), which listens on `endpoint` and,
/// given a `key`, serves only clients that hold it, over an encrypted
/// link (then `endpoint` may be off loopback without `insecure`). Returns
/// only when it cannot serve.
pub fn serve(
    endpoint: &RpcEndpoint,
    insecure: bool,
    threads: usize,
    cache_dir: Option<&Path>,
    key: Option<RpcKey>,
) -> Result<(), RpcError> {
    let addr = endpoint
        .checked_addresses(insecure || key.is_some())?
        .into_iter()
        .find(SocketAddr::is_ipv4)
        .ok_or(RpcError::BadEndpoint {
            text: endpoint.to_string(),
            reason: "the server listens on an IPv4 address",
        })?;
    let failed = || RpcError::ServeFailed {
        endpoint: addr.to_string(),
    };
    let listener = std::net::TcpListener::bind(addr).map_err(|_| failed())?;
    let ggml = start_ggml_server(threads, cache_dir)?;
    let e = front::run(&listener, ggml, key.map(Arc::new));
    log::error!(target: "edgespec::rpc", "rpc-server on {addr}: {e}");
    Err(failed())
}

/// Starts ggml's RPC server on a free loopback port, on a thread of its
/// own, and returns its address once it accepts connections.
fn start_ggml_server(threads: usize, cache_dir: Option<&Path>) -> Result<SocketAddr, RpcError> {
    let failed = |why: &str| RpcError::ServeFailed {
        endpoint: format!("ggml's server on loopback ({why})"),
    };
    let start = rpc_function("ggml_backend_rpc_start_server")?;
    // SAFETY: the registry returns ggml_backend_rpc_start_server under
    // this name; the signature is ggml-rpc.h's.
    let start: StartServer = unsafe { std::mem::transmute(start) };
    let cache = cache_dir
        .map(|d| {
            d.to_str()
                .and_then(|s| CString::new(s).ok())
                .ok_or(RpcError::BadEndpoint {
                    text: d.display().to_string(),
                    reason: "the cache directory cannot be passed to ggml",
                })
        })
        .transpose()?;
    // A port free now; ggml binds it below (another process taking it in
    // between makes ggml's server return, reported as a failure).
    let ggml = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map_err(|_| failed("no free port"))?;
    let listen = CString::new(ggml.to_string()).map_err(|e| RpcError::Guard(e.to_string()))?;
    let server = std::thread::Builder::new()
        .name("edgespec-ggml-rpc".into())
        .spawn(move || {
            let mut devices = local_devices();
            // SAFETY: NUL-terminated strings and a device array of the
            // length given, alive for the call (which serves clients until
            // the process ends, or returns when it cannot listen).
            unsafe {
                start(
                    listen.as_ptr(),
                    cache.as_ref().map_or(std::ptr::null(), |c| c.as_ptr()),
                    threads.max(1),
                    devices.len(),
                    devices.as_mut_ptr(),
                );
            }
        })
        .map_err(|_| failed("no thread"))?;
    loop {
        if server.is_finished() {
            return Err(failed("it did not start"));
        }
        if TcpStream::connect(ggml).is_ok() {
            return Ok(ggml);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The devices a server offers: the GPUs, or the CPU when there is none.
fn local_devices() -> Vec<sys::ggml_backend_dev_t> {
    // SAFETY: the registry is initialised (rpc_function called backend());
    // indices below the count are valid.
    unsafe {
        let all: Vec<_> = (0..sys::ggml_backend_dev_count())
            .map(|i| sys::ggml_backend_dev_get(i))
            .filter(|d| !d.is_null())
            .collect();
        let is = |d: sys::ggml_backend_dev_t, t| sys::ggml_backend_dev_type(d) == t;
        let gpus: Vec<_> = all
            .iter()
            .copied()
            .filter(|&d| {
                (is(d, sys::GGML_BACKEND_DEVICE_TYPE_GPU)
                    || is(d, sys::GGML_BACKEND_DEVICE_TYPE_IGPU))
                    && sys::ggml_backend_dev_backend_reg(d)
                        != sys::ggml_backend_reg_by_name(c"RPC".as_ptr())
            })
            .collect();
        if gpus.is_empty() {
            all.into_iter()
                .filter(|&d| is(d, sys::GGML_BACKEND_DEVICE_TYPE_CPU))
                .collect()
        } else {
            gpus
        }
    }
}
