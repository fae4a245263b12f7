//! Reading and writing safetensors files as `f32` tensor data, the [`LoadReport`], and the
//! layout-table machinery shared by the models.
//!
//! This module knows no model: tensor names come from the model files, each of which lists its
//! modules as `HfEntry` rows (its "checkpoint layout"); `load_layout` and `layout_tensors`
//! read and write any such table. Floating-point tensors stored as `f16`, `bf16` or `f64` are
//! converted to `f32` on reading.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::nn::{Embedding, Linear};
use burn::prelude::*;
use burn::tensor::DType;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::ModelError;
use crate::fused::LayerNorm;
use crate::linear::{ProjLinear, dense_from_hf};
use crate::rng;

/// What a model's `load` ([`BertForSequenceClassification::load`](crate::BertForSequenceClassification::load),
/// [`BartForSequenceClassification::load`](crate::BartForSequenceClassification::load)) did with
/// each tensor.
///
/// Names are checkpoint names (for `loaded` and `unused`) or the model's Hugging Face names in
/// its saved layout (for `initialized`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The safetensors file read.
    pub path: PathBuf,
    /// The prefix found before the base model's names: `"bert."` / `"model."` or `""`.
    pub prefix: String,
    /// Checkpoint tensors copied into the model.
    pub loaded: Vec<String>,
    /// Model tensors absent from the checkpoint and left freshly initialised (the pooler or the
    /// classifier of a base checkpoint).
    pub initialized: Vec<String>,
    /// Checkpoint tensors ignored because the model has no use for them (`position_ids`, the
    /// pre-training heads `cls.*`, BART's `lm_head`), or tied copies identical to a loaded tensor.
    pub unused: Vec<String>,
    /// Checkpoint tensors converted to `f32` from another floating-point type.
    pub upcast: Vec<String>,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} tensors loaded (prefix {:?})",
            self.path.display(),
            self.loaded.len(),
            self.prefix
        )?;
        let lists = [
            ("freshly initialised", &self.initialized),
            ("unused", &self.unused),
            ("upcast to f32", &self.upcast),
        ];
        for (what, names) in lists {
            if !names.is_empty() {
                write!(f, "; {what}: {}", names.join(", "))?;
            }
        }
        Ok(())
    }
}

/// The dotted record path of every float parameter of `module`, by parameter id: the names
/// burn's `save_file` gives the tensors.
pub(crate) fn param_paths<M: Module>(module: &M) -> HashMap<ParamId, String> {
    // The path stack as burn's own record collector keeps it (`burn-core` `store/mod.rs`).
    #[derive(Default)]
    struct Paths {
        stack: Vec<String>,
        found: HashMap<ParamId, String>,
    }
    impl ModuleVisitor for Paths {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.stack.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.found.insert(param.id, self.stack.join("."));
        }
    }
    let mut paths = Paths::default();
    module.visit(&mut paths);
    paths.found
}

/// Names and shapes of the tensors in a burn record file (`Module::save_file`, the burnpack
/// format), read from its header; tensor data stays on disk.
pub(crate) fn record_shapes(path: &Path) -> Result<BTreeMap<String, Vec<usize>>, ModelError> {
    let err = |e: burn_pack::Error| ModelError::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let tensors = burn_pack::Reader::from_file_exact(path)
        .and_then(burn_pack::Reader::into_tensors)
        .map_err(err)?;
    Ok(tensors
        .into_iter()
        .map(|t| (t.name, t.shape.to_vec()))
        .collect())
}

struct Entry {
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// A safetensors file held in memory, read tensor by tensor.
pub(crate) struct Checkpoint {
    path: PathBuf,
    bytes: Vec<u8>,
    entries: BTreeMap<String, Entry>,
}

impl Checkpoint {
    /// Reads and validates the whole file.
    pub(crate) fn open(path: &Path) -> Result<Self, ModelError> {
        let st_error = |source| ModelError::Safetensors {
            path: path.to_path_buf(),
            source,
        };
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        // `deserialize` checks offsets and sizes; `read_metadata` gives the offsets themselves.
        SafeTensors::deserialize(&bytes).map_err(st_error)?;
        let (header_len, metadata) = SafeTensors::read_metadata(&bytes).map_err(st_error)?;
        let data_start = 8 + header_len;
        let entries = metadata
            .tensors()
            .into_iter()
            .map(|(name, info)| {
                let (start, end) = info.data_offsets;
                let entry = Entry {
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    start: data_start + start,
                    end: data_start + end,
                };
                (name, entry)
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            entries,
        })
    }

