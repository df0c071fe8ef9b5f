//! The protocol between the server and a runner process (`corral runner`), and the engine's
//! request and event types it carries.
//!
//! Messages are JSON objects, one per line, over a Unix socket. The server assigns every request
//! an `id`; the runner's answers carry the same `id`. A completion is answered by any number of
//! `token` messages, then exactly one `done` or `error`.

use serde::{Deserialize, Serialize};

/// How to load a model. Changing any of these needs a new runner.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadOptions {
    pub model_path: String,
    /// LoRA adapters and their scales.
    #[serde(default)]
    pub adapters: Vec<(String, f32)>,
    /// A draft model for speculative decoding (same vocabulary), loaded beside the model with a
    /// context of the same shape.
    #[serde(default)]
    pub draft_path: Option<String>,
    /// Context length of each sequence.
    pub num_ctx: u32,
    /// Sequences decoded together (continuous batching slots).
    pub parallel: u32,
    pub num_batch: u32,
    /// CPU threads; 0 lets the engine choose.
    pub num_thread: u32,
    /// Layers to offload to a GPU (-1 = as many as fit; 0 = CPU only).
    pub num_gpu: i32,
    /// Keep the whole model on this GPU (an index among the GPUs) instead of splitting its layers
    /// across all of them.
    #[serde(default)]
    pub main_gpu: Option<u32>,
    /// Bytes each GPU keeps free when llama.cpp fits the layers (`num_gpu` -1).
    #[serde(default)]
    pub gpu_margin: u64,
    /// Flash attention: `None` lets llama.cpp decide.
    #[serde(default)]
    pub flash_attention: Option<bool>,
    /// Element type of the K and V caches.
    #[serde(default)]
    pub kv_cache_type: KvCacheType,
    pub use_mmap: Option<bool>,
    /// Let llama.cpp log to stderr.
    #[serde(default)]
    pub verbose: bool,
    /// An embedding model: the context returns pooled embeddings instead of logits.
    #[serde(default)]
    pub embedding: bool,
    /// Load GGUFs published for Ollama's own engine as they are, without translating them to
    /// llama.cpp's layout (`OLLAMA_LLAMA_CPP_COMPAT=0`).
    #[serde(default)]
    pub no_compat: bool,
    /// A multimodal projector (an `mmproj` GGUF) for images or sounds in prompts.
    #[serde(default)]
    pub projector_path: Option<String>,
}

/// Element type of the KV cache (`OLLAMA_KV_CACHE_TYPE`). The quantized types need flash
/// attention.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvCacheType {
    #[default]
    F16,
    Q8_0,
    Q4_0,
}

impl KvCacheType {
    /// Ollama's names: `f16`, `q8_0`, `q4_0`.
    pub fn parse(s: &str) -> Option<KvCacheType> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f16" => Some(KvCacheType::F16),
            "q8_0" => Some(KvCacheType::Q8_0),
            "q4_0" => Some(KvCacheType::Q4_0),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KvCacheType::F16 => "f16",
            KvCacheType::Q8_0 => "q8_0",
            KvCacheType::Q4_0 => "q4_0",
        }
    }

    /// Bytes of `n` cache elements (ggml's block sizes: 32 elements in 34 or 18 bytes).
    pub fn bytes(self, n: u64) -> u64 {
        match self {
            KvCacheType::F16 => n * 2,
            KvCacheType::Q8_0 => n.div_ceil(32) * 34,
            KvCacheType::Q4_0 => n.div_ceil(32) * 18,
        }
    }

    pub fn quantized(self) -> bool {
        self != KvCacheType::F16
    }
}

/// What kind of compute device llama.cpp reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    Cpu,
    Gpu,
    /// A GPU sharing the host's memory.
    IntegratedGpu,
    Accelerator,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Gpu => "gpu",
            DeviceKind::IntegratedGpu => "integrated_gpu",
            DeviceKind::Accelerator => "accelerator",
        }
    }
}

/// One device llama.cpp can run on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// llama.cpp's name for it: `CPU`, `CUDA0`…
    pub id: String,
    pub description: String,
    pub kind: DeviceKind,
    pub total_bytes: u64,
    pub free_bytes: u64,
}

/// The variable in which the server tells the processes it starts (runners, template workers) its
/// pid: a child that starts after the server already died (it was killed between the fork and
/// the child's first look at its parent) sees another parent from the start, and must still know
/// to leave.
pub const PARENT_PID_ENV: &str = "CORRAL_PARENT_PID";

/// Which devices the environment lets runners use: Ollama's `OLLAMA_VULKAN` (Vulkan's backend at
/// all) and `OLLAMA_IGPU_ENABLE` (integrated GPUs), resolved by the server and handed to each
/// runner (`corral runner --no-vulkan`, `--igpu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePolicy {
    /// Load llama.cpp's Vulkan module (Ollama's default: yes).
    pub vulkan: bool,
    /// Integrated GPUs: `Some` allows or drops them all; `None` is Ollama's default.
    pub integrated: Option<bool>,
}

