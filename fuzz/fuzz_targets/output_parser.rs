//! The parser of generated text (thinking, content, tool calls) on any output, cut into tokens
//! anywhere, for every model family's markers: it never panics, and how the text is cut never
//! changes what comes out. The first byte holds the flags: bit 0 think, bit 1 in thinking, bits
//! 2–4 the cut step, bits 5–7 the family.
#![no_main]

use corral_parse::{merge, Family, OutputParser, Piece};
use libfuzzer_sys::fuzz_target;

/// All pieces of `chunks` fed one by one, merged as an answer would show them.
const FAMILIES: [Family; 8] = [
    Family::Generic,
    Family::Llama3,
    Family::Mistral,
    Family::Qwen3Coder,
    Family::DeepSeek,
    Family::CommandR,
    Family::Granite,
    Family::Harmony,
];

fn run(family: Family, think: bool, in_thinking: bool, chunks: &[&str]) -> Vec<Piece> {
    let mut p =
        OutputParser::new(think, in_thinking, vec!["weather".into(), "search".into()]).with_family(family);
    let mut out: Vec<Piece> = Vec::new();
    for c in chunks {
        out.extend(p.push(c));
        if p.is_done() {
            break;
        }
    }
    out.extend(p.finish());
    merge(out)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let (think, in_thinking) = (flags & 1 == 1, flags & 2 == 2);
    let family = FAMILIES[usize::from(flags >> 5) % FAMILIES.len()];
    let whole = run(family, think, in_thinking, &[text]);
    // Cut at every char boundary whose index is selected by the flag bits, as tokens would.
    let step = usize::from((flags >> 2) & 7).max(1);
    let mut chunks = Vec::new();
    let mut start = 0;
    for (i, (at, _)) in text.char_indices().enumerate() {
        if i % step == 0 && at > start {
            chunks.push(&text[start..at]);
            start = at;
        }
    }
    chunks.push(&text[start..]);
    assert_eq!(run(family, think, in_thinking, &chunks), whole, "cut into {chunks:?}");
});
