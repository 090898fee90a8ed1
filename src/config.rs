//! One `Config`: built-in defaults, then `kefu.toml`, then `KEFU_*` environment variables
//! (`KEFU_SECTION__KEY`, e.g. `KEFU_SERVER__PORT=9000`), then command-line flags. Validated once
//! at start; an invalid value stops startup with a message naming the key.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::embed::{EngineKind, Weights};
use crate::model::Pooling;

pub const DEFAULT_CONFIG_FILE: &str = "kefu.toml";
pub const DEFAULT_MODEL_DIR: &str = "models/multilingual-e5-small";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub model: ModelConfig,
    pub embed: EmbedConfig,
    pub limits: LimitsConfig,
    pub kb: KbConfig,
    pub matching: MatchingConfig,
    pub index: IndexConfig,
    pub intent: IntentConfig,
    pub routing: crate::intent::routing::RoutingConfig,
    pub dialog: crate::dialog::DialogConfig,
    pub recommend: crate::recommend::serving::RecommendConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntentConfig {
    /// Named intent models to serve: name = model directory (written by `kefu train intent`).
    pub models: std::collections::BTreeMap<String, PathBuf>,
    /// For the names `service` and `complaint_severity` when `models` does not set them: train
    /// the demo models from datasets/demo/intents at first start (kept in `<data_dir>/intent`).
    pub load_demo: bool,
    /// The model `/v1/intent` uses when the request names none.
    pub default_model: String,
}

impl Default for IntentConfig {
    fn default() -> Self {
        Self {
            models: Default::default(),
            load_demo: true,
            default_model: "service".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// Below this many indexed questions dense search is exact (faster there: about half the
    /// time of HNSW at 10,000, docs/BENCHMARKS.md); from it on it goes through an HNSW graph.
    pub exact_below: usize,
    /// HNSW neighbours per node.
    pub hnsw_m: usize,
    /// HNSW candidate list while building (higher: better graph, slower build).
    pub hnsw_ef_construction: usize,
    /// HNSW candidate list while searching (higher: better recall, slower search).
    pub hnsw_ef_search: usize,
    /// Save the index (vectors and graph, with the model version) in `<data_dir>/index` and
    /// reload it at start instead of embedding the KB again.
    pub snapshot: bool,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            exact_below: 20_000,
            hnsw_m: 16,
            hnsw_ef_construction: 200,
            hnsw_ef_search: 64,
            snapshot: true,
        }
    }
}

impl MatchingConfig {
    pub fn calibration(&self) -> crate::matcher::Calibration {
        crate::matcher::Calibration {
            lexical_weight: self.lexical_weight,
            fuzzy_weight: self.fuzzy_weight,
            answer_weight: self.answer_weight,
            answer_threshold: self.answer_threshold,
            answer_margin: self.answer_margin,
            clarify_threshold: self.clarify_threshold,
            out_of_scope_margin: self.out_of_scope_margin,
        }
    }
}

