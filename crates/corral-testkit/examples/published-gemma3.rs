//! Writes Gemma 3 (a GGUF in llama.cpp's layout) as Ollama published it (see
//! `corral_testkit::gemma3_as_published`), for the compat load benchmark.
//!
//!     cargo run --release -p corral-testkit --example published-gemma3 -- SRC.gguf OUT.gguf

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [src, out] = args.as_slice() else {
        eprintln!("usage: published-gemma3 SRC.gguf OUT.gguf");
        std::process::exit(2);
    };
    let bytes = corral_testkit::gemma3_as_published(std::path::Path::new(src));
    std::fs::write(out, bytes).unwrap_or_else(|e| panic!("write {out}: {e}"));
}
