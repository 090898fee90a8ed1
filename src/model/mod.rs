//! Model directories: manifests and checksums, import of the default model, atomic installs.

pub mod e5s1;
pub mod fetch;
pub mod gate;
pub mod manifest;
pub mod registry;

use std::path::{Path, PathBuf};

pub use manifest::{Manifest, ManifestSpec, Pooling};

use serde::{Deserialize, Serialize};

/// The model directory kefu serves when `[model] path` is not set.
pub const DEFAULT_MODEL_DIR: &str = "models/multilingual-e5-small";

/// `[model]` in kefu.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// The embedding model: a Hugging Face BERT-family directory.
    pub path: PathBuf,
    /// Fetch and import the default model when `path` is the default and missing.
    pub auto_fetch: bool,
    /// `[model.gate]`: what every model kind is measured on before it may serve.
    pub gate: GateConfig,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_MODEL_DIR),
            auto_fetch: true,
            gate: GateConfig::default(),
        }
    }
}

/// `[model.gate]`: the golden sets and the tolerance of `kefu model activate` (and of
/// `POST /v1/models/{kind}/{name}/activate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GateConfig {
    /// How far (absolute: 0.01 = one point) any measure may fall below the serving model's.
    pub max_drop: f64,
    /// Golden sets of the intent models, by name: a labelled `{"text", "label"}` JSONL file.
    /// The demo models (`service`, `complaint_severity`) have their built-in test sets.
    pub intent: std::collections::BTreeMap<String, PathBuf>,
    /// The recommender's golden set: an interactions CSV (`user_id,item_id,rating,timestamp`)
    /// whose last interaction per customer is held out. Default: the built-in demo shop's.
    pub recommend: Option<PathBuf>,
    /// The encoder's own golden FAQ beside the built-in demo FAQ: a KB file and its labelled
    /// queries (`kefu eval faq` formats), both or neither.
    pub kb: Option<PathBuf>,
    pub queries: Option<PathBuf>,
    /// The encoder's golden question pairs (`kefu eval pairs` format).
    pub pairs: Option<PathBuf>,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            max_drop: 0.01,
            intent: Default::default(),
            recommend: None,
            kb: None,
            queries: None,
            pairs: None,
        }
    }
}

impl GateConfig {
    /// The encoder's gate files: the command line's where given, else these.
    pub fn encoder_options(
        &self,
        kb: Option<(PathBuf, PathBuf)>,
        pairs: Option<PathBuf>,
        max_drop: f64,
    ) -> gate::GateOptions {
        gate::GateOptions {
            kb: kb.or_else(|| self.kb.clone().zip(self.queries.clone())),
            pairs: pairs.or_else(|| self.pairs.clone()),
            max_drop,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..1.0).contains(&self.max_drop) {
            return Err(format!(
                "model.gate.max_drop must be at least 0 and below 1, got {}",
                self.max_drop
            ));
        }
        if self.kb.is_some() != self.queries.is_some() {
            return Err(
                "model.gate.kb and model.gate.queries go together: set both or neither".into(),
            );
        }
        Ok(())
    }
}

impl ModelConfig {
    /// Whether `path` is the built-in default (which kefu may fetch by itself).
    pub fn is_default(&self) -> bool {
        self.path == Path::new(DEFAULT_MODEL_DIR)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt model file: {0}")]
    Corrupt(String),
    #[error("invalid model directory: {0}")]
    Invalid(String),
    #[error("{0} already exists (pass --force to replace it)")]
    Exists(PathBuf),
    #[error("fetching the default model failed: {0}")]
    Fetch(String),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
}

impl ModelError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Writes a model directory atomically: `fill` writes the files into a fresh directory beside
/// `out`, the manifest is computed over them, and the directory is renamed into place. On any
/// error the partial directory is removed and `out` is untouched.
pub fn write_model_dir(
    out: &Path,
    fill: impl FnOnce(&Path) -> Result<ManifestSpec, ModelError>,
) -> Result<Manifest, ModelError> {
    write_model_dir_opts(out, false, fill)
}

pub fn write_model_dir_opts(
    out: &Path,
    force: bool,
    fill: impl FnOnce(&Path) -> Result<ManifestSpec, ModelError>,
) -> Result<Manifest, ModelError> {
    if out.exists() && !force {
        return Err(ModelError::Exists(out.to_path_buf()));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| ModelError::io(&parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".kefu-model-")
        .tempdir_in(&parent)
        .map_err(|e| ModelError::io(&parent, e))?;
    let spec = fill(tmp.path())?;
    let manifest = Manifest::compute(tmp.path(), spec)?;
    manifest.write(tmp.path())?;
    let staged = tmp.keep();
    let result = (|| {
        if out.exists() {
            let old = parent.join(format!(
                ".kefu-old-{}",
                out.file_name()
                    .map(|n| n.to_string_lossy())
                    .unwrap_or_default()
            ));
            let _ = std::fs::remove_dir_all(&old);
            std::fs::rename(out, &old).map_err(|e| ModelError::io(out, e))?;
            std::fs::rename(&staged, out).map_err(|e| ModelError::io(out, e))?;
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&staged, out).map_err(|e| ModelError::io(out, e))?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staged);
    }
    result.map(|()| manifest)
}

/// The manifest of `dir`, or one inferred from `config.json` for a plain Hugging Face directory
/// that kefu did not write (mean pooling and no prefix unless the caller overrides them).
pub fn load_manifest(dir: &Path, verify: bool) -> Result<Manifest, ModelError> {
    if !dir.is_dir() {
        return Err(ModelError::Invalid(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    for needed in ["config.json", "tokenizer.json", manifest::WEIGHTS_FILE] {
        if !dir.join(needed).exists() {
            return Err(ModelError::Invalid(format!(
                "{} has no {needed}",
                dir.display()
            )));
        }
    }
    if let Some(m) = Manifest::read(dir)? {
        if verify {
            m.verify(dir)?;
        }
        return Ok(m);
    }
    let cfg_path = dir.join("config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| ModelError::io(&cfg_path, e))?;
    let cfg: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::Invalid(format!("{}: {e}", cfg_path.display())))?;
    let get = |k: &str| cfg.get(k).and_then(|v| v.as_u64()).map(|v| v as usize);
    let dimension = get("hidden_size")
        .ok_or_else(|| ModelError::Invalid(format!("{} has no hidden_size", cfg_path.display())))?;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    Manifest::compute(
        dir,
        ManifestSpec {
            name,
            dimension,
            pooling: Pooling::Mean,
            prefix: String::new(),
            max_tokens: {
                // RoBERTa-style models spend pad_token_id + 1 positions before the first token.
                let roberta = matches!(
                    cfg.get("model_type").and_then(|v| v.as_str()),
                    Some("xlm-roberta" | "roberta" | "camembert")
                );
                let offset = if roberta {
                    get("pad_token_id").unwrap_or(1) + 1
                } else {
                    0
                };
                get("max_position_embeddings")
                    .unwrap_or(512)
                    .saturating_sub(offset)
                    .max(1)
            },
        },
    )
}
