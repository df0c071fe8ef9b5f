//! GPU placement policy, as a pure function of described devices: which GPUs a model may use,
//! what each must keep free, the KV cache settings, and whether loaded models must make room.
//!
//! Layers are never placed here: the runner hands that to llama.cpp's own fit, which measures
//! the model against each device's free memory. What the server decides, as Ollama's scheduler
//! does, is the frame around it:
//!
//! - `num_gpu` 0, or no GPU: CPU only.
//! - One GPU when the model is expected to fit on the one with the most room (`main_gpu`), unless
//!   `OLLAMA_SCHED_SPREAD` or other hosts' devices take part (`CORRAL_RPC_SERVERS`); else all of
//!   them, split by layer. A request's `main_gpu` pins it.
//! - Each GPU keeps llama.cpp's fit margin plus `OLLAMA_GPU_OVERHEAD` free.
//! - A quantized KV cache (`OLLAMA_KV_CACHE_TYPE` q8_0 or q4_0) needs flash attention; with
//!   flash attention turned off it falls back to f16.
//! - The first model may be offloaded partly. Another one must be expected to fit whole beside
//!   those loaded, else the least recently used idle model holding GPU memory is evicted; when
//!   only busy ones hold it, the request waits for one to finish. Once no other model holds GPU
//!   memory, the model loads with whatever fits.
//!
//! - Host memory: how many sequences a runner decodes together when `OLLAMA_NUM_PARALLEL` is
//!   unset ([`auto_parallel`]), and which idle models are unloaded, least recently used first,
//!   when the count (`OLLAMA_MAX_LOADED_MODELS`) or the host memory would be exceeded
//!   ([`make_room`], which the scheduler asks once per load).
//!
//! The expectation (`weights + KV cache`, [`needs`]) is deliberately rough and used only for these
//! choices; what a loaded model really holds is measured by its runner and accounted from then on.

use corral_gguf::Gguf;
use corral_types::runner::{DeviceInfo, KvCacheType};

const GIB: u64 = 1 << 30;

/// llama.cpp's fit keeps this much free on each GPU (its default target), before our overhead.
pub const FIT_MARGIN: u64 = GIB;

/// Server-wide GPU settings from the environment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GpuConfig {
    /// `OLLAMA_GPU_OVERHEAD`: bytes kept free on each GPU.
    pub overhead: u64,
    /// `OLLAMA_SCHED_SPREAD`: always split across every GPU.
    pub spread: bool,
    /// `OLLAMA_FLASH_ATTENTION`: `None` lets llama.cpp decide.
    pub flash_attention: Option<bool>,
    /// `OLLAMA_KV_CACHE_TYPE`.
    pub kv_cache_type: KvCacheType,
}

/// A GPU as the scheduler sees it now: its size and what is free on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    pub id: String,
    pub total: u64,
    pub free: u64,
}

impl Gpu {
    /// The GPUs among `devices`, with what loaded models hold (`held(id)`) taken off their free
    /// memory as the runner probe saw it at start.
    pub fn from_devices(devices: &[DeviceInfo], held: impl Fn(&str) -> u64) -> Vec<Gpu> {
        corral_types::runner::offload_gpus(devices)
            .into_iter()
            .map(|(_, d)| Gpu {
                id: d.id.clone(),
                total: d.total_bytes,
                free: d.free_bytes.saturating_sub(held(&d.id)),
            })
            .collect()
    }
}

/// The default `num_ctx` when `OLLAMA_CONTEXT_LENGTH` is unset, from the GPUs' total memory
/// less the overhead kept free on each, by Ollama's tiers: 262144 from 47 GiB, 32768 from 23 GiB,
/// else 4096 (always capped by each model's training context).
pub fn default_context_length(devices: &[DeviceInfo], overhead: u64) -> u32 {
    let vram: u64 = Gpu::from_devices(devices, |_| 0).iter().map(|g| g.total.saturating_sub(overhead)).sum();
    match vram {
        v if v >= 47 * GIB => 262_144,
        v if v >= 23 * GIB => 32_768,
        _ => 4096,
    }
}

/// What a model is expected to need, from its GGUF header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// Bytes of weights (the GGUF file).
    pub weights: u64,
    /// K and V cache elements for the whole context (all slots).
    pub kv_elements: u64,
    /// Transformer blocks (llama.cpp offloads these plus the output layer).
    pub layers: u32,
}

