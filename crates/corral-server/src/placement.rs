//! GPU placement policy, as a pure function of described devices: which GPUs a model may use,
//! what each must keep free, the KV cache settings, and whether loaded models must make room.
//!
//! Layers are never placed here: the runner hands that to llama.cpp's own fit, which measures
//! the model against each device's free memory. What the server decides, as Ollama's scheduler
//! does, is the frame around it:
//!
//! - `num_gpu` 0, or no GPU: CPU only.
//! - One GPU when the model is expected to fit on the one with the most room (`main_gpu`), unless
//!   `OLLAMA_SCHED_SPREAD`; else all of them, split by layer. A request's `main_gpu` pins it.
//! - Each GPU keeps llama.cpp's fit margin plus `OLLAMA_GPU_OVERHEAD` free.
//! - A quantized KV cache (`OLLAMA_KV_CACHE_TYPE` q8_0 or q4_0) needs flash attention; with
//!   flash attention turned off it falls back to f16.
//! - The first model may be offloaded partly. Another one must be expected to fit whole beside
//!   those loaded, else the least recently used idle model holding GPU memory is evicted; when
//!   only busy ones hold it, the request waits for one to finish. Once no other model holds GPU
//!   memory, the model loads with whatever fits.
//!
//! The expectation (`weights + KV cache`) is deliberately rough and used only for these choices;
//! what a loaded model really holds is measured by its runner and accounted from then on.

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
        None if config.spread => None,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// GPU bytes it holds.
    pub gpu_bytes: u64,
    /// No request is using it.
    pub idle: bool,
    /// Larger is more recent.
    pub last_used: u64,
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
    let holders = || loaded.iter().enumerate().filter(|(_, l)| l.gpu_bytes > 0);
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
        let idle_old = Loaded { gpu_bytes: 5 * GIB, idle: true, last_used: 1 };
        let idle_new = Loaded { gpu_bytes: GIB, idle: true, last_used: 2 };
        let busy = Loaded { gpu_bytes: 5 * GIB, idle: false, last_used: 0 };
        let cpu_only = Loaded { gpu_bytes: 0, idle: true, last_used: 0 };
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
}
