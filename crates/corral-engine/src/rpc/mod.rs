//! One model over several hosts: ggml's RPC backend (`libggml-rpc.so`, built with the other
//! modules from the same source). A host runs `corral rpc`, which serves its devices with ggml's
//! own RPC server ([`serve`]); a runner told of such peers (`CORRAL_RPC_SERVERS`) adds their
//! devices to ggml's registry ([`connect`]), where llama.cpp places layers on them as on local
//! GPUs.
//!
//! ggml's client aborts the whole process when a peer cannot be reached, answers with another
//! protocol version, or is busy with another client (its server serves one at a time, and a second
//! client waits in the handshake for good). So before ggml sees a peer, [`probe`] asks it the same
//! questions over a socket of our own, with a deadline: the handshake (the protocol version must
//! be this build's exactly, since the version's patch changes with ggml's set of operations), the
//! number of devices and their memory. Only peers that answer are handed to ggml; the others are
//! reported and left out. A peer that dies later, mid-answer, still aborts the runner: the server
//! sees a runner die, fails what it had in flight and loads a new one for the next request, which
//! probes again.

use std::ffi::{c_char, c_void, CString};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use llama_cpp_sys_2 as sys;

mod capped;

/// The version of ggml's RPC protocol this build speaks (`major.minor.patch`).
pub const PROTOCOL: &str = env!("CORRAL_RPC_PROTO");

/// How long a peer gets to answer each of the probe's questions.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

// ggml-rpc.cpp's command numbers, and the size of the handshake's capability field.
const GET_DEVICE_MEMORY: u8 = 11;
const HELLO: u8 = 14;
const DEVICE_COUNT: u8 = 15;
const CAPS: usize = 24;
/// More devices than any host has: a peer claiming more is not answering sensibly.
const MAX_DEVICES: u32 = 64;

/// What a peer said of itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub endpoint: String,
    /// Free and total bytes of each of its devices.
    pub devices: Vec<(u64, u64)>,
}

/// `host:port` resolved to an IPv4 address, as ggml's client resolves it.
fn address(endpoint: &str) -> Result<SocketAddr, String> {
    let (host, port) =
        endpoint.rsplit_once(':').ok_or_else(|| format!("RPC server {endpoint:?}: expected host:port"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("RPC server {endpoint:?}: expected host:port"));
    }
    let resolved = endpoint.to_socket_addrs().map_err(|e| format!("RPC server {endpoint}: {e}"))?;
    let mut v4 = resolved.filter(SocketAddr::is_ipv4);
    v4.next().ok_or_else(|| format!("RPC server {endpoint}: no IPv4 address (ggml's RPC client speaks IPv4 only)"))
}

/// One request and its answer of exactly `want` bytes (ggml frames both with a 64-bit size).
fn ask(stream: &mut TcpStream, command: u8, request: &[u8], want: usize) -> std::io::Result<Vec<u8>> {
    let mut message = vec![command];
    message.extend_from_slice(&(request.len() as u64).to_le_bytes());
    message.extend_from_slice(request);
    stream.write_all(&message)?;
    let mut size = [0u8; 8];
    stream.read_exact(&mut size)?;
    let size = u64::from_le_bytes(size);
    if size != want as u64 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("answered with {size} bytes where ggml's RPC protocol has {want}"),
        ));
    }
    let mut answer = vec![0u8; want];
    stream.read_exact(&mut answer)?;
    Ok(answer)
}

/// Asks `endpoint` what a runner needs to know before ggml connects to it: that it speaks this
/// build's protocol, and its devices' memory. Each question has `timeout` to be answered.
pub fn probe(endpoint: &str, timeout: Duration) -> Result<Peer, String> {
    let addr = address(endpoint)?;
    let fail = |what: &str, e: std::io::Error| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
            "RPC server {endpoint} did not answer {what} within {timeout:?} (is it serving another Corral server? \
             it serves one at a time)"
        ),
        _ => format!("RPC server {endpoint}: {what} failed: {e}"),
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| fail("the connection", e))?;
    stream.set_read_timeout(Some(timeout)).and_then(|()| stream.set_write_timeout(Some(timeout))).ok();
    let _ = stream.set_nodelay(true);
    let hello = ask(&mut stream, HELLO, &[0u8; CAPS], 4 + CAPS).map_err(|e| fail("the handshake", e))?;
    let theirs = format!("{}.{}.{}", hello[0], hello[1], hello[2]);
    if theirs != PROTOCOL {
        return Err(format!(
            "RPC server {endpoint} speaks ggml RPC protocol {theirs}, this Corral speaks {PROTOCOL}: \
             run the same Corral version on every host"
        ));
    }
    let count = ask(&mut stream, DEVICE_COUNT, &[], 4).map_err(|e| fail("the device count", e))?;
    let count = u32::from_le_bytes(count.try_into().expect("4 bytes"));
    if count > MAX_DEVICES {
        return Err(format!("RPC server {endpoint} claims {count} devices"));
    }
    let mut devices = Vec::new();
    for device in 0..count {
        let memory =
            ask(&mut stream, GET_DEVICE_MEMORY, &device.to_le_bytes(), 16).map_err(|e| fail("the device memory", e))?;
        let word = |i: usize| u64::from_le_bytes(memory[i..i + 8].try_into().expect("8 bytes"));
        devices.push((word(0), word(8)));
    }
    Ok(Peer { endpoint: endpoint.to_string(), devices })
}