impl Needs {
    /// Rough bytes a runner of the model takes: the weights plus the KV cache in `kv`.
    pub fn bytes(&self, kv: KvCacheType) -> u64 {
        self.weights.saturating_add(kv.bytes(self.kv_elements))
    }
}

/// What a runner of the model in `g` needs: `weights` bytes (the model's and a draft's files, from
/// the manifest), K and V for `num_ctx` positions in each of `parallel` slots, and its blocks.
pub fn needs(g: &Gguf, weights: u64, num_ctx: u32, parallel: u32) -> Needs {
    let layers = g.arch_u64("block_count").unwrap_or(0);
    let embd = g.arch_u64("embedding_length").unwrap_or(0);
    let heads = g.arch_u64("attention.head_count").unwrap_or(1).max(1);
    let kv_heads = g.arch_u64("attention.head_count_kv").unwrap_or(heads);
    let kv_elements = 2 * layers * u64::from(num_ctx) * u64::from(parallel) * (embd / heads) * kv_heads;
    Needs { weights, kv_elements, layers: u32::try_from(layers).unwrap_or(u32::MAX) }
}

/// Sequences decoded together when `OLLAMA_NUM_PARALLEL` is unset: 4, or fewer when a runner
/// with that many would take more than three quarters of `room` (`bytes(p)`: the estimate for
/// `p` sequences; `room`: the host's available memory plus the GPUs', `None` when unknown).
pub fn auto_parallel(bytes: impl Fn(u32) -> u64, room: Option<u64>) -> u32 {
    let Some(room) = room else { return 4 };
    [4, 2].into_iter().find(|p| bytes(*p) <= room / 4 * 3).unwrap_or(1)
}

/// Free memory of the GPUs a model may use (none with `num_gpu` 0), less what each keeps free.
pub fn gpu_room(gpus: &[Gpu], num_gpu: i32, config: &GpuConfig) -> u64 {
    if num_gpu == 0 {
        return 0;
    }
    gpus.iter().map(|g| g.free.saturating_sub(FIT_MARGIN.saturating_add(config.overhead))).sum()
}

/// What the request asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ask {
    /// -1 automatic, 0 CPU only, N layers.
    pub num_gpu: i32,
    /// Pin the model to this GPU.
    pub main_gpu: Option<u32>,
}

/// Where a model goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Keep the whole model on this GPU (index into the GPUs); `None` with GPUs: split by layer.
    pub main_gpu: Option<u32>,
    /// Bytes the fit keeps free on each GPU.
    pub margin: u64,
    pub kv_cache_type: KvCacheType,
    pub flash_attention: Option<bool>,
    /// Bytes meant for GPUs: the whole model, or `num_gpu` layers' share of it.
    pub wanted: u64,
    /// Bytes expected on each GPU (by index).
    pub expected: Vec<u64>,
}

impl Plan {
    pub fn expected_gpu_bytes(&self) -> u64 {
        self.expected.iter().sum()
    }

    /// Everything meant for GPUs is expected to find room there.
    pub fn fits(&self) -> bool {
        self.expected_gpu_bytes() >= self.wanted
    }
}

