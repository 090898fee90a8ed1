//! The model lifecycle while serving, for every kind: which version of each model serves
//! (`GET /v1/models`); activating a directory through its kind's gate; swapping in what the
//! data directory's records say (after `kefu model activate` on the same data directory); and
//! rolling back to the version that served before. The encoder's swap rebuilds the KB index
//! and runs in the background (`reload`); an intent model or the recommender is loaded, gated
//! and swapped within the request.
//!
//! Every swap is one atomic store: a request holds the model map (or the recommender's model)
//! it started with, so each response comes wholly from one version.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use utoipa::ToSchema;

use super::Kefu;
use super::reload::ActivateRequest;
use crate::error::Error;
use crate::model::gate;
use crate::model::registry::{self, Activation, Kind, ModelRef, Slot};

/// One model as it serves now.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ServingModel {
    pub kind: Kind,
    pub name: String,
    /// `KIND/NAME`, as `kefu model activate` and the routes below `/v1/models` name it.
    pub slot: String,
    pub version: String,
    /// Its directory (absent for a recommender trained on the event log).
    pub path: Option<String>,
    /// `activated` (a record in the data directory), `configured`, `demo` or `event log`.
    pub source: String,
    /// The data directory's record for this slot.
    pub activation: Option<Activation>,
    /// Activations and rollbacks recorded for this slot.
    pub history: usize,
    /// What the model's own card or manifest says about it (labels and dev metrics of an intent
    /// model, method and validation NDCG@10 of the recommender, dimension of the encoder).
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModelsOverview {
    /// server.data_dir, where activations are recorded.
    pub data_dir: String,
    pub models: Vec<ServingModel>,
}

/// What an activation, reload or rollback did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LifecycleResult {
    pub slot: String,
    /// `activated`, `rolled_back`, `reloaded` or `unchanged`.
    pub action: &'static str,
    pub previous: ModelRef,
    pub model: ModelRef,
    /// Activated although a gate check failed (`force`).
    pub forced: bool,
    /// The gate's report: each check on both models, and `passed`.
    #[schema(value_type = Option<Object>)]
    pub gate: Option<serde_json::Value>,
    pub seconds: f64,
}

const EVENT_LOG: &str = "event log";

fn invalid(e: anyhow::Error) -> Error {
    Error::Invalid(format!("{e:#}"))
}