impl Default for DevicePolicy {
    fn default() -> Self {
        DevicePolicy { vulkan: true, integrated: None }
    }
}

impl DevicePolicy {
    /// Whether `device` may be used. Ollama's rule for an integrated GPU: unless
    /// `OLLAMA_IGPU_ENABLE` says otherwise, CUDA's (Jetson and the like) are used and the others
    /// (Vulkan's, sharing the system's memory with the CPU) dropped.
    pub fn allows(&self, device: &DeviceInfo) -> bool {
        device.kind != DeviceKind::IntegratedGpu || self.integrated.unwrap_or_else(|| device.id.starts_with("CUDA"))
    }
}

/// The GPUs llama.cpp offloads to by default, with their indices among `devices`: the discrete
/// ones, or the integrated ones when there is no discrete GPU.
pub fn offload_gpus(devices: &[DeviceInfo]) -> Vec<(usize, &DeviceInfo)> {
    let discrete = devices.iter().any(|d| d.kind == DeviceKind::Gpu);
    let want = if discrete { DeviceKind::Gpu } else { DeviceKind::IntegratedGpu };
    devices.iter().enumerate().filter(|(_, d)| d.kind == want).collect()
}

/// What a runner found when it loaded llama.cpp's backends (`corral runner --probe`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backends {
    /// The directory the backend modules came from.
    pub library_dir: String,
    /// Identity of the ggml source this build expects of every module.
    pub source: String,
    /// The CPU backend variant loaded (`haswell`, `skylakex`, `zen4`…), by its file name.
    pub cpu_variant: Option<String>,
    /// Other backend modules loaded (`cuda`…).
    #[serde(default)]
    pub gpu_backends: Vec<String>,
    pub devices: Vec<DeviceInfo>,
    /// Modules found and not loaded, each with the reason.
    #[serde(default)]
    pub refused: Vec<String>,
    /// CPU variants this machine cannot run although the CPU reports their instructions (the
    /// operating system does not enable them), each with the reason.
    #[serde(default)]
    pub skipped: Vec<String>,
    /// RPC servers (`CORRAL_RPC_SERVERS`) whose devices are not used, each with the reason.
    #[serde(default)]
    pub peers_left_out: Vec<String>,
}

/// Bytes of a device's memory a loaded model holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceUse {
    pub id: String,
    pub bytes: u64,
    /// For another host's device (RPC): its `host:port`, which ggml gives as the description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Which of that host's devices it is, from 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub host_device: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Texts to embed, together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedRequest {
    pub inputs: Vec<String>,
    /// Cut inputs longer than the context instead of failing.
    pub truncate: bool,
    /// Rerank: each input is a document scored against this query, as one pair (a reranker's
    /// pooled output is the pair's relevance score).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

/// Raw (not normalised) pooled embeddings, one per input, and the tokens they took.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedded {
    pub vectors: Vec<Vec<f32>>,
    pub prompt_tokens: u32,
}

/// Sampling settings of one request (Ollama's option names and defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub typical_p: f32,
    pub repeat_last_n: i32,
    pub repeat_penalty: f32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// `None` draws a random seed.
    pub seed: Option<u32>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.9,
            min_p: 0.0,
            typical_p: 1.0,
            repeat_last_n: 64,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// One generation request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompletionRequest {
    /// Prompt text (special tokens in it are parsed).
    pub prompt: String,
    pub sampling: Sampling,
    /// Most tokens to generate; `None` generates until the context is full. When this many do not
    /// fit the context, the context is shifted (see `num_keep`) so the generation can go on.
    pub num_predict: Option<u32>,
    /// Tokens kept at the start of the context when it is shifted (Ollama's `num_keep`; default
    /// 4, `u32::MAX` for the whole prompt). At most half the context is ever kept.
    #[serde(default)]
    pub num_keep: Option<u32>,
    /// Whether the context may shift at all (Ollama's `shift`); without it a full context ends
    /// the answer with `length`.
    #[serde(default = "yes")]
    pub shift: bool,
    /// Generation ends before any of these strings; they are not returned.
    #[serde(default)]
    pub stop: Vec<String>,
    /// A constraint the output must follow.
    #[serde(default)]
    pub constraint: Option<Constraint>,
    /// Return this many alternatives with each token's log-probability (`None`: no logprobs).
    #[serde(default)]
    pub logprobs: Option<u32>,
    /// Most tokens the model may think: past them the closing tag is written for it, and the
    /// answer follows (Anthropic's `budget_tokens`).
    #[serde(default)]
    pub think_budget: Option<ThinkBudget>,
    /// Speculative decoding for this request (`None`: one token per step).
    #[serde(default)]
    pub speculation: Option<Speculation>,
    /// Images and sounds, in prompt order, each placed at a byte offset of `prompt` (a model
    /// loaded with a projector only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<Media>,
}

