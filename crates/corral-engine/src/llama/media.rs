//! Images and sounds in a prompt, through llama.cpp's multimodal library (`mtmd`).
//!
//! A model loaded with a projector ([`Projector`]) takes completions whose [`Media`] sit at byte
//! offsets of the prompt. The prompt is cut at those offsets: each text piece is tokenized as
//! usual (the first with the BOS token), and each medium becomes a [`Group`]: what `mtmd` makes of
//! it alone (its begin and end marker text, its embeddings, tiles where the projector tiles),
//! fed into the sequence by `feed` as `mtmd`'s helper would, a piece per turn. That is token for
//! token what `mtmd` makes of the whole prompt at once (it too tokenizes the text between media on
//! its own), so the answer is the one llama.cpp's own tools give; what differs is that text still
//! goes through the loop's shared batches, and only the media are decoded on their own.
//!
//! In the job's token list a group's positions hold one placeholder id, made from a hash of the
//! medium's bytes (negative, so never a vocabulary id). A later prompt with the same image at the
//! same place therefore shares the slot's cached prefix through it, like any text, and a
//! different image does not; a prefix that ends inside a group is cut back to its start, since a
//! group is decoded whole or not at all ([`whole_prefix`]). The same rule keeps a context shift
//! from cutting a group in two ([`whole_shift`]).
//!
//! Models with multi-axis RoPE (M-RoPE: Qwen2-VL and its successors) give a picture fewer
//! positions than tokens: its tokens share one temporal position and spread over a grid of rows
//! and columns, and the text after it continues from the grid's largest side. A job therefore
//! keeps two counts apart: its token indices, which are its KV cells and what the cache and the
//! context limit count, and their positions ([`position`]), which are what llama.cpp is given and
//! what it removes cells by. Every cut (a reused prefix, an answer's end) falls between groups,
//! where the two differ by a known amount. Such a job's context is not shifted (llama.cpp moves
//! cells by one position delta, which would not keep a picture's grid), as llama-server does not.

use std::collections::hash_map::DefaultHasher;
use std::ffi::CString;
use std::hash::{Hash, Hasher};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use corral_types::runner::Media;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::mtmd::{
    mtmd_default_marker, MtmdBitmap, MtmdContext, MtmdContextParams, MtmdInputChunk, MtmdInputChunks, MtmdInputText,
};
use llama_cpp_2::token::LlamaToken;

use super::feed::RawProjector;
use crate::EngineError;

/// A loaded projector.
pub(super) struct Projector {
    ctx: MtmdContext,
    /// Its weights' bytes in the file (its compute buffers are not counted, as the model's are not).
    pub(super) bytes: u64,
    /// The thread encoding a medium, if one is (see `feed`).
    encoder: Option<JoinHandle<()>>,
}

impl Drop for Projector {
    /// Waits for a running encode: it uses the context, which is freed next.
    fn drop(&mut self) {
        if let Some(encoder) = self.encoder.take() {
            let _ = encoder.join();
        }
    }
}

impl Projector {
    /// Loads the projector at `path` for `model` (loaded from `model_path`), on the GPU unless
    /// `cpu_only`; a model file Ollama published with its vision tower inside is translated into
    /// one (unless `no_compat`).
    pub(super) fn load(
        path: &str,
        model: &LlamaModel,
        model_path: &str,
        threads: i32,
        cpu_only: bool,
        no_compat: bool,
    ) -> Result<Self, String> {
        let bytes = crate::compat::prepare_projector(path, model_path, !no_compat)?;
        let params = MtmdContextParams {
            use_gpu: !cpu_only,
            print_timings: false,
            n_threads: threads,
            media_marker: CString::new(mtmd_default_marker()).expect("the marker has no NUL"),
            image_min_tokens: -1,
            image_max_tokens: -1,
        };
        crate::log::take_recent();
        let ctx = MtmdContext::init_from_file(path, model, &params)
            .map_err(|e| crate::log::with_reasons(format!("could not load the projector {path}: {e}")))?;
        Ok(Projector { ctx, bytes, encoder: None })
    }

    /// A medium is being encoded (perhaps for a job that is gone): the context is in use.
    pub(super) fn busy(&self) -> bool {
        self.encoder.as_ref().is_some_and(|e| !e.is_finished())
    }

    /// The raw `mtmd` context (see `feed` for who may use it when).
    pub(super) fn raw(&mut self) -> *mut llama_cpp_sys_2::mtmd_context {
        self.ctx.as_mut_ptr()
    }

