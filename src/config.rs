//! One `Config`: built-in defaults, then `kefu.toml`, then `KEFU_*` environment variables
//! (`KEFU_SECTION__KEY`, e.g. `KEFU_SERVER__PORT=9000`), then command-line flags. Validated once
//! at start; an invalid value stops startup with a message naming the key.
//!
//! Each module owns its section (type, defaults, checks); this file layers the sources and
//! collects the sections. Only the entry point's own sections, `[server]` and `[limits]`, live
//! here.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

// The sections' types under the names they had when they lived here.
pub use crate::embed::EmbedConfig;
pub use crate::index::IndexConfig;
pub use crate::intent::IntentConfig;
pub use crate::kb::KbConfig;
pub use crate::model::{DEFAULT_MODEL_DIR, ModelConfig};

pub const DEFAULT_CONFIG_FILE: &str = "kefu.toml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub model: ModelConfig,
    pub embed: EmbedConfig,
    pub limits: LimitsConfig,
    pub kb: KbConfig,
    /// `[matching]`: the calibration used until one is stored with the KB.
    pub matching: crate::matcher::Calibration,
    pub index: IndexConfig,
    pub intent: IntentConfig,
    pub routing: crate::intent::routing::RoutingConfig,
    pub dialog: crate::dialog::DialogConfig,
    pub recommend: crate::recommend::serving::RecommendConfig,
    pub auth: crate::auth::AuthConfig,
    pub privacy: crate::privacy::PrivacyConfig,
    /// `[outgoing]`: TLS trust, body cap and connect timeout of the calls kefu makes.
    pub outgoing: crate::outgoing::OutgoingConfig,
    /// `[analytics]`: turn records, stats and knowledge gaps.
    pub analytics: crate::analytics::AnalyticsConfig,
    /// `[sla]`: deadlines for picking up and resolving hand-offs and complaints.
    pub sla: crate::analytics::sla::SlaConfig,
    /// `[alerts]`: rules evaluated every minute, sent to a webhook.
    pub alerts: crate::analytics::alerts::AlertsConfig,
    /// `[console]`: the web console at `/ui`.
    pub console: ConsoleConfig,
    /// `[channels]`: WeChat Official Accounts, SMS and the web widget.
    pub channels: crate::channels::ChannelsConfig,
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
    /// Origins whose browser pages may call the API (CORS), e.g. `https://shop.example.com`;
    /// `*` allows any. None by default.
    pub cors_origins: Vec<String>,
    /// Lets an admin move the service's clock (`POST /v1/admin/clock`), for scripted traffic
    /// in tests and demos. Off by default; only on a loopback `host`.
    pub manual_clock: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            data_dir: PathBuf::from("data"),
            shutdown_grace_secs: 30,
            request_timeout_secs: 30,
            cors_origins: Vec::new(),
            manual_clock: false,
        }
    }
}

/// `[console]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the web console at `/ui`.
    pub enabled: bool,
    /// Minutes a console login lasts.
    pub session_ttl_mins: u64,
    /// Mark the session cookie `Secure` (sent over HTTPS only). Default: on unless
    /// `server.host` is a loopback address. Turn off only to use the console over plain HTTP
    /// on a trusted network.
    pub secure_cookie: Option<bool>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_ttl_mins: 480,
            secure_cookie: None,
        }
    }
}

impl ConsoleConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.session_ttl_mins == 0 || self.session_ttl_mins > 7 * 24 * 60 {
            return Err(format!(
                "console.session_ttl_mins must be between 1 and 10080 (a week), got {}",
                self.session_ttl_mins
            ));
        }
        Ok(())
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

impl ServerConfig {
    /// Checks values that parse but make no sense, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.request_timeout_secs == 0 {
            return Err("server.request_timeout_secs must be at least 1".into());
        }
        if self.host.parse::<std::net::IpAddr>().is_err() && self.host != "localhost" {
            return Err(format!("server.host {:?} is not an IP address", self.host));
        }
        let loopback = self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|a| a.is_loopback());
        if self.manual_clock && !loopback {
            return Err(format!(
                "server.manual_clock is for tests and demos on a loopback address; server.host is {}",
                self.host
            ));
        }
        for o in &self.cors_origins {
            if o != "*" && !valid_origin(o) {
                return Err(format!(
                    "server.cors_origins: {o:?} is not an origin like https://shop.example.com \
                     (scheme, host and optional port; no path) or \"*\""
                ));
            }
        }
        check_data_dir(&self.data_dir)
    }
}

