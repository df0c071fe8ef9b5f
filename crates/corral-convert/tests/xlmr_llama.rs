//! The converted tiny XLM-RoBERTa cross-encoder, run by llama.cpp:
//!
//! - its scores are those of a direct forward pass of the Hugging Face weights (written out
//!   below, as `XLMRobertaForSequenceClassification` computes it), so the position offset, the
//!   classification head and the pair layout `<s> query </s></s> document </s>` are right;
//! - its tokenizer splits text as Hugging Face's `tokenizers` splits it with the directory's own
//!   `tokenizer.json` (character map, space handling, unknown characters, pairs). That check runs
//!   Python's `tokenizers` in `CORRAL_TEST_PYTHON` (the test environment `scripts/test.sh` makes,
//!   where it must be installed), else in `python3`, where it is skipped, saying so, if missing.

use std::collections::BTreeMap;
use std::path::Path;

use corral_convert::safetensors::Safetensors;
use corral_convert::{convert, Quantize};
use corral_engine::{Engine, LlamaEngine};
use corral_testkit::xlmr::{self, XLMR_EMBD, XLMR_HEADS, XLMR_LAYERS, XLMR_PAD};
use corral_types::runner::{EmbedRequest, LoadOptions};

/// The fixture at `dir`, converted to `dir/model.gguf` and loaded for scoring.
fn reranker(dir: &Path, seed: u64) -> LlamaEngine {
    xlmr::tiny_xlmr_cross_encoder(dir, seed);
    let files: BTreeMap<String, std::path::PathBuf> =
        ["config.json", "tokenizer.json", "model.safetensors"].map(|n| (n.to_string(), dir.join(n))).into();
    let (writer, _) = convert(&files, Quantize::F16).unwrap();
    let path = dir.join("model.gguf");
    writer.write_to(std::fs::File::create(&path).unwrap()).unwrap();
    let opts = LoadOptions {
        model_path: path.display().to_string(),
        num_ctx: 512,
        parallel: 2,
        num_batch: 512,
        num_thread: 1,
        num_gpu: 0,
        embedding: true,
        ..Default::default()
    };
    LlamaEngine::load(opts, |_| {}).unwrap()
}

/// `text`'s tokens without the `<s>` and `</s>` llama.cpp puts around one text.
fn words(engine: &LlamaEngine, text: &str) -> Vec<u32> {
    let ids = engine.tokenize(text).unwrap();
    assert_eq!((ids[0], ids[ids.len() - 1]), (0, 2), "{text:?}: {ids:?}");
    ids[1..ids.len() - 1].to_vec()
}

/// The pair as XLM-R's tokenizer lays it out.
fn pair(engine: &LlamaEngine, query: &str, document: &str) -> Vec<u32> {
    [vec![0], words(engine, query), vec![2, 2], words(engine, document), vec![2]].concat()
}

/// The model's weights by Hugging Face name.
struct Weights(BTreeMap<String, Vec<f32>>);

impl Weights {
    fn read(path: &Path) -> Weights {
        let st = Safetensors::parse(std::fs::read(path).unwrap()).unwrap();
        Weights(st.names().map(|n| (n.to_string(), st.get(n).unwrap().values)).collect())
    }

    fn get(&self, name: &str) -> &[f32] {
        &self.0[name]
    }

    /// `x` (rows of `n_in`) times the PyTorch `[n_out, n_in]` matrix `name.weight`, plus `name.bias`.
    fn linear(&self, name: &str, x: &[f32], n_in: usize) -> Vec<f32> {
        let (w, b) = (self.get(&format!("{name}.weight")), self.get(&format!("{name}.bias")));
        let n_out = b.len();
        x.chunks(n_in)
            .flat_map(|row| {
                (0..n_out).map(move |o| b[o] + row.iter().zip(&w[o * n_in..]).map(|(a, c)| a * c).sum::<f32>())
            })
            .collect()
    }

    fn layer_norm(&self, name: &str, x: &mut [f32], dim: usize) {
        let (g, b) = (self.get(&format!("{name}.weight")), self.get(&format!("{name}.bias")));
        for row in x.chunks_mut(dim) {
            let mean = row.iter().sum::<f32>() / dim as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / dim as f32;
            let scale = 1.0 / (var + 1e-5).sqrt();
            for (i, v) in row.iter_mut().enumerate() {
                *v = (*v - mean) * scale * g[i] + b[i];
            }
        }
    }

