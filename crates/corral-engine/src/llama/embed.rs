//! Pooled embeddings ([`Loop::embed`]), for a model loaded with `embedding` on.
//!
//! An embedding request does not go through the slots: each group of inputs is decoded in one
//! batch on a cleared cache, one sequence per input, and the context's pooled output is read per
//! sequence. Fitting an input to the context ([`fit`]) and grouping inputs into batches
//! ([`group_end`]) are pure and tested below.

use corral_types::runner::{EmbedRequest, Embedded};
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

use super::step::Loop;
use crate::EngineError;

impl Loop<'_, '_, '_> {
    /// Embeds the inputs, as many sequences per batch as there are slots and tokens for.
    pub(super) fn embed(&mut self, req: &EmbedRequest) -> Result<Embedded, EngineError> {
        let limit = self.num_ctx as usize;
        let sep = self.model.vocab().sep();
        let mut seqs = Vec::with_capacity(req.inputs.len());
        let vocab = self.model.vocab();
        for text in &req.inputs {
            let tokens = match &req.query {
                // Special tokens are added ([CLS] … [SEP]) but not parsed out of the text.
                None => vocab.tokenize(text.as_bytes(), true, false),
                Some(query) => {
                    let words = |t: &str| vocab.tokenize(t.as_bytes(), false, false);
                    let specials = Specials {
                        bos: vocab.should_add_bos().then(|| vocab.bos()),
                        // A vocabulary without an EOS token closes with its separator.
                        eos: vocab.should_add_eos().then(|| if vocab.eos().0 >= 0 { vocab.eos() } else { vocab.sep() }),
                        sep: vocab.should_add_sep().then(|| vocab.sep()).filter(|t| t.0 >= 0),
                    };
                    pair(words(query), words(text), specials)
                }
            };
            // A pair that is too long loses the end of its document, never the query.
            seqs.push(fit(tokens, limit, req.truncate, sep)?);
        }
        let lens: Vec<usize> = seqs.iter().map(Vec::len).collect();
        let mut vectors = vec![Vec::new(); seqs.len()];
        let mut batch = LlamaBatch::new(self.num_batch as usize, self.slots.len() as i32);
        let mut next = 0;
        while next < seqs.len() {
            batch.clear();
            let end = group_end(&lens, next, self.slots.len(), self.num_batch as usize);
            for (seq, tokens) in seqs[next..end].iter().enumerate() {
                batch.add_sequence(tokens, seq as i32, true).map_err(|e| EngineError::Internal(e.to_string()))?;
            }
            self.ctx.clear_kv_cache();
            self.ctx
                .decode(&mut batch)
                .map_err(|e| EngineError::Internal(format!("llama.cpp failed to embed a batch: {e}")))?;
            for (seq, input) in (next..end).enumerate() {
                let v = self
                    .ctx
                    .embeddings_seq_ith(seq as i32)
                    .map_err(|e| EngineError::Internal(format!("no embedding: {e}")))?;
                if v.iter().any(|x| !x.is_finite()) {
                    return Err(EngineError::Internal(
                        "the model produced an embedding with NaN or infinite values".into(),
                    ));
                }
                vectors[input] = v.to_vec();
            }
            next = end;
        }
        let prompt_tokens = lens.iter().sum::<usize>() as u32;
        Ok(Embedded { vectors, prompt_tokens })
    }
}

/// The special tokens a model's vocabulary adds around its inputs (`None`: not added).
#[derive(Debug, Clone, Copy)]
struct Specials {
    bos: Option<LlamaToken>,
    eos: Option<LlamaToken>,
    sep: Option<LlamaToken>,
}

/// A query and a document as one reranker input, laid out as llama.cpp's server lays them out:
/// `BOS query EOS SEP document EOS`, each special token where the vocabulary adds it.
fn pair(query: Vec<LlamaToken>, document: Vec<LlamaToken>, s: Specials) -> Vec<LlamaToken> {
    let mut tokens = Vec::with_capacity(query.len() + document.len() + 4);
    tokens.extend(s.bos);
    tokens.extend(query);
    tokens.extend(s.eos);
    tokens.extend(s.sep);
    tokens.extend(document);
    tokens.extend(s.eos);
    tokens
}

