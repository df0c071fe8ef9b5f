//! gpt-oss's harmony format: a sequence of messages, each a header and a body,
//! `[<|start|>assistant] <|channel|>NAME [to=functions.TOOL] [<|constrain|>json] <|message|>BODY`
//! ended by `<|end|>`, `<|call|>` or `<|return|>` (or the next `<|start|>`/`<|channel|>`, or the
//! end of the output). The `analysis` channel is the model's reasoning, `final` its answer, and a
//! `commentary` message addressed to a function is a tool call. Bodies of the first two stream
//! as they come (less what may be the start of a marker); a call's body is held until it ends.

/// What a message body is.
#[derive(Debug, Clone, PartialEq)]
pub enum Channel {
    Analysis,
    Final,
    /// A call of the named function, its body the arguments as JSON.
    Call(String),
}

const MESSAGE: &str = "<|message|>";
/// What ends a body.
const ENDS: [&str; 5] = ["<|end|>", "<|call|>", "<|return|>", "<|start|>", "<|channel|>"];

/// The reader's place: between messages, or in one's body.
#[derive(Debug, Default)]
pub struct Reader {
    current: Option<Channel>,
    /// Something has been read out.
    said: bool,
}

impl Reader {
    /// Takes what is settled out of `buf`: pieces of bodies with their channel. `end`: the output
    /// is over, so everything left is settled.
    pub fn read(&mut self, buf: &mut String, end: bool) -> Vec<(Channel, String)> {
        let mut out = Vec::new();
        loop {
            let Some(channel) = self.current.clone() else {
                match buf.find("<|") {
                    // Text outside any message (a model that ignores the format) is its answer;
                    // whitespace before the first message is not.
                    Some(at) if at > 0 => {
                        let text: String = buf.drain(..at).collect();
                        self.answer(&mut out, text);
                        continue;
                    }
                    Some(_) => match buf.find(MESSAGE) {
                        Some(i) => {
                            self.current = Some(header(&buf[..i]));
                            buf.drain(..i + MESSAGE.len());
                            continue;
                        }
                        None if end => {
                            let text = strip_markers(&std::mem::take(buf));
                            self.answer(&mut out, text);
                            return out;
                        }
                        None => return out,
                    },
                    None if end => {
                        let text = std::mem::take(buf);
                        self.answer(&mut out, text);
                        return out;
                    }
                    None => {
                        // Held while it is only whitespace at the start (it may turn out to
                        // come before a message, or not), and a `<` that may begin a marker.
                        let keep = usize::from(buf.ends_with('<'));
                        if buf[..buf.len() - keep].trim().is_empty() && !self.said {
                            return out;
                        }
                        let text: String = buf.drain(..buf.len() - keep).collect();
                        self.answer(&mut out, text);
                        return out;
                    }
                }
            };
            match ENDS.iter().filter_map(|m| buf.find(m).map(|at| (at, *m))).min() {
                Some((at, marker)) => {
                    let body: String = buf.drain(..at).collect();
                    // The next header's own markers stay for it.
                    if !matches!(marker, "<|start|>" | "<|channel|>") {
                        buf.drain(..marker.len());
                    }
                    if !body.is_empty() {
                        self.said = true;
                        out.push((channel, body));
                    }
                    self.current = None;
                }
                None if end => {
                    let body = std::mem::take(buf);
                    if !body.is_empty() {
                        self.said = true;
                        out.push((channel, body));
                    }
                    return out;
                }
                None => {
                    // A call is whole or nothing; other bodies go out as far as is settled.
                    if !matches!(channel, Channel::Call(_)) {
                        let keep = crate::scan::partial_suffix(buf, &ENDS);
                        let ready: String = buf.drain(..buf.len() - keep).collect();
                        if !ready.is_empty() {
                            self.said = true;
                            out.push((channel, ready));
                        }
                    }
                    return out;
                }
            }
        }
    }
}

impl Reader {
    /// Text outside any message, as the answer (whitespace before anything is dropped).
    fn answer(&mut self, out: &mut Vec<(Channel, String)>, text: String) {
        if text.is_empty() || (text.trim().is_empty() && !self.said) {
            return;
        }
        self.said = true;
        out.push((Channel::Final, text));
    }
}

/// The channel a header names: a function recipient makes it a call, wherever it stands.
fn header(text: &str) -> Channel {
    if let Some(to) = text.split("to=").nth(1) {
        let recipient: String = to.chars().take_while(|c| !c.is_whitespace() && *c != '<').collect();
        let name = recipient.strip_prefix("functions.").unwrap_or(&recipient);
        return Channel::Call(name.to_string());
    }
    let channel = text.split("<|channel|>").nth(1).unwrap_or_default();
    match channel.split_whitespace().next().unwrap_or_default() {
        "analysis" => Channel::Analysis,
        _ => Channel::Final,
    }
}

/// `text` less harmony's markers.
fn strip_markers(text: &str) -> String {
    let mut out = text.to_string();
    for m in ENDS.iter().chain([&MESSAGE, &"<|constrain|>"]) {
        out = out.replace(m, "");
    }
    out
}