/// A function of the RPC module, by name; `None` when the module is not loaded.
fn rpc_function(name: &str) -> Option<*mut c_void> {
    let reg_name = CString::new("RPC").expect("no NUL");
    let name = CString::new(name).expect("no NUL");
    // SAFETY: ggml's registry is initialised (`backends::load` ran); the names are C strings.
    unsafe {
        let reg = sys::ggml_backend_reg_by_name(reg_name.as_ptr());
        if reg.is_null() {
            return None;
        }
        let f = sys::ggml_backend_reg_get_proc_address(reg, name.as_ptr());
        (!f.is_null()).then_some(f)
    }
}

const NO_MODULE: &str = "llama.cpp's RPC module (libggml-rpc.so) is not in the library directory";

/// Adds the devices of each peer that answers [`probe`] to ggml's registry (after the local
/// backends are loaded), in the order given. Returns why each other peer was left out.
pub fn connect(peers: &[String], timeout: Duration) -> Vec<String> {
    if peers.is_empty() {
        return Vec::new();
    }
    let Some(add) = rpc_function("ggml_backend_rpc_add_server") else {
        return vec![format!("{NO_MODULE}: the RPC servers {} are not used", peers.join(", "))];
    };
    // SAFETY: the signature of ggml_backend_rpc_add_server in ggml-rpc.h.
    let add: unsafe extern "C" fn(*const c_char) -> sys::ggml_backend_reg_t = unsafe { std::mem::transmute(add) };
    let mut left_out = Vec::new();
    for endpoint in peers {
        match probe(endpoint, timeout) {
            Err(why) => left_out.push(why),
            Ok(peer) if peer.devices.is_empty() => left_out.push(format!("RPC server {endpoint} offers no device")),
            Ok(_) => {
                let c = CString::new(endpoint.as_str()).expect("checked by probe: host:port");
                // SAFETY: the peer answered the handshake just now, so ggml's own connection will
                // find it; ggml keeps the registration for the life of the process.
                unsafe {
                    let reg = add(c.as_ptr());
                    if reg.is_null() {
                        left_out.push(format!("RPC server {endpoint} could not be added"));
                    } else {
                        sys::ggml_backend_register(reg);
                    }
                }
            }
        }
    }
    left_out
}

/// Serves this host's devices to other hosts' runners on `endpoint` (an IPv4 `address:port`)
/// with `threads` CPU threads: the GPUs when there are any, else the CPU, each offering at most
/// `max_memory` bytes when given. Returns only if the server could not start.
pub fn serve(endpoint: &str, threads: usize, max_memory: Option<u64>) -> Result<std::convert::Infallible, String> {
    let start = rpc_function("ggml_backend_rpc_start_server").ok_or_else(|| NO_MODULE.to_string())?;
    // SAFETY: the signature of ggml_backend_rpc_start_server in ggml-rpc.h.
    let start: unsafe extern "C" fn(*const c_char, *const c_char, usize, usize, *mut sys::ggml_backend_dev_t) =
        unsafe { std::mem::transmute(start) };
    // SAFETY: the registry is initialised; indices are in range.
    let mut devices: Vec<sys::ggml_backend_dev_t> = unsafe {
        (0..sys::ggml_backend_dev_count())
            .map(|i| sys::ggml_backend_dev_get(i))
            .filter(|d| sys::ggml_backend_dev_type(*d) != sys::GGML_BACKEND_DEVICE_TYPE_CPU)
            .filter(|d| !is_rpc(*d))
            .collect()
    };
    if devices.is_empty() {
        // SAFETY: as above.
        devices = unsafe {
            (0..sys::ggml_backend_dev_count())
                .map(|i| sys::ggml_backend_dev_get(i))
                .filter(|d| sys::ggml_backend_dev_type(*d) == sys::GGML_BACKEND_DEVICE_TYPE_CPU)
                .collect()
        };
    }
    if let Some(cap) = max_memory {
        devices = devices.into_iter().map(|d| capped::capped(d, cap)).collect();
    }
    let c = CString::new(endpoint).map_err(|_| format!("invalid address {endpoint:?}"))?;
    // SAFETY: valid C string and device handles owned by ggml's registry; no cache directory.
    // It returns only when it could not set up its socket.
    unsafe { start(c.as_ptr(), std::ptr::null(), threads.max(1), devices.len(), devices.as_mut_ptr()) };
    Err(format!("ggml's RPC server could not listen on {endpoint} (in use, or not an address of this host?)"))
}

/// Whether `dev` is another host's device (registered by [`connect`]).
fn is_rpc(dev: sys::ggml_backend_dev_t) -> bool {
    // SAFETY: a device of ggml's registry; its backend's name is a static C string.
    unsafe {
        let reg = sys::ggml_backend_dev_backend_reg(dev);
        !reg.is_null() && std::ffi::CStr::from_ptr(sys::ggml_backend_reg_name(reg)).to_bytes() == b"RPC"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_protocol_version_comes_from_the_source() {
        let parts: Vec<u8> = PROTOCOL.split('.').map(|p| p.parse().unwrap()).collect();
        assert_eq!(parts.len(), 3);
        assert!(parts[0] >= 3, "{PROTOCOL}");
    }

    #[test]
    fn endpoints_are_host_and_port() {
        for bad in ["localhost", ":50052", "127.0.0.1:", "127.0.0.1:port", "127.0.0.1:70000"] {
            assert!(address(bad).unwrap_err().contains("expected host:port"), "{bad}");
        }
        assert_eq!(address("127.0.0.2:50052").unwrap().to_string(), "127.0.0.2:50052");
    }

    #[test]
    fn a_peer_that_is_not_there_is_named() {
        // A port just closed: nothing listens.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err = probe(&format!("127.0.0.1:{port}"), Duration::from_millis(500)).unwrap_err();
        assert!(err.starts_with(&format!("RPC server 127.0.0.1:{port}: the connection failed")), "{err}");
    }
}
