//! `corral create NAME -f Modelfile`: parse the Modelfile here, upload local files as blobs (only
//! those the server lacks), then ask the server to assemble the model.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use corral_client::Client;
use corral_modelfile::{expand_path, Modelfile, Sourced};
use corral_types::api::{CreateRequest, OneOrMany};
use corral_types::Digest;
use sha2::{Digest as _, Sha256};

use crate::progress::Progress;

#[derive(clap::Args)]
pub struct Args {
    /// Name of the model to create
    model: String,
    /// Name of the Modelfile
    #[arg(short, long, default_value = "Modelfile")]
    file: PathBuf,
    /// Quantize model to this level (q8_0 or f16, for models imported from safetensors)
    #[arg(short, long)]
    quantize: Option<String>,
}

/// Whether a FROM argument is meant as a path even though nothing is there, so the user gets
/// "no such file" instead of "invalid model name".
fn looks_like_path(arg: &str) -> bool {
    arg.starts_with(['.', '/', '~', '\\'])
        || [".gguf", ".bin", ".safetensors"].iter().any(|ext| arg.to_ascii_lowercase().ends_with(ext))
}

/// A local file to upload, under the name the server will see.
struct LocalFile {
    key: String,
    path: PathBuf,
}

/// The files of a model directory the server needs: safetensors weights with their config and
/// tokenizer files (as Ollama's CLI sends them), or the GGUF files in it.
fn directory_files(dir: &Path) -> anyhow::Result<Vec<LocalFile>> {
    let wanted = |rel: &str| {
        rel.ends_with(".safetensors")
            || rel.ends_with(".gguf")
            || (!rel.contains('/')
                && (rel.ends_with(".json")
                    || ["vocab.txt", "tokenizer.model", "sentencepiece.bpe.model"].contains(&rel)))
            || rel == "1_Pooling/config.json"
    };
    let mut out = Vec::new();
    for sub in ["", "1_Pooling"] {
        let Ok(rd) = std::fs::read_dir(dir.join(sub)) else { continue };
        for entry in rd {
            let path = entry?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let key = if sub.is_empty() { name } else { format!("{sub}/{name}") };
            if path.is_file() && wanted(&key) {
                out.push(LocalFile { key, path });
            }
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    if !out.iter().any(|f| f.key.ends_with(".safetensors") || f.key.ends_with(".gguf")) {
        bail!("{} holds no .safetensors or .gguf files", dir.display());
    }
    Ok(out)
}

/// Resolves a FROM/ADAPTER argument: the local files it names (one file, or a model directory's
/// files), none for a model name, an error for a path that does not exist.
fn local_files(arg: &Sourced, dir: &Path, home: Option<&Path>, what: &str) -> anyhow::Result<Vec<LocalFile>> {
    let path = expand_path(&arg.value, dir, home);
    if path.is_dir() {
        return directory_files(&path).with_context(|| format!("(line {}): {what} {:?}", arg.line, arg.value));
    }
    if path.is_file() {
        let key = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model.gguf".into());
        return Ok(vec![LocalFile { key, path }]);
    }
    if looks_like_path(&arg.value) {
        bail!("(line {}): {what} file {:?} does not exist (looked for {})", arg.line, arg.value, path.display());
    }
    Ok(Vec::new())
}

fn sha256_file(path: &Path) -> anyhow::Result<Digest> {
    let mut f = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).with_context(|| format!("read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Digest::from_hasher(hasher))
}

/// Hashes and, unless the server already has it, uploads a file. Returns its digest.
async fn upload(client: &Client, progress: &Progress, file: &LocalFile) -> anyhow::Result<Digest> {
    let path = file.path.clone();
    let digest = tokio::task::spawn_blocking(move || sha256_file(&path)).await??;
    let label = format!("copying file {digest}");
    if client.has_blob(&digest).await? {
        progress.status(format!("{label} 100%"));
        return Ok(digest);
    }
    let total = std::fs::metadata(&file.path)?.len().max(1);
    progress.status(format!("{label} 0%"));
    let update = progress.updater();
    client.upload_blob(&digest, &file.path, move |sent| update(format!("{label} {}%", sent * 100 / total))).await?;
    Ok(digest)
}

pub async fn run(client: &Client, args: Args, home: Option<&Path>) -> anyhow::Result<()> {
    // The server checks too; checking here fails before any file is hashed or uploaded.
    corral_types::ModelName::parse(&args.model)?;
    let bytes = match std::fs::read(&args.file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("specified Modelfile wasn't found: {}", args.file.display())
        }
        Err(e) => return Err(e).with_context(|| format!("read {}", args.file.display())),
    };
    let modelfile = Modelfile::parse_bytes(&bytes).with_context(|| format!("{}", args.file.display()))?;
    let recipe = modelfile.recipe().with_context(|| format!("{}", args.file.display()))?;
    for w in &recipe.warnings {
        eprintln!("{w}");
    }
    // An empty parent means the current directory; joining onto it keeps paths as the user wrote them.
    let dir = args.file.parent().map(Path::to_path_buf).unwrap_or_default();

    // Resolve every path before showing progress, so a typo fails at once with its line.
    let mut froms = Vec::new();
    for from in &recipe.from {
        froms.push((from, local_files(from, &dir, home, "FROM")?));
    }
    let adapter = match recipe.adapters.last() {
        Some(a) => match local_files(a, &dir, home, "ADAPTER")?.into_iter().next() {
            Some(f) => Some(f),
            None => bail!("(line {}): ADAPTER must name a local GGUF file, got {:?}", a.line, a.value),
        },
        None => None,
    };
    let draft = match recipe.drafts.last() {
        Some(d) => match local_files(d, &dir, home, "DRAFT")?.into_iter().next() {
            Some(f) if froms.iter().flat_map(|(_, l)| l).any(|l| l.path == f.path) => {
                bail!("(line {}): DRAFT must not reference the same local path as FROM: {}", d.line, d.value)
            }
            Some(f) => Some(f),
            None => bail!("(line {}): DRAFT must name a local GGUF file, got {:?}", d.line, d.value),
        },
        None => None,
    };

    client.heartbeat().await?;
    let progress = Progress::new();
    progress.status("gathering model components");

    let mut req = CreateRequest { model: args.model.clone(), quantize: args.quantize.clone(), ..Default::default() };
    let mut files = BTreeMap::new();
    for (from, local) in froms {
        if local.is_empty() {
            req.from = Some(from.value.clone());
        }
        for f in local {
            let d = upload(client, &progress, &f).await?;
            if files.insert(f.key.clone(), d.to_string()).is_some() {
                bail!("(line {}): two FROM files are named {:?}", from.line, f.key);
            }
        }
    }
    if !files.is_empty() {
        req.files = Some(files);
    }
    if let Some(f) = adapter {
        let d = upload(client, &progress, &f).await?;
        req.adapters = Some(BTreeMap::from([(f.key, d.to_string())]));
    }
    if let Some(f) = draft {
        let d = upload(client, &progress, &f).await?;
        req.draft_files = Some(BTreeMap::from([(f.key, d.to_string())]));
    }
    let o = recipe.overlay;
    req.template = o.template;
    req.system = o.system;
    req.license = (!o.license.is_empty()).then_some(OneOrMany::Many(o.license));
    req.parameters = (!o.parameters.is_empty()).then_some(o.parameters);
    req.messages = (!o.messages.is_empty()).then_some(o.messages);
    req.requires = o.requires;
    req.renderer = o.renderer;
    req.parser = o.parser;

    // A step reported again (quantizing, tensor by tensor, with counters) moves on its own line.
    let mut last: Option<String> = None;
    client
        .create(&req, |p| {
            let line = match (p.completed, p.total) {
                (Some(done), Some(total)) if total > 0 => format!("{} {}%", p.status, done * 100 / total),
                _ => p.status.clone(),
            };
            if last.as_deref() == Some(p.status.as_str()) {
                progress.update(line);
            } else {
                progress.status(line);
            }
            last = Some(p.status);
        })
        .await?;
    progress.finish();
    Ok(())
}
