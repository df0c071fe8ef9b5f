//! `GET /metrics` in Prometheus' text format.
//!
//! Counters and histograms are updated by answers as they run (time to first token, time between
//! tokens, token counts at the end); gauges are read from the scheduler and the runners when
//! scraped. The vLLM names that the Kubernetes Gateway API Inference Extension reads
//! (`vllm:num_requests_waiting`, `vllm:num_requests_running`, `vllm:kv_cache_usage_perc`) are
//! served beside Corral's own.
//!
//! Two info series for the gateway's endpoint picker, in vLLM's label format: `vllm:lora_requests_info`
//! (its value the time of the scrape, as vLLM sets it) lists the models with LoRA adapters that are
//! loaded (`running_lora_adapters`: a request for one needs no load) and being loaded
//! (`waiting_lora_adapters`), with `max_lora` the most runners loaded at once. Each model with an
//! `ADAPTER` is its own runner here, asked for by its own name, which is what the gateway sends as
//! `model` when it routes by adapter; a `:latest` tag is left off, as people write the names.
//! `vllm:cache_config_info` gives the KV cache as blocks of [`BLOCK_TOKENS`] tokens.
//!
//! `kv_cache_usage_perc` is the share of KV cells, over all loaded runners, that running requests
//! hold. Cells kept by idle slots for the prompt cache count as free, as vLLM counts its cached
//! blocks: they are given up as soon as a request needs them. Each runner answers from counters
//! its engine publishes after every step, so a scrape does not wait for a decode.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use corral_types::runner::{DeviceInfo, KvCells, Usage};

use crate::sched::Loaded;
use crate::AppState;

/// A histogram with fixed bucket bounds, in seconds.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = self.bounds.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
    }
}

const TTFT_BOUNDS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
const ITL_BOUNDS: &[f64] = &[0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1.0];

/// Server-wide counters.
pub struct Metrics {
    pub time_to_first_token: Histogram,
    pub inter_token_latency: Histogram,
    requests: AtomicU64,
    prompt_tokens: AtomicU64,
    cached_prompt_tokens: AtomicU64,
    prompt_cache_hits: AtomicU64,
    generation_tokens: AtomicU64,
    shared_steps: AtomicU64,
    draft_tokens: AtomicU64,
    draft_accepted: AtomicU64,
    media: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            time_to_first_token: Histogram::new(TTFT_BOUNDS),
            inter_token_latency: Histogram::new(ITL_BOUNDS),
            requests: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            cached_prompt_tokens: AtomicU64::new(0),
            prompt_cache_hits: AtomicU64::new(0),
            generation_tokens: AtomicU64::new(0),
            shared_steps: AtomicU64::new(0),
            draft_tokens: AtomicU64::new(0),
            draft_accepted: AtomicU64::new(0),
            media: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// A generation was sent `n` images or sounds.
    pub fn media_sent(&self, n: usize) {
        self.media.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// A generation finished with `usage`.
    pub fn finished(&self, usage: &Usage) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.prompt_tokens.fetch_add(u64::from(usage.prompt_tokens), Ordering::Relaxed);
        self.cached_prompt_tokens.fetch_add(u64::from(usage.cached_tokens), Ordering::Relaxed);
        if usage.cached_tokens > 0 {
            self.prompt_cache_hits.fetch_add(1, Ordering::Relaxed);
        }
        self.generation_tokens.fetch_add(u64::from(usage.generated_tokens), Ordering::Relaxed);
        self.shared_steps.fetch_add(u64::from(usage.shared_steps), Ordering::Relaxed);
        self.draft_tokens.fetch_add(u64::from(usage.draft_tokens), Ordering::Relaxed);
        self.draft_accepted.fetch_add(u64::from(usage.draft_accepted), Ordering::Relaxed);
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: f64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
}

/// A gauge by device: its name, help text, and how to read it from a device.
type Series<'a> = (&'static str, &'static str, &'a dyn Fn(&DeviceInfo) -> u64);

/// Per-device memory: each device's size and free memory as the runner probe saw them at start,
/// and what the loaded models hold on it now (measured by their runners).
fn devices(out: &mut String, devices: &[DeviceInfo], loaded: &[Loaded]) {
    let held = |id: &str| -> u64 {
        loaded.iter().flat_map(|(_, r, _, _)| &r.info.devices).filter(|d| d.id == id).map(|d| d.bytes).sum()
    };
    let series: [Series<'_>; 3] = [
        ("corral_device_memory_total_bytes", "Memory of each device llama.cpp found.", &|d| d.total_bytes),
        ("corral_device_memory_free_at_start_bytes", "Free memory of each device when the server started.", &|d| {
            d.free_bytes
        }),
        ("corral_device_memory_used_bytes", "Device memory held by the loaded models.", &|d| held(&d.id)),
    ];
    for (name, help, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for d in devices {
            let _ = writeln!(out, "{name}{{device=\"{}\",kind=\"{}\"}} {}", d.id, d.kind.as_str(), value(d));
        }
    }
}