/// Where a model with `needs` goes on `gpus` as they are now.
pub fn plan(gpus: &[Gpu], needs: &Needs, ask: &Ask, config: &GpuConfig) -> Plan {
    let (kv_cache_type, flash_attention) = match (config.kv_cache_type.quantized(), config.flash_attention) {
        (true, Some(false)) => (KvCacheType::F16, Some(false)),
        (true, _) => (config.kv_cache_type, Some(true)),
        (false, fa) => (config.kv_cache_type, fa),
    };
    let margin = FIT_MARGIN.saturating_add(config.overhead);
    let total = needs.weights.saturating_add(kv_cache_type.bytes(needs.kv_elements));
    // The share of the model meant for GPUs (`num_gpu` N of the blocks and the output layer).
    let wanted = match u64::try_from(ask.num_gpu) {
        _ if gpus.is_empty() => 0,
        Ok(0) => 0,
        Ok(n) => total / (u64::from(needs.layers) + 1) * n.min(u64::from(needs.layers) + 1),
        Err(_) => total,
    };
    let mut plan =
        Plan { main_gpu: None, margin, kv_cache_type, flash_attention, wanted, expected: vec![0; gpus.len()] };
    if wanted == 0 {
        return plan;
    }
    let room: Vec<u64> = gpus.iter().map(|g| g.free.saturating_sub(margin)).collect();
    let single = match ask.main_gpu {
        Some(m) if (m as usize) < gpus.len() => Some(m as usize),
        // An index that does not exist: the runner refuses the load with a clear message.
        Some(_) => None,
        // Other hosts' devices (CORRAL_RPC_SERVERS) are there to be used together, as
        // llama-server's `--rpc` uses them: split over all of them.
        None if config.spread || gpus.iter().any(|g| corral_types::remote::is_remote_device(&g.id)) => None,
        None => {
            let best = (0..gpus.len()).max_by_key(|i| (room[*i], std::cmp::Reverse(*i))).expect("not empty");
            (wanted <= room[best]).then_some(best)
        }
    };
    if let Some(main) = ask.main_gpu {
        plan.main_gpu = Some(main);
    }
    match single {
        Some(i) => {
            plan.main_gpu = Some(i as u32);
            plan.expected[i] = wanted.min(room[i]);
        }
        None if ask.main_gpu.is_none() => {
            // Split by layer in proportion to room, as llama.cpp's fit does.
            let all: u64 = room.iter().sum();
            let placed = wanted.min(all);
            for (e, r) in plan.expected.iter_mut().zip(&room) {
                *e = if all == 0 { 0 } else { (u128::from(placed) * u128::from(*r) / u128::from(all)) as u64 };
            }
            // What rounding down left over goes to the GPU with the most room.
            let short = placed - plan.expected.iter().sum::<u64>();
            if let Some(i) = (0..room.len()).max_by_key(|i| room[*i]) {
                plan.expected[i] += short;
            }
        }
        None => {}
    }
    plan
}

/// A loaded model, as far as making room is concerned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// GPU bytes it holds (measured, or planned while it loads), by GPU id.
    pub gpu: Vec<(String, u64)>,
    /// Host bytes it is expected to hold: its estimate less what its runner measured on GPUs.
    pub host_bytes: u64,
    /// Loaded, and no request is using it: it may be unloaded.
    pub idle: bool,
    /// Larger is more recent.
    pub last_used: u64,
}

impl Loaded {
    /// GPU bytes it holds on all GPUs.
    pub fn gpu_bytes(&self) -> u64 {
        self.gpu.iter().map(|(_, b)| b).sum()
    }

    fn held_on(&self, id: &str) -> u64 {
        self.gpu.iter().filter(|(g, _)| g == id).map(|(_, b)| b).sum()
    }
}

/// What the scheduler does for a model that is not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start it with this plan.
    Load(Plan),
    /// Unload this one (index into the loaded list) first, then decide again.
    Evict(usize),
    /// Wait for a loaded model to finish its requests.
    Wait,
}

/// Whether a model can load now on `gpus` beside `loaded` ones, or who must make room.
pub fn decide(gpus: &[Gpu], loaded: &[Loaded], needs: &Needs, ask: &Ask, config: &GpuConfig) -> Decision {
    let plan = plan(gpus, needs, ask, config);
    let holders = || loaded.iter().enumerate().filter(|(_, l)| l.gpu_bytes() > 0);
    // CPU only, fits, or nothing else holds GPU memory: load as planned (partly offloaded if
    // need be).
    if plan.fits() || holders().next().is_none() {
        return Decision::Load(plan);
    }
    match holders().filter(|(_, l)| l.idle).min_by_key(|(_, l)| l.last_used) {
        Some((i, _)) => Decision::Evict(i),
        None => Decision::Wait,
    }
}

/// The host's side of making room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Host {
    /// Bytes of memory available to new models (`None`: unknown, as if unlimited).
    pub available: Option<u64>,
    /// `OLLAMA_MAX_LOADED_MODELS`.
    pub max_loaded: usize,
}

