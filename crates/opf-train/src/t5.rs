//! T5 fine-tuned on GLUE text to text, as the original OPF T5 code does it (spec §5.7,
//! `t5/data/tasks.py`, `t5_trainer.py`, `t5/metrics/metrics.py`): the source is the task's
//! [`opf_glue::t5_source`] text, the decoder learns the label string ([`opf_glue::t5_target`]
//! followed by `</s>`) under a label-smoothed loss, and predictions are greedy generations parsed
//! back into labels ([`opf_glue::t5_predictions`]: a string that is no label counts wrong).
//!
//! [`T5TextToText`] is the [`TaskModel`] the trainer, the OPF selection rounds and ChildTuning-D
//! run on; its projections are addressed through [`crate::select::OpfModel`] like BERT's and
//! BART's.

use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use opf_glue::{BatchLabels, Predictions, T5Text, Task, t5_predictions};
use opf_models::T5ForConditionalGeneration;

use crate::{TaskModel, TrainError};

/// The label smoothing ε of the original T5 trainer's default recipe (spec §5.7).
pub const T5_LABEL_SMOOTHING: f64 = 0.1;

/// A T5 with the text side of a GLUE task: how labels become decoder targets and generated ids
/// become text.
#[derive(Module, Debug)]
pub struct T5TextToText {
    /// The model.
    pub model: T5ForConditionalGeneration,
    /// Targets and decoding.
    #[module(skip)]
    text: T5Text,
    /// Label smoothing ε of the loss.
    #[module(skip)]
    label_smoothing: f64,
}

impl T5TextToText {
    /// Fine-tunes `model` with targets and decoding from `text`, label smoothing
    /// [`T5_LABEL_SMOOTHING`].
    ///
    /// # Errors
    ///
    /// [`TrainError::GatedT5`] for a gated feed-forward (T5 v1.1 `wi_0` / `wi_1`): OPF's matrix
    /// kinds have one FFN_1 per layer, so such a model cannot be addressed for selection or
    /// `--mpo-targets`.
    pub fn new(model: T5ForConditionalGeneration, text: T5Text) -> Result<Self, TrainError> {
        if model.is_gated() {
            return Err(TrainError::GatedT5);
        }
        Ok(Self {
            model,
            text,
            label_smoothing: T5_LABEL_SMOOTHING,
        })
    }

    /// The label smoothing ε of the loss.
    pub fn label_smoothing(&self) -> f64 {
        self.label_smoothing
    }

    /// The decoder labels of a batch on `device`, `[batch, target_len]`, padded with −100.
    ///
    /// # Panics
    ///
    /// Panics if the tokenizer fails on a label string (`"0"`, `"3.8"`, ...), which a working
    /// tokenizer does not.
    fn decoder_labels(&self, labels: &BatchLabels, device: &Device) -> Tensor<2, Int> {
        let (ids, len) = self
            .text
            .decoder_labels(labels)
            .unwrap_or_else(|err| panic!("T5 targets: {err}"));
        let rows = ids.len().checked_div(len).unwrap_or(0);
        Tensor::from_data(TensorData::new(ids, [rows, len]), device)
    }
}

impl TaskModel for T5TextToText {
    /// Label-smoothed token cross-entropy of the targets under teacher forcing: decoder inputs
    /// are the labels shifted right (modeling_t5.py:1029-1031), the loss is
    /// [`T5ForConditionalGeneration::loss`] with ε = [`label_smoothing`](Self::label_smoothing):
    /// per token `(1 − ε)·nll + ε·mean(−log p)`, the label-smoothed NLL of the original trainer
    /// (`t5_trainer.py:110-126`, spec §5.7), averaged over the target tokens as PyTorch's
    /// `CrossEntropyLoss(label_smoothing=ε)` does (a fairseq-style helper that returns the sum
    /// differs only by that factor). Token type ids are ignored.
    fn loss(
        &self,
        [input_ids, _token_type_ids, attention_mask]: [Tensor<2, Int>; 3],
        labels: &BatchLabels,
        device: &Device,
    ) -> Tensor<1> {
        let labels = self.decoder_labels(labels, device);
        let decoder_input_ids = self.model.shift_right(labels.clone());
        let logits = self
            .model
            .forward(input_ids, attention_mask, decoder_input_ids);
        self.model.loss(logits, labels, self.label_smoothing)
    }

    /// Greedy generation of at most [`T5Text::max_target_length`] tokens (`predict_with_generate`
    /// with one beam, spec §5.7), decoded without special tokens and parsed by
    /// [`t5_predictions`]; with labels, also the teacher-forced loss.
    fn predict_batch(
        &self,
        task: Task,
        [input_ids, token_type_ids, attention_mask]: [Tensor<2, Int>; 3],
        labels: Option<&BatchLabels>,
        device: &Device,
    ) -> Result<(Predictions, Option<f64>), TrainError> {
        let loss = labels.map(|labels| {
            let inputs = [input_ids.clone(), token_type_ids, attention_mask.clone()];
            self.loss(inputs, labels, device).into_scalar::<f64>()
        });
        let generated =
            self.model
                .generate_greedy(input_ids, attention_mask, self.text.max_target_length());
        let len = generated.dims()[1];
        let ids = generated
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("i64 token ids");
        let texts = ids
            .chunks(len)
            .map(|row| self.text.decode(row))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((t5_predictions(task, &texts, labels), loss))
    }

    fn adopt_record_layout(self, path: &Path, device: &Device) -> Result<Self, TrainError> {
        Ok(T5ForConditionalGeneration::with_record_layout(
            self,
            path,
            |m: &mut Self| &mut m.model,
            device,
        )?)
    }
}
