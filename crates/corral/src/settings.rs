//! Every environment variable Corral reads, resolved once into [`Settings`] at start-up.
//!
//! Nothing else in the program calls `std::env::var`. Names and parsing rules follow Ollama's
//! `envconfig`, so an environment set up for Ollama works unchanged.

use std::path::PathBuf;

/// Bind address of the server and target of the CLI.
pub const OLLAMA_HOST: &str = "OLLAMA_HOST";
/// Models directory.
pub const OLLAMA_MODELS: &str = "OLLAMA_MODELS";
/// Extra allowed CORS origins, comma separated.
pub const OLLAMA_ORIGINS: &str = "OLLAMA_ORIGINS";
/// Keep unreferenced blobs.
pub const OLLAMA_NOPRUNE: &str = "OLLAMA_NOPRUNE";
/// Debug logging.
pub const OLLAMA_DEBUG: &str = "OLLAMA_DEBUG";
/// A full `tracing` filter for the server's log (wins over `OLLAMA_DEBUG`).
pub const CORRAL_LOG: &str = "CORRAL_LOG";
/// Default keep-alive of loaded models.
pub const OLLAMA_KEEP_ALIVE: &str = "OLLAMA_KEEP_ALIVE";
/// Default context length.
pub const OLLAMA_CONTEXT_LENGTH: &str = "OLLAMA_CONTEXT_LENGTH";
/// Sequences decoded together per model (unset or 0: 4, fewer if memory is short).
pub const OLLAMA_NUM_PARALLEL: &str = "OLLAMA_NUM_PARALLEL";
/// Most models loaded at once (0 = 3).
pub const OLLAMA_MAX_LOADED_MODELS: &str = "OLLAMA_MAX_LOADED_MODELS";
/// Most requests waiting for a model.
pub const OLLAMA_MAX_QUEUE: &str = "OLLAMA_MAX_QUEUE";
/// Longest a model load may go without progress.
pub const OLLAMA_LOAD_TIMEOUT: &str = "OLLAMA_LOAD_TIMEOUT";
/// Do not keep REPL history.
pub const OLLAMA_NOHISTORY: &str = "OLLAMA_NOHISTORY";
/// Draft at every step drafting is on, whether or not pacing finds it pays.
pub const CORRAL_DRAFT_ALWAYS: &str = "CORRAL_DRAFT_ALWAYS";
/// Registry logins: `host=user:password`, several separated by `;`.
pub const CORRAL_REGISTRY_AUTH: &str = "CORRAL_REGISTRY_AUTH";
/// Token realms trusted for a registry on another host: `registry=realm`, `;`-separated.
pub const CORRAL_REGISTRY_TRUSTED_REALMS: &str = "CORRAL_REGISTRY_TRUSTED_REALMS";
/// Where Docker keeps `config.json` (default `~/.docker`).
pub const DOCKER_CONFIG: &str = "DOCKER_CONFIG";
/// CPU threads per runner (Corral's own; 0 or unset = all cores).
pub const CORRAL_NUM_THREAD: &str = "CORRAL_NUM_THREAD";
/// Extra CA certificates (PEM files, `:`-separated) trusted for registries, besides the system's.
pub const CORRAL_CA_BUNDLE: &str = "CORRAL_CA_BUNDLE";
/// The certificate chain and private key (PEM) that make `serve` speak HTTPS.
pub const CORRAL_TLS_CERT: &str = "CORRAL_TLS_CERT";
pub const CORRAL_TLS_KEY: &str = "CORRAL_TLS_KEY";
/// Other hosts' `corral rpc` servers (comma-separated `host:port`) whose devices runners use.
pub const CORRAL_RPC_SERVERS: &str = "CORRAL_RPC_SERVERS";
/// Models (comma-separated) that `serve` loads at start; `/ready` answers 200 once they are in.
pub const CORRAL_PRELOAD: &str = "CORRAL_PRELOAD";
/// `0` turns off the chat page at `/ui/` (on by default).
pub const CORRAL_UI: &str = "CORRAL_UI";
/// Connections one blob download may use at once (default 4).
pub const CORRAL_PULL_CONNECTIONS: &str = "CORRAL_PULL_CONNECTIONS";
/// Bytes per ranged request of a blob download (default 32 MiB).
pub const CORRAL_PULL_PART_SIZE: &str = "CORRAL_PULL_PART_SIZE";
/// llama.cpp's library directory (default: `lib/corral` beside the executable, or `../lib/corral`).
pub const CORRAL_LIBRARY_PATH: &str = "CORRAL_LIBRARY_PATH";
/// The dynamic loader's search path; runners get the library directory in front of it.
pub const LD_LIBRARY_PATH: &str = "LD_LIBRARY_PATH";
/// Bytes of memory kept free on each GPU.
pub const OLLAMA_GPU_OVERHEAD: &str = "OLLAMA_GPU_OVERHEAD";
/// Spread every model across all GPUs.
pub const OLLAMA_SCHED_SPREAD: &str = "OLLAMA_SCHED_SPREAD";
pub const OLLAMA_VULKAN: &str = "OLLAMA_VULKAN";
pub const OLLAMA_IGPU_ENABLE: &str = "OLLAMA_IGPU_ENABLE";
/// Flash attention: unset lets llama.cpp decide; a boolean forces it.
pub const OLLAMA_FLASH_ATTENTION: &str = "OLLAMA_FLASH_ATTENTION";
/// KV cache element type: `f16`, `q8_0`, `q4_0`.
pub const OLLAMA_KV_CACHE_TYPE: &str = "OLLAMA_KV_CACHE_TYPE";
/// API keys the server asks for, comma-separated.
pub const CORRAL_API_KEYS: &str = "CORRAL_API_KEYS";
/// A file of API keys (one per line, or comma-separated), besides `CORRAL_API_KEYS`.
pub const CORRAL_API_KEYS_FILE: &str = "CORRAL_API_KEYS_FILE";
/// The key the CLI sends (as a bearer token), as Ollama's clients read it.
pub const OLLAMA_API_KEY: &str = "OLLAMA_API_KEY";
/// How long answers in progress may run on after SIGTERM or SIGINT.
pub const CORRAL_SHUTDOWN_TIMEOUT: &str = "CORRAL_SHUTDOWN_TIMEOUT";
/// Any value turns colour off (<https://no-color.org>).
pub const NO_COLOR: &str = "NO_COLOR";

