//! Helpers shared by the integration tests: the real model and the real server binary.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a test waits for background work of the server (index builds, the demo intent
/// models' first training, model reloads) before calling it stuck. Generous on purpose: these
/// are not timings (benchmarks measure those) and CI runs many such servers at once on 2 cores.
pub const BACKGROUND_WAIT: Duration = Duration::from_secs(600);

/// The default model directory, fetched by `kefu model fetch` (the README's test command does
/// it first). `KEFU_TEST_MODEL` points elsewhere.
pub fn model_dir() -> PathBuf {
    let dir = std::env::var("KEFU_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/multilingual-e5-small")
        });
    assert!(
        dir.join("model.safetensors").exists(),
        "the default model is missing at {}: run `cargo run --release -- model fetch` first",
        dir.display()
    );
    dir
}

pub fn kefu() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kefu"));
    // Tests must not pick up a developer's kefu.toml or environment.
    c.current_dir(std::env::temp_dir());
    for (k, _) in std::env::vars() {
        if k.starts_with("KEFU_") && k.contains("__") {
            c.env_remove(k);
        }
    }
    c
}

/// Runs `cmd`, fails the test with its stderr unless it succeeds, and returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("running kefu");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub data_dir: std::sync::Arc<tempfile::TempDir>,
    pub log: mpsc::Receiver<String>,
}

impl Server {
    /// Starts `kefu serve --port 0` with extra environment and waits for it to listen.
    pub fn start(model: &std::path::Path, env: &[(&str, &str)]) -> Server {
        Self::start_in(
            model,
            std::sync::Arc::new(tempfile::tempdir().unwrap()),
            env,
        )
    }

    /// Like [`Server::start`] on an existing data directory (e.g. a stopped server's).
    pub fn start_in(
        model: &std::path::Path,
        data_dir: std::sync::Arc<tempfile::TempDir>,
        env: &[(&str, &str)],
    ) -> Server {
        let mut cmd = kefu();
        cmd.args(["serve", "--port", "0", "--model"])
            .arg(model)
            .arg("--data-dir")
            .arg(data_dir.path())
            .env("KEFU_LOG", "info")
            // Training the demo intent models takes a while: only tests that want them do.
            .env("KEFU_INTENT__LOAD_DEMO", "false")
            // So does loading the demo shop for recommendations.
            .env("KEFU_RECOMMEND__LOAD_DEMO", "false")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting kefu serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[kefu] {line}");
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let base = loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("kefu serve did not report its address");
            if let Some(i) = line.find("listening on http://") {
                break line[i + "listening on ".len()..].trim().to_string();
            }
        };
        Server {
            child,
            base,
            data_dir,
            log: rx,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Waits until /readyz answers 200.
    pub async fn ready(&self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + BACKGROUND_WAIT;
        while Instant::now() < deadline {
            if let Ok(r) = client.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("kefu did not become ready");
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one JSON request; returns the status and the JSON body (null when there is none).
pub async fn call(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = c.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// `POST /v1/match`, waiting (on 503) for the index to be ready.
pub async fn matching(
    c: &reqwest::Client,
    s: &Server,
    body: serde_json::Value,
) -> serde_json::Value {
    let deadline = Instant::now() + BACKGROUND_WAIT;
    loop {
        let (st, v) = call(
            c,
            reqwest::Method::POST,
            s.url("/v1/match"),
            Some(body.clone()),
        )
        .await;
        if st == 200 {
            return v;
        }
        assert_eq!(st, 503, "{v}");
        assert!(Instant::now() < deadline, "index never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `POST /v1/match` until the response satisfies `ok` (a change applied by the background
/// index rebuild), returning it.
pub async fn matching_until(
    c: &reqwest::Client,
    s: &Server,
    body: serde_json::Value,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + BACKGROUND_WAIT;
    loop {
        let v = matching(c, s, body.clone()).await;
        if ok(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "the change never applied: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Python that runs the tests' outside tools (openapi-spec-validator, the OpenAI SDK,
/// schemathesis): `KEFU_TEST_PYTHON`, else a venv made under `target/test-venv` on first use,
/// one per list of [`PYTHON_TOOLS`] (a changed pin gets a fresh venv). Fails rather than
/// skipping, so that a check never passes unseen.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("KEFU_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
    // FNV-1a of the pins: stable across builds and toolchains.
    let pins = PYTHON_TOOLS.join(" ");
    let hash = pins.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let venvs = target.join("test-venv");
    let venv = venvs.join(format!("{hash:016x}"));
    let python = venv.join("bin/python");
    if python.exists() {
        return python;
    }
    std::fs::create_dir_all(&venvs).expect("creating target/test-venv");
    // Built aside and renamed into place, so that test binaries running at once never see a
    // half-made venv (the loser of the race uses the winner's).
    let tmp = venvs.join(format!("tmp.{}", std::process::id()));
    let run = |cmd: &mut Command| {
        let out = cmd.output().expect("running python3");
        assert!(
            out.status.success(),
            "making the test venv failed (set KEFU_TEST_PYTHON to a Python with {}):\n{}",
            PYTHON_TOOLS.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&tmp));
    run(Command::new(tmp.join("bin/python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(PYTHON_TOOLS));
    if std::fs::rename(&tmp, &venv).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(python.exists(), "no venv at {}", venv.display());
    python
}

/// What the tests that check kefu with outside tools install (pinned: their verdicts must not
/// change under us).
pub const PYTHON_TOOLS: &[&str] = &[
    "openapi-spec-validator==0.9.0",
    "openai==3.63.0",
    "schemathesis==4.32.5",
];

/// Runs `python -c script args…`; fails the test with its output unless it succeeds, and
/// returns its stdout.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("running the test Python");
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The example order system, started on a free port.
pub struct OrderSystem {
    child: Child,
    pub base: String,
}

impl OrderSystem {
    pub fn start(args: &[&str]) -> Self {
        let kefu = std::path::PathBuf::from(env!("CARGO_BIN_EXE_kefu"));
        let bin = kefu.with_file_name("examples").join("order_system");
        assert!(
            bin.exists(),
            "{} is missing: build it with `cargo build --release --example order_system`",
            bin.display()
        );
        let mut child = Command::new(bin)
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap()
            .to_string();
        OrderSystem {
            child,
            base: format!("http://{addr}"),
        }
    }
}

impl Drop for OrderSystem {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