    /// Starts encoding `chunk` into rows of `n_embd` on a thread of its own, which `stop` stops; the
    /// receiver gets the rows (or why not). The encoder must not be [`busy`](Self::busy).
    pub(super) fn encode(
        &mut self,
        chunk: MtmdInputChunk<'static>,
        n_embd: usize,
        stop: Arc<AtomicBool>,
    ) -> Result<Receiver<Result<Vec<f32>, String>>, String> {
        debug_assert!(!self.busy(), "one encode at a time");
        if let Some(done) = self.encoder.take() {
            let _ = done.join();
        }
        let (tx, rx) = mpsc::channel();
        let mctx = RawProjector(self.raw());
        let thread = std::thread::Builder::new().name("corral-encoder".into()).spawn(move || {
            let _ = tx.send(super::feed::encode(mctx, &chunk, n_embd, &stop));
        });
        self.encoder = Some(thread.map_err(|e| format!("could not start the image encoder's thread: {e}"))?);
        Ok(rx)
    }

    /// What the projector reads: `(vision, audio)`.
    pub(super) fn reads(&self) -> (bool, bool) {
        (self.ctx.support_vision(), self.ctx.support_audio())
    }
}

/// One medium of a prompt: its tokens' place in the job's token list, the positions it takes
/// (fewer than its tokens with M-RoPE), and `mtmd`'s chunks for it.
pub(super) struct Group {
    pub(super) start: usize,
    pub(super) len: usize,
    pub(super) n_pos: i32,
    pub(super) chunks: MtmdInputChunks,
}

impl Group {
    pub(super) fn end(&self) -> usize {
        self.start + self.len
    }

    /// Its positions are not one per token (M-RoPE).
    pub(super) fn packed(&self) -> bool {
        self.n_pos != self.len as i32
    }
}

/// The position of the token at `index` of a job whose prompt has `groups` (`index` not inside a
/// group): its index, less what the groups before it saved.
pub(super) fn position(index: usize, groups: &[Group]) -> i32 {
    let saved: i32 = groups.iter().filter(|g| g.end() <= index).map(|g| g.len as i32 - g.n_pos).sum();
    index as i32 - saved
}

/// The placeholder id of a medium's tokens: a hash of its bytes, as a negative number.
fn placeholder(data: &[u8]) -> LlamaToken {
    let mut h = DefaultHasher::new();
    data.hash(&mut h);
    LlamaToken(-1 - (h.finish() & 0x7fff_fffe) as i32)
}

/// Whether `token` stands for part of a medium rather than a vocabulary entry.
pub(super) fn is_placeholder(token: LlamaToken) -> bool {
    token.0 < 0
}

/// Tokenizes `prompt` with `media` at their offsets: the job's token list, and its groups.
pub(super) fn tokenize(
    model: &LlamaModel,
    projector: Option<&Projector>,
    prompt: &str,
    media: &[Media],
) -> Result<(Vec<LlamaToken>, Vec<Group>), EngineError> {
    let Some(projector) = projector else {
        return Err(EngineError::Request("this model does not take images or audio (it has no projector)".into()));
    };
    let vocab = model.vocab();
    let mut tokens = Vec::new();
    let mut groups = Vec::new();
    let mut from = 0;
    for (i, m) in media.iter().enumerate() {
        let piece = prompt.get(from..m.at).ok_or_else(|| {
            EngineError::Request(format!(
                "media {i} is placed at byte {} of a {}-byte prompt, out of order or inside a character",
                m.at,
                prompt.len()
            ))
        })?;
        tokens.extend(super::step::tokenize(&vocab, piece, i == 0));
        let bitmap = MtmdBitmap::from_buffer(&projector.ctx, &m.data, false).map_err(|_| {
            EngineError::Request(format!(
                "media {i} ({} bytes) could not be read as an image or audio file of a supported format",
                m.data.len()
            ))
        })?;
        let input = MtmdInputText { text: mtmd_default_marker().to_string(), add_special: false, parse_special: true };
        let chunks = projector.ctx.tokenize(input, &[&bitmap]).map_err(|e| {
            let what = if bitmap.is_audio() { "audio" } else { "images" };
            let (vision, audio) = projector.reads();
            if (bitmap.is_audio() && !audio) || (!bitmap.is_audio() && !vision) {
                EngineError::Request(format!("this model does not take {what}"))
            } else {
                EngineError::Request(crate::log::with_reasons(format!("media {i} could not be prepared: {e}")))
            }
        })?;
        let len = chunks.total_tokens();
        let n_pos = chunks.total_positions();
        groups.push(Group { start: tokens.len(), len, n_pos, chunks });
        tokens.extend(std::iter::repeat_n(placeholder(&m.data), len));
        from = m.at;
    }
    let rest = prompt.get(from..).unwrap_or_default();
    tokens.extend(super::step::tokenize(&vocab, rest, media.is_empty()));
    if groups.last().is_some_and(|g| g.end() == tokens.len()) {
        return Err(EngineError::Request("the prompt ends with an image or sound: some text must follow it".into()));
    }
    Ok((tokens, groups))
}

