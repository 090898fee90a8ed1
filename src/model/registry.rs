//! Which models a data directory serves. Every model has a slot, `KIND/NAME`: the encoder
//! (`embedding/default`), each intent model (`intent/service`, …) and the recommender
//! (`recommend/default`). `kefu model activate` records the model that passed the gate in the
//! slot's `active.json` (and appends it to the slot's `history.jsonl`); `kefu serve` starts with
//! it instead of the configured one, and the running service swaps it in
//! (`POST /v1/models/{kind}/{name}/reload`). Without a record a slot serves its configuration
//! (`model.path`, `intent.models.NAME` or the demo model, `recommend.model` or the event log).
//!
//! The encoder's record stays where it always was, `<data_dir>/models/active.json`; the others
//! are `<data_dir>/models/<kind>/<name>/active.json`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

const DIR: &str = "models";
const ACTIVE: &str = "active.json";
const HISTORY: &str = "history.jsonl";

/// What a model does.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[schema(as = ModelKind)]
pub enum Kind {
    /// The encoder (sentence embeddings for matching, intents and recommendations).
    Embedding,
    /// An intent classifier (`kefu train intent`).
    Intent,
    /// The collaborative recommender (`kefu train recommend`).
    Recommend,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Embedding, Kind::Intent, Kind::Recommend];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Embedding => "embedding",
            Kind::Intent => "intent",
            Kind::Recommend => "recommend",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "embedding" | "embed" | "encoder" => Ok(Kind::Embedding),
            "intent" => Ok(Kind::Intent),
            "recommend" | "recommender" => Ok(Kind::Recommend),
            "rerank" | "reranker" => Err(
                "kefu has no re-ranker model yet: the kinds are embedding, intent and recommend"
                    .into(),
            ),
            other => Err(format!(
                "unknown model kind {other:?}: the kinds are embedding, intent and recommend"
            )),
        }
    }
}

/// The name of the one encoder and the one recommender.
pub const DEFAULT_NAME: &str = "default";

/// One model a service serves: `KIND/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    pub kind: Kind,
    pub name: String,
}

impl Slot {
    pub fn embedding() -> Self {
        Self::new(Kind::Embedding, DEFAULT_NAME)
    }

    pub fn recommend() -> Self {
        Self::new(Kind::Recommend, DEFAULT_NAME)
    }

    pub fn intent(name: &str) -> Self {
        Self::new(Kind::Intent, name)
    }

    fn new(kind: Kind, name: &str) -> Self {
        Self {
            kind,
            name: name.to_string(),
        }
    }

    /// `KIND/NAME`, or `KIND` alone for the encoder and the recommender.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (kind, name) = match s.trim().split_once('/') {
            Some((k, n)) => (k.parse::<Kind>()?, Some(n)),
            None => (s.parse::<Kind>()?, None),
        };
        Self::of(kind, name)
    }

    /// Checks `name` for `kind`: the encoder and the recommender are `default`; an intent
    /// model's name is letters, digits, `_` and `-`.
    pub fn of(kind: Kind, name: Option<&str>) -> Result<Self, String> {
        match (kind, name) {
            (Kind::Intent, None) => Err(
                "an intent model is named: intent/NAME (the name in intent.models, e.g. intent/service)"
                    .into(),
            ),
            (Kind::Intent, Some(n)) => {
                let ok = !n.is_empty()
                    && n.len() <= 64
                    && n.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if ok {
                    Ok(Self::intent(n))
                } else {
                    Err(format!(
                        "intent model name {n:?}: use 1 to 64 letters, digits, _ or -"
                    ))
                }
            }
            (k, None) => Ok(Self::new(k, DEFAULT_NAME)),
            (k, Some(n)) if n == DEFAULT_NAME => Ok(Self::new(k, DEFAULT_NAME)),
            (k, Some(n)) => Err(format!(
                "there is one {k} model, {k}/{DEFAULT_NAME}, not {k}/{n}"
            )),
        }
    }

    /// Where the slot's activation record and history live.
    pub fn dir(&self, data_dir: &Path) -> PathBuf {
        match self.kind {
            Kind::Embedding => data_dir.join(DIR),
            k => data_dir.join(DIR).join(k.as_str()).join(&self.name),
        }
    }
}

