//! A real `kefu serve` started by a benchmark: this same binary, on port 0, stopped when
//! dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

pub struct ServerProc {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl ServerProc {
    /// Starts `kefu serve --port 0` on `data_dir` with `model`; the environment is inherited,
    /// `env` is added. Returns once the server reports its address (not yet ready).
    pub fn start(data_dir: &Path, model: &Path, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the kefu binary")?;
        let mut cmd = Command::new(exe);
        cmd.args(["serve", "--port", "0", "--data-dir"])
            .arg(data_dir)
            .arg("--model")
            .arg(model)
            .env("KEFU_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("starting kefu serve")?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the log to its end, so that the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find("listening on http://") {
                    let _ = tx.send(line[i + "listening on ".len()..].trim().to_string());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .context("kefu serve did not report its address")?;
        Ok(Self { child, base })
    }

    /// Waits until `/readyz` answers 200 (the model, the KB index and the intent models are
    /// up; the demo intent models train on a data directory's first start).
    pub async fn ready(&self, limit: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            anyhow::ensure!(
                started.elapsed() < limit,
                "kefu serve was not ready within {} s",
                limit.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stand-in for the channels' platforms while a bench loads them: answers 200 (with WeChat's
/// `errcode: 0` and a token) to whatever kefu sends. Returns its base URL.
pub async fn sink() -> anyhow::Result<String> {
    async fn ok() -> axum::Json<serde_json::Value> {
        axum::Json(serde_json::json!({"errcode": 0, "access_token": "bench", "expires_in": 7200}))
    }
    let app = axum::Router::new().fallback(ok);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(base)
}

/// The started server's configuration: `cfg` with the WeChat account `bench` (signed with
/// `token`) and SMS (signed with `secret`, sent to `sink`). Written to a temporary file for
/// `KEFU_CONFIG`.
pub fn channels_config(
    cfg: &crate::config::Config,
    token: &str,
    secret: &str,
    sink: &str,
) -> anyhow::Result<tempfile::NamedTempFile> {
    let mut cfg = cfg.clone();
    cfg.channels.wechat.retain(|a| a.account != "bench");
    cfg.channels.wechat.push(toml::from_str(&format!(
        "account = \"bench\"\ntoken = \"{token}\"\napp_id = \"wxbench\"\napp_secret = \"bench\"\napi_base = \"{sink}\"\n"
    ))?);
    cfg.channels.sms = toml::from_str(&format!(
        "enabled = true\nsecret = \"{secret}\"\nfrom = \"+10000\"\n[send]\nmethod = \"POST\"\nurl = \"{sink}/sms\"\nbody = {{ to = \"{{{{ to }}}}\", text = \"{{{{ text }}}}\" }}\n"
    ))?;
    let file = tempfile::Builder::new().suffix(".toml").tempfile()?;
    std::fs::write(file.path(), toml::to_string(&cfg)?)?;
    Ok(file)
}
