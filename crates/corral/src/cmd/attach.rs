//! Image and audio files named in a prompt, for a model that reads them: `corral run MODEL "what
//! is in ./photo.png"` sends the file and the prompt without its path, as Ollama's CLI does.
//!
//! A path is what Ollama's CLI takes for one: it starts with `./`, `/` or `\` (a drive letter may
//! come first), may hold spaces (escaped with `\` or not), and ends with `.jpg`, `.jpeg`, `.png`,
//! `.webp` or `.wav` (any case) at a word's end; the shortest such run wins. A path that names
//! no file stays in the text.

use std::path::{Path, PathBuf};

use base64::Engine as _;

/// Largest file sent (Ollama's limit).
const MAX_BYTES: u64 = 100 * 1024 * 1024;
const EXTENSIONS: [&str; 5] = [".jpg", ".jpeg", ".png", ".webp", ".wav"];

/// A file taken from the prompt.
pub struct Attached {
    pub path: PathBuf,
    /// Its bytes, base64 (as the API takes them).
    pub base64: String,
    pub audio: bool,
}

/// The prompt without the paths of the files it names, and those files, read.
pub fn extract(prompt: &str) -> anyhow::Result<(String, Vec<Attached>)> {
    let mut text = prompt.to_string();
    let mut files = Vec::new();
    let unescape = |raw: &str| raw.replace("\\ ", " ");
    for raw in candidates(prompt, |raw| Path::new(&unescape(raw)).is_file()) {
        let unescaped = unescape(&raw);
        let path = Path::new(&unescaped);
        let meta = std::fs::metadata(path)?;
        if meta.len() > MAX_BYTES {
            anyhow::bail!("file {} is too large: {} bytes (at most {MAX_BYTES})", path.display(), meta.len());
        }
        let data = std::fs::read(path)?;
        for quoted in [format!("'{unescaped}'"), format!("'{raw}'"), raw.clone()] {
            text = text.replace(&quoted, "");
        }
        let audio = raw.to_ascii_lowercase().ends_with(".wav");
        files.push(Attached {
            path: path.to_path_buf(),
            base64: base64::engine::general_purpose::STANDARD.encode(data),
            audio,
        });
    }
    Ok((text, files))
}

/// Tells the user which files were taken, as Ollama's CLI does.
pub fn announce(files: &[Attached]) {
    for f in files {
        eprintln!("Added {} '{}'", if f.audio { "audio" } else { "image" }, f.path.display());
    }
}

/// The runs of `text` that look like paths of image or audio files and that `is_file` accepts,
/// left to right.
fn candidates(text: &str, is_file: impl Fn(&str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    let mut from = 0;
    while from < text.len() {
        match path_at(text, from).filter(|end| is_file(&text[from..*end])) {
            Some(end) => {
                found.push(text[from..end].to_string());
                from = end;
            }
            None => from += text[from..].chars().next().map_or(1, char::len_utf8),
        }
    }
    found
}

/// The end of the shortest path starting at byte `start`, if one does.
fn path_at(text: &str, start: usize) -> Option<usize> {
    let rest = &text[start..];
    let bytes = rest.as_bytes();
    let drive = usize::from(bytes.len() > 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':') * 2;
    let lead = match &rest[drive..] {
        r if r.starts_with("./") => 2,
        r if r.starts_with('/') || r.starts_with('\\') => 1,
        _ => return None,
    };
    let mut end = drive + lead;
    for c in rest[end..].chars() {
        // Any character but a line break or tab: spaces may be part of a name.
        if c.is_whitespace() && c != ' ' {
            return None;
        }
        end += c.len_utf8();
        let so_far = rest[..end].to_ascii_lowercase();
        let at_word_end = rest[end..].chars().next().is_none_or(|n| !(n.is_alphanumeric() || n == '_'));
        if at_word_end && EXTENSIONS.iter().any(|e| so_far.ends_with(e) && so_far.len() > drive + lead + e.len()) {
            return Some(start + end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(text: &str) -> Vec<String> {
        candidates(text, |_| true)
    }

    #[test]
    fn paths_are_found_as_ollama_finds_them() {
        assert_eq!(all("what is in ./photo.png?"), ["./photo.png"]);
        assert_eq!(all("compare /a/b.JPG and /c/d.jpeg"), ["/a/b.JPG", "/c/d.jpeg"]);
        assert_eq!(all(r"see /home/me/my\ cat.webp now"), [r"/home/me/my\ cat.webp"]);
        assert_eq!(all(r"C:\pics\x.png"), [r"C:\pics\x.png"]);
        // Names may hold spaces, so the shortest run that names a file is taken.
        assert_eq!(all("/a/b.txt and photo.png"), ["/a/b.txt and photo.png"]);
        assert_eq!(candidates("/a/b.txt and /c.png", |p| p == "/c.png"), ["/c.png"]);
        // Not at a word's end, no leading slash, across a line break.
        assert!(all("/a/b.pngx").is_empty());
        assert!(all("see photo.png").is_empty());
        assert!(all("/a/b\n.png").is_empty());
    }

    #[test]
    fn files_that_exist_are_taken_out_of_the_prompt() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("cat.png");
        std::fs::write(&png, b"\x89PNG fake").unwrap();
        let prompt = format!("what is in {} and /no/such/file.png?", png.display());
        let (text, files) = extract(&prompt).unwrap();
        assert_eq!(text, "what is in  and /no/such/file.png?");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].path, png);
        assert_eq!(files[0].base64, "iVBORyBmYWtl");
        assert!(!files[0].audio);
    }
}
