//! `kefu model list | activate KIND/NAME DIR | rollback KIND/NAME`: the lifecycle of the intent
//! models and the recommender (the encoder's activation is in `model.rs`; its rollback is
//! here too). Without `--server` they work on the data directory's records, which a service
//! reads at its next start (or `POST /v1/models/{kind}/{name}/reload`); with `--server` the
//! running service gates, records and swaps, through the same core operations as the API.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use kefu::config::Config;
use kefu::model::gate::{self, GateReport};
use kefu::model::registry::{self, Activation, Kind, Slot};

use super::common;

/// How `kefu model activate KIND/NAME DIR` was asked.
pub struct ActivateArgs<'a> {
    pub slot: &'a Slot,
    pub dir: &'a Path,
    /// A running kefu and the client (with the API key) to reach it.
    pub server: Option<(&'a str, &'a reqwest::Client)>,
    pub golden: Option<&'a Path>,
    pub max_drop: f64,
    pub force: bool,
    pub json: bool,
}

fn print_checks(r: &GateReport) {
    if registry::is_unrecorded(&r.serving) {
        eprintln!("nothing to compare with: the candidate's measures are its own");
    }
    for c in &r.checks {
        eprintln!("{}", c.line());
    }
}

/// An intent model or the recommender: the gate here against what the data directory serves,
/// then the record; or, with `--server`, all of it on the server.
pub fn activate(cfg: &Config, a: &ActivateArgs) -> anyhow::Result<()> {
    let dir = a
        .dir
        .canonicalize()
        .with_context(|| format!("{} is not a directory", a.dir.display()))?;
    if let Some((url, client)) = a.server {
        let golden = a
            .golden
            .map(|g| g.canonicalize().with_context(|| format!("{}", g.display())))
            .transpose()?;
        let body = serde_json::json!({
            "path": dir,
            "max_drop": a.max_drop,
            "force": a.force,
            "golden": golden,
        });
        let v = post(url, client, "activate", a.slot, Some(body))?;
        if let Ok(checks) = serde_json::from_value::<Vec<gate::Check>>(v["gate"]["checks"].clone())
        {
            for c in checks {
                eprintln!("{}", c.line());
            }
        }
        eprintln!(
            "{url} now serves {} in {} (was {})",
            v["model"]["version"].as_str().unwrap_or("?"),
            a.slot,
            v["previous"]["version"].as_str().unwrap_or("?")
        );
        return common::print_report(a.json, &v, |_| {});
    }
    let data_dir = &cfg.server.data_dir;
    let report = match a.slot.kind {
        Kind::Embedding => unreachable!("the encoder is activated by model.rs"),
        Kind::Intent => {
            let golden = gate::intent_golden(cfg, &a.slot.name, a.golden)?;
            let e = encoder(cfg)?;
            let candidate = gate::load_intent(&e, &dir)?;
            let serving =
                serving_intent(cfg, &a.slot.name).and_then(|d| match gate::load_intent(&e, &d) {
                    Ok(m) => Some(m),
                    Err(err) => {
                        eprintln!("the serving {} cannot be measured: {err:#}", a.slot);
                        None
                    }
                });
            gate::intent(&e, serving.as_ref(), &candidate, &golden, a.max_drop)?
        }
        Kind::Recommend => {
            let golden = gate::recommend_golden(cfg, a.golden)?;
            let (m, origin) = kefu::recommend::serving::load_dir(&dir)?;
            let serving = match registry::activated_path(data_dir, a.slot)?
                .or_else(|| cfg.recommend.model.clone())
            {
                Some(d) => Some(kefu::recommend::serving::load_dir(&d)?),
                None => {
                    eprintln!(
                        "the serving recommender is trained on the event log, which only the running service holds: the candidate is measured, not compared (pass --server URL to compare)"
                    );
                    None
                }
            };
            gate::recommend(
                serving.as_ref().map(|(m, r)| (m, r.clone())),
                (&m, origin),
                &golden,
                a.max_drop,
            )?
        }
    };
    print_checks(&report);
    let print = |activated: bool| -> anyhow::Result<()> {
        let mut v = serde_json::to_value(&report)?;
        v["activated"] = activated.into();
        common::print_report(a.json, &v, |_| {})
    };
    if !report.passed && !a.force {
        print(false)?;
        anyhow::bail!(
            "{} was refused: {}; nothing changed (--force activates it anyway)",
            report.candidate.version,
            report.failures()
        );
    }
    if !report.passed {
        eprintln!("activating with --force although the gate refused it");
    }
    registry::record_of(data_dir, a.slot, &report.activation())?;
    eprintln!(
        "activated {} as {} in {}; a running kefu on this data directory swaps it in with POST /v1/models/{}/{}/reload (or at its next start)",
        report.candidate.version,
        a.slot,
        data_dir.display(),
        a.slot.kind,
        a.slot.name
    );
    print(true)
}