/// An image or a sound in a prompt: its file's bytes (PNG, JPEG, WAV, MP3…, as sent), and where it
/// goes. The offset is given instead of a marker in the text, so no text a user writes can be
/// taken for an image.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Media {
    /// Byte offset in the prompt (a character boundary), where the media goes.
    pub at: usize,
    /// The file's bytes; base64 on the wire.
    #[serde(with = "base64_bytes")]
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Media").field("at", &self.at).field("bytes", &self.data.len()).finish()
    }
}

/// Bytes as a base64 string in JSON.
mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD.decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// How a request drafts tokens for the model to check several at a time (speculative decoding).
/// The output is the same as without it: drafts only decide how many tokens one step can keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Speculation {
    /// Most tokens drafted per step (Ollama's `draft_num_predict`); the engine adapts how many it
    /// drafts, up to this, to how many of its drafts are kept.
    pub max_tokens: u32,
    /// Draft at every step, even where the engine measures that drafting costs more time than it
    /// saves (it otherwise stops there). For tests and benches of drafting itself.
    #[serde(default)]
    pub always: bool,
}

/// A bound on thinking, with the tags that delimit it in this model's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThinkBudget {
    pub tokens: u32,
    /// The tag that opens thinking (watched for when the prompt does not open it).
    pub open: String,
    /// The text written after the last thinking token when the budget is spent.
    pub close: String,
    /// The prompt already opened the thinking.
    pub inside: bool,
}

/// Grammar-constrained output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Constraint {
    /// Any JSON value (`"format": "json"`).
    Json,
    /// JSON matching this schema (`"format": {…}`), as JSON text.
    JsonSchema(String),
    /// A GBNF grammar.
    Grammar(String),
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DoneReason {
    /// End-of-generation token or stop sequence.
    Stop,
    /// `num_predict` reached or the context is full.
    Length,
}

impl DoneReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DoneReason::Stop => "stop",
            DoneReason::Length => "length",
        }
    }
}

/// Counts and timings of a finished generation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens processed (not counting those found in the prompt cache).
    pub prompt_tokens: u32,
    pub prompt_ns: u64,
    pub generated_tokens: u32,
    pub generation_ns: u64,
    /// Prompt tokens reused from the slot's cache.
    #[serde(default)]
    pub cached_tokens: u32,
    /// Decode steps this generation shared with at least one other sequence (continuous batching).
    #[serde(default)]
    pub shared_steps: u32,
    /// Tokens drafted for this generation (speculative decoding).
    #[serde(default)]
    pub draft_tokens: u32,
    /// Drafted tokens the model kept.
    #[serde(default)]
    pub draft_accepted: u32,
}

/// One token's log-probability and its best alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub top_logprobs: Vec<TopLogprob>,
}

/// An alternative token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

/// What a loaded model reports about itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunnerInfo {
    /// Context length of each sequence, as allocated.
    pub num_ctx: u32,
    /// Context length the model was trained with.
    pub n_ctx_train: u32,
    pub parallel: u32,
    /// Bytes of weights plus KV cache, the `size` of `/api/ps`.
    pub memory_bytes: u64,
    /// Whether the model adds a BOS token itself.
    pub add_bos: bool,
    /// Layers of the model, and how many of them run on GPUs.
    #[serde(default)]
    pub layers: u32,
    #[serde(default)]
    pub gpu_layers: u32,
    /// GPU memory taken by the load (weights, KV cache, compute buffers), per device, measured
    /// as the drop in the device's free memory.
    #[serde(default)]
    pub devices: Vec<DeviceUse>,
    /// The CPU backend variant the runner loaded.
    #[serde(default)]
    pub cpu_variant: Option<String>,
    /// The KV cache's element type as created (f16 where a quantized one did not suit the model).
    #[serde(default)]
    pub kv_cache_type: KvCacheType,
}

impl RunnerInfo {
    /// Bytes on GPUs: the `size_vram` of `/api/ps`.
    pub fn gpu_bytes(&self) -> u64 {
        self.devices.iter().map(|d| d.bytes).sum()
    }
}

/// Server → runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToRunner {
    Tokenize {
        id: u64,
        text: String,
    },
    Detokenize {
        id: u64,
        tokens: Vec<u32>,
    },
    Complete {
        id: u64,
        request: Box<CompletionRequest>,
    },
    Cancel {
        id: u64,
    },
    /// End a completion now, as if a stop sequence matched: its `Done` still comes.
    Stop {
        id: u64,
    },
    Embed {
        id: u64,
        request: EmbedRequest,
    },
    /// How the KV cache is used now (answered at once, between decode steps or not).
    Cells {
        id: u64,
    },
    /// A heartbeat, answered with `Pong` at once by the thread that reads requests: a runner that
    /// stops answering these (stopped with SIGSTOP, wedged) is killed by the server.
    Ping {
        id: u64,
    },
}