const DEFAULT_PORT: u16 = 11434;

/// Settings of one invocation.
#[derive(Debug, Clone)]
pub struct Settings {
    pub host: HostAddr,
    pub models_dir: PathBuf,
    pub origins: Vec<String>,
    pub noprune: bool,
    pub debug: bool,
    /// `CORRAL_LOG`, when set: the log filter, in `tracing`'s syntax.
    pub log_filter: Option<String>,
    pub hostname: Option<String>,
    /// `$HOME`, for `~` in Modelfile paths.
    pub home: Option<PathBuf>,
    /// `NO_COLOR` is set.
    pub no_color: bool,
    pub keep_alive: corral_types::duration::KeepAlive,
    /// `OLLAMA_CONTEXT_LENGTH`; unset, the server chooses from the GPUs' memory.
    pub context_length: Option<u32>,
    pub num_parallel: u32,
    pub max_loaded_models: usize,
    pub max_queue: usize,
    pub load_timeout: std::time::Duration,
    pub num_thread: u32,
    pub nohistory: bool,
    /// Translate Ollama-published GGUFs at load (`OLLAMA_LLAMA_CPP_COMPAT`, on unless `0`).
    pub compat: bool,
    /// `CORRAL_DRAFT_ALWAYS`: draft whether or not pacing finds it pays.
    pub draft_always: bool,
    /// Registry client options (the identity key is loaded by `serve`, which may create it).
    pub registry: corral_registry::RegistryOptions,
    /// `CORRAL_LIBRARY_PATH`.
    pub library_dir: Option<PathBuf>,
    /// `LD_LIBRARY_PATH` for runners when `library_dir` is set: it, then the inherited value.
    pub runner_library_path: Option<String>,
    pub gpu: corral_server::GpuConfig,
    /// `OLLAMA_VULKAN` (default on) and `OLLAMA_IGPU_ENABLE` (default: Ollama's per-library rule).
    pub devices: corral_types::runner::DevicePolicy,
    /// `CORRAL_API_KEYS` and the keys in `CORRAL_API_KEYS_FILE`.
    pub api_keys: corral_server::ApiKeys,
    /// `OLLAMA_API_KEY`: what the CLI sends.
    pub api_key: Option<String>,
    /// `CORRAL_SHUTDOWN_TIMEOUT`.
    pub shutdown_grace: std::time::Duration,
    /// `CORRAL_TLS_CERT` and `CORRAL_TLS_KEY`: HTTPS; `None`: plain HTTP.
    pub tls: Option<corral_server::tls::TlsFiles>,
    /// `CORRAL_UI`.
    pub ui: bool,
    /// `CORRAL_PRELOAD`.
    pub preload: Vec<String>,
    /// `CORRAL_RPC_SERVERS`.
    pub rpc_servers: Vec<String>,
}