impl IndexConfig {
    pub fn options(&self) -> crate::matcher::IndexOptions {
        crate::matcher::IndexOptions {
            exact_below: self.exact_below,
            ann: crate::index::hnsw::AnnParams {
                m: self.hnsw_m,
                ef_construction: self.hnsw_ef_construction,
                ef_search: self.hnsw_ef_search,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KbConfig {
    /// Load the built-in demo knowledge base (datasets/demo) when the KB is empty at start.
    pub load_demo: bool,
}

impl Default for KbConfig {
    fn default() -> Self {
        Self { load_demo: true }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MatchingConfig {
    /// Score at or above which the best entry is answered directly.
    pub answer_threshold: f32,
    /// Score at or above which close candidates are offered as options; below it, no answer.
    pub clarify_threshold: f32,
    /// An answer also needs this lead over the runner-up; otherwise the customer is asked.
    pub answer_margin: f32,
    /// Weight of the word BM25 signal in the fused score.
    pub lexical_weight: f32,
    /// Weight of the character-bigram signal in the fused score.
    pub fuzzy_weight: f32,
    /// Weight of the cosine between the query and an entry's answer in the fused score.
    pub answer_weight: f32,
    /// With out-of-scope examples in the KB, an answer also needs the query this much closer
    /// (cosine) to the best entry than to the nearest example.
    pub out_of_scope_margin: f32,
}

impl Default for MatchingConfig {
    fn default() -> Self {
        // Calibrated for the default model (docs/EVALUATION.md): lexical and fuzzy weights from
        // the sweep over the shared FAQ sets; the answer weight is the largest tried that keeps
        // every shared set above its dense baseline (bq_dev's answers are placeholders);
        // thresholds by `kefu eval faq --calibrate --fixed-weights` on the demo calibration
        // queries with out-of-scope rows, for answer precision 0.95, rounded toward caution.
        Self {
            answer_threshold: 0.858,
            clarify_threshold: 0.83,
            answer_margin: 0.01,
            lexical_weight: 0.05,
            fuzzy_weight: 0.08,
            answer_weight: 0.2,
            out_of_scope_margin: 0.02,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub host: String,
    /// Port to listen on; 0 picks a free one (the chosen address is logged).
    pub port: u16,
    /// Where kefu keeps its data (knowledge base, indexes, events).
    pub data_dir: PathBuf,
    /// Seconds to let in-flight requests finish after SIGTERM/Ctrl-C.
    pub shutdown_grace_secs: u64,
    /// Seconds one request may take before it is answered 503.
    pub request_timeout_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            data_dir: PathBuf::from("data"),
            shutdown_grace_secs: 30,
            request_timeout_secs: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// The embedding model: a Hugging Face BERT-family directory.
    pub path: PathBuf,
    /// Fetch and import the default model when `path` is the default and missing.
    pub auto_fetch: bool,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_MODEL_DIR),
            auto_fetch: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedConfig {
    /// `kefu` (tuned, quantised weights) or `candle` (candle-transformers' BertModel, f32).
    pub engine: EngineKind,
    /// Weight storage for the `kefu` engine: `int8` (kefu's kernels), `q8_0`, `q4_0` (candle's
    /// quantised matmul) or `f32`.
    pub weights: Weights,
    /// Override the manifest's pooling (`mean` or `cls`).
    pub pooling: Option<Pooling>,
    /// Override the manifest's input prefix.
    pub prefix: Option<String>,
    /// Truncate inputs to fewer tokens than the model allows.
    pub max_tokens: Option<usize>,
    /// Most padded tokens in one forward pass.
    pub max_batch_tokens: usize,
    /// Most sequences in one forward pass.
    pub max_batch_size: usize,
    /// Most requests waiting for the model; beyond it requests get 429.
    pub max_queue: usize,
    /// Query embeddings kept in the LRU cache (0 disables it).
    pub cache_size: usize,
    /// Threads for inference; 0 uses every core.
    pub threads: usize,
    /// Check the model files' sha256 against the manifest at load.
    pub verify_checksums: bool,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        Self {
            engine: EngineKind::Kefu,
            weights: Weights::Int8,
            pooling: None,
            prefix: None,
            max_tokens: None,
            max_batch_tokens: 16384,
            max_batch_size: 64,
            max_queue: 512,
            cache_size: 20_000,
            threads: 0,
            verify_checksums: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Most texts in one embedding request (413 beyond).
    pub max_inputs: usize,
    /// Most characters in one text (413 beyond).
    pub max_input_chars: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 2 * 1024 * 1024,
            max_inputs: 256,
            max_input_chars: 8192,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Values given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub data_dir: Option<PathBuf>,
    pub model: Option<PathBuf>,
}

impl Config {
    /// Loads the layers. `file` is the `--config` flag or `KEFU_CONFIG`; without either,
    /// `./kefu.toml` is read when it exists.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(p) if !p.exists() => return Err(ConfigError::MissingFile(p.to_path_buf())),
            Some(p) => fig = fig.merge(Toml::file_exact(p)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                fig = fig.merge(Toml::file_exact(DEFAULT_CONFIG_FILE))
            }
            None => {}
        }
        // Configuration variables name a section: KEFU_SECTION__KEY. Other KEFU_ variables
        // (KEFU_CONFIG, KEFU_LOG, test and bench knobs) are not configuration.
        fig = fig.merge(
            Env::prefixed("KEFU_")
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        );
        let mut flat = serde_json::Map::new();
        let mut server = serde_json::Map::new();
        if let Some(h) = &overrides.host {
            server.insert("host".into(), h.clone().into());
        }
        if let Some(p) = overrides.port {
            server.insert("port".into(), p.into());
        }
        if let Some(d) = &overrides.data_dir {
            server.insert("data_dir".into(), d.to_string_lossy().into_owned().into());
        }
        if !server.is_empty() {
            flat.insert("server".into(), server.into());
        }
        if let Some(m) = &overrides.model {
            flat.insert("model".into(), serde_json::json!({ "path": m }));
        }
        fig = fig.merge(Serialized::defaults(serde_json::Value::Object(flat)));
        let cfg: Config = fig
            .extract()
            .map_err(|e| ConfigError::Invalid(figment_message(e)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("embed.max_batch_tokens", self.embed.max_batch_tokens),
            ("embed.max_batch_size", self.embed.max_batch_size),
            ("embed.max_queue", self.embed.max_queue),
            ("limits.max_inputs", self.limits.max_inputs),
            ("limits.max_input_chars", self.limits.max_input_chars),
            (
                "server.request_timeout_secs",
                self.server.request_timeout_secs as usize,
            ),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(ConfigError::Invalid(format!("{key} must be at least 1")));
            }
        }
        if self.limits.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "limits.max_body_bytes must be at least 1024".into(),
            ));
        }
        self.matching
            .calibration()
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("matching.{e}")))?;
        if self.embed.max_tokens == Some(0) {
            return Err(ConfigError::Invalid(
                "embed.max_tokens must be at least 1".into(),
            ));
        }
        let ix = &self.index;
        if !(2..=255).contains(&ix.hnsw_m) {
            return Err(ConfigError::Invalid(format!(
                "index.hnsw_m must be between 2 and 255, got {}",
                ix.hnsw_m
            )));
        }
        if ix.hnsw_ef_construction == 0 || ix.hnsw_ef_search == 0 {
            return Err(ConfigError::Invalid(
                "index.hnsw_ef_construction and index.hnsw_ef_search must be at least 1".into(),
            ));
        }
        self.routing.validate().map_err(ConfigError::Invalid)?;
        self.dialog.validate().map_err(ConfigError::Invalid)?;
        self.recommend.validate().map_err(ConfigError::Invalid)?;
        if self.intent.default_model.trim().is_empty() {
            return Err(ConfigError::Invalid("intent.default_model is empty".into()));
        }

        if self.server.host.parse::<std::net::IpAddr>().is_err() && self.server.host != "localhost"
        {
            return Err(ConfigError::Invalid(format!(
                "server.host {:?} is not an IP address",
                self.server.host
            )));
        }
        Ok(())
    }

    /// Whether the model path is the built-in default (which kefu may fetch by itself).
    pub fn model_is_default(&self) -> bool {
        self.model.path == Path::new(DEFAULT_MODEL_DIR)
    }
}

/// `KEFU_` variables that are neither configuration (`KEFU_SECTION__KEY`) nor a known knob:
/// probably a typo such as `KEFU_SERVER_PORT`.
pub fn stray_env_vars() -> Vec<String> {
    const KNOWN: &[&str] = &[
        "KEFU_CONFIG",
        "KEFU_LOG",
        "KEFU_PYTHON",
        "KEFU_NO_VNNI",
        "KEFU_TEST_MODEL",
        "KEFU_TEST_REDIS_URL",
    ];
    std::env::vars()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with("KEFU_") && !k.contains("__") && !KNOWN.contains(&k.as_str()))
        .filter(|k| !k.starts_with("KEFU_BENCH_") && !k.starts_with("KEFU_UPDATE_"))
        .collect()
}

fn figment_message(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let src = e
                .metadata
                .as_ref()
                .map(|m| m.name.to_string())
                .unwrap_or_default();
            let mut s = if key.is_empty() {
                e.kind.to_string()
            } else {
                format!("{key}: {}", e.kind)
            };
            if !src.is_empty() {
                s.push_str(&format!(" (from {src})"));
            }
            s
        })
        .collect::<Vec<_>>()
        .join("; ")
}