/// Why a runner request failed, as the server needs to know it: the status to answer with, or
/// whether the runner is gone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A fault of the runner or the model (a failed decode): the server's problem.
    #[default]
    Internal,
    /// The request cannot be served as asked (a token outside the vocabulary, a generation model
    /// asked for embeddings).
    Invalid,
    /// The input is longer than the context and may not be cut.
    ContextLength,
    /// The runner stopped (it died, or was unloaded) before answering.
    Stopped,
}

/// KV cache cells of a runner's context: `used` by running completions, `cached` by idle slots'
/// prompt caches (given up when the cells are needed), out of `total`; and how many times a
/// running sequence was `moves`d to another slot (its cells copied) to close a gap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvCells {
    pub used: u64,
    pub cached: u64,
    pub total: u64,
    #[serde(default)]
    pub moves: u64,
}

/// Runner → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromRunner {
    /// Loading progress, 0 to 1.
    Loading {
        progress: f32,
    },
    Ready {
        info: RunnerInfo,
    },
    LoadFailed {
        error: String,
    },
    /// llama.cpp is about to abort the process (a peer of the RPC backend stopped answering, an
    /// assertion failed): why, for the requests in flight.
    Fatal {
        error: String,
    },
    Tokens {
        id: u64,
        tokens: Vec<u32>,
    },
    Text {
        id: u64,
        text: String,
    },
    Token {
        id: u64,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        logprob: Option<TokenLogprob>,
    },
    Done {
        id: u64,
        reason: DoneReason,
        usage: Usage,
        tokens: Vec<u32>,
    },
    Error {
        id: u64,
        error: String,
        /// What kind of failure, for the server to act on (the text is for people).
        #[serde(default)]
        kind: ErrorKind,
    },
    Embedded {
        id: u64,
        result: Embedded,
    },
    Cells {
        id: u64,
        cells: KvCells,
    },
    Pong {
        id: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integrated_gpus_only_without_a_discrete_one() {
        let dev = |id: &str, kind| DeviceInfo {
            id: id.into(),
            description: String::new(),
            kind,
            total_bytes: 1,
            free_bytes: 1,
        };
        let cpu = dev("CPU", DeviceKind::Cpu);
        let both = [cpu.clone(), dev("Vulkan0", DeviceKind::IntegratedGpu), dev("CUDA0", DeviceKind::Gpu)];
        let ids: Vec<_> = offload_gpus(&both).into_iter().map(|(i, d)| (i, d.id.as_str())).collect();
        assert_eq!(ids, [(2, "CUDA0")]);
        let igpu = [cpu.clone(), dev("Vulkan0", DeviceKind::IntegratedGpu)];
        assert_eq!(offload_gpus(&igpu).len(), 1);
        assert!(offload_gpus(&[cpu]).is_empty());
    }

    #[test]
    fn integrated_gpus_follow_ollamas_rule() {
        let device = |id: &str, kind| DeviceInfo {
            id: id.into(),
            description: String::new(),
            kind,
            total_bytes: 1,
            free_bytes: 1,
        };
        let (vulkan, cuda) = (device("Vulkan0", DeviceKind::IntegratedGpu), device("CUDA0", DeviceKind::IntegratedGpu));
        let unset = DevicePolicy::default();
        assert!(!unset.allows(&vulkan) && unset.allows(&cuda));
        let on = DevicePolicy { integrated: Some(true), ..unset };
        assert!(on.allows(&vulkan) && on.allows(&cuda));
        let off = DevicePolicy { integrated: Some(false), ..unset };
        assert!(!off.allows(&vulkan) && !off.allows(&cuda));
        // Discrete GPUs and the CPU are never dropped.
        for kind in [DeviceKind::Gpu, DeviceKind::Cpu] {
            assert!(off.allows(&device("Vulkan0", kind)));
        }
    }

    #[test]
    fn wire_format() {
        let m = ToRunner::Cancel { id: 7 };
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"type":"cancel","id":7}"#);
        let m: FromRunner = serde_json::from_str(r#"{"type":"token","id":1,"text":"Hi"}"#).unwrap();
        assert_eq!(m, FromRunner::Token { id: 1, text: "Hi".into(), logprob: None });
        assert_eq!(serde_json::to_string(&ToRunner::Ping { id: 3 }).unwrap(), r#"{"type":"ping","id":3}"#);
        let m: FromRunner = serde_json::from_str(r#"{"type":"pong","id":3}"#).unwrap();
        assert_eq!(m, FromRunner::Pong { id: 3 });
    }
}