/// A parsed `OLLAMA_HOST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddr {
    pub scheme: String,
    /// Host without brackets (an IPv6 address is bare here).
    pub host: String,
    pub port: u16,
}

impl HostAddr {
    /// `[scheme://]host[:port][/path]`, Ollama's rules: no scheme means http and port 11434; an
    /// explicit scheme without a port means 80 or 443.
    pub fn parse(raw: &str) -> Result<HostAddr, String> {
        let s = raw.trim().trim_matches(|c| c == '"' || c == '\'');
        if s.is_empty() {
            return Ok(HostAddr { scheme: "http".into(), host: "127.0.0.1".into(), port: DEFAULT_PORT });
        }
        let (scheme, rest, explicit) = match s.split_once("://") {
            Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest, true),
            None => ("http".to_string(), s, false),
        };
        if scheme != "http" && scheme != "https" {
            return Err(format!("{OLLAMA_HOST}={raw:?}: unsupported scheme {scheme:?}"));
        }
        let authority = rest.split('/').next().unwrap_or_default();
        let default_port = match (explicit, scheme.as_str()) {
            (true, "https") => 443,
            (true, _) => 80,
            _ => DEFAULT_PORT,
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| format!("{OLLAMA_HOST}={raw:?}: unclosed '['"))?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (authority.to_string(), None),
            }
        };
        let port = match port {
            None | Some("") => default_port,
            Some(p) => p.parse().map_err(|_| format!("{OLLAMA_HOST}={raw:?}: invalid port {p:?}"))?,
        };
        let host = if host.is_empty() { "127.0.0.1".to_string() } else { host };
        Ok(HostAddr { scheme, host, port })
    }

    /// `host:port` to bind.
    pub fn bind_addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Base URL for clients; a wildcard bind address is reached through loopback.
    pub fn client_url(&self) -> String {
        let host = match self.host.as_str() {
            "0.0.0.0" => "127.0.0.1",
            "::" => "::1",
            h => h,
        };
        let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
        format!("{}://{host}:{}", self.scheme, self.port)
    }
}

/// Ollama's boolean rule: unset or empty is false, an unparsable non-empty value is true.
fn env_bool(value: Option<String>) -> bool {
    match value.as_deref().map(str::trim) {
        None | Some("") => false,
        Some(v) => corral_types::params::parse_go_bool(v).unwrap_or(true),
    }
}

