//! Intent classification over the encoder's embeddings: training (`train`), the model
//! directory and prediction (`model`), the embedding cache for training and evaluation
//! (`features`), evaluation (`eval`), the demo models (`demo`) and the routing policy
//! (`routing`); fine-tuned encoder layers: inference (`tuned`) and training (`finetune`).

pub mod demo;
pub mod eval;
pub mod features;
pub mod finetune;
mod head;
pub mod model;
pub mod routing;
pub mod train;
pub mod tuned;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use model::{IntentModel, Prediction, Ranked};

/// `[intent]` in kefu.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntentConfig {
    /// Named intent models to serve: name = model directory (written by `kefu train intent`).
    pub models: std::collections::BTreeMap<String, std::path::PathBuf>,
    /// For the names `service` and `complaint_severity` when `models` does not set them: train
    /// the demo models from datasets/demo/intents at first start (kept in `<data_dir>/intent`).
    pub load_demo: bool,
    /// Keep the trained demo models in a cache shared by every data directory, keyed by the
    /// encoder version and the demo data (`$XDG_CACHE_HOME/kefu`, else `~/.cache/kefu`), so
    /// that only the first start with an encoder trains them.
    pub cache_demo: bool,
    /// The model `/v1/intent` uses when the request names none.
    pub default_model: String,
}

impl Default for IntentConfig {
    fn default() -> Self {
        Self {
            models: Default::default(),
            load_demo: true,
            cache_demo: true,
            default_model: "service".into(),
        }
    }
}

impl IntentConfig {
    /// Checks values that parse but make no sense, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.default_model.trim().is_empty() {
            return Err("intent.default_model is empty".into());
        }
        Ok(())
    }
}

/// The label the shared `intent` format gives to out-of-scope examples.
pub const OOS_LABEL: &str = "oos";

/// One labelled utterance of the shared `intent` format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Example {
    pub text: String,
    pub label: String,
}

/// Reads an intent file (`{"text", "label"}` per line); every bad line is reported with its
/// number before anything else happens.
pub fn read_examples(path: &Path, limit: Option<usize>) -> anyhow::Result<Vec<Example>> {
    let rows = crate::eval::read_jsonl::<Example>(path, limit, r#"{"text", "label"}"#)?;
    let mut problems = Vec::new();
    let mut out = Vec::with_capacity(rows.len());
    for (line, ex) in rows {
        let text = ex.text.trim();
        let label = ex.label.trim();
        if text.is_empty() {
            problems.push(format!("{}:{line}: text is empty", path.display()));
        } else if label.is_empty() {
            problems.push(format!("{}:{line}: label is empty", path.display()));
        } else {
            out.push(Example {
                text: text.to_string(),
                label: label.to_string(),
            });
        }
    }
    if !problems.is_empty() {
        anyhow::bail!(
            "{} problem(s):\n{}",
            problems.len(),
            problems
                .iter()
                .take(20)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    if out.is_empty() {
        anyhow::bail!("{} has no examples", path.display());
    }
    Ok(out)
}

/// Parses intent examples from JSONL text (the demo data built into the binary).
pub fn parse_examples(jsonl: &str) -> Vec<Example> {
    jsonl
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("built-in intent data is valid JSONL"))
        .collect()
}
