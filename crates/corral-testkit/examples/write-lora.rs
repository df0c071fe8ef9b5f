//! Writes a random LoRA adapter for SmolLM2's shapes: `write-lora OUT SCALE [SEED]`.

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args.next().expect("usage: write-lora OUT SCALE [SEED]");
    let scale: f32 = args.next().expect("scale").parse().expect("scale is a number");
    let seed = args.next().map_or(1, |s| s.parse().expect("seed is a number"));
    std::fs::write(&out, corral_testkit::lora_adapter(576, 30, 8, scale, seed)).expect("write");
}
