//! Turning a stream of token pieces into text: whole UTF-8 characters only, and stop sequences
//! cut out — including ones split over several tokens, whose possible beginnings are held back
//! until it is clear they are not a stop.

/// Accumulates token bytes and releases text that is safe to send.
#[derive(Debug, Default)]
pub struct StopBuffer {
    stops: Vec<String>,
    /// Bytes of an incomplete UTF-8 character.
    partial: Vec<u8>,
    /// Decoded text not yet released (it may be the start of a stop sequence).
    held: String,
}

impl StopBuffer {
    pub fn new(stops: Vec<String>) -> Self {
        StopBuffer { stops: stops.into_iter().filter(|s| !s.is_empty()).collect(), ..Default::default() }
    }

    /// Adds a token's bytes. Returns the text that can be sent now, and whether a stop sequence
    /// was found (everything from it on is dropped).
    pub fn push(&mut self, piece: &[u8]) -> (String, bool) {
        self.partial.extend_from_slice(piece);
        let valid = match std::str::from_utf8(&self.partial) {
            Ok(s) => s.len(),
            // An error with no length is an incomplete character at the end: wait for more bytes.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            // Invalid bytes in the middle: replace them rather than stall forever.
            Err(_) => {
                let text = String::from_utf8_lossy(&self.partial).into_owned();
                self.partial.clear();
                return self.release(text);
            }
        };
        let text = String::from_utf8(self.partial.drain(..valid).collect()).expect("checked above");
        self.release(text)
    }

    fn release(&mut self, text: String) -> (String, bool) {
        self.held.push_str(&text);
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s.as_str())).min() {
            let out = self.held[..at].to_string();
            self.held.clear();
            self.partial.clear();
            return (out, true);
        }
        // Hold back the longest tail that could still grow into a stop sequence.
        let keep = self
            .stops
            .iter()
            .flat_map(|s| (1..s.len()).filter(|n| s.is_char_boundary(*n)).map(move |n| &s[..n]))
            .filter(|prefix| self.held.ends_with(prefix))
            .map(str::len)
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let out = self.held[..cut].to_string();
        self.held.drain(..cut);
        (out, false)
    }

    /// Everything still held, at the end of generation.
    pub fn flush(&mut self) -> String {
        let mut out = std::mem::take(&mut self.held);
        out.push_str(&String::from_utf8_lossy(&std::mem::take(&mut self.partial)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&[u8]]) -> (String, bool) {
        let mut b = StopBuffer::new(stops.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            let (text, stopped) = b.push(p);
            out.push_str(&text);
            if stopped {
                return (out, true);
            }
        }
        out.push_str(&b.flush());
        (out, false)
    }

    #[test]
    fn plain_text_passes_through() {
        assert_eq!(run(&[], &[b"Hello", b" world"]), ("Hello world".into(), false));
    }

    #[test]
    fn stop_within_and_across_tokens() {
        assert_eq!(run(&["END"], &[b"one ", b"twoEND three"]), ("one two".into(), true));
        assert_eq!(run(&["<|im_end|>"], &[b"Paris", b"<|im", b"_end|>", b"more"]), ("Paris".into(), true));
        // A false start is released once it cannot be a stop any more.
        assert_eq!(run(&["<|im_end|>"], &[b"a <|i", b"nput"]), ("a <|input".into(), false));
        // The earliest of several stops wins.
        assert_eq!(run(&["b", "a"], &[b"xxab"]), ("xx".into(), true));
    }

    #[test]
    fn utf8_split_over_tokens() {
        let e = "é".as_bytes();
        let (text, first) = {
            let mut b = StopBuffer::new(vec![]);
            let first = b.push(&e[..1]).0;
            let text = b.push(&e[1..]).0;
            (text, first)
        };
        assert_eq!(first, "");
        assert_eq!(text, "é");
        assert_eq!(run(&[], &[&[0xff], b"ok"]), ("\u{fffd}ok".into(), false));
    }

    #[test]
    fn held_prefix_is_released_at_the_end() {
        assert_eq!(run(&["STOP"], &[b"so ST"]), ("so ST".into(), false));
    }
}
