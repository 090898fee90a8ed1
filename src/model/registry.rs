//! Which encoder a data directory serves: `kefu model activate` records the model that passed the
//! gate in `<data_dir>/models/active.json` (and appends it to `history.jsonl`); `kefu serve`
//! starts with it instead of `model.path`, and `POST /v1/model/reload` swaps it in while serving.
//! Without a record the data directory serves `model.path`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const DIR: &str = "models";
const ACTIVE: &str = "active.json";
const HISTORY: &str = "history.jsonl";

/// A model directory and the version its manifest gives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ModelRef {
    pub path: String,
    pub version: String,
}

/// The encoder's directory (absolute, so that other processes can find it) and version.
pub fn model_ref(e: &crate::embed::Embedder) -> ModelRef {
    let dir = e.dir();
    ModelRef {
        path: dir
            .canonicalize()
            .unwrap_or_else(|_| dir.to_path_buf())
            .display()
            .to_string(),
        version: e.version().to_string(),
    }
}

/// One activation: the model, when, what the gate measured, and what served before.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Activation {
    pub model: ModelRef,
    /// RFC 3339.
    pub activated_at: String,
    /// Activated with `--force` although a gate check failed.
    pub forced: bool,
    /// The gate's report (`kefu model activate --json` prints the same).
    #[schema(value_type = Object)]
    pub gate: serde_json::Value,
    pub previous: Option<ModelRef>,
}

fn active_path(data_dir: &Path) -> PathBuf {
    data_dir.join(DIR).join(ACTIVE)
}

/// The recorded activation of `data_dir`, if any; an unreadable record is an error naming it.
pub fn active(data_dir: &Path) -> anyhow::Result<Option<Activation>> {
    let p = active_path(data_dir);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    let a = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not an activation record (remove it to serve model.path)",
            p.display()
        )
    })?;
    Ok(Some(a))
}

/// Records `a` as the active model (written whole, then renamed) and appends it to the history.
pub fn record(data_dir: &Path, a: &Activation) -> anyhow::Result<()> {
    let dir = data_dir.join(DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::eval::report::write_atomic(&active_path(data_dir), &serde_json::to_vec_pretty(a)?)?;
    let h = dir.join(HISTORY);
    let mut line = serde_json::to_string(a)?;
    line.push('\n');
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&h)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .with_context(|| format!("appending to {}", h.display()))
}

/// Puts back the record that was active before (`None`: no record, so `model.path` serves).
pub fn restore(data_dir: &Path, before: Option<&Activation>) -> anyhow::Result<()> {
    match before {
        Some(a) => crate::eval::report::write_atomic(
            &active_path(data_dir),
            &serde_json::to_vec_pretty(a)?,
        ),
        None => match std::fs::remove_file(active_path(data_dir)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).context("removing the activation record")
            }
            _ => Ok(()),
        },
    }
}

/// The model directory `data_dir` serves: the activated one, else `configured` (model.path).
/// An activated directory that has gone missing is an error naming the record.
pub fn serving_path(data_dir: &Path, configured: &Path) -> anyhow::Result<PathBuf> {
    match active(data_dir)? {
        Some(a) => {
            let p = PathBuf::from(&a.model.path);
            anyhow::ensure!(
                p.is_dir(),
                "the activated model {} ({}) does not exist; activate another with `kefu model activate DIR` or remove {} to serve model.path",
                a.model.path,
                a.model.version,
                active_path(data_dir).display()
            );
            Ok(p)
        }
        None => Ok(configured.to_path_buf()),
    }
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(v: &str) -> Activation {
        Activation {
            model: ModelRef {
                path: format!("/models/{v}"),
                version: v.into(),
            },
            activated_at: now_rfc3339(),
            forced: false,
            gate: serde_json::json!({"passed": true}),
            previous: None,
        }
    }

    #[test]
    fn record_restore_and_history() {
        let d = tempfile::tempdir().unwrap();
        assert!(active(d.path()).unwrap().is_none());
        let configured = d.path().join("base");
        assert_eq!(serving_path(d.path(), &configured).unwrap(), configured);

        let a = act("a@1");
        record(d.path(), &a).unwrap();
        assert_eq!(active(d.path()).unwrap().unwrap().model, a.model);
        // The activated directory is gone: an error naming it.
        let err = serving_path(d.path(), &configured).unwrap_err().to_string();
        assert!(
            err.contains("/models/a@1") && err.contains("does not exist"),
            "{err}"
        );

        let b = act("b@2");
        record(d.path(), &b).unwrap();
        restore(d.path(), Some(&a)).unwrap();
        assert_eq!(active(d.path()).unwrap().unwrap().model.version, "a@1");
        restore(d.path(), None).unwrap();
        assert!(active(d.path()).unwrap().is_none());
        let history = std::fs::read_to_string(d.path().join(DIR).join(HISTORY)).unwrap();
        assert_eq!(history.lines().count(), 2);

        std::fs::write(active_path(d.path()), "{not json").unwrap();
        let err = format!("{:#}", active(d.path()).unwrap_err());
        assert!(err.contains("active.json"), "{err}");
    }
}
