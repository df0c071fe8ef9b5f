//! Where a model's layers go, and the context settings that go with it.
//!
//! - `num_gpu` 0, or no GPU: everything on the CPU, and no GPU is touched (no device list, no
//!   operations offloaded for large batches).
//! - `num_gpu` N: N layers on the GPUs, as llama.cpp places them.
//! - `num_gpu` -1 (automatic): llama.cpp's own fit (`common_fit_params`) chooses the layers, the
//!   split between GPUs and the buffers to keep on the CPU from the devices' free memory, keeping
//!   `gpu_margin` bytes free on each. No estimate of our own decides this.
//! - `main_gpu`: the whole model on that GPU (llama.cpp's split mode "none").
//!
//! The GPU memory a load took is measured, not estimated: each device's free memory before the
//! load and after its context exists, or llama.cpp's own accounting of the buffers it put there
//! where that is more (a device that does not report its use).

use std::ffi::CString;
use std::pin::Pin;

use corral_types::runner::{offload_gpus, DeviceUse, KvCacheType, LoadOptions};
use llama_cpp_2::context::params::{KvCacheType as LlamaKvType, LlamaContextParams};
use llama_cpp_2::model::params::{LlamaModelParams, LlamaSplitMode};

/// The placement chosen for a load.
pub(crate) struct Offload {
    /// GPUs the model may use: ggml device index, name, free bytes before the load.
    gpus: Vec<(usize, String, u64)>,
    /// Layers placed on GPUs (may exceed the model's count: "all").
    pub gpu_layers: u32,
    /// The KV cache type in effect (a quantized one needs flash attention).
    pub kv_cache_type: KvCacheType,
}

impl Offload {
    /// GPU memory the load of `ctx` took, per device that holds any of it: what the device lost of
    /// its free memory, or what llama.cpp allocated there by its own accounting where that is more
    /// (a device that does not report its use, as Mesa's lavapipe, keeps its free memory whole).
    pub fn used(&self, ctx: &mut llama_cpp_2::context::LlamaContext) -> Vec<DeviceUse> {
        let now = crate::backends::devices();
        self.gpus
            .iter()
            .filter_map(|(i, id, before)| {
                let device = now.get(*i)?;
                let bytes = before.saturating_sub(device.free_bytes).max(crate::compat::device_bytes(ctx, id));
                let (host, host_device) = match corral_types::remote::is_remote_device(id) {
                    // ggml describes an RPC device by its host; that host's devices come in order.
                    true => {
                        let earlier = now[..*i].iter().filter(|d| d.description == device.description).count();
                        (Some(device.description.clone()), earlier as u32)
                    }
                    false => (None, 0),
                };
                (bytes > 0).then(|| DeviceUse { id: id.clone(), bytes, host, host_device })
            })
            .collect()
    }
}

fn llama_kv_type(t: KvCacheType) -> LlamaKvType {
    match t {
        KvCacheType::F16 => LlamaKvType::F16,
        KvCacheType::Q8_0 => LlamaKvType::Q8_0,
        KvCacheType::Q4_0 => LlamaKvType::Q4_0,
    }
}

/// `ctx` with K and V caches of `kind`.
pub(crate) fn with_kv_cache_type(ctx: LlamaContextParams, kind: KvCacheType) -> LlamaContextParams {
    ctx.with_type_k(llama_kv_type(kind)).with_type_v(llama_kv_type(kind))
}

/// Sets up `params` and `ctx` for `opts` on the devices present now.
pub(crate) fn configure(
    opts: &LoadOptions,
    mut params: LlamaModelParams,
    ctx: &mut LlamaContextParams,
) -> Result<(Pin<Box<LlamaModelParams>>, Offload), String> {
    use llama_cpp_sys_2::{LLAMA_FLASH_ATTN_TYPE_AUTO, LLAMA_FLASH_ATTN_TYPE_DISABLED, LLAMA_FLASH_ATTN_TYPE_ENABLED};

    // A quantized V cache needs flash attention: asked for a quantized cache, flash attention is
    // turned on, unless it was turned off explicitly, which wins (with an f16 cache).
    let (kv_cache_type, flash) = match (opts.kv_cache_type.quantized(), opts.flash_attention) {
        (true, Some(false)) => {
            eprintln!(
                "runner: warning: KV cache type {} needs flash attention, which is off; using f16",
                opts.kv_cache_type.as_str()
            );
            (KvCacheType::F16, LLAMA_FLASH_ATTN_TYPE_DISABLED)
        }
        (true, _) | (false, Some(true)) => (opts.kv_cache_type, LLAMA_FLASH_ATTN_TYPE_ENABLED),
        (false, Some(false)) => (opts.kv_cache_type, LLAMA_FLASH_ATTN_TYPE_DISABLED),
        (false, None) => (opts.kv_cache_type, LLAMA_FLASH_ATTN_TYPE_AUTO),
    };
    *ctx = with_kv_cache_type(std::mem::take(ctx).with_flash_attention_policy(flash), kv_cache_type);

    let devices = crate::backends::devices();
    let gpus = offload_gpus(&devices);
    if opts.num_gpu == 0 || gpus.is_empty() {
        // An empty device list (not a null one, which means "all"): no GPU at all.
        let params = params.with_n_gpu_layers(0).with_devices(&[]).map_err(|e| e.to_string())?;
        if !gpus.is_empty() {
            *ctx = std::mem::take(ctx).with_op_offload(false);
        }
        let offload = Offload { gpus: Vec::new(), gpu_layers: 0, kv_cache_type };
        return Ok((Box::pin(params), offload));
    }

    let mut chosen: Vec<(usize, String, u64)> = gpus.iter().map(|(i, d)| (*i, d.id.clone(), d.free_bytes)).collect();
    if let Some(main) = opts.main_gpu {
        let Some(one) = chosen.get(main as usize).cloned() else {
            return Err(format!("main_gpu {main} does not exist: this machine has {} GPU(s)", chosen.len()));
        };
        params = params.with_split_mode(LlamaSplitMode::None).with_main_gpu(main as i32);
        chosen = vec![one];
    }

    if opts.num_gpu > 0 {
        let layers = opts.num_gpu as u32;
        let offload = Offload { gpus: chosen, gpu_layers: layers, kv_cache_type };
        return Ok((Box::pin(params.with_n_gpu_layers(layers)), offload));
    }

    let mut params = Box::pin(params);
    let path = CString::new(opts.model_path.as_bytes()).map_err(|_| "model path contains a NUL byte".to_string())?;
    // SAFETY: reads the number of device slots llama.cpp's fit expects margins for.
    let slots = unsafe { llama_cpp_sys_2::llama_max_devices() };
    let mut margins = vec![usize::try_from(opts.gpu_margin).unwrap_or(usize::MAX); slots];
    let n_ctx = ctx.n_ctx().map_or(0, |n| n.get());
    let fitted = params.as_mut().fit_params(&path, ctx, &mut margins, n_ctx, llama_cpp_sys_2::GGML_LOG_LEVEL_INFO);
    let gpu_layers = match fitted {
        Ok(_) => u32::try_from(params.n_gpu_layers()).unwrap_or(u32::MAX),
        Err(e) => {
            // Nothing fits beside the margin: the CPU holds it all.
            eprintln!("runner: warning: llama.cpp found no GPU placement ({e}); loading on the CPU");
            let plain = std::mem::take(Pin::into_inner(params).as_mut());
            params = Box::pin(plain.with_n_gpu_layers(0));
            0
        }
    };
    Ok((params, Offload { gpus: chosen, gpu_layers, kv_cache_type }))
}