fn internal(e: impl std::fmt::Display) -> Error {
    Error::Storage(e.to_string())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<anyhow::Result<T>, Error> {
    tokio::task::spawn_blocking(f).await.map_err(internal)
}

impl Kefu {
    /// Every model that serves, with its version, where it came from and its record.
    pub fn models_overview(&self) -> Result<ModelsOverview, Error> {
        let data_dir = &self.config.server.data_dir;
        let record = |slot: &Slot| -> Result<(Option<Activation>, usize), Error> {
            Ok((
                registry::active_of(data_dir, slot).map_err(internal)?,
                registry::history_of(data_dir, slot)
                    .map_err(internal)?
                    .len(),
            ))
        };
        let mut models = Vec::new();
        let e = self.embedder()?;
        let slot = Slot::embedding();
        let (activation, history) = record(&slot)?;
        let r = registry::model_ref(&e);
        models.push(ServingModel {
            kind: Kind::Embedding,
            name: slot.name.clone(),
            slot: slot.to_string(),
            source: source_of(activation.as_ref(), &r.path, "configured"),
            version: r.version,
            path: Some(r.path),
            activation,
            history,
            details: serde_json::json!({
                "dimension": e.dim(),
                "max_tokens": e.manifest().max_tokens,
                "pooling": e.manifest().pooling,
            }),
        });
        if let Some(intents) = self.intents.load_full() {
            for (name, m) in intents.iter() {
                let slot = Slot::intent(name);
                let (activation, history) = record(&slot)?;
                let path = m.origin.as_ref().map(|o| o.path.clone());
                let fallback = if self.config.intent.models.contains_key(name) {
                    "configured"
                } else {
                    "demo"
                };
                models.push(ServingModel {
                    kind: Kind::Intent,
                    name: name.clone(),
                    slot: slot.to_string(),
                    version: m.version().to_string(),
                    source: source_of(activation.as_ref(), path.as_deref().unwrap_or(""), fallback),
                    path,
                    activation,
                    history,
                    details: serde_json::json!({
                        "labels": m.card.labels.len(),
                        "head": m.card.head,
                        "encoder": m.card.encoder.version,
                        "metrics": m.card.metrics,
                        "created_at": m.card.created_at,
                    }),
                });
            }
        }
        if let Some(s) = self.recommender.model.load_full() {
            let slot = Slot::recommend();
            let (activation, history) = record(&slot)?;
            let from_log = s.source == EVENT_LOG;
            models.push(ServingModel {
                kind: Kind::Recommend,
                name: slot.name.clone(),
                slot: slot.to_string(),
                version: s.version.clone(),
                source: if from_log {
                    EVENT_LOG.into()
                } else {
                    source_of(activation.as_ref(), &s.source, "configured")
                },
                path: (!from_log).then(|| s.source.clone()),
                activation,
                history,
                details: serde_json::json!({
                    "method": s.model.card.method,
                    "items": s.model.card.items.len(),
                    "validation_ndcg_at_10": s.model.card.validation_ndcg_at_10,
                    "created_at": s.model.card.created_at,
                }),
            });
        }
        Ok(ModelsOverview {
            data_dir: data_dir.display().to_string(),
            models,
        })
    }

    /// Activates `req.path` in `slot` (an intent model or the recommender): its kind's gate
    /// against the serving version on the slot's golden set, then the record, then the swap.
    /// A refusal (422 `gate_refused`, naming the measure and the drop) or a failure changes
    /// nothing.
    pub async fn activate_model(
        self: &Arc<Self>,
        slot: &Slot,
        req: ActivateRequest,
    ) -> Result<LifecycleResult, Error> {
        let started = Instant::now();
        let dir = PathBuf::from(req.path.trim());
        if req.path.trim().is_empty() || !dir.is_dir() {
            return Err(Error::Invalid(format!(
                "path {:?} is not a directory on the server",
                req.path
            )));
        }
        let max_drop = req.max_drop.unwrap_or(self.config.model.gate.max_drop);
        if !(0.0..1.0).contains(&max_drop) {
            return Err(Error::Invalid(format!(
                "max_drop must be at least 0 and below 1, got {max_drop}"
            )));
        }
        let golden = req.golden.as_deref().map(PathBuf::from);
        if let Some(g) = &golden
            && !g.is_file()
        {
            return Err(Error::Invalid(format!(
                "golden {:?} is not a file on the server",
                g.display()
            )));
        }
        let _one = self.lifecycle.lock().await;
        let (report, swap) = match slot.kind {
            Kind::Embedding => {
                return Err(Error::Invalid(
                    "the encoder is activated with POST /v1/model/activate (it rebuilds the KB index in the background)".into(),
                ));
            }
            Kind::Intent => {
                let (encoder, models) = self.encoder_and_intents()?;
                let serving = models.get(&slot.name).cloned();
                let (cfg, name) = (self.config.clone(), slot.name.clone());
                let e = encoder.clone();
                let (report, m) = blocking(move || {
                    let golden = gate::intent_golden(&cfg, &name, golden.as_deref())?;
                    let m = gate::load_intent(&e, &dir)?;
                    let r = gate::intent(&e, serving.as_deref(), &m, &golden, max_drop)?;
                    Ok((r, m))
                })
                .await?
                .map_err(invalid)?;
                (
                    report,
                    Swap::Intent(Arc::new(m), encoder.version().to_string()),
                )
            }
            Kind::Recommend => {
                let serving = self.recommender.model.load_full();
                let cfg = self.config.clone();
                let (report, m, origin) = blocking(move || {
                    let golden = gate::recommend_golden(&cfg, golden.as_deref())?;
                    let (m, origin) = crate::recommend::serving::load_dir(&dir)?;
                    let s = serving.as_ref().map(|s| (&*s.model, served_ref(s)));
                    let r = gate::recommend(s, (&m, origin.clone()), &golden, max_drop)?;
                    Ok((r, m, origin))
                })
                .await?
                .map_err(invalid)?;
                (report, Swap::Recommend(Box::new(m), origin))
            }
        };
        let gate_json = serde_json::to_value(&report).ok();
        if !report.passed && !req.force {
            return Err(Error::GateRefused(format!(
                "{} was refused by the gate: {}; nothing changed (force activates it anyway)",
                report.candidate.version,
                report.failures()
            )));
        }
        if !report.passed {
            tracing::warn!(
                slot = %slot,
                model = %report.candidate.version,
                failed = %report.failures(),
                "activated with force although the gate refused it"
            );
        }
        let record = report.activation();
        self.record_and_swap(slot, &record, swap).await?;
        Ok(LifecycleResult {
            slot: slot.to_string(),
            action: "activated",
            previous: report.serving,
            model: report.candidate,
            forced: record.forced,
            gate: gate_json,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Puts back the version that served before the slot's last activation (recorded as a
    /// rollback, so a second rollback goes forward again). No gate: it served before; it must
    /// still load and fit the serving encoder.
    pub async fn rollback_model(self: &Arc<Self>, slot: &Slot) -> Result<LifecycleResult, Error> {
        let started = Instant::now();
        if slot.kind == Kind::Embedding {
            return Err(Error::Invalid(
                "roll the encoder back with `kefu model rollback embedding --server URL` (it records the previous encoder, then POST /v1/model/reload rebuilds the index)".into(),
            ));
        }
        let _one = self.lifecycle.lock().await;
        let data_dir = &self.config.server.data_dir;
        let current = registry::active_of(data_dir, slot)
            .map_err(internal)?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "{slot} has no activation to roll back: it serves its configured model"
                ))
            })?;
        let previous = current.previous.clone().ok_or_else(|| {
            Error::NotFound(format!(
                "{slot}'s activation does not say what served before"
            ))
        })?;
        let back_to_config = registry::is_unrecorded(&previous);
        let target = if back_to_config {
            self.configured(slot)?
        } else {
            Some(previous.clone())
        };
        let swap = self.load_for(slot, target.as_ref()).await?;
        let record = Activation::rollback(&current, &previous);
        tracing::info!(slot = %slot, from = %current.model.version, to = %previous.version, "rolling back");
        self.record_and_swap(slot, &record, swap).await?;
        if back_to_config {
            // What served before was the configuration's: no record, so a restart serves it too.
            registry::restore_of(&self.config.server.data_dir, slot, None).map_err(internal)?;
        }
        Ok(LifecycleResult {
            slot: slot.to_string(),
            action: "rolled_back",
            previous: current.model,
            model: previous,
            forced: false,
            gate: None,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Swaps in what the data directory says `slot` serves (its record, else its
    /// configuration): what `kefu model activate KIND/NAME DIR` and `kefu model rollback` on
    /// the same data directory ask for.
    pub async fn reload_slot(self: &Arc<Self>, slot: &Slot) -> Result<LifecycleResult, Error> {
        let started = Instant::now();
        if slot.kind == Kind::Embedding {
            return Err(Error::Invalid(
                "the encoder reloads with POST /v1/model/reload".into(),
            ));
        }
        let _one = self.lifecycle.lock().await;
        let data_dir = &self.config.server.data_dir;
        let target = match registry::active_of(data_dir, slot).map_err(internal)? {
            Some(a) => Some(a.model),
            None => self.configured(slot)?,
        };
        let previous = self.serving_ref(slot)?;
        let swap = self.load_for(slot, target.as_ref()).await?;
        let model = swap.model_ref();
        let changed = model.version != previous.version;
        if changed {
            self.swap(slot, swap).await?;
        }
        Ok(LifecycleResult {
            slot: slot.to_string(),
            action: if changed { "reloaded" } else { "unchanged" },
            previous,
            model,
            forced: false,
            gate: None,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// What serves in `slot` now.
    fn serving_ref(&self, slot: &Slot) -> Result<ModelRef, Error> {
        match slot.kind {
            Kind::Intent => {
                let (_, models) = self.encoder_and_intents()?;
                Ok(models
                    .get(&slot.name)
                    .map(|m| {
                        m.origin.clone().unwrap_or(ModelRef {
                            path: String::new(),
                            version: m.version().into(),
                        })
                    })
                    .unwrap_or_else(none))
            }
            _ => Ok(self
                .recommender
                .model
                .load_full()
                .map(|s| served_ref(&s))
                .unwrap_or_else(none)),
        }
    }

    /// The slot's configured model, when no record says otherwise (None: the recommender's
    /// event log; an intent name without configuration serves its demo model).
    fn configured(&self, slot: &Slot) -> Result<Option<ModelRef>, Error> {
        let dir = match slot.kind {
            Kind::Intent => match self.config.intent.models.get(&slot.name) {
                Some(d) => Some(d.clone()),
                None if crate::intent::demo::sets()
                    .iter()
                    .any(|(n, _)| *n == slot.name) =>
                {
                    Some(self.config.server.data_dir.join("intent").join(&slot.name))
                }
                None => {
                    return Err(Error::NotFound(format!(
                        "{slot} is neither activated nor configured (intent.models.{})",
                        slot.name
                    )));
                }
            },
            _ => self.config.recommend.model.clone(),
        };
        Ok(dir.map(|d| ModelRef {
            path: registry::absolute(&d),
            version: String::new(),
        }))
    }

    /// Loads what `target` names for `slot` (None or an empty path: the recommender's event
    /// log), checked as the gate checks, without measuring it.
    async fn load_for(&self, slot: &Slot, target: Option<&ModelRef>) -> Result<Swap, Error> {
        let dir = target
            .filter(|t| !t.path.is_empty())
            .map(|t| PathBuf::from(&t.path));
        match (slot.kind, dir) {
            (Kind::Intent, None) => Err(Error::NotFound(format!(
                "{slot}: nothing to load (no directory recorded)"
            ))),
            (Kind::Intent, Some(dir)) => {
                let (encoder, _) = self.encoder_and_intents()?;
                let e = encoder.clone();
                let m = blocking(move || {
                    load_dir_checked(&dir).and_then(|_| gate::load_intent(&e, &dir))
                })
                .await?
                .map_err(invalid)?;
                Ok(Swap::Intent(Arc::new(m), encoder.version().to_string()))
            }
            (_, None) => Ok(Swap::EventLog),
            (_, Some(dir)) => {
                let (m, origin) = blocking(move || {
                    load_dir_checked(&dir)?;
                    crate::recommend::serving::load_dir(&dir)
                })
                .await?
                .map_err(invalid)?;
                Ok(Swap::Recommend(Box::new(m), origin))
            }
        }
    }

    /// Records `a` for `slot`, then swaps; a failed swap puts the previous record back.
    async fn record_and_swap(
        self: &Arc<Self>,
        slot: &Slot,
        a: &Activation,
        swap: Swap,
    ) -> Result<(), Error> {
        let data_dir = &self.config.server.data_dir;
        let before = registry::active_of(data_dir, slot).map_err(internal)?;
        registry::record_of(data_dir, slot, a).map_err(internal)?;
        if let Err(e) = self.swap(slot, swap).await {
            if let Err(r) = registry::restore_of(data_dir, slot, before.as_ref()) {
                tracing::error!("restoring {slot}'s previous record failed: {r:#}");
            }
            return Err(e);
        }
        tracing::info!(slot = %slot, model = %a.model.version, "now serving");
        Ok(())
    }

    async fn swap(self: &Arc<Self>, slot: &Slot, swap: Swap) -> Result<(), Error> {
        match swap {
            Swap::Intent(m, encoder) => {
                let _swapping = self.swap_lock.lock().expect("swap lock");
                // The encoder swapped meanwhile: this model was checked against the old one.
                let now = self.embedder()?;
                if now.version() != encoder {
                    return Err(Error::Conflict(format!(
                        "the encoder changed to {} while {slot} was being activated; try again",
                        now.version()
                    )));
                }
                let mut map = self
                    .intents
                    .load_full()
                    .map(|m| (*m).clone())
                    .unwrap_or_default();
                map.insert(slot.name.clone(), m);
                self.intents.store(Some(Arc::new(map)));
                Ok(())
            }
            Swap::Recommend(m, origin) => {
                self.recommender.install(*m, origin).await;
                Ok(())
            }
            Swap::EventLog => self
                .recommender
                .unpin()
                .await
                .map_err(|e| Error::ModelReload(format!("{e:#}"))),
        }
    }
}

/// A model loaded and checked, ready to be swapped in.
enum Swap {
    /// The model and the encoder version it was checked against.
    Intent(Arc<crate::intent::IntentModel>, String),
    Recommend(
        Box<crate::recommend::model::RecommendModel>,
        crate::model::registry::ModelRef,
    ),
    /// The recommender's model trained on the event log.
    EventLog,
}

impl Swap {
    fn model_ref(&self) -> ModelRef {
        match self {
            Swap::Intent(m, _) => m.origin.clone().unwrap_or_else(none),
            Swap::Recommend(_, o) => o.clone(),
            Swap::EventLog => ModelRef {
                path: String::new(),
                version: EVENT_LOG.into(),
            },
        }
    }
}

fn none() -> ModelRef {
    ModelRef {
        path: String::new(),
        version: "none".into(),
    }
}

fn served_ref(s: &crate::recommend::serving::Served) -> ModelRef {
    ModelRef {
        path: if s.source == EVENT_LOG {
            String::new()
        } else {
            s.source.clone()
        },
        version: s.version.clone(),
    }
}

fn load_dir_checked(dir: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(dir.is_dir(), "{} is not a directory", dir.display());
    Ok(())
}

/// `activated` when the record names `path`, else `fallback`.
fn source_of(a: Option<&Activation>, path: &str, fallback: &str) -> String {
    match a {
        Some(a) if a.model.path == path => "activated".into(),
        _ => fallback.into(),
    }
}
