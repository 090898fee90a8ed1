//! What the commands share: the configuration with their flags applied, the encoder, the
//! data-directory check of commands that only read one, and printing a result.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use kefu::analytics::metrics::Metrics;
use kefu::config::{Config, Overrides};
use kefu::embed::{Embedder, EngineKind, Weights};
use kefu::kb::{Document, FaqEntry};
use kefu::matcher::Calibration;
use kefu::model;

use super::CommonFlags;

/// The global flags every command sees (`--config`).
pub struct Ctx {
    config_file: Option<PathBuf>,
}

/// A command's flags that change the configuration.
#[derive(Default)]
pub struct Flags {
    pub overrides: Overrides,
    pub engine: Option<EngineKind>,
    pub weights: Option<Weights>,
    pub cpu: Option<kefu::embed::CpuPath>,
    pub threads: Option<usize>,
}

impl Flags {
    /// `--model` / `--encoder` only.
    pub fn model(model: Option<PathBuf>) -> Self {
        Self::with(Overrides {
            model,
            ..Default::default()
        })
    }

    pub fn common(common: CommonFlags) -> Self {
        Self::model(common.model)
    }

    pub fn data_dir(data_dir: Option<PathBuf>) -> Self {
        Self::with(Overrides {
            data_dir,
            ..Default::default()
        })
    }

    pub fn with(overrides: Overrides) -> Self {
        Self {
            overrides,
            ..Default::default()
        }
    }
}

impl Ctx {
    pub fn new(config_file: Option<PathBuf>) -> Self {
        Self { config_file }
    }

    /// The configuration; without `--model` / `--encoder`, the model activated in the data
    /// directory (`kefu model activate`) replaces model.path, as it does for `kefu serve`.
    pub fn config(&self, flags: Flags) -> anyhow::Result<Config> {
        self.load(flags, true)
    }

    /// The configuration as files, environment and flags give it: `kefu serve` resolves the
    /// activated model itself, keeping model.path for when the activation is removed.
    pub fn config_as_given(&self, flags: Flags) -> anyhow::Result<Config> {
        self.load(flags, false)
    }

    fn load(&self, flags: Flags, resolve_active: bool) -> anyhow::Result<Config> {
        for k in kefu::config::stray_env_vars() {
            tracing::warn!(
                "{k} is not a kefu setting (configuration variables look like KEFU_SERVER__PORT)"
            );
        }
        let explicit_model = flags.overrides.model.is_some();
        let mut cfg = Config::load(self.config_file.as_deref(), &flags.overrides)?;
        if resolve_active
            && !explicit_model
            && let Ok(Some(a)) = model::registry::active(&cfg.server.data_dir)
            && Path::new(&a.model.path).is_dir()
        {
            tracing::info!(
                model = a.model.version,
                "using the model activated in the data directory"
            );
            cfg.model.path = PathBuf::from(a.model.path);
        }
        if let Some(e) = flags.engine {
            cfg.embed.engine = e;
        }
        if let Some(w) = flags.weights {
            cfg.embed.weights = w;
        }
        if let Some(c) = flags.cpu {
            cfg.embed.cpu = c;
        }
        if let Some(t) = flags.threads {
            cfg.embed.threads = t;
        }
        set_threads(cfg.embed.threads);
        Ok(cfg)
    }
}

/// Sets the inference thread count before any thread pool starts (every command loads its
/// configuration first, on the main thread).
fn set_threads(threads: usize) {
    if threads > 0 {
        // SAFETY: called on the main thread before any other thread is spawned.
        unsafe {
            std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
            std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
        }
    }
}

/// The encoder `cfg` names (fetching the default model when allowed), with metrics of its own.
pub fn embedder(cfg: &Config) -> anyhow::Result<Embedder> {
    kefu::core::background::load_embedder(cfg, Arc::new(Metrics::new()))
}