/// `scheme://host[:port]`, as a browser sends it in `Origin`.
fn valid_origin(o: &str) -> bool {
    let Some((scheme, rest)) = o.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', ' ', '@'])
        && axum::http::HeaderValue::from_str(o).is_ok()
}

/// An existing data directory must be a directory kefu can write in (it keeps the KB's
/// database there); without this check SQLite only says "unable to open database file". A
/// missing one is fine: `kefu serve` creates it.
fn check_data_dir(dir: &Path) -> Result<(), String> {
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(());
    };
    if !meta.is_dir() {
        return Err(format!(
            "server.data_dir {} is a file, not a directory",
            dir.display()
        ));
    }
    // Permission bits do not tell (root, ACLs, read-only mounts): try it.
    tempfile::Builder::new()
        .prefix(".kefu-write-check")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| {
            // The kind alone: the error's own path is the probe file's, not the setting's.
            let why = std::io::Error::from(e.kind());
            format!("server.data_dir {} is not writable ({why})", dir.display())
        })
}

impl LimitsConfig {
    /// Checks values that parse but make no sense, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        for (key, v) in [
            ("limits.max_inputs", self.max_inputs),
            ("limits.max_input_chars", self.max_input_chars),
        ] {
            if v == 0 {
                return Err(format!("{key} must be at least 1"));
            }
        }
        if self.max_body_bytes < 1024 {
            return Err("limits.max_body_bytes must be at least 1024".into());
        }
        Ok(())
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
        // Each layer's values must parse on their own: a higher layer overriding a bad value
        // must not hide it (`port = "abc"` in the file with `--port 9000`).
        let parses = |fig: &Figment| {
            fig.extract::<Config>()
                .map(drop)
                .map_err(|e| ConfigError::Invalid(figment_message(e)))
        };
        parses(&fig)?;
        // Configuration variables name a section: KEFU_SECTION__KEY. Other KEFU_ variables
        // (KEFU_CONFIG, KEFU_LOG, test and bench knobs) are not configuration.
        fig = fig.merge(
            Env::prefixed("KEFU_")
                .filter(|k| k.as_str().contains("__"))
                .split("__"),
        );
        parses(&fig)?;
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
        let invalid = ConfigError::Invalid;
        self.server.validate().map_err(invalid)?;
        self.limits.validate().map_err(invalid)?;
        self.embed.validate().map_err(invalid)?;
        self.model.gate.validate().map_err(invalid)?;
        self.matching
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("matching.{e}")))?;
        self.index.validate().map_err(invalid)?;
        self.kb.validate().map_err(invalid)?;
        self.routing.validate().map_err(invalid)?;
        self.dialog.validate().map_err(invalid)?;
        self.recommend.validate().map_err(invalid)?;
        self.intent.validate().map_err(invalid)?;
        self.auth.validate().map_err(invalid)?;
        self.privacy.validate().map_err(invalid)?;
        self.outgoing.validate().map_err(invalid)?;
        self.analytics.validate().map_err(invalid)?;
        self.console.validate().map_err(invalid)?;
        self.sla.validate().map_err(invalid)?;
        self.alerts.validate().map_err(invalid)?;
        self.channels.validate(&self.outgoing).map_err(invalid)?;
        if let Some(u) = &self.alerts.webhook_url {
            self.outgoing
                .check_url("alerts.webhook_url", u)
                .map_err(invalid)?;
        }
        // The URLs kefu calls (flows' URLs are templates, mostly over `services`).
        if let Some(u) = &self.dialog.handoff.webhook_url {
            self.outgoing
                .check_url("dialog.handoff.webhook_url", u)
                .map_err(invalid)?;
        }
        for (name, u) in &self.dialog.services {
            self.outgoing
                .check_url(&format!("dialog.services.{name}"), u)
                .map_err(invalid)?;
        }
        Ok(())
    }

    /// Whether the model path is the built-in default (which kefu may fetch by itself).
    pub fn model_is_default(&self) -> bool {
        self.model.is_default()
    }
}

/// `KEFU_` variables that are neither configuration (`KEFU_SECTION__KEY`) nor a known knob:
/// probably a typo such as `KEFU_SERVER_PORT`.
pub fn stray_env_vars() -> Vec<String> {
    const KNOWN: &[&str] = &[
        "KEFU_CONFIG",
        "KEFU_LOG",
        "KEFU_PYTHON",
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