    /// The relevance score of `ids`, with positions counted from `first_position`.
    fn score(&self, ids: &[u32], first_position: usize) -> f32 {
        let (e, n) = (XLMR_EMBD as usize, ids.len());
        let (words, positions) = (
            self.get("roberta.embeddings.word_embeddings.weight"),
            self.get("roberta.embeddings.position_embeddings.weight"),
        );
        let types = self.get("roberta.embeddings.token_type_embeddings.weight");
        let mut x: Vec<f32> = (0..n * e)
            .map(|k| {
                let (t, i) = (k / e, k % e);
                words[ids[t] as usize * e + i] + positions[(first_position + t) * e + i] + types[i]
            })
            .collect();
        self.layer_norm("roberta.embeddings.LayerNorm", &mut x, e);
        let (heads, d) = (XLMR_HEADS as usize, e / XLMR_HEADS as usize);
        for l in 0..XLMR_LAYERS {
            let p = format!("roberta.encoder.layer.{l}");
            let q = self.linear(&format!("{p}.attention.self.query"), &x, e);
            let k = self.linear(&format!("{p}.attention.self.key"), &x, e);
            let v = self.linear(&format!("{p}.attention.self.value"), &x, e);
            let mut context = vec![0.0; n * e];
            for h in 0..heads {
                for i in 0..n {
                    let at = |m: &[f32], t: usize| m[t * e + h * d..t * e + h * d + d].to_vec();
                    let qi = at(&q, i);
                    let logits: Vec<f32> = (0..n)
                        .map(|j| qi.iter().zip(at(&k, j)).map(|(a, b)| a * b).sum::<f32>() / (d as f32).sqrt())
                        .collect();
                    let top = logits.iter().copied().fold(f32::MIN, f32::max);
                    let exp: Vec<f32> = logits.iter().map(|z| (z - top).exp()).collect();
                    let total: f32 = exp.iter().sum();
                    for (j, w) in exp.iter().enumerate() {
                        for c in 0..d {
                            context[i * e + h * d + c] += w / total * v[j * e + h * d + c];
                        }
                    }
                }
            }
            let attended = self.linear(&format!("{p}.attention.output.dense"), &context, e);
            x.iter_mut().zip(attended).for_each(|(a, b)| *a += b);
            self.layer_norm(&format!("{p}.attention.output.LayerNorm"), &mut x, e);
            let gelu =
                |z: f32| 0.5 * z * (1.0 + ((2.0 / std::f32::consts::PI).sqrt() * (z + 0.044715 * z * z * z)).tanh());
            let up: Vec<f32> = self.linear(&format!("{p}.intermediate.dense"), &x, e).into_iter().map(gelu).collect();
            let down = self.linear(&format!("{p}.output.dense"), &up, up.len() / n);
            x.iter_mut().zip(down).for_each(|(a, b)| *a += b);
            self.layer_norm(&format!("{p}.output.LayerNorm"), &mut x, e);
        }
        // RobertaClassificationHead on `<s>`: dense, tanh, out_proj.
        let hidden: Vec<f32> = self.linear("classifier.dense", &x[..e], e).into_iter().map(f32::tanh).collect();
        self.linear("classifier.out_proj", &hidden, e)[0]
    }
}

#[test]
fn llama_cpp_scores_pairs_as_the_hugging_face_model_does() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = reranker(tmp.path(), 11);
    let weights = Weights::read(&tmp.path().join("model.safetensors"));
    let query = "what is a panda?";
    let documents = ["the panda eats bamboo.", "the stock market fell today.", "hello world"];
    let request =
        EmbedRequest { inputs: documents.map(String::from).to_vec(), truncate: true, query: Some(query.into()) };
    let out = engine.embed(request).unwrap();
    let mut tokens = 0;
    for (document, got) in documents.iter().zip(&out.vectors) {
        let ids = pair(&engine, query, document);
        tokens += ids.len();
        // XLM-R's first position is row pad + 1 of the table.
        let want = weights.score(&ids, XLMR_PAD as usize + 1);
        let unshifted = weights.score(&ids, 0);
        eprintln!("{document:?}: llama.cpp {:.5}, Hugging Face {want:.5} (from row 0: {unshifted:.5})", got[0]);
        assert_eq!(got.len(), 1);
        assert!((got[0] - want).abs() < 2e-2, "{document:?}: llama.cpp {} vs {want}", got[0]);
        // The check can tell the offset: without it the score is off by more than the tolerance.
        assert!((unshifted - want).abs() > 5e-2, "{document:?}: positions make no difference");
    }
    assert_eq!(out.prompt_tokens as usize, tokens);
}

