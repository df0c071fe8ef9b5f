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
    /// The most memory each device offers (bytes, or with K, M, G, T: binary units), less what
    /// is taken from it meanwhile; clients place layers within it
    #[arg(long, value_parser = parse_size)]
    max_memory: Option<u64>,
    /// Directory of llama.cpp's backend modules (default: lib/corral beside the executable)
    #[arg(long)]
    libs: Option<PathBuf>,
}

/// `1073741824`, `1024M`, `1G`, `1.5G`: bytes, with binary units.
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&t[..i], t[i..].trim_end_matches(['B', 'b', 'i'])),
        None => (t, ""),
    };
    let scale: u64 = match unit.to_ascii_uppercase().as_str() {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("{text:?}: expected bytes, or a number with K, M, G or T")),
    };
    let n: f64 =
        number.trim().parse().map_err(|_| format!("{text:?}: expected bytes, or a number with K, M, G or T"))?;
    if !(n > 0.0 && n.is_finite()) {
        return Err(format!("{text:?}: must be more than nothing"));
    }
    Ok((n * scale as f64) as u64)
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
    let cap =
        args.max_memory.map(|b| format!(", at most {} each", corral_types::format::human_bytes(b))).unwrap_or_default();
    eprintln!(
        "corral rpc: serving {} on {addr} (ggml RPC protocol {}, {threads} threads{cap})",
        offered.join(", "),
        corral_engine::rpc::PROTOCOL
    );
    match corral_engine::rpc::serve(&addr.to_string(), threads, args.max_memory) {
        Ok(never) => match never {},
        Err(e) => anyhow::bail!(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1073741824"), Ok(1 << 30));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert!(parse_size("12Q").unwrap_err().contains("\"12Q\""));
        assert!(parse_size("0").is_err() && parse_size("-1G").is_err() && parse_size("G").is_err());
    }

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
