//! `config.json` reading, writing and the checks every model config shares; each model's
//! `Config` keeps its public `from_json_str` / `from_file` / `to_json_string` / `save` /
//! `validate` and delegates here.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ModelError;

/// Parses a `config.json` text and runs `validate` on it.
pub(crate) fn parse<T: DeserializeOwned>(
    json: &str,
    validate: impl Fn(&T) -> Result<(), ModelError>,
) -> Result<T, ModelError> {
    let config: T = serde_json::from_str(json).map_err(|source| ModelError::ConfigParse {
        path: PathBuf::new(),
        source,
    })?;
    validate(&config)?;
    Ok(config)
}

/// Reads a `config.json` file and runs `validate`; parse errors name the file.
pub(crate) fn read<T: DeserializeOwned>(
    path: &Path,
    validate: impl Fn(&T) -> Result<(), ModelError>,
) -> Result<T, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, validate).map_err(|err| match err {
        ModelError::ConfigParse { source, .. } => ModelError::ConfigParse {
            path: path.to_path_buf(),
            source,
        },
        other => other,
    })
}

/// Pretty-printed JSON in the `config.json` format.
pub(crate) fn to_json<T: Serialize>(config: &T) -> String {
    serde_json::to_string_pretty(config).expect("a model config always serialises")
}

/// Writes [`to_json`] to `path`.
pub(crate) fn write<T: Serialize>(config: &T, path: &Path) -> Result<(), ModelError> {
    std::fs::write(path, to_json(config)).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// `model_type` must be `expected`, and every named size positive.
pub(crate) fn check_type_and_sizes(
    model_type: &str,
    expected: &str,
    sizes: &[(&str, usize)],
) -> Result<(), ModelError> {
    if model_type != expected {
        return Err(ModelError::InvalidConfig(format!(
            "model_type is {model_type:?}, expected {expected:?}"
        )));
    }
    match sizes.iter().find(|(_, v)| *v == 0) {
        Some((name, _)) => Err(ModelError::InvalidConfig(format!(
            "{name} must be positive"
        ))),
        None => Ok(()),
    }
}
