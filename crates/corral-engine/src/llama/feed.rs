//! Feeding an image or sound into its sequence while the other sequences keep decoding.
//!
//! `mtmd`'s helper takes a medium in one call: the encoder (seconds for a large picture on a CPU)
//! and then the decode of all its embeddings. Every other stream would wait that long for its next
//! token. Instead the loop takes one group ([`Feeding`]) through three stages, one chunk of the
//! group at a time:
//!
//! 1. a text chunk (the markers around a picture) is decoded whole, alone, in one turn;
//! 2. a picture or sound is encoded on a worker thread ([`Projector::encode`]) while the loop's
//!    turns go on; a job cancelled meanwhile leaves at once, and its encode is stopped (on the
//!    CPU, between two steps of the encoder's graph, through the compat hook `watch_encode`;
//!    other backends finish their part) and its result dropped;
//! 3. its embeddings are then decoded a piece per turn, beside the loop's own batch: as many rows
//!    as a prompt chunk gets in a turn ([`super::step`]'s share). Chunks that `mtmd` decodes with
//!    non-causal attention go in pieces of `num_batch`, as `mtmd` cuts them, so the answer is
//!    the one `mtmd` gives.
//!
//! Pieces use llama.cpp's extended batch (`llama_batch_ext`), which takes embedding rows with up
//! to four positions each (M-RoPE), and are laid out as `mtmd`'s helper lays them out. The
//! `llama-cpp-2` wrapper has none of this, hence the raw calls (the pointers come from the small
//! patch in `vendor/llama-cpp-2`).
//!
//! Only one medium is encoded at a time, and nothing else touches the projector's context while
//! one is: prompts with media wait to be tokenized until the encoder is free.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::mtmd::{MtmdInputChunk, MtmdInputChunkType};
use llama_cpp_sys_2 as sys;

use super::media::{Group, Projector};

/// A medium's embeddings: `n_embd` floats per row.
type Encoded = Result<Vec<f32>, String>;

/// The medium of one job being fed: which group, how far, and in which stage.
pub(super) struct Feeding {
    /// The job's identity (its wish flag): the job may move to another slot meanwhile.
    pub(super) owner: Arc<AtomicU8>,
    /// The group's index in the job's groups.
    pub(super) group: usize,
    /// The next chunk of the group.
    chunk: usize,
    /// The position the next chunk starts at.
    at: i32,
    stage: Stage,
}

enum Stage {
    /// The chunk has not been started.
    Start,
    /// The worker is encoding it (`got`: its result, once [`Feeding::wait`] has taken it; `stop`
    /// stops it, when the job is gone).
    Encoding { result: Receiver<Encoded>, got: Option<Encoded>, rows: Rows, stop: Arc<AtomicBool> },
    /// Its embeddings, `done` rows of which are decoded.
    Ready { embd: Vec<f32>, rows: Rows, done: usize },
}

/// How a chunk's embedding rows are decoded: their positions and attention.
struct Rows {
    /// Each row's positions, as llama.cpp's batch takes them (`[t, y, x, z]` with M-RoPE).
    pos: Vec<[i32; 4]>,
    n_embd: usize,
    non_causal: bool,
}

/// What a turn did with a [`Feeding`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Progress {
    /// It waits for the encoder.
    Waiting,
    /// It decoded something; more is left.
    Fed,
    /// The whole group is in the sequence.
    Done,
}

impl Feeding {
    /// Feeding group `group` of the job `owner`, starting at position `at`.
    pub(super) fn new(owner: Arc<AtomicU8>, group: usize, at: i32) -> Self {
        Feeding { owner, group, chunk: 0, at, stage: Stage::Start }
    }