/// An unsigned number, or the default (Ollama logs and ignores values that do not parse).
fn env_uint(name: &str, value: Option<String>, default: u64) -> u64 {
    match value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => default,
        Some(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("warning: invalid environment variable {name}={v:?}, using the default {default}");
            default
        }),
    }
}

/// Logins from Docker's config.json, then `CORRAL_REGISTRY_AUTH` (which wins), and trusted realms.
fn registry_credentials(get: &impl Fn(&str) -> Option<String>) -> Result<corral_registry::Credentials, String> {
    let mut creds = corral_registry::Credentials::default();
    let docker_dir =
        get(DOCKER_CONFIG).map(PathBuf::from).or_else(|| get("HOME").map(|h| PathBuf::from(h).join(".docker")));
    if let Some(text) = docker_dir.and_then(|d| std::fs::read_to_string(d.join("config.json")).ok()) {
        creds.add_docker_config(&text);
    }
    if let Some(v) = get(CORRAL_REGISTRY_AUTH) {
        creds.add_env(&v).map_err(|e| format!("{CORRAL_REGISTRY_AUTH}: {e}"))?;
    }
    for pair in
        get(CORRAL_REGISTRY_TRUSTED_REALMS).unwrap_or_default().split(';').map(str::trim).filter(|p| !p.is_empty())
    {
        let (registry, realm) = pair
            .split_once('=')
            .ok_or_else(|| format!("{CORRAL_REGISTRY_TRUSTED_REALMS}: expected registry=realm, got {pair:?}"))?;
        creds.trust_realm(registry.trim(), realm.trim());
    }
    Ok(creds)
}

/// Ollama's GPU knobs. A value that does not parse is reported and ignored.
fn gpu_config(get: &impl Fn(&str) -> Option<String>) -> corral_server::GpuConfig {
    let flash_attention = get(OLLAMA_FLASH_ATTENTION).filter(|v| !v.trim().is_empty()).and_then(|v| {
        let parsed = corral_types::params::parse_go_bool(v.trim());
        if parsed.is_none() {
            eprintln!("warning: invalid environment variable {OLLAMA_FLASH_ATTENTION}={v:?}, letting llama.cpp decide");
        }
        parsed
    });
    let kv_cache_type = match get(OLLAMA_KV_CACHE_TYPE).filter(|v| !v.trim().is_empty()) {
        None => corral_types::runner::KvCacheType::F16,
        Some(v) => corral_types::runner::KvCacheType::parse(&v).unwrap_or_else(|| {
            eprintln!(
                "warning: invalid environment variable {OLLAMA_KV_CACHE_TYPE}={v:?} (f16, q8_0 or q4_0), using f16"
            );
            corral_types::runner::KvCacheType::F16
        }),
    };
    corral_server::GpuConfig {
        overhead: env_uint(OLLAMA_GPU_OVERHEAD, get(OLLAMA_GPU_OVERHEAD), 0),
        spread: env_bool(get(OLLAMA_SCHED_SPREAD)),
        flash_attention,
        kv_cache_type,
    }
}

/// Ollama reads both as Go booleans, and any other word that is not empty as "on".
fn device_policy(get: &impl Fn(&str) -> Option<String>) -> corral_types::runner::DevicePolicy {
    let set = |name| get(name).filter(|v: &String| !v.trim().is_empty()).map(|v| env_bool(Some(v)));
    corral_types::runner::DevicePolicy {
        vulkan: set(OLLAMA_VULKAN).unwrap_or(true),
        integrated: set(OLLAMA_IGPU_ENABLE),
    }
}

fn hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