    /// The file this was read from.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// All tensor names, sorted.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The shape of tensor `name`, if present.
    pub(crate) fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// Tensor `name` as `f32` data, and whether it had to be converted.
    pub(crate) fn read_f32(&self, name: &str) -> Result<(TensorData, bool), ModelError> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.path.clone(),
                name: name.to_string(),
            })?;
        let dtype = match entry.dtype {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            Dtype::F64 => DType::F64,
            other => {
                return Err(ModelError::UnsupportedDtype {
                    name: name.to_string(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        let bytes = self.bytes[entry.start..entry.end].to_vec();
        let data = TensorData::from_bytes_vec(bytes, entry.shape.clone(), dtype);
        if dtype == DType::F32 {
            Ok((data, false))
        } else {
            Ok((data.convert::<f32>(), true))
        }
    }
}

/// Writes `f32` tensors to a safetensors file with the `{"format": "pt"}` metadata that
/// `transformers` expects.
pub(crate) fn write_safetensors(
    path: &Path,
    tensors: &[(String, TensorData)],
) -> Result<(), ModelError> {
    let st_error = |source| ModelError::Safetensors {
        path: path.to_path_buf(),
        source,
    };
    let views = tensors
        .iter()
        .map(|(name, data)| {
            let view = TensorView::new(Dtype::F32, data.shape().to_vec(), data.as_bytes());
            view.map(|view| (name.as_str(), view))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(st_error)?;
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), path).map_err(st_error)
}

// ------------------------------------------------------------------------------------------------
// Layout tables
// ------------------------------------------------------------------------------------------------

/// A module that owns checkpoint tensors.
pub(crate) enum HfModule<'a> {
    /// An addressable projection: `weight` `(out, in)`, `bias`.
    Proj(&'a mut ProjLinear),
    /// A plain linear layer: `weight` `(out, in)`, `bias`.
    Linear(&'a mut Linear),
    /// An embedding table: `weight`.
    Embedding(&'a mut Embedding),
    /// A layer norm: `weight` (or `gamma`), `bias` (or `beta`).
    LayerNorm(&'a mut LayerNorm),
}

/// One row of a model's layout table: a module and its Hugging Face name.
pub(crate) struct HfEntry<'a> {
    /// Module name, relative to the base model for `in_base` rows.
    name: String,
    /// Whether the name sits under the base-model prefix (`bert.`, `model.`).
    in_base: bool,
    /// Whether a checkpoint may lack the whole module (it is then freshly initialised).
    optional: bool,
    /// Other names of the same module (tied copies, e.g. BART's `encoder.embed_tokens` for
    /// `shared`), relative like `name`: read when `name` is absent, and otherwise required to
    /// hold the same data when present.
    aliases: Vec<String>,
    module: HfModule<'a>,
}

impl<'a> HfEntry<'a> {
    /// A required module of the base model.
    pub(crate) fn base(name: impl Into<String>, module: HfModule<'a>) -> Self {
        Self {
            name: name.into(),
            in_base: true,
            optional: false,
            aliases: Vec::new(),
            module,
        }
    }

    /// A task-head module outside the base model, freshly initialised when absent.
    pub(crate) fn head(name: impl Into<String>, module: HfModule<'a>) -> Self {
        Self {
            in_base: false,
            optional: true,
            ..Self::base(name, module)
        }
    }

    /// The same row, freshly initialised when the checkpoint lacks it.
    pub(crate) fn optional(self) -> Self {
        Self {
            optional: true,
            ..self
        }
    }

    /// The same row, also readable under `aliases` (tied copies).
    pub(crate) fn with_aliases(self, aliases: &[&str]) -> Self {
        Self {
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            ..self
        }
    }

    /// The name in the saved layout, with `base_prefix` for base-model rows.
    fn saved_name(&self, base_prefix: &str) -> String {
        match self.in_base {
            true => format!("{base_prefix}{}", self.name),
            false => self.name.clone(),
        }
    }
}

/// Copies every tensor of `checkpoint` into the modules of `entries`.
///
/// The base-model prefix is `base_prefix` when the checkpoint holds `{base_prefix}{probe}` for
/// one of `probes`, else empty. Every module must be present (except optional ones, which may be absent as a whole and
/// are then reported as freshly initialised) with the expected shapes; every checkpoint tensor
/// must be loaded, be a tied copy identical to a loaded tensor, or satisfy `ignorable(name,
/// prefix)`.
///
/// # Errors
///
/// [`ModelError::MissingTensor`], [`ModelError::ShapeMismatch`],
/// [`ModelError::UnexpectedTensor`], [`ModelError::UntiedTensor`] naming the tensor, and
/// [`ModelError::UnsupportedDtype`].
pub(crate) fn load_layout(
    checkpoint: &Checkpoint,
    entries: Vec<HfEntry<'_>>,
    base_prefix: &str,
    probes: &[&str],
    ignorable: impl Fn(&str, &str) -> bool,
    init_std: f64,
    device: &Device,
) -> Result<LoadReport, ModelError> {
    let prefixed = probes
        .iter()
        .any(|probe| checkpoint.shape(&format!("{base_prefix}{probe}")).is_some());
    let prefix = if prefixed { base_prefix } else { "" };
    let mut report = LoadReport {
        path: checkpoint.path().to_path_buf(),
        prefix: prefix.to_string(),
        ..LoadReport::default()
    };
    // (tied copy, the loaded tensor it must equal)
    let mut tied: Vec<(String, String)> = Vec::new();
    for entry in entries {
        let key_prefix = if entry.in_base { prefix } else { "" };
        let expected = entry.module.expected();
        let candidates: Vec<String> = std::iter::once(&entry.name)
            .chain(&entry.aliases)
            .map(|name| format!("{key_prefix}{name}"))
            .collect();
        // Each tensor of a candidate name: (checkpoint key if present, canonical key, HF shape).
        let lookup = |module_key: &str| -> Vec<(Option<String>, String, Vec<usize>)> {
            expected
                .iter()
                .map(|(suffixes, shape)| {
                    let key = suffixes
                        .iter()
                        .map(|s| format!("{module_key}.{s}"))
                        .find(|k| checkpoint.shape(k).is_some());
                    (key, format!("{module_key}.{}", suffixes[0]), shape.clone())
                })
                .collect()
        };
        let present: Vec<_> = candidates
            .iter()
            .map(|c| lookup(c))
            .filter(|w| w.iter().any(|(key, ..)| key.is_some()))
            .collect();
        let Some(wanted) = present.first().cloned() else {
            if entry.optional {
                let saved = entry.saved_name(base_prefix);
                report.initialized.extend(
                    expected
                        .iter()
                        .map(|(suffixes, _)| format!("{saved}.{}", suffixes[0])),
                );
                // With PyTorch's generator installed, draw the fresh linear layer as HF's
                // `_init_weights` does (`modeling_bert.py` `BertPreTrainedModel._init_weights`):
                // `normal_(0, std)` on the `(out, in)` weight, zero bias.
                if let (HfModule::Linear(_), [(_, w_shape), (_, b_shape)]) =
                    (&entry.module, expected.as_slice())
                    && let Some(weight) = rng::normal_weight(w_shape[0], w_shape[1], init_std)
                {
                    let bias = TensorData::zeros::<f32, _>(b_shape.clone());
                    entry
                        .module
                        .assign(vec![TensorData::new(weight, w_shape.clone()), bias], device);
                }
                continue;
            }
            return Err(ModelError::MissingTensor {
                path: checkpoint.path().to_path_buf(),
                name: lookup(&candidates[0]).swap_remove(0).1,
            });
        };
        for copy in &present[1..] {
            for ((copy_key, ..), (key, canonical, _)) in copy.iter().zip(&wanted) {
                if let Some(copy_key) = copy_key {
                    tied.push((
                        copy_key.clone(),
                        key.clone().unwrap_or_else(|| canonical.clone()),
                    ));
                }
            }
        }
        let mut tensors = Vec::with_capacity(wanted.len());
        for (key, canonical, shape) in wanted {
            let key = key.ok_or_else(|| ModelError::MissingTensor {
                path: checkpoint.path().to_path_buf(),
                name: canonical,
            })?;
            let found = checkpoint.shape(&key).unwrap_or_default();
            if found != shape.as_slice() {
                return Err(ModelError::ShapeMismatch {
                    name: key,
                    expected: shape,
                    found: found.to_vec(),
                });
            }
            let (data, upcast) = checkpoint.read_f32(&key)?;
            if upcast {
                report.upcast.push(key.clone());
            }
            report.loaded.push(key);
            tensors.push(data);
        }
        entry.module.assign(tensors, device);
    }
    for (copy, original) in &tied {
        let same = checkpoint.shape(copy) == checkpoint.shape(original)
            && checkpoint.read_f32(copy)?.0 == checkpoint.read_f32(original)?.0;
        if !same {
            return Err(ModelError::UntiedTensor {
                name: copy.clone(),
                tied_to: original.clone(),
            });
        }
    }
    for name in checkpoint.names() {
        if report.loaded.iter().any(|l| l == name) {
            continue;
        }
        if !tied.iter().any(|(copy, _)| copy == name) && !ignorable(name, prefix) {
            return Err(ModelError::UnexpectedTensor {
                path: checkpoint.path().to_path_buf(),
                name: name.to_string(),
            });
        }
        report.unused.push(name.to_string());
    }
    Ok(report)
}

/// Every tensor of `entries` as `(saved name, f32 data)`, linear weights `(out, in)`, in table
/// order, base-model names prefixed with `base_prefix`.
pub(crate) fn layout_tensors(
    entries: Vec<HfEntry<'_>>,
    base_prefix: &str,
) -> Vec<(String, TensorData)> {
    entries
        .into_iter()
        .flat_map(|entry| {
            let name = entry.saved_name(base_prefix);
            entry
                .module
                .tensors()
                .into_iter()
                .map(move |(suffix, data)| (format!("{name}.{suffix}"), data))
        })
        .collect()
}

impl HfModule<'_> {
    /// The module's tensors: accepted name suffixes (first = the one written) and HF shape.
    fn expected(&self) -> Vec<(&'static [&'static str], Vec<usize>)> {
        const WEIGHT: &[&str] = &["weight"];
        const BIAS: &[&str] = &["bias"];
        const GAMMA: &[&str] = &["weight", "gamma"];
        const BETA: &[&str] = &["bias", "beta"];
        match self {
            HfModule::Proj(p) => vec![
                (WEIGHT, vec![p.d_output(), p.d_input()]),
                (BIAS, vec![p.d_output()]),
            ],
            HfModule::Linear(l) => {
                let [d_in, d_out] = l.weight.lazy_shape().dims();
                vec![(WEIGHT, vec![d_out, d_in]), (BIAS, vec![d_out])]
            }
            HfModule::Embedding(e) => vec![(WEIGHT, e.weight.lazy_shape().to_vec())],
            HfModule::LayerNorm(n) => {
                let [d] = n.gamma.lazy_shape().dims();
                vec![(GAMMA, vec![d]), (BETA, vec![d])]
            }
        }
    }

    /// Replaces the module's tensors by `tensors`, in [`expected`](Self::expected) order.
    fn assign(self, tensors: Vec<TensorData>, device: &Device) {
        let mut it = tensors.into_iter();
        let mut next = || it.next().expect("one tensor per expected entry");
        match self {
            HfModule::Proj(p) => {
                *p = ProjLinear::Dense(dense_from_hf(
                    Tensor::from_data(next(), device),
                    Some(Tensor::from_data(next(), device)),
                ));
            }
            HfModule::Linear(l) => {
                *l = dense_from_hf(
                    Tensor::from_data(next(), device),
                    Some(Tensor::from_data(next(), device)),
                );
            }
            HfModule::Embedding(e) => {
                e.weight = Param::from_tensor(Tensor::from_data(next(), device))
            }
            HfModule::LayerNorm(n) => {
                n.gamma = Param::from_tensor(Tensor::from_data(next(), device));
                n.beta = Param::from_tensor(Tensor::from_data(next(), device));
            }
        }
    }

    /// The module's tensors as `(first suffix, f32 data)`, weights `(out, in)`.
    fn tensors(&self) -> Vec<(&'static str, TensorData)> {
        let data = |t: Tensor<2>| t.into_data().convert::<f32>();
        let data1 = |t: Tensor<1>| t.into_data().convert::<f32>();
        match self {
            HfModule::Proj(p) => {
                let mut out = vec![("weight", data(p.weight_out_in()))];
                out.extend(p.bias().map(|b| ("bias", data1(b))));
                out
            }
            HfModule::Linear(l) => {
                let mut out = vec![("weight", data(l.weight.val().transpose()))];
                out.extend(l.bias.as_ref().map(|b| ("bias", data1(b.val()))));
                out
            }
            HfModule::Embedding(e) => vec![("weight", data(e.weight.val()))],
            HfModule::LayerNorm(n) => {
                vec![
                    ("weight", data1(n.gamma.val())),
                    ("bias", data1(n.beta.val())),
                ]
            }
        }
    }
}