/// One input's `tokens` fitted to a context of `limit` tokens: unchanged when they fit, else an
/// error, or with `truncate` cut to the limit.
fn fit(
    mut tokens: Vec<LlamaToken>,
    limit: usize,
    truncate: bool,
    sep: LlamaToken,
) -> Result<Vec<LlamaToken>, EngineError> {
    if tokens.len() > limit {
        if !truncate {
            return Err(EngineError::ContextLength(format!(
                "the input length exceeds the context length: the input is {} tokens and the context is {limit} tokens",
                tokens.len()
            )));
        }
        let last = tokens[tokens.len() - 1];
        tokens.truncate(limit);
        // Keep the closing separator (BERT's [SEP]) where the model adds one.
        if last == sep {
            tokens[limit - 1] = last;
        }
    }
    Ok(tokens)
}

/// The end of the group of inputs (of `lens` tokens) embedded together from `start`: at most
/// `seqs` of them (one per sequence of the context), with at most `room` tokens in all.
fn group_end(lens: &[usize], start: usize, seqs: usize, room: usize) -> usize {
    let mut end = start;
    let mut used = 0;
    while end < lens.len() && end - start < seqs && used + lens[end] <= room {
        used += lens[end];
        end += 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEP: LlamaToken = LlamaToken(102);

    fn tokens(ids: &[i32]) -> Vec<LlamaToken> {
        ids.iter().map(|&t| LlamaToken(t)).collect()
    }

    #[test]
    fn inputs_that_fit_are_left_alone() {
        assert_eq!(fit(tokens(&[101, 7, 8, 102]), 4, false, SEP), Ok(tokens(&[101, 7, 8, 102])));
    }

    #[test]
    fn a_long_input_is_an_error_unless_it_may_be_cut() {
        let err = fit(tokens(&[101, 7, 8, 9, 102]), 4, false, SEP).unwrap_err();
        assert_eq!(
            err,
            EngineError::ContextLength(
                "the input length exceeds the context length: the input is 5 tokens and the context is 4 tokens".into()
            )
        );
    }

    #[test]
    fn a_cut_input_keeps_its_closing_separator() {
        assert_eq!(fit(tokens(&[101, 7, 8, 9, 102]), 4, true, SEP), Ok(tokens(&[101, 7, 8, 102])));
        // A model without a closing separator is simply cut.
        assert_eq!(fit(tokens(&[1, 7, 8, 9, 10]), 4, true, SEP), Ok(tokens(&[1, 7, 8, 9])));
    }

    #[test]
    fn a_pair_is_laid_out_as_llama_cpp_lays_it_out() {
        let (q, d) = (tokens(&[7, 8]), tokens(&[9]));
        // A BERT cross-encoder converted by llama.cpp: [CLS] q [SEP] d [SEP].
        let bert = Specials { bos: Some(LlamaToken(101)), eos: Some(SEP), sep: None };
        assert_eq!(pair(q.clone(), d.clone(), bert), tokens(&[101, 7, 8, 102, 9, 102]));
        // With a separator of its own after the query's end.
        let both = Specials { bos: Some(LlamaToken(0)), eos: Some(LlamaToken(2)), sep: Some(LlamaToken(2)) };
        assert_eq!(pair(q.clone(), d.clone(), both), tokens(&[0, 7, 8, 2, 2, 9, 2]));
        // A separator only: between the two, nothing after the document.
        let sep_only = Specials { bos: Some(LlamaToken(101)), eos: None, sep: Some(SEP) };
        assert_eq!(pair(q, d, sep_only), tokens(&[101, 7, 8, 102, 9]));
    }

    #[test]
    fn groups_are_bounded_by_sequences_and_tokens() {
        // Two sequences per batch.
        assert_eq!(group_end(&[3, 3, 3], 0, 2, 100), 2);
        assert_eq!(group_end(&[3, 3, 3], 2, 2, 100), 3);
        // Ten tokens per batch: the third input waits for the next one.
        assert_eq!(group_end(&[4, 5, 2], 0, 8, 10), 2);
        assert_eq!(group_end(&[4, 5, 2], 2, 8, 10), 3);
        // Exactly full.
        assert_eq!(group_end(&[5, 5], 0, 8, 10), 2);
    }
}
