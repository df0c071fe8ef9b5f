//! The parser of generated text (thinking, content, tool calls) on any output, cut into tokens
//! anywhere: it never panics, and how the text is cut never changes what comes out.
#![no_main]

use corral_parse::{merge, OutputParser, Piece};
use libfuzzer_sys::fuzz_target;

/// All pieces of `chunks` fed one by one, merged as an answer would show them.
fn run(think: bool, in_thinking: bool, chunks: &[&str]) -> Vec<Piece> {
    let mut p = OutputParser::new(think, in_thinking, vec!["weather".into(), "search".into()]);
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
    let whole = run(think, in_thinking, &[text]);
    // Cut at every char boundary whose index is selected by the flag bits, as tokens would.
    let step = usize::from(flags >> 2).max(1);
    let mut chunks = Vec::new();
    let mut start = 0;
    for (i, (at, _)) in text.char_indices().enumerate() {
        if i % step == 0 && at > start {
            chunks.push(&text[start..at]);
            start = at;
        }
    }
    chunks.push(&text[start..]);
    assert_eq!(run(think, in_thinking, &chunks), whole, "cut into {chunks:?}");
});