    /// Takes this turn's step for `group` in sequence `seq`: starts the next chunk, or decodes the
    /// next piece of up to `piece` rows (`num_batch` where attention is not causal).
    pub(super) fn advance(
        &mut self,
        projector: &mut Projector,
        ctx: &mut LlamaContext,
        group: &Group,
        seq: i32,
        piece: usize,
        num_batch: u32,
    ) -> Result<Progress, String> {
        loop {
            let Some(chunk) = group.chunks.get(self.chunk) else { return Ok(Progress::Done) };
            match &mut self.stage {
                Stage::Start if chunk.chunk_type() == MtmdInputChunkType::Text => {
                    self.at = decode_text(projector, ctx, &chunk, self.at, seq, num_batch)?;
                    return Ok(self.next_chunk(group));
                }
                Stage::Start => {
                    if projector.busy() {
                        return Ok(Progress::Waiting);
                    }
                    let rows = rows(projector, ctx, &chunk, self.at)?;
                    let owned = chunk.copy().map_err(|e| format!("could not copy an image or sound chunk: {e}"))?;
                    let stop = Arc::new(AtomicBool::new(false));
                    let result = projector.encode(owned, rows.n_embd, stop.clone())?;
                    self.stage = Stage::Encoding { result, got: None, rows, stop };
                }
                Stage::Encoding { result, got, .. } => {
                    let embd = match got.take().map_or_else(|| result.try_recv(), Ok) {
                        Ok(r) => r?,
                        Err(TryRecvError::Empty) => return Ok(Progress::Waiting),
                        Err(TryRecvError::Disconnected) => return Err("the image encoder stopped".into()),
                    };
                    let Stage::Encoding { rows, .. } = std::mem::replace(&mut self.stage, Stage::Start) else {
                        unreachable!("matched above")
                    };
                    self.stage = Stage::Ready { embd, rows, done: 0 };
                }
                Stage::Ready { embd, rows, done } => {
                    let n = if rows.non_causal { num_batch as usize } else { piece.max(1) };
                    let end = (*done + n).min(rows.pos.len());
                    decode_rows(ctx, embd, rows, *done..end, seq)?;
                    *done = end;
                    if end < rows.pos.len() {
                        return Ok(Progress::Fed);
                    }
                    self.at += chunk.n_positions();
                    self.stage = Stage::Start;
                    return Ok(self.next_chunk(group));
                }
            }
        }
    }

    /// Moves on past a chunk that is in: whether the group is.
    fn next_chunk(&mut self, group: &Group) -> Progress {
        self.chunk += 1;
        if self.chunk == group.chunks.len() {
            Progress::Done
        } else {
            Progress::Fed
        }
    }

    /// Waits up to `limit` for the encoder when this feeding has nothing else to do, so that an
    /// otherwise idle loop sleeps instead of spinning.
    pub(super) fn wait(&mut self, projector: &Projector, limit: Duration) {
        match &mut self.stage {
            Stage::Encoding { result, got: got @ None, .. } => {
                if let Ok(embd) = result.recv_timeout(limit) {
                    *got = Some(embd);
                }
            }
            // Another job's cancelled encode is still finishing.
            Stage::Start if projector.busy() => std::thread::sleep(limit.min(Duration::from_millis(5))),
            _ => {}
        }
    }
}

impl Drop for Feeding {
    /// A job that is gone (cancelled, failed) stops its encode: nobody waits for it any more.
    fn drop(&mut self) {
        if let Stage::Encoding { stop, .. } = &self.stage {
            stop.store(true, Ordering::Relaxed);
        }
    }
}