impl std::fmt::Display for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// `NAME@` plus the first 12 hex digits of the sha256 of `dir`'s `weights` file, NAME being the
/// directory's name: the version of an intent or recommender directory (an encoder's version is
/// its manifest's, computed the same way).
pub fn dir_version(dir: &Path, weights: &str) -> anyhow::Result<String> {
    let sha = super::manifest::sha256_file(&dir.join(weights))?;
    let name = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    Ok(format!("{name}@{}", &sha[..12]))
}

/// `dir` made absolute (so that other processes find it), as text.
pub fn absolute(dir: &Path) -> String {
    dir.canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .display()
        .to_string()
}

/// A model directory and the version its manifest gives.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ModelRef {
    pub path: String,
    pub version: String,
}

/// The encoder's directory (absolute, so that other processes can find it) and version.
pub fn model_ref(e: &crate::embed::Embedder) -> ModelRef {
    ModelRef {
        path: absolute(e.dir()),
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
    /// The gate's report (`kefu model activate --json` prints the same); null for a rollback.
    #[schema(value_type = Option<Object>)]
    pub gate: serde_json::Value,
    pub previous: Option<ModelRef>,
    /// `rollback` when `kefu model rollback` put the previous model back (absent: activated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// The recorded activation of the encoder in `data_dir`, if any.
pub fn active(data_dir: &Path) -> anyhow::Result<Option<Activation>> {
    active_of(data_dir, &Slot::embedding())
}

/// The recorded activation of `slot` in `data_dir`, if any; an unreadable record is an error
/// naming it.
pub fn active_of(data_dir: &Path, slot: &Slot) -> anyhow::Result<Option<Activation>> {
    let p = slot.dir(data_dir).join(ACTIVE);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
    };
    let a = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not an activation record (remove it to serve the configured {slot})",
            p.display()
        )
    })?;
    Ok(Some(a))
}

/// Records `a` as the active encoder.
pub fn record(data_dir: &Path, a: &Activation) -> anyhow::Result<()> {
    record_of(data_dir, &Slot::embedding(), a)
}

/// Records `a` as `slot`'s active model (written whole, then renamed) and appends it to the
/// slot's history.
pub fn record_of(data_dir: &Path, slot: &Slot, a: &Activation) -> anyhow::Result<()> {
    let dir = slot.dir(data_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::eval::report::write_atomic(&dir.join(ACTIVE), &serde_json::to_vec_pretty(a)?)?;
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

/// Puts back the encoder's record that was active before.
pub fn restore(data_dir: &Path, before: Option<&Activation>) -> anyhow::Result<()> {
    restore_of(data_dir, &Slot::embedding(), before)
}

/// Puts back `slot`'s record that was active before (`None`: no record, so the configured model
/// serves). The history keeps what happened.
pub fn restore_of(data_dir: &Path, slot: &Slot, before: Option<&Activation>) -> anyhow::Result<()> {
    let path = slot.dir(data_dir).join(ACTIVE);
    match before {
        Some(a) => crate::eval::report::write_atomic(&path, &serde_json::to_vec_pretty(a)?),
        None => match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).context("removing the activation record")
            }
            _ => Ok(()),
        },
    }
}

impl Activation {
    /// The record of a rollback from `current` to `previous` (what served before it).
    pub fn rollback(current: &Activation, previous: &ModelRef) -> Self {
        Self {
            model: previous.clone(),
            activated_at: now_rfc3339(),
            forced: false,
            gate: serde_json::Value::Null,
            previous: Some(current.model.clone()),
            action: Some("rollback".into()),
        }
    }
}

/// Records a rollback to the slot's configured model: `a` joins the history and the record is
/// removed, so the configuration serves again.
pub fn clear_of(data_dir: &Path, slot: &Slot, a: &Activation) -> anyhow::Result<()> {
    record_of(data_dir, slot, a)?;
    restore_of(data_dir, slot, None)
}

