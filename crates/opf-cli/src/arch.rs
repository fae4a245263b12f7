//! The architectures `opf glue` and `opf export` work with, chosen by the `model_type` of the
//! model's `config.json`, and the `--mpo-targets` / `--mpo-layers` names.
//!
//! * `bert` (or no `model_type`): [`BertForSequenceClassification`].
//! * `bart`: [`BartForSequenceClassification`]; the logits come from the decoder state at the
//!   last `</s>`, token type ids are ignored.
//! * `t5` (v1.0, not gated): [`T5TextToText`], text to text: sources `"mrpc sentence1: …"`,
//!   label strings as targets, predictions parsed from greedy generations.
//!
//! Target names are the `opf-select` matrix kinds, shared by every architecture: `query`, `key`,
//! `value`, `attention_output` (self-attention), `cross_query`, `cross_key`, `cross_value`,
//! `cross_output` (decoder cross-attention: BART `encoder_attn`, T5 `EncDecAttention`), `ffn_1`,
//! `ffn_2` (BERT `intermediate.dense` / `output.dense`, BART `fc1` / `fc2`, T5 `wi` / `wo`), and
//! the groups `attention`,
//! `cross_attention`, `ffn`, `all`. A target or layer may be limited to one stack with an
//! `encoder.` / `decoder.` prefix (`decoder.ffn`, `--mpo-layers encoder.0,decoder.1`); a bare
//! layer number means that layer of every stack.

use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::Device;
use opf_glue::{Example, Features, GlueTokenizer, T5Text, Task};
use opf_models::{BartConfig, BartForSequenceClassification, BertConfig};
use opf_models::{BertForSequenceClassification, LoadReport, T5ForConditionalGeneration};
use opf_select::{MatrixId, MatrixKind, Stack};
use opf_train::select::OpfModel;
use opf_train::t5::T5TextToText;

/// The `model_type`s `opf glue` fine-tunes.
const SUPPORTED: &str = "bert, bart, t5";

/// T5's longest target and generation budget when none is given: the original's 128 (spec §5.7).
pub(crate) const DEFAULT_MAX_TARGET_LENGTH: usize = 128;

/// An architecture `opf glue` can fine-tune.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Architecture {
    /// `model_type: "bert"`.
    Bert,
    /// `model_type: "bart"`.
    Bart,
    /// `model_type: "t5"`.
    T5,
}

impl Architecture {
    /// The architecture of the model in `dir`, from its `config.json`'s `model_type`.
    pub(crate) fn of_model_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let config: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Self::from_model_type(config.get("model_type").and_then(|v| v.as_str()))
            .with_context(|| format!("model {}", dir.display()))
    }

    /// The architecture of a `model_type` (`None`: a config without one, read as BERT as the BERT
    /// loader does).
    fn from_model_type(model_type: Option<&str>) -> Result<Self> {
        match model_type {
            None | Some("bert") => Ok(Architecture::Bert),
            Some("bart") => Ok(Architecture::Bart),
            Some("t5") => Ok(Architecture::T5),
            Some(other) => {
                bail!("model_type {other:?} is not supported (supported model types: {SUPPORTED})")
            }
        }
    }
}

/// What a model is loaded for: the task, its tokenizer and T5's target length.
pub(crate) struct Setup<'a> {
    /// The GLUE task.
    pub task: Task,
    /// The model's tokenizer.
    pub tokenizer: &'a GlueTokenizer,
    /// T5: longest target in tokens, and the generation budget.
    pub max_target_length: usize,
}