/// Refuses a data directory without a knowledge base: commands that only read one would
/// otherwise create an empty one wherever a mistyped `--data-dir` points.
pub fn require_kefu_data(data_dir: &Path) -> anyhow::Result<()> {
    use kefu::kb::store::KB_FILE;
    if data_dir.join(KB_FILE).is_file() {
        return Ok(());
    }
    let d = data_dir.display();
    anyhow::bail!(
        "data directory {d} holds no kefu data (no {KB_FILE}); run `kefu serve --data-dir {d}` \
         or `kefu kb import --data-dir {d} FILE` first"
    )
}

/// Prints `report` as one JSON object on the last line of standard output with `--json` (what
/// scripts and tests read), else as `table` lays it out.
pub fn print_report<T: Serialize>(
    json: bool,
    report: &T,
    table: impl FnOnce(&T),
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        table(report);
    }
    Ok(())
}

/// An HTTP client for a running kefu's admin routes: `key` (`--key`, `KEFU_API_KEY`) goes with
/// every request as `Authorization: Bearer`.
pub fn server_client(key: Option<&str>) -> anyhow::Result<reqwest::Client> {
    use anyhow::Context;
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(k) = key {
        let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {k}"))
            .context("the API key is not a valid header value")?;
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .build()?)
}

/// Runs `f` on a single-threaded runtime: the commands that talk to SQLite or HTTP.
pub fn block_on<F: std::future::Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(f))
}

/// Reads and checks a calibration file (`kefu eval faq --calibrate` writes them).
pub fn read_calibration(path: &Path) -> anyhow::Result<kefu::matcher::Calibration> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading calibration {}", path.display()))?;
    let c: kefu::matcher::Calibration = serde_json::from_str(&text)
        .with_context(|| format!("parsing calibration {}", path.display()))?;
    c.validate()
        .map_err(|e| anyhow::anyhow!("calibration {}: {e}", path.display()))?;
    Ok(c)
}

/// The labelled feedback a data directory holds (`--with-feedback`): customers' corrections and
/// annotations, oldest first.
pub fn labelled_feedback(
    data_dir: &Path,
) -> anyhow::Result<Vec<kefu::analytics::feedback::Feedback>> {
    require_kefu_data(data_dir)?;
    block_on(async {
        let store = kefu::kb::KbStore::open(data_dir).await?;
        let feedback = kefu::analytics::feedback::FeedbackStore::open(store.pool().clone()).await?;
        Ok::<_, anyhow::Error>(feedback.labelled().await?)
    })?
}

/// The KB a data directory serves, as `kefu serve` indexes it.
pub struct ServedKb {
    pub entries: Vec<FaqEntry>,
    pub documents: Vec<Document>,
    pub out_of_scope: Vec<String>,
    pub calibration: Calibration,
    /// Whether `calibration` is the one stored with the KB (else `[matching]`).
    pub stored_calibration: bool,
    /// Whether the data directory's index snapshot may supply vectors.
    pub snapshot: bool,
}

impl ServedKb {
    /// The data directory's KB as `kefu serve` indexes it: the demo only when the KB has
    /// neither entries nor documents, the stored calibration else [matching].
    pub fn from_data_dir(cfg: &Config) -> anyhow::Result<Self> {
        let dir = &cfg.server.data_dir;
        require_kefu_data(dir)?;
        let ((entries, documents, out_of_scope), cal) = block_on(async {
            let store = kefu::kb::KbStore::open(dir).await?;
            Ok::<_, kefu::kb::store::StoreError>((
                store.index_inputs().await?,
                store.calibration().await?,
            ))
        })??;
        let stored_calibration = cal.is_some();
        let calibration = cal.unwrap_or_else(|| cfg.matching.calibration());
        let snapshot = cfg.index.snapshot;
        if entries.is_empty() && documents.is_empty() && cfg.kb.load_demo {
            return Ok(Self {
                entries: kefu::kb::demo::entries(),
                documents: kefu::kb::demo::documents(),
                out_of_scope: kefu::kb::demo::out_of_scope(),
                calibration,
                stored_calibration,
                snapshot,
            });
        }
        Ok(Self {
            entries,
            documents,
            out_of_scope,
            calibration,
            stored_calibration,
            snapshot,
        })
    }
}