/// Whether `r` names no directory: what served was the configuration's default (the event
/// log's recommender, or nothing yet).
pub fn is_unrecorded(r: &ModelRef) -> bool {
    r.path.is_empty()
}

/// Every activation and rollback of `slot`, oldest first (lines that do not parse are skipped).
pub fn history_of(data_dir: &Path, slot: &Slot) -> anyhow::Result<Vec<Activation>> {
    let p = slot.dir(data_dir).join(HISTORY);
    match std::fs::read_to_string(&p) {
        Ok(t) => Ok(t
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

/// The model directory `data_dir` serves: the activated one, else `configured` (model.path).
/// An activated directory that has gone missing is an error naming the record.
pub fn serving_path(data_dir: &Path, configured: &Path) -> anyhow::Result<PathBuf> {
    Ok(activated_path(data_dir, &Slot::embedding())?.unwrap_or_else(|| configured.to_path_buf()))
}

/// The directory activated for `slot`, if any; one that has gone missing is an error naming the
/// record.
pub fn activated_path(data_dir: &Path, slot: &Slot) -> anyhow::Result<Option<PathBuf>> {
    match active_of(data_dir, slot)? {
        Some(a) => {
            let p = PathBuf::from(&a.model.path);
            anyhow::ensure!(
                p.is_dir(),
                "the activated {slot} model {} ({}) does not exist; activate another with `kefu model activate {slot} DIR` or remove {} to serve the configured one",
                a.model.path,
                a.model.version,
                slot.dir(data_dir).join(ACTIVE).display()
            );
            Ok(Some(p))
        }
        None => Ok(None),
    }
}

/// The intent model directories a data directory serves, by name: `configured`
/// (`intent.models`), each overridden by its activation record (`kefu model activate
/// intent/NAME DIR`), plus names that are only activated. Demo models are not listed (they
/// serve the demo names nothing else serves).
pub fn intent_dirs(
    data_dir: &Path,
    configured: &std::collections::BTreeMap<String, PathBuf>,
) -> anyhow::Result<std::collections::BTreeMap<String, PathBuf>> {
    let mut dirs = configured.clone();
    let mut names: Vec<String> = dirs.keys().cloned().collect();
    if let Ok(rd) = std::fs::read_dir(data_dir.join(DIR).join(Kind::Intent.as_str())) {
        names.extend(
            rd.flatten()
                .map(|d| d.file_name().to_string_lossy().into_owned()),
        );
    }
    for name in names {
        let Ok(slot) = Slot::of(Kind::Intent, Some(&name)) else {
            continue;
        };
        if let Some(p) = activated_path(data_dir, &slot)? {
            dirs.insert(name, p);
        }
    }
    Ok(dirs)
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
            action: None,
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

        std::fs::write(d.path().join("models/active.json"), "{not json").unwrap();
        let err = format!("{:#}", active(d.path()).unwrap_err());
        assert!(err.contains("active.json"), "{err}");

        // Other slots keep their own records, apart from the encoder's.
        let slot = Slot::parse("intent/service").unwrap();
        record_of(d.path(), &slot, &act("service@1")).unwrap();
        assert_eq!(
            active_of(d.path(), &slot).unwrap().unwrap().model.version,
            "service@1"
        );
        assert!(slot.dir(d.path()).ends_with("models/intent/service"));
        assert_eq!(history_of(d.path(), &slot).unwrap().len(), 1);
        assert!(active_of(d.path(), &Slot::recommend()).unwrap().is_none());
    }

    #[test]
    fn slots_parse_and_name_what_is_wrong() {
        assert_eq!(Slot::parse("embedding").unwrap(), Slot::embedding());
        assert_eq!(Slot::parse("recommend/default").unwrap(), Slot::recommend());
        assert_eq!(
            Slot::parse("intent/service").unwrap().to_string(),
            "intent/service"
        );
        for (bad, says) in [
            ("intent", "intent/NAME"),
            ("intent/a b", "letters, digits"),
            ("recommend/other", "recommend/default"),
            ("rerank/x", "no re-ranker"),
            ("vision", "unknown model kind"),
        ] {
            let err = Slot::parse(bad).unwrap_err();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