/// The rows of media chunk `chunk` decoded from position `at`: positions as `mtmd`'s helper
/// gives them, the width llama.cpp takes, and whether `mtmd` turns causal attention off.
fn rows(projector: &mut Projector, ctx: &mut LlamaContext, chunk: &MtmdInputChunk, at: i32) -> Result<Rows, String> {
    let n = chunk.n_tokens();
    let mctx = projector.raw();
    let raw = chunk.as_ptr();
    // SAFETY: both contexts and the chunk are alive; the encoder is idle (checked by the caller),
    // so nothing else uses the projector's context.
    let (mrope, non_causal, n_embd) = unsafe {
        let model = sys::llama_get_model(ctx.as_mut_ptr());
        (
            sys::mtmd_decode_use_mrope(mctx),
            sys::mtmd_decode_use_non_causal(mctx, raw),
            sys::llama_model_n_embd_inp(model),
        )
    };
    let n_embd = usize::try_from(n_embd).map_err(|_| format!("the model's input width {n_embd} is not usable"))?;
    let pos = if !mrope {
        (at..).take(n).map(|p| [p, 0, 0, 0]).collect()
    } else if chunk.chunk_type() == MtmdInputChunkType::Image {
        // SAFETY: an image chunk has image tokens, and `grid` has room for one entry per token.
        let grid = unsafe {
            let tokens = sys::mtmd_input_chunk_get_tokens_image(raw);
            if tokens.is_null() {
                return Err("an image chunk has no image tokens".into());
            }
            let mut grid = vec![sys::mtmd_decoder_pos { t: 0, x: 0, y: 0, z: 0 }; n];
            sys::mtmd_helper_image_get_decoder_pos(tokens, at, grid.as_mut_ptr());
            grid
        };
        grid.iter().map(|p| [p.t as i32, p.y as i32, p.x as i32, p.z as i32]).collect()
    } else {
        (at..).take(n).map(|p| [p; 4]).collect()
    };
    Ok(Rows { pos, n_embd, non_causal })
}

/// Decodes text chunk `chunk` into `seq` from `at`; returns the position after it.
fn decode_text(
    projector: &mut Projector,
    ctx: &mut LlamaContext,
    chunk: &MtmdInputChunk,
    at: i32,
    seq: i32,
    num_batch: u32,
) -> Result<i32, String> {
    let mut after = at;
    crate::log::take_recent();
    // SAFETY: all pointers are alive; `mtmd`'s helper does not use its context for a text chunk,
    // so an encode still running for a cancelled job does not race with this.
    let ret = unsafe {
        sys::mtmd_helper_eval_chunk_single(
            projector.raw(),
            ctx.as_mut_ptr(),
            chunk.as_ptr(),
            at,
            seq,
            num_batch as i32,
            false,
            &mut after,
        )
    };
    if ret != 0 {
        return Err(crate::log::with_reasons(format!("llama.cpp failed to decode the text around a medium ({ret})")));
    }
    Ok(after)
}

/// Decodes embedding rows `range` of `embd` into `seq`, in one batch.
fn decode_rows(
    ctx: &mut LlamaContext,
    embd: &[f32],
    rows: &Rows,
    range: std::ops::Range<usize>,
    seq: i32,
) -> Result<(), String> {
    struct Batch(*mut sys::llama_batch_ext);
    impl Drop for Batch {
        fn drop(&mut self) {
            // SAFETY: made by `llama_batch_ext_init` below, freed once.
            unsafe { sys::llama_batch_ext_free(self.0) }
        }
    }
    let lctx = ctx.as_mut_ptr();
    crate::log::take_recent();
    // SAFETY: the batch is used only here; each row lies inside `embd` (checked by `get`), which
    // outlives the call; positions are four per row as the batch reads them with M-RoPE.
    let ret = unsafe {
        let batch = Batch(sys::llama_batch_ext_init(lctx));
        for i in range.clone() {
            let row = embd.get(i * rows.n_embd..(i + 1) * rows.n_embd).ok_or("the encoder gave too few rows")?;
            let e = sys::llama_embd { data: row.as_ptr(), n_rows: 1, n_embd: rows.n_embd };
            let idx = sys::llama_batch_ext_add_embd(batch.0, seq, e);
            if idx < 0 || !sys::llama_batch_ext_set_pos(batch.0, idx, rows.pos[i].as_ptr()) {
                return Err(format!("could not add embedding row {i} to a batch ({idx})"));
            }
        }
        if rows.non_causal {
            sys::llama_set_causal_attn(lctx, false);
        }
        let ret = sys::llama_process(lctx, sys::LLAMA_PROCESS_TYPE_DECODE, batch.0);
        if rows.non_causal {
            sys::llama_set_causal_attn(lctx, true);
        }
        ret
    };
    if ret != 0 {
        return Err(crate::log::with_reasons(format!(
            "llama.cpp failed to decode rows {}..{} of an image or sound ({ret})",
            range.start, range.end
        )));
    }
    Ok(())
}

