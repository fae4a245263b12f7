//! Tokenization of GLUE examples with a Hugging Face `tokenizer.json`.
//!
//! Reproduces what HF `glue_convert_examples_to_features` / `run_glue.py` do with a fast
//! tokenizer — `tokenizer(text_a, text_b, truncation=True, max_length=max_seq_length)` — but
//! without padding: padding is applied per batch by [`crate::Batches`] (dynamic padding, like
//! HF's `DataCollatorWithPadding`).
//!
//! Token ids are `i64` throughout this crate (PyTorch's `torch.long`, what burn's `Int` tensors
//! take); `tokenizers`' `u32` ids convert losslessly.

use std::path::Path;

use tokenizers::{
    Encoding, PostProcessor, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
    truncate_encodings,
};

use crate::data::{Example, Label};
use crate::error::GlueError;

/// A tokenized example: unpadded ids (HF `InputFeatures` without `attention_mask`, which the
/// batcher builds).
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// Token ids, including the special tokens (`[CLS] a [SEP] b [SEP]` for BERT).
    pub input_ids: Vec<i64>,
    /// Segment ids (0 for the first sentence, 1 for the second), same length as `input_ids`.
    pub token_type_ids: Vec<i64>,
    /// The example's label, copied from [`Example::label`].
    pub label: Option<Label>,
}

/// A `tokenizers::Tokenizer` set up for GLUE: the file's padding disabled, special tokens added,
/// and truncation `LongestFirst` to `max_seq_length` (stride 0, from the right) applied by this
/// wrapper rather than by the tokenizer.
///
/// Why not `Tokenizer::with_truncation`: tokenizers 0.23.2 stops tokenizing each sequence of a
/// pair once it has `max_length` tokens (`tokenize_with_limit`) *before* `LongestFirst` compares
/// the two lengths, so when both sequences are long the odd token can go to the wrong one. With
/// MRPC dev pair 1 at `max_length = 16` it keeps 6 + 7 tokens where transformers 5.24 (tokenizers
/// 0.23.3) keeps 7 + 6. This wrapper therefore tokenizes both sequences in full, truncates them with
/// `tokenizers::truncate_encodings` (the same `LongestFirst` algorithm, on the full lengths, with
/// `max_length` minus the post-processor's special tokens) and then runs the post-processor —
/// what `TokenizerImpl::post_process` does when truncation is not cut short.
#[derive(Debug, Clone)]
pub struct GlueTokenizer {
    inner: Tokenizer,
    max_seq_length: usize,
    pad_id: i64,
}

impl GlueTokenizer {
    /// Loads a `tokenizer.json` (`Tokenizer::from_file`) and configures it as described on the
    /// type. The pad id is the file's padding `pad_id` if the file configures padding, otherwise
    /// the id of `[PAD]` (BERT) or `<pad>` (BART, RoBERTa, T5); override it with
    /// [`GlueTokenizer::with_pad_id`].
    pub fn from_file(path: &Path, max_seq_length: usize) -> Result<GlueTokenizer, GlueError> {
        let inner = Tokenizer::from_file(path).map_err(|source| GlueError::Tokenizer {
            context: format!("loading {}", path.display()),
            source,
        })?;
        GlueTokenizer::new(inner, max_seq_length)
    }

    /// Configures an already loaded tokenizer (see [`GlueTokenizer::from_file`]): its padding
    /// and truncation settings are removed.
    pub fn new(mut inner: Tokenizer, max_seq_length: usize) -> Result<GlueTokenizer, GlueError> {
        let pad_id = match inner.get_padding() {
            Some(p) => p.pad_id,
            None => ["[PAD]", "<pad>"]
                .into_iter()
                .find_map(|t| inner.token_to_id(t))
                .ok_or(GlueError::NoPadToken)?,
        };
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|source| GlueError::Tokenizer {
                context: "disabling truncation".to_owned(),
                source,
            })?;
        Ok(GlueTokenizer {
            inner,
            max_seq_length,
            pad_id: i64::from(pad_id),
        })
    }

    /// Replaces the pad id used by the batcher.
    pub fn with_pad_id(mut self, pad_id: i64) -> GlueTokenizer {
        self.pad_id = pad_id;
        self
    }

    /// The id padded positions get in [`crate::Batch::input_ids`].
    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// The truncation length (HF `max_seq_length`), special tokens included.
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// The underlying tokenizer (padding and truncation disabled), for decoding or vocabulary
    /// look-ups.
    pub fn inner(&self) -> &Tokenizer {
        &self.inner
    }

    fn batch(&self, texts: Vec<&str>) -> Result<Vec<Encoding>, GlueError> {
        let n = texts.len();
        self.inner
            .encode_batch(texts, false)
            .map_err(|source| GlueError::Tokenizer {
                context: format!("encoding {n} sequences"),
                source,
            })
    }

    /// Tokenizes examples like transformers' `tokenizer(text_a, text_b, truncation=True,
    /// max_length=max_seq_length)` (no padding): `text_a` alone or the pair (`text_a`, `text_b`),
    /// special tokens added, truncated `LongestFirst` to `max_seq_length` tokens in total.
    /// Sequences are tokenized in parallel (`Tokenizer::encode_batch`); output order matches
    /// input order. Fails if `max_seq_length` is smaller than the number of special tokens.
    pub fn encode(&self, examples: &[Example]) -> Result<Vec<Features>, GlueError> {
        let firsts = self.batch(examples.iter().map(|e| e.text_a.as_str()).collect())?;
        let seconds = self.batch(
            examples
                .iter()
                .filter_map(|e| e.text_b.as_deref())
                .collect(),
        )?;
        let mut seconds = seconds.into_iter();
        let mut out = Vec::with_capacity(examples.len());
        for (first, ex) in firsts.into_iter().zip(examples) {
            let second = match ex.text_b {
                // `encode_batch` gave type id 0; a pair's second sequence has type id 1, as in
                // `TokenizerImpl::encode`.
                Some(_) => seconds.next().map(|mut s| {
                    s.set_type_ids(vec![1; s.len()]);
                    s
                }),
                None => None,
            };
            let special = self
                .inner
                .get_post_processor()
                .map_or(0, |p| p.added_tokens(second.is_some()));
            let budget = self.max_seq_length.checked_sub(special).ok_or(
                GlueError::MaxSeqLengthTooShort {
                    max_seq_length: self.max_seq_length,
                    special_tokens: special,
                },
            )?;
            let params = TruncationParams {
                direction: TruncationDirection::Right,
                max_length: budget,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            };
            let tokenizer_error = |source| GlueError::Tokenizer {
                context: format!("truncating and post-processing {}", ex.guid),
                source,
            };
            let (first, second) =
                truncate_encodings(first, second, &params).map_err(tokenizer_error)?;
            let enc = self
                .inner
                .post_process(first, second, true)
                .map_err(tokenizer_error)?;
            out.push(Features {
                input_ids: enc.get_ids().iter().map(|&i| i64::from(i)).collect(),
                token_type_ids: enc.get_type_ids().iter().map(|&i| i64::from(i)).collect(),
                label: ex.label,
            });
        }
        Ok(out)
    }
}