/// The encoder the data directory serves (its activated one, else model.path).
fn encoder(cfg: &Config) -> anyhow::Result<kefu::embed::Embedder> {
    let path = registry::serving_path(&cfg.server.data_dir, &cfg.model.path)?;
    if path == cfg.model.path {
        return common::embedder(cfg);
    }
    let mut c = cfg.clone();
    c.model.path = path;
    common::embedder(&c)
}

/// The directory intent model `name` serves from: its record, `intent.models`, else the demo
/// model the data directory trained.
fn serving_intent(cfg: &Config, name: &str) -> Option<PathBuf> {
    let dirs = registry::intent_dirs(&cfg.server.data_dir, &cfg.intent.models).ok()?;
    dirs.get(name).cloned().or_else(|| {
        let demo = cfg.server.data_dir.join("intent").join(name);
        demo.is_dir().then_some(demo)
    })
}

/// POST /v1/models/{kind}/{name}/{action} on `url`; the error body's message on failure.
fn post(
    url: &str,
    client: &reqwest::Client,
    action: &str,
    slot: &Slot,
    body: Option<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let url = url.trim_end_matches('/');
    let endpoint = format!("{url}/v1/models/{}/{}/{action}", slot.kind, slot.name);
    common::block_on(async {
        let mut req = client.post(&endpoint);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .with_context(|| format!("reaching {endpoint}"))?;
        let status = r.status();
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        anyhow::ensure!(
            status.is_success(),
            "{endpoint} answered {status}: {}",
            v["error"]["message"].as_str().unwrap_or("")
        );
        Ok(v)
    })?
}

/// `kefu model rollback KIND/NAME`.
pub fn rollback(
    cfg: &Config,
    slot: &Slot,
    server: Option<(&str, &reqwest::Client)>,
    json: bool,
) -> anyhow::Result<()> {
    if let Some((url, client)) = server {
        let v = post(url, client, "rollback", slot, None)?;
        if slot.kind == Kind::Embedding {
            // Swapped in the background: wait for it.
            let version = wait_reload(url, client)?;
            eprintln!("{url} rolled the encoder back to {version}");
            return common::print_report(
                json,
                &serde_json::json!({"model": {"version": version}}),
                |_| {},
            );
        }
        eprintln!(
            "{url} rolled {slot} back from {} to {}",
            v["previous"]["version"].as_str().unwrap_or("?"),
            v["model"]["version"].as_str().unwrap_or("?")
        );
        return common::print_report(json, &v, |_| {});
    }
    let data_dir = &cfg.server.data_dir;
    let current = registry::active_of(data_dir, slot)?.with_context(|| {
        format!(
            "{slot} has no activation in {} to roll back: it serves its configured model",
            data_dir.display()
        )
    })?;
    let previous = current
        .previous
        .clone()
        .with_context(|| format!("{slot}'s activation does not say what served before"))?;
    let a = Activation::rollback(&current, &previous);
    if registry::is_unrecorded(&previous) {
        // Nothing was recorded before: the configured model serves again.
        registry::clear_of(data_dir, slot, &a)?;
    } else {
        registry::record_of(data_dir, slot, &a)?;
    }
    eprintln!(
        "{slot} rolled back from {} to {} in {}; a running kefu on this data directory swaps it in with POST /v1/models/{}/{}/reload (or at its next start)",
        current.model.version,
        previous.version,
        data_dir.display(),
        slot.kind,
        slot.name
    );
    common::print_report(json, &a, |_| {})
}

/// Waits for the server's encoder reload to end; its version.
fn wait_reload(url: &str, http: &reqwest::Client) -> anyhow::Result<String> {
    let url = url.trim_end_matches('/');
    common::block_on(async {
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            let v: serde_json::Value = http
                .get(format!("{url}/v1/model"))
                .send()
                .await?
                .json()
                .await?;
            match v["reload"]["state"].as_str() {
                Some("running") => continue,
                Some("failed") => anyhow::bail!(
                    "{url} could not swap it in: {}",
                    v["reload"]["error"].as_str().unwrap_or("?")
                ),
                _ => return Ok(v["model"]["version"].as_str().unwrap_or("?").to_string()),
            }
        }
    })?
}

/// One model directory found by `kefu model list`.
#[derive(Debug, Serialize)]
pub struct Listed {
    pub kind: Kind,
    pub path: String,
    pub version: String,
    /// The slots of the data directory it serves in (by record or configuration).
    pub serving: Vec<String>,
    /// What its card or manifest says (metrics, labels, method, dimension).
    pub details: serde_json::Value,
}

