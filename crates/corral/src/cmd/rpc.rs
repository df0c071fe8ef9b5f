//! `corral rpc`: this host's devices served to other hosts' Corral servers with ggml's RPC server
//! (llama.cpp's `rpc-server`, from the same source as the rest of this build), so that one model
//! can be split over several machines (`CORRAL_RPC_SERVERS` on the server that loads it).
//!
//! ggml's RPC protocol has no authentication and no encryption, and lets its client allocate
//! memory and run computations here. So it listens on loopback unless told otherwise, and an
//! address other hosts can reach needs `--allow-remote` and is logged with that warning.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;

#[derive(clap::Args)]
pub struct Args {
    /// The IPv4 address and port to listen on
    #[arg(long, default_value = "127.0.0.1:50052")]
    listen: String,
    /// Listen on an address other hosts can reach (the protocol has no authentication)
    #[arg(long)]
    allow_remote: bool,
    /// CPU threads for the computations (default: all cores)
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Directory of llama.cpp's backend modules (default: lib/corral beside the executable)
    #[arg(long)]
    libs: Option<PathBuf>,
}

/// Whether `listen` may be used as asked: a loopback address always, another only with
/// `allow_remote`.
fn check_address(listen: &str, allow_remote: bool) -> anyhow::Result<SocketAddr> {
    let addr: SocketAddr =
        listen.parse().ok().filter(|a: &SocketAddr| a.is_ipv4()).with_context(|| {
            format!("--listen {listen:?}: expected an IPv4 address and port, such as 127.0.0.1:50052")
        })?;
    if !addr.ip().is_loopback() && !allow_remote {
        anyhow::bail!(
            "--listen {listen}: other hosts could reach this address, and ggml's RPC protocol has no \
             authentication or encryption (whoever connects can use this host's memory and devices). \
             Add --allow-remote to listen there anyway, on a network you trust or behind a tunnel"
        );
    }
    Ok(addr)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let addr = check_address(&args.listen, args.allow_remote)?;
    if !addr.ip().is_loopback() {
        let warning = if addr.ip() == IpAddr::from([0, 0, 0, 0]) { "every interface" } else { "a network address" };
        eprintln!(
            "corral rpc: warning: listening on {addr}, {warning}, with no authentication or encryption: anyone who \
             reaches it can use this host's devices. Keep it on a private network, or listen on 127.0.0.1 and \
             reach it through a tunnel (ssh -L, WireGuard)"
        );
    }
    let backends =
        corral_engine::backends::load(args.libs.as_deref(), &[], Default::default()).map_err(anyhow::Error::msg)?;
    let threads =
        if args.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { args.threads };
    let offered: Vec<String> = corral_engine::backends::devices()
        .iter()
        .filter(|d| backends.gpu_backends.is_empty() || d.kind != corral_types::runner::DeviceKind::Cpu)
        .map(|d| format!("{} ({})", d.id, d.description))
        .collect();
    eprintln!(
        "corral rpc: serving {} on {addr} (ggml RPC protocol {}, {threads} threads)",
        offered.join(", "),
        corral_engine::rpc::PROTOCOL
    );
    match corral_engine::rpc::serve(&addr.to_string(), threads) {
        Ok(never) => match never {},
        Err(e) => anyhow::bail!(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_without_the_flag() {
        assert!(check_address("127.0.0.2:50052", false).is_ok());
        let err = check_address("0.0.0.0:50052", false).unwrap_err().to_string();
        assert!(err.contains("--allow-remote"), "{err}");
        assert!(check_address("192.168.1.5:50052", false).is_err());
        assert!(check_address("192.168.1.5:50052", true).is_ok());
        assert!(check_address("localhost:50052", true).unwrap_err().to_string().contains("IPv4"));
        assert!(check_address("[::1]:50052", true).is_err());
    }
}