/// Encodes `chunk` on the calling thread with the projector context `mctx`: its rows of `n_embd`.
/// On the CPU, the encode stops between two steps of its graph once `stop` is set.
pub(super) fn encode(mctx: RawProjector, chunk: &MtmdInputChunk, n_embd: usize, stop: &AtomicBool) -> Encoded {
    crate::log::take_recent();
    crate::compat::watch_encodes(Some(stop));
    // SAFETY: the projector keeps its context alive until this thread is joined, and nothing else
    // uses it meanwhile (see the module docs).
    let ret = unsafe { sys::mtmd_encode_chunk(mctx.0, chunk.as_ptr()) };
    crate::compat::watch_encodes(None);
    // SAFETY: as above; the output holds `n_embd` floats per token.
    unsafe {
        if ret != 0 {
            return Err(crate::log::with_reasons(format!("llama.cpp failed to encode an image or sound ({ret})")));
        }
        let out = sys::mtmd_get_output_embd(mctx.0);
        if out.is_null() {
            return Err("the image encoder gave no output".into());
        }
        Ok(std::slice::from_raw_parts(out, chunk.n_tokens() * n_embd).to_vec())
    }
}

/// The projector's `mtmd` context, sent to the encoder thread.
pub(super) struct RawProjector(pub(super) *mut sys::mtmd_context);

// SAFETY: `mtmd` contexts are not tied to a thread; the projector lets one thread at a time use it.
unsafe impl Send for RawProjector {}

#[cfg(test)]
mod tests {
    use corral_types::runner::Media;
    use llama_cpp_2::model::params::LlamaModelParams;
    use llama_cpp_2::model::LlamaModel;

    use super::super::media;
    use super::*;

    /// The compat hook in `clip.cpp` stops an encode whose flag is set (the job it was for is gone)
    /// and leaves one whose flag is clear alone.
    #[test]
    fn an_encode_stops_once_its_flag_is_set() {
        let backend = crate::llama_backend().unwrap();
        let model_path = corral_testkit::smollm2();
        let model = LlamaModel::load_from_file(backend, &model_path, &LlamaModelParams::default()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("projector.gguf");
        std::fs::write(&path, corral_testkit::projector::tiny_vision_projector(576, 7)).unwrap();
        let (path, model_path) = (path.to_str().unwrap(), model_path.to_str().unwrap());
        let mut projector = Projector::load(path, &model, model_path, 1, true, true).unwrap();
        let picture = Media { at: 1, data: corral_testkit::projector::png(64, 64, 1) };
        let (_, groups) = media::tokenize(&model, Some(&projector), "a b", &[picture]).unwrap();
        let chunks = &groups[0].chunks;
        let chunk = (0..chunks.len())
            .filter_map(|i| chunks.get(i))
            .find(|c| c.chunk_type() == MtmdInputChunkType::Image)
            .expect("the picture's chunk");

        let stop = AtomicBool::new(true);
        let stopped = encode(RawProjector(projector.raw()), &chunk, 576, &stop);
        assert!(stopped.is_err(), "an encode whose flag was set ran to its end");
        stop.store(false, Ordering::Relaxed);
        let rows = encode(RawProjector(projector.raw()), &chunk, 576, &stop).expect("a free encode runs");
        assert_eq!(rows.len(), chunk.n_tokens() * 576);
        assert!(rows.iter().all(|x| x.is_finite()) && rows.iter().any(|x| *x != 0.0));
    }
}
