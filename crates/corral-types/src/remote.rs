//! Devices on other hosts, reached through ggml's RPC backend (`corral rpc`,
//! `CORRAL_RPC_SERVERS`): how they are recognised, and how a runner's names for them are made
//! the server's.

use crate::runner::{DeviceInfo, DeviceUse};

/// Whether the device named `id` is another host's, reached through ggml's RPC backend (which
/// names its devices `RPC0`, `RPC1`…).
pub fn is_remote_device(id: &str) -> bool {
    id.strip_prefix("RPC").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Gives each remote device in `uses` the name the server's probe gave it.
///
/// ggml numbers RPC devices `RPC0`, `RPC1`… in the order it reached them, skipping hosts that did
/// not answer, so a runner started while one host is down numbers the rest differently from the
/// probe made at the server's start. A host's n-th device is the same in both; a device the probe
/// did not see keeps the runner's name.
pub fn name_remote_devices(uses: &mut [DeviceUse], known: &[DeviceInfo]) {
    for u in uses.iter_mut() {
        let Some(host) = u.host.as_deref() else { continue };
        let mut same_host = known.iter().filter(|d| is_remote_device(&d.id) && d.description == host);
        if let Some(d) = same_host.nth(u.host_device as usize) {
            u.id = d.id.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::DeviceKind;

    #[test]
    fn issue_31_remote_devices_keep_the_probes_names_when_a_host_is_down() {
        let dev = |id: &str, host: &str| DeviceInfo {
            id: id.into(),
            description: host.into(),
            kind: DeviceKind::Gpu,
            total_bytes: 1,
            free_bytes: 1,
        };
        // The probe saw a (one device) and b (two); the runner, with a down, numbered b's from 0.
        let known = [dev("CPU", "cpu"), dev("RPC0", "a:1"), dev("RPC1", "b:1"), dev("RPC2", "b:1")];
        let used = |id: &str, host: Option<&str>, host_device| DeviceUse {
            id: id.into(),
            bytes: 5,
            host: host.map(String::from),
            host_device,
        };
        let mut uses = [
            used("CUDA0", None, 0),
            used("RPC1", Some("b:1"), 1),
            used("RPC0", Some("b:1"), 0),
            used("RPC2", Some("c:1"), 0),
        ];
        name_remote_devices(&mut uses, &known);
        let ids: Vec<&str> = uses.iter().map(|u| u.id.as_str()).collect();
        assert_eq!(ids, ["CUDA0", "RPC2", "RPC1", "RPC2"]);
    }
}