pub(crate) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let loaded = state.scheduler.loaded();
    let (mut running, mut queued, mut slots) = (0u64, 0u64, 0u64);
    let mut cells = KvCells::default();
    for (_, runner, _, _) in &loaded {
        let active = runner.active() as u64;
        let parallel = u64::from(runner.info.parallel.max(1));
        running += active.min(parallel);
        queued += active.saturating_sub(parallel);
        slots += parallel;
        if let Some(c) = runner.cells().await {
            cells.used += c.used;
            cells.cached += c.cached;
            cells.total += c.total;
            cells.moves += c.moves;
        }
    }
    let waiting = queued + state.scheduler.waiting() as u64;
    let usage = if cells.total == 0 { 0.0 } else { cells.used as f64 / cells.total as f64 };
    let m = &state.metrics;
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let gauges: [(&str, &str, f64); 10] = [
        ("vllm:num_requests_running", "Requests being decoded.", running as f64),
        ("vllm:num_requests_waiting", "Requests waiting for a model or a sequence slot.", waiting as f64),
        ("vllm:kv_cache_usage_perc", "Share of KV cache cells held by running requests, 0 to 1.", usage),
        ("corral_requests_running", "Requests being decoded.", running as f64),
        ("corral_requests_waiting", "Requests waiting for a model or a sequence slot.", waiting as f64),
        ("corral_loaded_models", "Runners loaded.", loaded.len() as f64),
        ("corral_sequence_slots", "Sequence slots of the loaded runners.", slots as f64),
        ("corral_kv_cache_cells", "KV cache cells of the loaded runners.", cells.total as f64),
        ("corral_kv_cache_used_cells", "KV cache cells held by running requests.", cells.used as f64),
        ("corral_kv_cache_cached_cells", "KV cache cells kept by idle slots as a prompt cache.", cells.cached as f64),
    ];
    let counters: [(&str, &str, u64); 10] = [
        (
            "corral_sequence_moves_total",
            "Running sequences moved to another slot to keep the busy ones contiguous (loaded runners).",
            cells.moves,
        ),
        ("corral_requests_total", "Generations finished.", load(&m.requests)),
        ("corral_prompt_tokens_total", "Prompt tokens processed.", load(&m.prompt_tokens)),
        (
            "corral_prompt_cached_tokens_total",
            "Prompt tokens reused from the prompt cache.",
            load(&m.cached_prompt_tokens),
        ),
        (
            "corral_prompt_cache_hits_total",
            "Generations that reused part of their prompt from the cache.",
            load(&m.prompt_cache_hits),
        ),
        ("corral_generation_tokens_total", "Tokens generated.", load(&m.generation_tokens)),
        (
            "corral_shared_decode_steps_total",
            "Decode steps a generation shared with at least one other sequence, summed over generations.",
            load(&m.shared_steps),
        ),
        ("corral_draft_tokens_total", "Tokens drafted for speculative decoding.", load(&m.draft_tokens)),
        (
            "corral_draft_accepted_tokens_total",
            "Drafted tokens the model kept (speculative decoding).",
            load(&m.draft_accepted),
        ),
        ("corral_media_total", "Images and sounds sent to models with their prompts.", load(&m.media)),
    ];
    let mut out = String::new();
    for (name, help, value) in gauges {
        gauge(&mut out, name, help, value);
    }
    for (name, help, value) in counters {
        counter(&mut out, name, help, value);
    }
    devices(&mut out, &state.config.backends.devices, &loaded);
    gateway_info(&mut out, &loaded, &state.scheduler.loading(), state.scheduler.max_loaded(), cells.total);
    m.time_to_first_token.render(&mut out, "corral_time_to_first_token_seconds", "Time from request to first token.");
    m.inter_token_latency.render(&mut out, "corral_inter_token_latency_seconds", "Time between tokens of a stream.");
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out)
}

/// Tokens per KV cache block in `vllm:cache_config_info`. llama.cpp reuses a cached prefix token
/// by token, so any block size is true of it; 16 is vLLM's default, which keeps the gateway's
/// prefix hashing as coarse as it is for vLLM.
pub const BLOCK_TOKENS: u64 = 16;

/// The endpoint picker's info series (see the module docs).
fn gateway_info(
    out: &mut String,
    loaded: &[Loaded],
    loading: &[crate::sched::LoadRequest],
    max_loaded: usize,
    cells: u64,
) {
    let adapters = |requests: &mut dyn Iterator<Item = &crate::sched::LoadRequest>| {
        let names: Vec<&str> = requests
            .filter(|r| !r.options.adapters.is_empty())
            .map(|r| r.name.strip_suffix(":latest").unwrap_or(&r.name))
            .collect();
        label(&names.join(","))
    };
    let running = adapters(&mut loaded.iter().map(|(r, _, _, _)| r));
    let waiting = adapters(&mut loading.iter());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let _ = writeln!(
        out,
        "# HELP vllm:lora_requests_info Models with LoRA adapters loaded and being loaded.\n\
         # TYPE vllm:lora_requests_info gauge\n\
         vllm:lora_requests_info{{max_lora=\"{max_loaded}\",running_lora_adapters=\"{running}\",waiting_lora_adapters=\"{waiting}\"}} {now}"
    );
    let _ = writeln!(
        out,
        "# HELP vllm:cache_config_info The KV cache of the loaded models, in blocks.\n\
         # TYPE vllm:cache_config_info gauge\n\
         vllm:cache_config_info{{block_size=\"{BLOCK_TOKENS}\",num_gpu_blocks=\"{}\"}} 1",
        cells / BLOCK_TOKENS
    );
}

/// A Prometheus label value with its backslashes, quotes and line breaks escaped.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let h = Histogram::new(&[0.1, 1.0]);
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_millis(500));
        h.observe(Duration::from_secs(5));
        let mut out = String::new();
        h.render(&mut out, "x", "help");
        assert!(out.contains("x_bucket{le=\"0.1\"} 1\nx_bucket{le=\"1\"} 2\nx_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_sum 5.55\nx_count 3\n"), "{out}");
    }
}