/// What a model directory is, by the files in it.
fn inspect(dir: &Path) -> Option<Listed> {
    let path = registry::absolute(dir);
    let read = |f: &str| -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(dir.join(f)).ok()?).ok()
    };
    if let Some(card) = read(kefu::intent::model::CARD_FILE) {
        return Some(Listed {
            kind: Kind::Intent,
            version: registry::dir_version(dir, kefu::intent::model::INTENT_WEIGHTS_FILE).ok()?,
            path,
            serving: Vec::new(),
            details: serde_json::json!({
                "labels": card["labels"].as_array().map_or(0, Vec::len),
                "head": card["head"],
                "encoder": card["encoder"]["version"],
                "metrics": card["metrics"],
                "created_at": card["created_at"],
            }),
        });
    }
    if let Some(card) = read(kefu::recommend::model::CARD_FILE) {
        return Some(Listed {
            kind: Kind::Recommend,
            version: registry::dir_version(dir, kefu::recommend::model::WEIGHTS_FILE).ok()?,
            path,
            serving: Vec::new(),
            details: serde_json::json!({
                "method": card["method"],
                "items": card["items"].as_array().map_or(0, Vec::len),
                "validation_ndcg_at_10": card["validation_ndcg_at_10"],
                "created_at": card["created_at"],
            }),
        });
    }
    let m = kefu::model::Manifest::read(dir).ok().flatten()?;
    Some(Listed {
        kind: Kind::Embedding,
        version: m.version,
        path,
        serving: Vec::new(),
        details: serde_json::json!({"name": m.name, "dimension": m.dimension, "pooling": m.pooling}),
    })
}

/// Model directories under `root`, three levels deep at most.
fn scan(root: &Path, depth: usize, out: &mut Vec<Listed>) {
    if let Some(l) = inspect(root) {
        out.push(l);
        return;
    }
    if depth == 0 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(root) else {
        return;
    };
    let mut dirs: Vec<PathBuf> = rd
        .flatten()
        .map(|d| d.path())
        .filter(|p| {
            p.is_dir()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    dirs.sort();
    for d in dirs {
        scan(&d, depth - 1, out);
    }
}

/// `kefu model list`: the model directories under `roots`, and which slot of the data
/// directory each serves in; directories that serve from elsewhere are listed too.
pub fn list(cfg: &Config, roots: &[PathBuf], json: bool) -> anyhow::Result<()> {
    let data_dir = &cfg.server.data_dir;
    // What each slot serves, by record or configuration.
    let mut serving: Vec<(Slot, PathBuf, &'static str)> = Vec::new();
    let enc = registry::serving_path(data_dir, &cfg.model.path)?;
    let by = |slot: &Slot| {
        if registry::active_of(data_dir, slot).ok().flatten().is_some() {
            "activated"
        } else {
            "configured"
        }
    };
    serving.push((Slot::embedding(), enc, by(&Slot::embedding())));
    let mut intents = registry::intent_dirs(data_dir, &cfg.intent.models)?;
    if cfg.intent.load_demo {
        for (name, _) in kefu::intent::demo::sets() {
            let d = data_dir.join("intent").join(name);
            if !intents.contains_key(name) && d.is_dir() {
                intents.insert(name.to_string(), d);
            }
        }
    }
    for (name, d) in intents {
        let slot = Slot::intent(&name);
        let how = by(&slot);
        serving.push((slot, d, how));
    }
    if let Some(d) = registry::activated_path(data_dir, &Slot::recommend())?
        .or_else(|| cfg.recommend.model.clone())
    {
        let how = by(&Slot::recommend());
        serving.push((Slot::recommend(), d, how));
    }
    let mut found = Vec::new();
    for r in roots {
        scan(r, 3, &mut found);
    }
    for (slot, dir, how) in &serving {
        let abs = registry::absolute(dir);
        match found.iter_mut().find(|l| l.path == abs) {
            Some(l) => l.serving.push(format!("{slot} ({how})")),
            None => {
                if let Some(mut l) = inspect(dir) {
                    l.serving.push(format!("{slot} ({how})"));
                    found.push(l);
                }
            }
        }
    }
    let recommend_from_log = !serving.iter().any(|(s, _, _)| s.kind == Kind::Recommend);
    common::print_report(json, &found, |found| {
        println!("{:<10} {:<40} {:<28} PATH", "KIND", "VERSION", "SERVES AS");
        for l in found {
            println!(
                "{:<10} {:<40} {:<28} {}",
                l.kind.as_str(),
                l.version,
                if l.serving.is_empty() {
                    "-".to_string()
                } else {
                    l.serving.join(", ")
                },
                l.path
            );
        }
        if recommend_from_log {
            println!("recommend/default serves a model trained on the event log (no directory)");
        }
        println!("data directory: {}", data_dir.display());
    })
}
