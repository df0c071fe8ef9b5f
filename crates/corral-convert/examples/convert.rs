//! `cargo run -p corral-convert --example convert -- DIR OUT.gguf [f16|q8_0]`: converts a
//! safetensors model directory, as `corral create` would.

use std::collections::BTreeMap;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, out, rest @ ..] = args.as_slice() else {
        return Err("usage: convert DIR OUT.gguf [f16|q8_0]".into());
    };
    let quantize = corral_convert::Quantize::parse(rest.first().map_or("f16", String::as_str))?;
    let mut files = BTreeMap::new();
    for entry in walk(std::path::Path::new(dir))? {
        let rel = entry.strip_prefix(dir)?.to_string_lossy().into_owned();
        files.insert(rel, entry);
    }
    let (writer, info) = corral_convert::convert(&files, quantize)?;
    writer.write_to(std::io::BufWriter::new(std::fs::File::create(out)?))?;
    println!("{info:?}");
    Ok(())
}

fn walk(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            out.extend(walk(&p)?);
        } else {
            out.push(p);
        }
    }
    Ok(out)
}