/// Where `groups` lie in a job's token list, as `(start, len)`.
pub(super) fn spans(groups: &[Group]) -> Vec<(usize, usize)> {
    groups.iter().map(|g| (g.start, g.len)).collect()
}

/// How much of a cached prefix of `reuse` tokens a prompt with `groups` may use: none of a group
/// is reused unless all of it is.
pub(super) fn whole_prefix(reuse: usize, groups: &[(usize, usize)]) -> usize {
    groups.iter().find(|(start, len)| *start < reuse && reuse < start + len).map_or(reuse, |(start, _)| *start)
}

/// A context shift's `(keep, discard)` moved so that no group is cut: a kept part that would end
/// inside a group ends before it, and a dropped part that would end inside one drops all of it.
/// `None` when the shift would then drop nothing or more than the `n_past` cells held.
pub(super) fn whole_shift(keep: i32, discard: i32, groups: &[(usize, usize)], n_past: i32) -> Option<(i32, i32)> {
    let keep = whole_prefix(keep as usize, groups) as i32;
    let end = groups
        .iter()
        .map(|&(start, len)| (start as i32, (start + len) as i32))
        .find(|&(start, end)| start < keep + discard && keep + discard < end)
        .map_or(keep + discard, |(_, end)| end);
    (end > keep && end <= n_past).then_some((keep, end - keep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_never_vocabulary_ids_and_follow_the_bytes() {
        for data in [&b""[..], b"a", b"\xff\xd8\xff", &[0u8; 4096]] {
            assert!(is_placeholder(placeholder(data)));
        }
        assert_eq!(placeholder(b"same image"), placeholder(b"same image"));
        assert_ne!(placeholder(b"one image"), placeholder(b"another image"));
    }

    fn group(start: usize, len: usize, n_pos: i32) -> Group {
        Group { start, len, n_pos, chunks: MtmdInputChunks::new() }
    }

    #[test]
    fn positions_follow_indices_until_a_packed_group() {
        // One position per token (LLaVA, Gemma 3): positions are indices.
        let plain = [group(3, 16, 16)];
        assert_eq!(position(2, &plain), 2);
        assert_eq!(position(19, &plain), 19);
        // M-RoPE: 16 tokens on a 4×4 grid take 4 positions, another 64 on 8×8 take 8.
        let packed = [group(3, 16, 4), group(20, 64, 8)];
        assert!(packed[0].packed() && !plain[0].packed());
        assert_eq!(position(0, &packed), 0);
        assert_eq!(position(3, &packed), 3);
        assert_eq!(position(19, &packed), 7);
        assert_eq!(position(20, &packed), 8);
        assert_eq!(position(84, &packed), 16);
        assert_eq!(position(90, &packed), 22);
    }

    #[test]
    fn a_reused_prefix_never_ends_inside_a_group() {
        let groups = [(5, 10), (20, 4)];
        assert_eq!(whole_prefix(3, &groups), 3);
        assert_eq!(whole_prefix(5, &groups), 5);
        // Inside the first image: back to its start.
        assert_eq!(whole_prefix(9, &groups), 5);
        assert_eq!(whole_prefix(15, &groups), 15);
        assert_eq!(whole_prefix(23, &groups), 20);
        assert_eq!(whole_prefix(24, &groups), 24);
        assert_eq!(whole_prefix(9, &[]), 9);
    }

    #[test]
    fn a_shift_keeps_or_drops_whole_groups() {
        let groups = [(2, 6), (20, 10)];
        // Nothing in the way.
        assert_eq!(whole_shift(10, 5, &groups, 40), Some((10, 5)));
        // The kept part would end inside the first image: it ends before it, and as many cells
        // as asked are dropped from there.
        assert_eq!(whole_shift(4, 10, &groups, 40), Some((2, 10)));
        // The dropped part would end inside the second image: all of it goes.
        assert_eq!(whole_shift(10, 15, &groups, 40), Some((10, 20)));
        // …unless that is more than the sequence holds.
        assert_eq!(whole_shift(10, 15, &groups, 28), None);
    }
}