/// A model `opf glue` fine-tunes and `opf export` writes back.
pub(crate) trait GlueModel: OpfModel {
    /// The Hugging Face class name (`architectures` in the exported `config.json`).
    const CLASS: &'static str;
    /// The `transformers` auto class that loads the export (for its README).
    const AUTO_CLASS: &'static str;
    /// Tokenizes `examples` of `task` as the model reads them.
    fn encode(tok: &GlueTokenizer, task: Task, examples: &[Example]) -> Result<Vec<Features>> {
        let _ = task;
        Ok(tok.encode(examples)?)
    }
    /// Loads the Hugging Face checkpoint in `dir` for `setup`.
    fn load_hf(dir: &Path, setup: &Setup<'_>, device: &Device) -> Result<(Self, LoadReport)>;
    /// Loads a run's burn checkpoint `file` (MPO layers rebuilt) for the base model in `dir`.
    fn load_run_checkpoint(file: &Path, dir: &Path, device: &Device) -> Result<Self>;
    /// Writes `config.json` and `model.safetensors` into `dir`.
    fn save_hf(&self, dir: &Path) -> Result<()>;
    /// The output the model was trained for: `"N labels"`, or `"text to text"`.
    fn head(&self) -> String;
}

/// The sequence classifiers (BERT, BART): the same methods on their own config types.
macro_rules! classifier_glue_model {
    ($model:ty, $config:ty, $class:literal) => {
        impl GlueModel for $model {
            const CLASS: &'static str = $class;
            const AUTO_CLASS: &'static str = "AutoModelForSequenceClassification";
            fn load_hf(
                dir: &Path,
                setup: &Setup<'_>,
                device: &Device,
            ) -> Result<(Self, LoadReport)> {
                Ok(Self::load(
                    dir,
                    None,
                    Some(setup.task.num_labels()),
                    device,
                )?)
            }
            fn load_run_checkpoint(file: &Path, dir: &Path, device: &Device) -> Result<Self> {
                let config = <$config>::from_file(dir.join("config.json"))?;
                Ok(Self::load_record(file, &config, device)?)
            }
            fn save_hf(&self, dir: &Path) -> Result<()> {
                Ok(self.save_pretrained(dir)?)
            }
            fn head(&self) -> String {
                format!("{} labels", self.num_labels())
            }
        }
    };
}

classifier_glue_model!(
    BertForSequenceClassification,
    BertConfig,
    "BertForSequenceClassification"
);
classifier_glue_model!(
    BartForSequenceClassification,
    BartConfig,
    "BartForSequenceClassification"
);

impl GlueModel for T5TextToText {
    const CLASS: &'static str = "T5ForConditionalGeneration";
    const AUTO_CLASS: &'static str = "AutoModelForSeq2SeqLM";
    fn encode(tok: &GlueTokenizer, task: Task, examples: &[Example]) -> Result<Vec<Features>> {
        Ok(tok.encode_t5(task, examples)?)
    }
    fn load_hf(dir: &Path, setup: &Setup<'_>, device: &Device) -> Result<(Self, LoadReport)> {
        let (model, report) = T5ForConditionalGeneration::load(dir, None, device)?;
        let text = T5Text::new(setup.tokenizer, setup.max_target_length)?;
        Ok((Self::new(model, text)?, report))
    }
    /// The base model is loaded from `dir` first (so the LM head is tied or not as in the run),
    /// then the run's tensors replace its own.
    fn load_run_checkpoint(file: &Path, dir: &Path, device: &Device) -> Result<Self> {
        let (model, _) = T5ForConditionalGeneration::load(dir, None, device)?;
        let tok = GlueTokenizer::from_file(&dir.join("tokenizer.json"), DEFAULT_MAX_TARGET_LENGTH)?;
        let text = T5Text::new(&tok, DEFAULT_MAX_TARGET_LENGTH)?;
        let dense = Self::new(model, text)?;
        Ok(T5ForConditionalGeneration::load_record_into(
            file,
            dense,
            |m| &mut m.model,
            device,
        )?)
    }
    fn save_hf(&self, dir: &Path) -> Result<()> {
        Ok(self.model.save_pretrained(dir)?)
    }
    fn head(&self) -> String {
        "text to text".to_string()
    }
}

/// Expands `--mpo-targets` / `--mpo-layers` (names in the module docs) into the model's
/// projection paths: in the model's order, or layer-major in the order `layers` lists them.
pub(crate) fn mpo_paths<M: OpfModel>(
    model: &M,
    targets: &str,
    layers: Option<&str>,
) -> Result<Vec<M::Path>> {
    let ids: Vec<MatrixId> = model.linear_paths().into_iter().map(M::matrix_id).collect();
    Ok(select_targets(&ids, targets, layers)?
        .into_iter()
        .map(|id| M::linear_path(id).expect("an id of the model's own paths"))
        .collect())
}

/// An optional `encoder.` / `decoder.` prefix.
fn split_stack(entry: &str) -> (Option<Stack>, &str) {
    match entry.split_once('.') {
        Some(("encoder", rest)) => (Some(Stack::Encoder), rest),
        Some(("decoder", rest)) => (Some(Stack::Decoder), rest),
        _ => (None, entry),
    }
}

/// The ids of `all` (a model's matrices in its order) that `targets` and `layers` select.
fn select_targets(all: &[MatrixId], targets: &str, layers: Option<&str>) -> Result<Vec<MatrixId>> {
    use MatrixKind as K;
    let kinds: Vec<MatrixKind> = MatrixKind::ALL
        .into_iter()
        .filter(|k| all.iter().any(|id| id.kind == *k))
        .collect();
    let has_cross = kinds.contains(&K::CrossQuery);
    let mut wanted: Vec<(Option<Stack>, MatrixKind)> = Vec::new();
    for entry in targets.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (stack, name) = split_stack(entry);
        let add: Vec<MatrixKind> = match name {
            "all" => kinds.clone(),
            "attention" => vec![K::Query, K::Key, K::Value, K::AttentionOutput],
            "cross_attention" if has_cross => {
                vec![K::CrossQuery, K::CrossKey, K::CrossValue, K::CrossOutput]
            }
            "ffn" => vec![K::Ffn1, K::Ffn2],
            other => {
                let kind = kinds
                    .iter()
                    .find(|k| k.name().eq_ignore_ascii_case(other))
                    .with_context(|| {
                        let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
                        format!(
                            "unknown --mpo-targets entry {entry:?}: expected {}, attention, {}ffn \
                             or all (optionally prefixed encoder. or decoder.)",
                            names.join(", "),
                            if has_cross { "cross_attention, " } else { "" }
                        )
                    })?;
                vec![*kind]
            }
        };
        wanted.extend(add.into_iter().map(|k| (stack, k)));
    }
    let picked = |id: &MatrixId| {
        wanted
            .iter()
            .any(|&(stack, kind)| id.kind == kind && stack.is_none_or(|s| s == id.stack))
    };
    let ids: Vec<MatrixId> = match layers {
        None => all.iter().copied().filter(picked).collect(),
        Some(list) => {
            let mut ids = Vec::new();
            for entry in list.split(',').map(str::trim) {
                let (stack, layer) = split_stack(entry);
                let layer: usize = layer
                    .parse()
                    .with_context(|| format!("bad layer {entry:?}"))?;
                let in_layer =
                    |id: &&MatrixId| id.layer == layer && stack.is_none_or(|s| s == id.stack);
                if !all.iter().any(|id| in_layer(&id)) {
                    let count = |s: Stack| {
                        all.iter()
                            .filter(|id| id.stack == s)
                            .map(|id| id.layer + 1)
                            .max()
                            .unwrap_or(0)
                    };
                    let (enc, dec) = (count(Stack::Encoder), count(Stack::Decoder));
                    bail!(
                        "layer {entry} out of range: the model has {enc} encoder{} layers",
                        if dec > 0 {
                            format!(" and {dec} decoder")
                        } else {
                            String::new()
                        }
                    );
                }
                for id in all.iter().filter(in_layer).filter(|id| picked(id)) {
                    if !ids.contains(id) {
                        ids.push(*id);
                    }
                }
            }
            ids
        }
    };
    if ids.is_empty() {
        bail!("--mpo-targets {targets:?} selects no matrix of this model");
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opf_models::{BartLinearKind, BartLinearPath};
    use opf_train::select::bart_matrix_id;

    fn bert_ids(layers: usize) -> Vec<MatrixId> {
        (0..layers)
            .flat_map(|l| MatrixKind::ENCODER_LAYER.map(|k| MatrixId::encoder(l, k)))
            .collect()
    }

    /// The ids of a BART with 2 + 2 layers, in the model's order.
    fn bart_ids() -> Vec<MatrixId> {
        let enc = (0..2).flat_map(|l| {
            BartLinearKind::ENCODER.map(|k| bart_matrix_id(BartLinearPath::encoder(l, k)))
        });
        let dec = (0..2).flat_map(|l| {
            BartLinearKind::DECODER.map(|k| bart_matrix_id(BartLinearPath::decoder(l, k)))
        });
        enc.chain(dec).collect()
    }

    fn names(ids: &[MatrixId]) -> Vec<String> {
        ids.iter().map(MatrixId::to_string).collect()
    }

    #[test]
    fn bert_targets_expand_in_layer_order() {
        let ids = select_targets(&bert_ids(3), "ffn", Some("2,0")).unwrap();
        assert_eq!(
            names(&ids),
            [
                "encoder.2.ffn_1",
                "encoder.2.ffn_2",
                "encoder.0.ffn_1",
                "encoder.0.ffn_2"
            ]
        );
        assert_eq!(select_targets(&bert_ids(6), "all", None).unwrap().len(), 36);
        assert_eq!(
            select_targets(&bert_ids(2), "query,attention", None)
                .unwrap()
                .len(),
            8
        );
        for (targets, layers) in [
            ("ffn_3", None),
            ("ffn", Some("2")),
            ("cross_query", None),
            ("cross_attention", None),
            ("decoder.ffn", None),
        ] {
            assert!(
                select_targets(&bert_ids(2), targets, layers).is_err(),
                "{targets}"
            );
        }
    }

    #[test]
    fn bart_targets_cover_both_stacks_and_cross_attention() {
        let all = bart_ids();
        assert_eq!(all.len(), 2 * 6 + 2 * 10);
        assert_eq!(select_targets(&all, "all", None).unwrap(), all);
        let cross = select_targets(&all, "cross_attention", None).unwrap();
        assert_eq!(cross.len(), 8);
        assert!(cross.iter().all(|id| id.stack == Stack::Decoder));
        assert_eq!(
            names(&select_targets(&all, "ffn_1,cross_query", Some("1")).unwrap()),
            [
                "encoder.1.ffn_1",
                "decoder.1.cross_query",
                "decoder.1.ffn_1"
            ]
        );
        assert_eq!(
            names(
                &select_targets(
                    &all,
                    "decoder.attention,encoder.ffn_2",
                    Some("decoder.0,encoder.1")
                )
                .unwrap()
            ),
            [
                "decoder.0.key",
                "decoder.0.value",
                "decoder.0.query",
                "decoder.0.attention_output",
                "encoder.1.ffn_2"
            ]
        );
        assert!(select_targets(&all, "ffn", Some("decoder.2")).is_err());
        assert!(select_targets(&all, "encoder.cross_attention", None).is_err());
        let err = select_targets(&all, "fc1", None).unwrap_err().to_string();
        assert!(err.contains("cross_attention"), "{err}");
    }

    #[test]
    fn model_type_picks_the_architecture() {
        assert_eq!(
            Architecture::from_model_type(Some("bert")).unwrap(),
            Architecture::Bert
        );
        assert_eq!(
            Architecture::from_model_type(None).unwrap(),
            Architecture::Bert
        );
        assert_eq!(
            Architecture::from_model_type(Some("bart")).unwrap(),
            Architecture::Bart
        );
        assert_eq!(
            Architecture::from_model_type(Some("t5")).unwrap(),
            Architecture::T5
        );
        let other = Architecture::from_model_type(Some("gpt2"))
            .unwrap_err()
            .to_string();
        assert!(other.contains("bert, bart, t5"), "{other}");
    }
}