impl Settings {
    /// Reads the environment.
    pub fn from_env() -> Result<Settings, String> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Resolves settings from any variable source (the environment, or a map in tests).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let host = HostAddr::parse(&get(OLLAMA_HOST).unwrap_or_default())?;
        let models_dir = match get(OLLAMA_MODELS).filter(|s| !s.trim().is_empty()) {
            Some(dir) => PathBuf::from(dir.trim()),
            None => {
                let home = get("HOME").ok_or("HOME is not set; set OLLAMA_MODELS to choose a models directory")?;
                PathBuf::from(home).join(".ollama").join("models")
            }
        };
        let library_dir = get(CORRAL_LIBRARY_PATH).filter(|d| !d.trim().is_empty()).map(|d| PathBuf::from(d.trim()));
        let origins =
            get(OLLAMA_ORIGINS).map(|o| o.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect());
        Ok(Settings {
            host,
            models_dir,
            origins: origins.unwrap_or_default(),
            noprune: env_bool(get(OLLAMA_NOPRUNE)),
            debug: env_bool(get(OLLAMA_DEBUG)),
            log_filter: get(CORRAL_LOG).filter(|v| !v.trim().is_empty()),
            hostname: hostname(),
            home: get("HOME").map(PathBuf::from),
            no_color: get(NO_COLOR).is_some_and(|v| !v.is_empty()),
            keep_alive: match get(OLLAMA_KEEP_ALIVE).filter(|v| !v.trim().is_empty()) {
                Some(v) => {
                    corral_types::duration::KeepAlive::from_env(&v).map_err(|e| format!("{OLLAMA_KEEP_ALIVE}: {e}"))?
                }
                None => corral_types::duration::KeepAlive::For(std::time::Duration::from_secs(300)),
            },
            context_length: get(OLLAMA_CONTEXT_LENGTH)
                .filter(|v| !v.trim().is_empty())
                .map(|v| env_uint(OLLAMA_CONTEXT_LENGTH, Some(v), 4096).clamp(4, u32::MAX as u64) as u32),
            num_parallel: env_uint(OLLAMA_NUM_PARALLEL, get(OLLAMA_NUM_PARALLEL), 0).min(256) as u32,
            max_loaded_models: env_uint(OLLAMA_MAX_LOADED_MODELS, get(OLLAMA_MAX_LOADED_MODELS), 0) as usize,
            max_queue: env_uint(OLLAMA_MAX_QUEUE, get(OLLAMA_MAX_QUEUE), 512) as usize,
            load_timeout: match get(OLLAMA_LOAD_TIMEOUT).filter(|v| !v.trim().is_empty()) {
                None => std::time::Duration::from_secs(300),
                Some(v) => match corral_types::duration::KeepAlive::from_env(&v) {
                    // Zero or negative means no limit.
                    Ok(corral_types::duration::KeepAlive::For(d)) if !d.is_zero() => d,
                    Ok(_) => std::time::Duration::from_secs(u32::MAX as u64),
                    Err(e) => return Err(format!("{OLLAMA_LOAD_TIMEOUT}: {e}")),
                },
            },
            num_thread: env_uint(CORRAL_NUM_THREAD, get(CORRAL_NUM_THREAD), 0).min(1024) as u32,
            nohistory: env_bool(get(OLLAMA_NOHISTORY)),
            compat: corral_compat::enabled(get(corral_compat::ENV_SWITCH).as_deref()),
            draft_always: env_bool(get(CORRAL_DRAFT_ALWAYS)),
            registry: corral_registry::RegistryOptions {
                credentials: registry_credentials(&get)?,
                identity: None,
                ca_certificates: get(CORRAL_CA_BUNDLE)
                    .unwrap_or_default()
                    .split(':')
                    .filter(|p| !p.trim().is_empty())
                    .map(|p| PathBuf::from(p.trim()))
                    .collect(),
                connections: env_uint(CORRAL_PULL_CONNECTIONS, get(CORRAL_PULL_CONNECTIONS), 4).clamp(1, 64) as usize,
                part_size: env_uint(CORRAL_PULL_PART_SIZE, get(CORRAL_PULL_PART_SIZE), 32 << 20).max(1 << 16),
            },
            library_dir: library_dir.clone(),
            runner_library_path: library_dir.map(|dir| match get(LD_LIBRARY_PATH).filter(|p| !p.is_empty()) {
                Some(rest) => format!("{}:{rest}", dir.display()),
                None => dir.display().to_string(),
            }),
            gpu: gpu_config(&get),
            devices: device_policy(&get),
            api_keys: api_keys(&get)?,
            api_key: get(OLLAMA_API_KEY).map(|k| k.trim().to_string()).filter(|k| !k.is_empty()),
            shutdown_grace: match get(CORRAL_SHUTDOWN_TIMEOUT).filter(|v| !v.trim().is_empty()) {
                None => std::time::Duration::from_secs(10),
                Some(v) => match corral_types::duration::KeepAlive::from_env(&v) {
                    Ok(corral_types::duration::KeepAlive::For(d)) => d,
                    Ok(corral_types::duration::KeepAlive::Forever) => {
                        return Err(format!("{CORRAL_SHUTDOWN_TIMEOUT}: must not be negative, got {v:?}"))
                    }
                    Err(e) => return Err(format!("{CORRAL_SHUTDOWN_TIMEOUT}: {e}")),
                },
            },
            tls: tls_files(&get)?,
            preload: list(get(CORRAL_PRELOAD)),
            // On unless turned off: `0`, `false` (Go's boolean words).
            ui: get(CORRAL_UI)
                .map(|v| v.trim().to_string())
                .is_none_or(|v| v.is_empty() || corral_types::params::parse_go_bool(&v).unwrap_or(true)),
            rpc_servers: list(get(CORRAL_RPC_SERVERS)),
        })
    }
}

