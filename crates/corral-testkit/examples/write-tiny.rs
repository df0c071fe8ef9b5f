//! Writes the tiny test model (with SmolLM2's tokenizer) to the path given: `write-tiny OUT [SEED]`.

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args.next().expect("usage: write-tiny OUT [SEED]");
    let seed = args.next().map_or(42, |s| s.parse().expect("seed is a number"));
    let spec = corral_testkit::TinySpec { seed, ..Default::default() };
    std::fs::write(&out, corral_testkit::tiny_llama_with_smollm2_tokenizer(&spec)).expect("write");
}
