//! The demo intent models (`service` and `complaint_severity`), trained from the data in
//! datasets/demo/intents (built into the binary) the first time the service starts, and kept
//! in `<data_dir>/intent/<name>`; trained again when the encoder or the data changes. A cache
//! shared by every data directory (`intent.cache_demo`) keeps them per encoder version, so a
//! new data directory on a machine that has trained them once starts without training.

use std::path::{Path, PathBuf};

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

/// Bump when training changes what a demo model holds: cached models of older versions are
/// then trained again.
const CACHE_VERSION: u32 = 1;

/// The shared cache root: `$XDG_CACHE_HOME/kefu`, else `$HOME/.cache/kefu`.
pub fn cache_root() -> Option<PathBuf> {
    let from = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    from("XDG_CACHE_HOME")
        .or_else(|| from("HOME").map(|h| h.join(".cache")))
        .map(|d| d.join("kefu"))
}

/// Where the demo model `name` trained on `hash` for encoder `version` is cached.
fn cache_dir(root: &Path, version: &str, name: &str, hash: &str) -> PathBuf {
    let version: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    root.join(format!("demo-intents-v{CACHE_VERSION}"))
        .join(version)
        .join(format!("{name}-{}", &hash[..16]))
}

/// A saved demo model, if it was trained on this data for this encoder.
fn load_matching(dir: &Path, e: &Embedder, hash: &str) -> Option<IntentModel> {
    let m = IntentModel::load(dir).ok()?;
    let same_data = m.card.training.get("data_sha256").and_then(|v| v.as_str()) == Some(hash);
    (same_data && m.check_encoder(e.manifest()).is_ok()).then_some(m)
}

/// Loads the demo model `name` from `<data_dir>/intent/<name>`, else from the shared cache
/// (`cache`, when given), else trains it; saves it where it was missing. Trained again when
/// the saved copy is unreadable, for another encoder or from other data.
pub fn load_or_train(
    e: &Embedder,
    data_dir: &Path,
    name: &str,
    cache: Option<&Path>,
) -> anyhow::Result<IntentModel> {
    let (_, data) = sets()
        .into_iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| anyhow::anyhow!("no demo intent model is called {name}"))?;
    let hash = data_hash(data);
    let dir = data_dir.join("intent").join(name);
    if let Some(m) = load_matching(&dir, e, &hash) {
        return Ok(m);
    }
    let cached = cache.map(|root| cache_dir(root, e.version(), name, &hash));
    if let Some(c) = &cached
        && let Some(m) = load_matching(c, e, &hash)
    {
        tracing::info!(
            "demo intent model {name} for this encoder taken from the cache {}",
            c.display()
        );
        m.save(&dir)?;
        // Served from its place in the data directory (its origin and version say so).
        return IntentModel::load(&dir);
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
    if let Some(c) = &cached {
        // A cache that cannot be written costs the next data directory a training, no more.
        if let Err(err) = std::fs::create_dir_all(c.parent().unwrap_or(c))
            .map_err(anyhow::Error::from)
            .and_then(|_| model.save(c))
        {
            tracing::warn!(
                "demo intent model {name} not cached in {}: {err:#}",
                c.display()
            );
        }
    }
    tracing::info!(
        "demo intent model {name} saved in {} (head {:?})",
        dir.display(),
        model.card.head
    );
    IntentModel::load(&dir)
}
