//! The demo intent models (`service` and `complaint_severity`), trained from the data in
//! datasets/demo/intents (built into the binary) the first time the service starts, and kept
//! in `<data_dir>/intent/<name>`; trained again when the encoder or the data changes.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::train::{TrainOptions, train_examples};
use super::{IntentModel, parse_examples};
use crate::embed::Embedder;

pub const SERVICE_TRAIN: &str = include_str!("../../datasets/demo/intents/service/train.jsonl");
pub const SERVICE_TEST: &str = include_str!("../../datasets/demo/intents/service/test.jsonl");
pub const SEVERITY_TRAIN: &str =
    include_str!("../../datasets/demo/intents/complaint_severity/train.jsonl");
pub const SEVERITY_TEST: &str =
    include_str!("../../datasets/demo/intents/complaint_severity/test.jsonl");

/// The demo models: name and training data.
pub fn sets() -> [(&'static str, &'static str); 2] {
    [
        ("service", SERVICE_TRAIN),
        ("complaint_severity", SEVERITY_TRAIN),
    ]
}

fn data_hash(jsonl: &str) -> String {
    hex::encode(Sha256::digest(jsonl.as_bytes()))
}

/// Loads the demo model `name` from `<data_dir>/intent/<name>`, or trains and saves it when it
/// is missing, unreadable, for another encoder or from other data.
pub fn load_or_train(e: &Embedder, data_dir: &Path, name: &str) -> anyhow::Result<IntentModel> {
    let (_, data) = sets()
        .into_iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| anyhow::anyhow!("no demo intent model is called {name}"))?;
    let hash = data_hash(data);
    let dir = data_dir.join("intent").join(name);
    if let Ok(m) = IntentModel::load(&dir) {
        let same_data =
            m.card.training.get("data_sha256").and_then(|v| v.as_str()) == Some(hash.as_str());
        if same_data && m.check_encoder(e.manifest()).is_ok() {
            return Ok(m);
        }
    }
    tracing::info!("training the demo intent model {name} (first start or new encoder)");
    let opts = TrainOptions {
        // Severity grades have no out-of-scope: every complaint gets one.
        oos_reject_rate: if name == "complaint_severity" {
            0.0
        } else {
            0.01
        },
        ..Default::default()
    };
    let training = serde_json::json!({
        "train": format!("built-in datasets/demo/intents/{name}/train.jsonl"),
        "data_sha256": hash,
        "options": opts,
    });
    let (model, _) = train_examples(
        e,
        &parse_examples(data),
        None,
        &opts,
        training,
        None,
        None,
        None,
    )?;
    model.save(&dir)?;
    tracing::info!(
        "demo intent model {name} saved in {} (head {:?})",
        dir.display(),
        model.card.head
    );
    Ok(model)
}