#[test]
fn llama_cpp_applies_the_character_map_and_the_space_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = reranker(tmp.path(), 13);
    let vocab = xlmr::vocabulary();
    let id = |piece: &str| vocab.iter().position(|(p, _)| p == piece).unwrap() as u32;
    assert_eq!(words(&engine, "hello world"), [id("▁hello"), id("▁world")]);
    // The unigram model's choice: one word over its parts.
    assert_eq!(words(&engine, "panda"), [id("▁panda")]);
    for (text, same_as) in [
        ("ｈｅｌｌｏ　ｗｏｒｌｄ", "hello world"),
        ("the ﬁsh", "the fish"),
        ("a\u{a0}bear", "a bear"),
        ("hello   world", "hello world"),
        ("  hello", "hello"),
    ] {
        assert_eq!(words(&engine, text), words(&engine, same_as), "{text:?}");
    }
    // Unknown characters, consecutive ones as one `<unk>`.
    assert_eq!(words(&engine, "日本"), [id("▁"), 3]);
}

/// Texts that exercise the tokenizer: the character map (full-width letters, the `ﬁ` ligature,
/// no-break and ideographic spaces), runs and leading spaces, unknown characters, digits.
const TEXTS: &[&str] = &[
    "hello world",
    "what is a panda?",
    "the panda eats bamboo.",
    "ｈｅｌｌｏ　ｗｏｒｌｄ",
    "the ﬁsh",
    "a\u{a0}bear",
    "hello   world",
    "  two leading spaces",
    "日本 panda",
    "xyzzy 42",
    "pandas, bears, fish.",
    "What Is A Panda?",
    "stocking marketed",
];

#[test]
fn llama_cpp_tokenizes_as_hugging_face_tokenizers() {
    let tmp = tempfile::tempdir().unwrap();
    let engine = reranker(tmp.path(), 12);
    let input = tmp.path().join("texts.json");
    std::fs::write(&input, serde_json::to_vec(TEXTS).unwrap()).unwrap();
    let script = r#"
import json, sys
try:
    from tokenizers import Tokenizer
except ImportError as e:
    print("SKIP", e)
    sys.exit(0)
tok = Tokenizer.from_file(sys.argv[1])
texts = json.load(open(sys.argv[2], encoding="utf-8"))
print(json.dumps({"single": [tok.encode(t).ids for t in texts],
                  "pair": [tok.encode(texts[1], t).ids for t in texts]}))
"#;
    // The suite's own environment must have it; a bare `python3` may not.
    let required = std::env::var_os("CORRAL_TEST_PYTHON");
    let run = std::process::Command::new(required.clone().unwrap_or_else(|| "python3".into()))
        .arg("-c")
        .arg(script)
        .arg(tmp.path().join("tokenizer.json"))
        .arg(&input)
        .output();
    let out = match run {
        Ok(o) if o.status.success() => String::from_utf8(o.stdout).unwrap(),
        Ok(o) => panic!("python3 failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => {
            eprintln!("SKIPPED: no python3 ({e}); the tokenizer parity check needs Python with `tokenizers`");
            return;
        }
    };
    if let Some(reason) = out.strip_prefix("SKIP") {
        assert!(required.is_none(), "CORRAL_TEST_PYTHON has no `tokenizers`: {}", reason.trim());
        eprintln!("SKIPPED: Python has no `tokenizers` ({}); `pip install tokenizers` runs this check", reason.trim());
        return;
    }
    let hf: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> { serde_json::from_value(v.clone()).unwrap() };
    let mut differ = Vec::new();
    for (i, text) in TEXTS.iter().enumerate() {
        let (want, got) = (ids(&hf["single"][i]), engine.tokenize(text).unwrap());
        if want != got {
            differ.push(format!("{text:?}: Hugging Face {want:?}, llama.cpp {got:?}"));
        }
        let (want, got) = (ids(&hf["pair"][i]), pair(&engine, TEXTS[1], text));
        if want != got {
            differ.push(format!("pair with {text:?}: Hugging Face {want:?}, llama.cpp {got:?}"));
        }
    }
    assert!(differ.is_empty(), "tokenizations differ:\n{}", differ.join("\n"));
    eprintln!("{} texts and {} pairs tokenized alike", TEXTS.len(), TEXTS.len());
}
