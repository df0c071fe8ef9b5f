//! Questions the streaming readers ask of text that may still be growing: could its end be the
//! start of a tag, and is the JSON value it starts with complete yet. Each answer must hold
//! however the text was cut into tokens, so a value that a later token could extend is never
//! taken as complete.

/// The length of the longest suffix of `text` that is a proper prefix of one of `tags`.
pub(crate) fn partial_suffix(text: &str, tags: &[&str]) -> usize {
    let mut best = 0;
    for tag in tags {
        for n in (1..tag.len()).rev() {
            if n <= text.len() && text.is_char_boundary(text.len() - n) && tag.starts_with(&text[text.len() - n..]) {
                best = best.max(n);
                break;
            }
        }
    }
    best
}

/// Where the first JSON value in `text` (after whitespace) ends, if it is complete.
pub(crate) fn json_end(text: &str) -> Option<usize> {
    let mut it = serde_json::Deserializer::from_str(text).into_iter::<serde::de::IgnoredAny>();
    match it.next()? {
        // A number that reaches the end of the text may go on in the next token ("1", then "2"):
        // not complete yet (found by the fuzzer: cut there, a call read differently).
        Ok(_) if it.byte_offset() == text.len() && text.ends_with(|c: char| c.is_ascii_digit()) => None,
        Ok(_) => Some(it.byte_offset()),
        Err(_) => None,
    }
}

/// Whether `text` is a prefix of some JSON value (so far no syntax error, only an early end).
pub(crate) fn could_be_json(text: &str) -> bool {
    match serde_json::Deserializer::from_str(text).into_iter::<serde::de::IgnoredAny>().next() {
        None => true,
        Some(Ok(_)) => true,
        Some(Err(e)) => e.is_eof(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_suffix_is_the_longest_tag_start_at_the_end() {
        assert_eq!(partial_suffix("text <thi", &["<think>"]), 4);
        assert_eq!(partial_suffix("text <", &["<think>", "<tool_call>"]), 1);
        assert_eq!(partial_suffix("text <tool", &["<think>", "<tool_call>"]), 5);
        // A whole tag is not a partial one; nor is text that only contains a tag's start.
        assert_eq!(partial_suffix("<think>", &["<think>"]), 0);
        assert_eq!(partial_suffix("<thi x", &["<think>"]), 0);
        // Never cuts inside a character (`｜` is three bytes): only the whole of it matches.
        assert_eq!(partial_suffix("a\u{ff5c}", &["\u{ff5c}\u{ff5c}"]), 3);
        assert_eq!(partial_suffix("a<\u{ff5c}", &["<\u{ff5c}tool"]), 4);
    }

    #[test]
    fn json_end_waits_for_a_value_that_may_go_on() {
        assert_eq!(json_end(r#"  {"a": 1} rest"#), Some(10));
        assert_eq!(json_end(r#"[1, 2]"#), Some(6));
        assert_eq!(json_end(r#"{"a": 1"#), None, "unfinished");
        assert_eq!(json_end("12"), None, "the next token may be another digit");
        assert_eq!(json_end("12 "), Some(2));
        assert_eq!(json_end("nope"), None);
        assert_eq!(json_end(""), None);
    }

    #[test]
    fn could_be_json_until_a_syntax_error() {
        for text in ["", "  ", "{", r#"{"name": "x", "argu"#, "[1, ", "tr"] {
            assert!(could_be_json(text), "{text:?}");
        }
        for text in ["{ not json", "[1 2]", "}"] {
            assert!(!could_be_json(text), "{text:?}");
        }
    }
}