/// A comma-separated list, its items trimmed, empty ones dropped.
fn list(value: Option<String>) -> Vec<String> {
    value.unwrap_or_default().split(',').map(|m| m.trim().to_string()).filter(|m| !m.is_empty()).collect()
}

/// `CORRAL_TLS_CERT` and `CORRAL_TLS_KEY`: both or neither (one alone would serve plain HTTP
/// where HTTPS was meant).
fn tls_files(get: &impl Fn(&str) -> Option<String>) -> Result<Option<corral_server::tls::TlsFiles>, String> {
    let path = |name| get(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).map(PathBuf::from);
    match (path(CORRAL_TLS_CERT), path(CORRAL_TLS_KEY)) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(corral_server::tls::TlsFiles { cert, key })),
        (Some(_), None) => Err(format!("{CORRAL_TLS_CERT} is set but {CORRAL_TLS_KEY} is not: HTTPS needs both")),
        (None, Some(_)) => Err(format!("{CORRAL_TLS_KEY} is set but {CORRAL_TLS_CERT} is not: HTTPS needs both")),
    }
}

/// The API keys of `CORRAL_API_KEYS` (comma-separated) and of the file `CORRAL_API_KEYS_FILE`
/// names (commas or lines; `#` starts a comment line). A file that cannot be read is an error:
/// a server meant to ask for keys must not start without them.
fn api_keys(get: &impl Fn(&str) -> Option<String>) -> Result<corral_server::ApiKeys, String> {
    let mut keys: Vec<String> = get(CORRAL_API_KEYS).unwrap_or_default().split(',').map(str::to_string).collect();
    let file = get(CORRAL_API_KEYS_FILE).map(|p| p.trim().to_string()).filter(|p| !p.is_empty());
    if let Some(path) = &file {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{CORRAL_API_KEYS_FILE}: {path}: {e}"))?;
        let lines = text.lines().filter(|l| !l.trim_start().starts_with('#'));
        keys.extend(lines.flat_map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>()));
    }
    let keys = corral_server::ApiKeys::new(keys);
    if file.is_some() && keys.is_empty() {
        return Err(format!("{CORRAL_API_KEYS_FILE}: the file holds no keys"));
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(s: &str) -> (String, String, u16) {
        let h = HostAddr::parse(s).unwrap();
        (h.scheme, h.host, h.port)
    }

    #[test]
    fn ollama_host_forms() {
        assert_eq!(host(""), ("http".into(), "127.0.0.1".into(), 11434));
        assert_eq!(host("0.0.0.0"), ("http".into(), "0.0.0.0".into(), 11434));
        assert_eq!(host("127.0.0.1:8080"), ("http".into(), "127.0.0.1".into(), 8080));
        assert_eq!(host("http://example.com"), ("http".into(), "example.com".into(), 80));
        assert_eq!(host("https://example.com"), ("https".into(), "example.com".into(), 443));
        assert_eq!(host("https://example.com:1234/path"), ("https".into(), "example.com".into(), 1234));
        assert_eq!(host("[::1]:11435"), ("http".into(), "::1".into(), 11435));
        assert_eq!(host("\"localhost:9\""), ("http".into(), "localhost".into(), 9));
        assert_eq!(host(":7000"), ("http".into(), "127.0.0.1".into(), 7000));
        assert!(HostAddr::parse("localhost:port").is_err());
        assert!(HostAddr::parse("ftp://x").is_err());
        assert_eq!(HostAddr::parse("0.0.0.0:1").unwrap().client_url(), "http://127.0.0.1:1");
        assert_eq!(HostAddr::parse("[::]:1").unwrap().bind_addr(), "[::]:1");
        assert_eq!(HostAddr::parse("[::]:1").unwrap().client_url(), "http://[::1]:1");
    }

    #[test]
    fn env_rules() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let s = Settings::from_lookup(vars(&[("HOME", "/h"), ("OLLAMA_NOPRUNE", "yes"), ("OLLAMA_ORIGINS", "a, b,,")]))
            .unwrap();
        assert_eq!(s.models_dir, PathBuf::from("/h/.ollama/models"));
        assert!(s.noprune, "unparsable non-empty booleans count as true");
        assert_eq!(s.origins, vec!["a", "b"]);
        let s = Settings::from_lookup(vars(&[("OLLAMA_MODELS", "/m"), ("OLLAMA_NOPRUNE", "0")])).unwrap();
        assert_eq!(s.models_dir, PathBuf::from("/m"));
        assert!(!s.noprune);
        assert_eq!(s.context_length, None, "unset: chosen from the GPUs");
        assert_eq!((s.library_dir, s.runner_library_path), (None, None));
        assert_eq!(s.gpu, corral_server::GpuConfig::default());
    }

    #[test]
    fn gpu_knobs() {
        use corral_types::runner::KvCacheType;
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        let s = Settings::from_lookup(vars(&[
            ("HOME", "/h"),
            ("OLLAMA_GPU_OVERHEAD", "536870912"),
            ("OLLAMA_SCHED_SPREAD", "1"),
            ("OLLAMA_FLASH_ATTENTION", "false"),
            ("OLLAMA_KV_CACHE_TYPE", "Q8_0"),
            ("OLLAMA_CONTEXT_LENGTH", "8192"),
            ("CORRAL_LIBRARY_PATH", "/opt/corral/lib"),
            ("LD_LIBRARY_PATH", "/usr/local/cuda/lib64"),
        ]))
        .unwrap();
        assert_eq!(
            s.gpu,
            corral_server::GpuConfig {
                overhead: 512 << 20,
                spread: true,
                flash_attention: Some(false),
                kv_cache_type: KvCacheType::Q8_0
            }
        );
        assert_eq!(s.context_length, Some(8192));
        assert_eq!(s.library_dir, Some(PathBuf::from("/opt/corral/lib")));
        assert_eq!(s.runner_library_path.as_deref(), Some("/opt/corral/lib:/usr/local/cuda/lib64"));
        let s = Settings::from_lookup(vars(&[
            ("HOME", "/h"),
            ("OLLAMA_KV_CACHE_TYPE", "q2"),
            ("OLLAMA_FLASH_ATTENTION", ""),
        ]))
        .unwrap();
        assert_eq!((s.gpu.kv_cache_type, s.gpu.flash_attention), (KvCacheType::F16, None));
    }

    #[test]
    fn vulkan_and_integrated_gpus_read_as_ollama_reads_them() {
        use corral_types::runner::DevicePolicy;
        let policy = |pairs: &[(&'static str, &'static str)]| {
            let mut all = vec![("HOME", "/h")];
            all.extend_from_slice(pairs);
            Settings::from_lookup(|k: &str| all.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
                .unwrap()
                .devices
        };
        assert_eq!(policy(&[]), DevicePolicy { vulkan: true, integrated: None });
        assert_eq!(policy(&[("OLLAMA_VULKAN", ""), ("OLLAMA_IGPU_ENABLE", " ")]), DevicePolicy::default());
        assert!(!policy(&[("OLLAMA_VULKAN", "0"), ("OLLAMA_IGPU_ENABLE", "1")]).vulkan);
        assert_eq!(policy(&[("OLLAMA_VULKAN", "false"), ("OLLAMA_IGPU_ENABLE", "TRUE")]).integrated, Some(true));
        assert_eq!(policy(&[("OLLAMA_IGPU_ENABLE", "F")]).integrated, Some(false));
        // Any other word is "on" to Ollama.
        assert_eq!(
            policy(&[("OLLAMA_VULKAN", "off"), ("OLLAMA_IGPU_ENABLE", "yes")]),
            DevicePolicy { vulkan: true, integrated: Some(true) }
        );
    }

    #[test]
    fn api_keys_and_shutdown_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        std::fs::write(&file, "# ours\nk3\n k4 , k5\n\n").unwrap();
        let file = file.display().to_string();
        let get = |pairs: Vec<(&'static str, String)>| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        };
        let home = ("HOME", "/h".to_string());
        let s = Settings::from_lookup(get(vec![
            home.clone(),
            (CORRAL_API_KEYS, "k1, k2,".into()),
            (CORRAL_API_KEYS_FILE, file),
        ]))
        .unwrap();
        assert_eq!(s.api_keys.len(), 5);
        assert!(["k1", "k2", "k3", "k4", "k5"].iter().all(|k| s.api_keys.allows(k)));
        assert!(!s.api_keys.allows("# ours"));
        assert_eq!(s.shutdown_grace, std::time::Duration::from_secs(10));
        let s = Settings::from_lookup(get(vec![
            home.clone(),
            (OLLAMA_API_KEY, " sk ".into()),
            (CORRAL_SHUTDOWN_TIMEOUT, "1m".into()),
        ]))
        .unwrap();
        assert!(s.api_keys.is_empty());
        assert_eq!((s.api_key.as_deref(), s.shutdown_grace), (Some("sk"), std::time::Duration::from_secs(60)));
        // A key file that is missing or empty stops the server from starting keyless.
        let missing = dir.path().join("nope").display().to_string();
        let e = Settings::from_lookup(get(vec![home.clone(), (CORRAL_API_KEYS_FILE, missing.clone())])).err().unwrap();
        assert!(e.starts_with("CORRAL_API_KEYS_FILE: ") && e.contains(&missing), "{e}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n# none\n").unwrap();
        let e = Settings::from_lookup(get(vec![home.clone(), (CORRAL_API_KEYS_FILE, empty.display().to_string())]))
            .err()
            .unwrap();
        assert_eq!(e, "CORRAL_API_KEYS_FILE: the file holds no keys");
        let e = Settings::from_lookup(get(vec![home, (CORRAL_SHUTDOWN_TIMEOUT, "-1".into())])).err().unwrap();
        assert!(e.starts_with("CORRAL_SHUTDOWN_TIMEOUT: "), "{e}");
    }
}