/// How a model that is not loaded gets its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Room {
    /// Unload these loaded models (indices, with why), then start it with this plan.
    Load { plan: Plan, evict: Vec<(usize, &'static str)> },
    /// Wait for a loaded model to finish its requests.
    Wait,
}

/// Where a model with `needs` goes beside the `loaded` ones on `devices` and the host, and which
/// loaded ones must go first: by GPU memory ([`decide`]), then by count, then by host memory,
/// the least recently used idle model each time. When nothing idle is left, the count makes the
/// request wait while host memory does not (the estimate is rough, and a load that really does
/// not fit fails cleanly).
pub fn make_room(
    devices: &[DeviceInfo],
    loaded: &[Loaded],
    host: &Host,
    needs: &Needs,
    ask: &Ask,
    config: &GpuConfig,
) -> Room {
    let estimate = needs.bytes(config.kv_cache_type);
    let mut available = host.available.unwrap_or(u64::MAX);
    let mut evict: Vec<(usize, &'static str)> = Vec::new();
    loop {
        let staying: Vec<(usize, &Loaded)> =
            loaded.iter().enumerate().filter(|(i, _)| !evict.iter().any(|(e, _)| e == i)).collect();
        let gpus = Gpu::from_devices(devices, |id| staying.iter().map(|(_, l)| l.held_on(id)).sum());
        let described: Vec<Loaded> = staying.iter().map(|(_, l)| (*l).clone()).collect();
        let over_count = staying.len() >= host.max_loaded;
        let (victim, why) = match decide(&gpus, &described, needs, ask, config) {
            Decision::Wait => return Room::Wait,
            Decision::Evict(i) => (staying[i].0, "GPU memory"),
            Decision::Load(plan) => {
                // What stays on the host.
                let over_memory = estimate.saturating_sub(plan.expected_gpu_bytes()) > available;
                if !over_count && !over_memory {
                    return Room::Load { plan, evict };
                }
                let idle = staying.iter().filter(|(_, l)| l.idle).min_by_key(|(_, l)| l.last_used);
                match idle {
                    Some((i, _)) => (*i, if over_count { "count" } else { "memory" }),
                    None if over_count => return Room::Wait,
                    None => return Room::Load { plan, evict },
                }
            }
        };
        available = available.saturating_add(loaded[victim].host_bytes);
        evict.push((victim, why));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(id: &str, free_gib: u64) -> Gpu {
        Gpu { id: id.into(), total: free_gib * GIB, free: free_gib * GIB }
    }

    /// The 8B shape of `../shared/reference/gpu.md`: 4.21 GiB of Q4_0 weights, 32 blocks, KV of
    /// 2 × 32 layers × 8 heads × 128 dims per position; here 4096 positions (0.5 GiB in f16).
    fn llama8b() -> Needs {
        Needs { weights: 4_520_000_000, kv_elements: 2 * 32 * 8 * 128 * 4096, layers: 32 }
    }

    fn auto() -> Ask {
        Ask { num_gpu: -1, main_gpu: None }
    }

    #[test]
    fn no_gpu_means_cpu_only() {
        let p = plan(&[], &llama8b(), &auto(), &GpuConfig::default());
        assert_eq!((p.main_gpu, p.wanted, p.expected.len()), (None, 0, 0));
        assert!(p.fits(), "nothing is meant for a GPU, so nothing is missing");
        assert_eq!(decide(&[], &[], &llama8b(), &auto(), &GpuConfig::default()), Decision::Load(p));
    }

    #[test]
    fn num_gpu_zero_keeps_the_gpu_out() {
        let ask = Ask { num_gpu: 0, main_gpu: None };
        let p = plan(&[gpu("CUDA0", 80)], &llama8b(), &ask, &GpuConfig::default());
        assert_eq!((p.main_gpu, p.wanted, p.expected_gpu_bytes()), (None, 0, 0));
    }

    #[test]
    fn a_model_goes_whole_on_the_gpu_with_most_room() {
        let gpus = [gpu("CUDA0", 4), gpu("CUDA1", 80)];
        let p = plan(&gpus, &llama8b(), &auto(), &GpuConfig::default());
        assert_eq!(p.main_gpu, Some(1));
        assert_eq!(p.expected[0], 0);
        assert!(p.fits());
        let kv = 2 * 32 * 8 * 128 * 4096 * 2;
        assert_eq!(p.expected[1], 4_520_000_000 + kv);
    }

    #[test]
    fn a_small_gpu_takes_what_fits_and_the_rest_stays_on_the_cpu() {
        let gpus = [gpu("CUDA0", 4)];
        let p = plan(&gpus, &llama8b(), &auto(), &GpuConfig::default());
        assert_eq!(p.main_gpu, None, "does not fit one GPU whole: split (here over one)");
        assert_eq!(p.expected, vec![3 * GIB], "4 GiB less llama.cpp's 1 GiB fit margin");
        assert!(!p.fits());
        // Alone, it loads partly offloaded.
        assert_eq!(decide(&gpus, &[], &llama8b(), &auto(), &GpuConfig::default()), Decision::Load(p));
    }

    #[test]
    fn two_gpus_share_a_model_that_fits_neither_alone() {
        let gpus = [gpu("CUDA0", 4), gpu("CUDA1", 4)];
        let p = plan(&gpus, &llama8b(), &auto(), &GpuConfig::default());
        assert_eq!(p.main_gpu, None);
        assert!(p.fits());
        assert_eq!(p.expected[0], p.expected[1], "equal room, equal shares");
    }

    #[test]
    fn sched_spread_splits_even_what_fits_one() {
        let gpus = [gpu("CUDA0", 40), gpu("CUDA1", 80)];
        let config = GpuConfig { spread: true, ..Default::default() };
        let p = plan(&gpus, &llama8b(), &auto(), &config);
        assert_eq!(p.main_gpu, None);
        assert!(p.expected[0] > 0 && p.expected[1] > p.expected[0], "by room: {:?}", p.expected);
        assert!(p.fits());
    }

    #[test]
    fn other_hosts_devices_are_used_together() {
        // Issue 31: CORRAL_RPC_SERVERS' devices split the model, though one could hold it.
        let gpus = [gpu("RPC0", 80), gpu("RPC1", 80)];
        let p = plan(&gpus, &llama8b(), &auto(), &GpuConfig::default());
        assert_eq!(p.main_gpu, None);
        assert!(p.expected[0] > 0 && p.expected[1] > 0, "{:?}", p.expected);
        assert!(corral_types::remote::is_remote_device("RPC12"));
        assert!(!corral_types::remote::is_remote_device("RPC") && !corral_types::remote::is_remote_device("CUDA0"));
    }

    #[test]
    fn main_gpu_pins_the_model() {
        let gpus = [gpu("CUDA0", 40), gpu("CUDA1", 80)];
        let p = plan(&gpus, &llama8b(), &Ask { num_gpu: -1, main_gpu: Some(0) }, &GpuConfig::default());
        assert_eq!(p.main_gpu, Some(0));
        assert_eq!(p.expected[1], 0);
        // An index beyond the GPUs goes to the runner, which refuses it by name.
        let p = plan(&gpus, &llama8b(), &Ask { num_gpu: -1, main_gpu: Some(5) }, &GpuConfig::default());
        assert_eq!((p.main_gpu, p.expected_gpu_bytes()), (Some(5), 0));
    }

    #[test]
    fn overhead_is_kept_free_on_each_gpu() {
        let gpus = [gpu("CUDA0", 6)];
        let p = plan(&gpus, &llama8b(), &auto(), &GpuConfig::default());
        assert!(p.fits(), "6 GiB less the 1 GiB margin holds 4.7 GiB");
        assert_eq!(p.margin, GIB);
        let config = GpuConfig { overhead: 2 * GIB, ..Default::default() };
        let p = plan(&gpus, &llama8b(), &auto(), &config);
        assert_eq!(p.margin, 3 * GIB);
        assert!(!p.fits());
        assert_eq!(p.expected, vec![3 * GIB]);
    }

    #[test]
    fn num_gpu_n_asks_for_n_layers_share() {
        let gpus = [gpu("CUDA0", 80)];
        let p = plan(&gpus, &llama8b(), &Ask { num_gpu: 11, main_gpu: None }, &GpuConfig::default());
        let total = 4_520_000_000 + 2 * 32 * 8 * 128 * 4096 * 2;
        assert_eq!(p.wanted, total / 33 * 11);
        assert_eq!(p.expected_gpu_bytes(), p.wanted);
        assert!(p.fits());
        // More layers than the model has: all of it.
        let p = plan(&gpus, &llama8b(), &Ask { num_gpu: 999, main_gpu: None }, &GpuConfig::default());
        assert_eq!(p.wanted, total / 33 * 33);
    }

    #[test]
    fn kv_cache_types() {
        let gpus = [gpu("CUDA0", 80)];
        let elements = llama8b().kv_elements;
        for (kind, fa, want_kind, want_fa, bytes) in [
            (KvCacheType::F16, None, KvCacheType::F16, None, elements * 2),
            (KvCacheType::Q8_0, None, KvCacheType::Q8_0, Some(true), elements / 32 * 34),
            (KvCacheType::Q4_0, None, KvCacheType::Q4_0, Some(true), elements / 32 * 18),
            // Flash attention turned off wins: a quantized cache cannot be had without it.
            (KvCacheType::Q8_0, Some(false), KvCacheType::F16, Some(false), elements * 2),
            (KvCacheType::F16, Some(true), KvCacheType::F16, Some(true), elements * 2),
        ] {
            let config = GpuConfig { kv_cache_type: kind, flash_attention: fa, ..Default::default() };
            let p = plan(&gpus, &llama8b(), &auto(), &config);
            assert_eq!((p.kv_cache_type, p.flash_attention), (want_kind, want_fa), "{kind:?} {fa:?}");
            assert_eq!(p.wanted, 4_520_000_000 + bytes, "{kind:?} {fa:?}");
        }
    }

    #[test]
    fn another_model_must_fit_whole_or_an_idle_one_makes_room() {
        // 8 GiB GPU holding a 5 GiB model: 2 GiB room after the margin.
        let gpus = [Gpu { id: "CUDA0".into(), total: 8 * GIB, free: 2 * GIB }];
        let on_gpu = |bytes| vec![("CUDA0".to_string(), bytes)];
        let idle_old = Loaded { gpu: on_gpu(5 * GIB), idle: true, last_used: 1, ..Default::default() };
        let idle_new = Loaded { gpu: on_gpu(GIB), idle: true, last_used: 2, ..Default::default() };
        let busy = Loaded { gpu: on_gpu(5 * GIB), idle: false, last_used: 0, ..Default::default() };
        let cpu_only = Loaded { idle: true, last_used: 0, ..Default::default() };
        let config = GpuConfig::default();
        assert_eq!(
            decide(&gpus, &[idle_new.clone(), idle_old.clone()], &llama8b(), &auto(), &config),
            Decision::Evict(1)
        );
        assert_eq!(decide(&gpus, &[busy.clone(), idle_new], &llama8b(), &auto(), &config), Decision::Evict(1));
        assert_eq!(decide(&gpus, std::slice::from_ref(&busy), &llama8b(), &auto(), &config), Decision::Wait);
        // A model on the CPU holds no GPU memory: nothing to evict, load what fits.
        assert!(matches!(decide(&gpus, &[cpu_only], &llama8b(), &auto(), &config), Decision::Load(p) if !p.fits()));
        // CPU-only requests never wait for GPU memory.
        let cpu = Ask { num_gpu: 0, main_gpu: None };
        assert!(matches!(decide(&gpus, &[busy], &llama8b(), &cpu, &config), Decision::Load(_)));
    }

    #[test]
    fn default_context_follows_gpu_memory() {
        use corral_types::runner::{DeviceInfo, DeviceKind};
        let dev = |kind, gib: u64| DeviceInfo {
            id: "X".into(),
            description: String::new(),
            kind,
            total_bytes: gib * GIB,
            free_bytes: gib * GIB,
        };
        assert_eq!(default_context_length(&[dev(DeviceKind::Cpu, 512)], 0), 4096, "host memory does not count");
        assert_eq!(default_context_length(&[dev(DeviceKind::Gpu, 16)], 0), 4096);
        assert_eq!(default_context_length(&[dev(DeviceKind::Gpu, 24)], 0), 32_768);
        assert_eq!(default_context_length(&[dev(DeviceKind::Gpu, 24)], 2 * GIB), 4096, "overhead comes off");
        assert_eq!(default_context_length(&[dev(DeviceKind::Gpu, 24), dev(DeviceKind::Gpu, 24)], 0), 262_144);
        assert_eq!(default_context_length(&[dev(DeviceKind::Gpu, 140)], 0), 262_144);
    }

    #[test]
    fn held_memory_comes_off_the_probe() {
        use corral_types::runner::{DeviceInfo, DeviceKind};
        let dev = |id: &str, kind| DeviceInfo {
            id: id.into(),
            description: String::new(),
            kind,
            total_bytes: 10 * GIB,
            free_bytes: 9 * GIB,
        };
        let devices =
            [dev("CPU", DeviceKind::Cpu), dev("CUDA0", DeviceKind::Gpu), dev("Vulkan0", DeviceKind::IntegratedGpu)];
        let gpus = Gpu::from_devices(&devices, |id| if id == "CUDA0" { 4 * GIB } else { 0 });
        assert_eq!(gpus, vec![Gpu { id: "CUDA0".into(), total: 10 * GIB, free: 5 * GIB }]);
    }

    #[test]
    fn parallelism_follows_memory() {
        let bytes = |p: u32| 1000 + 500 * u64::from(p);
        assert_eq!(auto_parallel(bytes, None), 4);
        assert_eq!(auto_parallel(bytes, Some(10_000)), 4);
        assert_eq!(auto_parallel(bytes, Some(2_700)), 2);
        assert_eq!(auto_parallel(bytes, Some(1_000)), 1);
        let gpus = [gpu("CUDA0", 10), gpu("CUDA1", 4)];
        let config = GpuConfig { overhead: GIB, ..Default::default() };
        assert_eq!(gpu_room(&gpus, -1, &config), 8 * GIB + 2 * GIB, "the margin and overhead stay free");
        assert_eq!(gpu_room(&gpus, 0, &config), 0, "num_gpu 0 uses no GPU");
    }

    /// Host-side room, on a machine without GPUs: by count, then by memory, idle models least
    /// recently used first; the count waits for a busy model, memory does not.
    #[test]
    fn making_room_on_the_host() {
        let model = Needs { weights: 4 * GIB, kv_elements: 0, layers: 32 };
        let resident = |host_gib: u64, idle: bool, last_used: u64| Loaded {
            host_bytes: host_gib * GIB,
            idle,
            last_used,
            ..Default::default()
        };
        let config = GpuConfig::default();
        let host = |available_gib: u64, max_loaded: usize| Host { available: Some(available_gib * GIB), max_loaded };
        let room = |loaded: &[Loaded], host: Host| match make_room(&[], loaded, &host, &model, &auto(), &config) {
            Room::Load { evict, .. } => Some(evict),
            Room::Wait => None,
        };
        let (old, new, busy) = (resident(3, true, 1), resident(3, true, 2), resident(3, false, 0));
        assert_eq!(room(&[old.clone(), new.clone()], host(16, 3)), Some(vec![]));
        assert_eq!(room(&[new.clone(), old.clone()], host(16, 2)), Some(vec![(1, "count")]));
        assert_eq!(room(std::slice::from_ref(&busy), host(16, 1)), None, "over the count with nothing idle: wait");
        // 4 GiB needed, 2 available: the oldest idle one goes; then 5 are, enough.
        assert_eq!(room(&[new.clone(), old.clone()], host(2, 3)), Some(vec![(1, "memory")]));
        // Nothing available: both idle ones go, oldest first; the busy one stays.
        assert_eq!(
            room(&[new.clone(), busy.clone(), old.clone()], host(0, 4)),
            Some(vec![(2, "memory"), (0, "memory")])
        );
        // Short of memory with nothing idle: load anyway.
        assert_eq!(room(&[busy], host(1, 3)), Some(vec![]));
        // Unknown host memory never evicts.
        let unknown = Host { available: None, max_loaded: 3 };
        assert_eq!(room(&[old], unknown), Some(vec![]));
    }

    /// GPU room first: a model that does not fit beside an idle one on the GPU unloads it, and
    /// what it held comes off the devices before the plan is made.
    #[test]
    fn making_room_on_a_gpu() {
        use corral_types::runner::{DeviceInfo, DeviceKind};
        let devices = [DeviceInfo {
            id: "CUDA0".into(),
            description: String::new(),
            kind: DeviceKind::Gpu,
            total_bytes: 8 * GIB,
            free_bytes: 8 * GIB,
        }];
        let holder = |last_used| Loaded { gpu: vec![("CUDA0".into(), 5 * GIB)], host_bytes: 0, idle: true, last_used };
        let host = Host { available: Some(64 * GIB), max_loaded: 3 };
        let config = GpuConfig::default();
        match make_room(&devices, &[holder(1)], &host, &llama8b(), &auto(), &config) {
            Room::Load { plan, evict } => {
                assert_eq!(evict, vec![(0, "GPU memory")]);
                assert!(plan.fits(), "the whole model goes on the GPU once it is free: {plan:?}");
            }
            Room::Wait => panic!("an idle holder makes room"),
        }
        let busy = Loaded { idle: false, ..holder(1) };
        assert_eq!(make_room(&devices, &[busy], &host, &llama8b(), &auto(), &config), Room::Wait);
    }
}
