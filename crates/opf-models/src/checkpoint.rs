//! Reading and writing safetensors files as `f32` tensor data, and the [`LoadReport`].
//!
//! This module knows nothing of BERT: tensor names come from the model files. Floating-point
//! tensors stored as `f16`, `bf16` or `f64` are converted to `f32` on reading.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::tensor::{DType, Tensor, TensorData};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::ModelError;

/// What [`load`](crate::BertForSequenceClassification::load) did with each tensor.
///
/// Names are checkpoint names (for `loaded` and `unused`) or the model's Hugging Face names in
/// its saved layout (for `initialized`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The safetensors file read.
    pub path: PathBuf,
    /// The prefix found before the encoder's names: `"bert."` or `""`.
    pub prefix: String,
    /// Checkpoint tensors copied into the model.
    pub loaded: Vec<String>,
    /// Model tensors absent from the checkpoint and left freshly initialised (the pooler or the
    /// classifier of a base checkpoint).
    pub initialized: Vec<String>,
    /// Checkpoint tensors ignored because the model has no use for them (`position_ids`, the
    /// pre-training heads `cls.*`).
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
