//! Calls kefu makes to other systems (business flows' calls to the operator's systems, the
//! hand-off webhook) and the trust it puts in them: TLS by rustls with the system's roots and
//! an optional CA bundle (`outgoing.ca_file`, also trusted by `rediss://`), redirects never
//! followed (a redirect could send the customer's data elsewhere), response bodies capped, a
//! connect timeout. Each call keeps its own overall timeout.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[outgoing]` in kefu.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutgoingConfig {
    /// A PEM file of CA certificates trusted besides the system's roots: the private CA of
    /// the order system, the agent desk or Redis (`rediss://`).
    pub ca_file: Option<PathBuf>,
    /// Largest response body read from a flow's call; a larger one fails the call without
    /// being read whole.
    pub max_response_bytes: u64,
    /// Longest wait for a connection (TCP and TLS handshake); each call's own timeout
    /// (`call.timeout_ms`, `dialog.handoff.webhook_timeout_ms`) bounds the whole call.
    pub connect_timeout_ms: u64,
    /// Refuse plain `http://` for flow calls and the webhook.
    pub https_only: bool,
}

impl Default for OutgoingConfig {
    fn default() -> Self {
        Self {
            ca_file: None,
            max_response_bytes: 1024 * 1024,
            connect_timeout_ms: 3000,
            https_only: false,
        }
    }
}

impl OutgoingConfig {
    /// Checks values that parse but make no sense, naming the key; reads the CA file.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_response_bytes == 0 {
            return Err("outgoing.max_response_bytes must be at least 1".into());
        }
        if self.connect_timeout_ms == 0 {
            return Err("outgoing.connect_timeout_ms must be at least 1".into());
        }
        Outgoing::new(self).map(drop)
    }

    /// The CA file's bytes (PEM), checked to hold at least one certificate; `None` without one.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, String> {
        self.ca_file.as_deref().map(read_ca_file).transpose()
    }

    /// Whether `url` may be called: an `http(s)` URL, `https` when `https_only`. `key` names
    /// the setting in the message.
    pub fn check_url(&self, key: &str, url: &str) -> Result<(), String> {
        let https = url.starts_with("https://");
        if !(https || url.starts_with("http://")) {
            return Err(format!("{key} {url:?} is not an http(s) URL"));
        }
        if self.https_only && !https {
            return Err(format!(
                "{key} {url:?} is not https:// but outgoing.https_only is set"
            ));
        }
        Ok(())
    }
}

fn read_ca_file(path: &Path) -> Result<Vec<u8>, String> {
    let at = |why: String| format!("outgoing.ca_file {}: {why}", path.display());
    let pem = std::fs::read(path).map_err(|e| at(format!("cannot be read ({e})")))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| at(format!("is not a PEM certificate bundle ({})", chain(&e))))?;
    if certs.is_empty() {
        return Err(at(
            "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()
        ));
    }
    Ok(pem)
}

/// The HTTP client of outgoing calls, with the body cap they share.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub client: reqwest::Client,
    pub max_response_bytes: u64,
}

impl Outgoing {
    /// The client: rustls with the system's roots plus `ca_file`'s, no redirects followed, the
    /// connect timeout, `https_only`. An unreadable or invalid CA file is an error naming
    /// `outgoing.ca_file`.
    pub fn new(cfg: &OutgoingConfig) -> Result<Self, String> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
            .https_only(cfg.https_only)
            .user_agent(concat!("kefu/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = cfg.ca_pem()? {
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string())?;
            b = b.tls_certs_merge(certs);
        }
        let client = b.build().map_err(|e| match &cfg.ca_file {
            Some(p) => format!(
                "outgoing.ca_file {}: the HTTP client refused it ({})",
                p.display(),
                chain(&e)
            ),
            None => format!("building the outgoing HTTP client: {}", chain(&e)),
        })?;
        Ok(Self {
            client,
            max_response_bytes: cfg.max_response_bytes,
        })
    }
}

/// Why a reply is not taken as one: a redirect (3xx), which is never followed. `None` for
/// any other status.
pub fn redirect_refusal(resp: &reqwest::Response) -> Option<String> {
    let status = resp.status();
    if !status.is_redirection() {
        return None;
    }
    let to = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map_or(String::new(), |l| format!(" to {l}"));
    Some(format!(
        "answered a redirect ({status}{to}); redirects are not followed"
    ))
}

/// Reads a reply's body, refusing one over `max` bytes: by its `Content-Length` before reading
/// anything, else as soon as what arrived passes the cap (the rest is never read).
pub async fn read_capped(mut resp: reqwest::Response, max: u64) -> Result<Vec<u8>, String> {
    let too_large =
        || format!("its reply is larger than outgoing.max_response_bytes ({max} bytes): refused");
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading its reply failed: {}", chain(&e)))?
    {
        if (body.len() + chunk.len()) as u64 > max {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error with its causes (`error sending request: …: invalid peer certificate: …`):
/// reqwest's own message leaves out why a connection failed.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_ca_file_is_an_error_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = |p: &Path| OutgoingConfig {
            ca_file: Some(p.to_path_buf()),
            ..OutgoingConfig::default()
        };
        let missing = dir.path().join("missing.pem");
        let e = cfg(&missing).validate().unwrap_err();
        assert!(
            e.starts_with("outgoing.ca_file") && e.contains("cannot be read"),
            "{e}"
        );
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        let e = cfg(&junk).validate().unwrap_err();
        assert!(
            e.starts_with("outgoing.ca_file") && e.contains("no PEM certificate"),
            "{e}"
        );
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = cfg(&broken).validate().unwrap_err();
        assert!(e.starts_with("outgoing.ca_file"), "{e}");
        assert!(OutgoingConfig::default().validate().is_ok());
        let zero = OutgoingConfig {
            max_response_bytes: 0,
            ..OutgoingConfig::default()
        };
        assert!(
            zero.validate()
                .unwrap_err()
                .contains("outgoing.max_response_bytes")
        );
    }

    #[test]
    fn urls_must_be_http_and_https_when_asked() {
        let mut cfg = OutgoingConfig::default();
        assert!(cfg.check_url("k", "http://127.0.0.1:1/x").is_ok());
        assert!(cfg.check_url("k", "ftp://x").unwrap_err().starts_with("k "));
        cfg.https_only = true;
        assert!(cfg.check_url("k", "https://desk.example/x").is_ok());
        let e = cfg.check_url("k", "http://desk.example/x").unwrap_err();
        assert!(e.contains("outgoing.https_only"), "{e}");
    }
}
