//! TLS to the outside, against real TLS servers made here (a CA of the test's own and a
//! certificate for 127.0.0.1 signed by it): the real server's hand-off webhook over HTTPS,
//! signed, and failing without the CA or on a redirect; business-flow calls over HTTPS with the
//! client kefu builds (redirects, the body cap); Redis sessions over `rediss://`.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use kefu::dialog::flows::{Flows, demo_flows};
use kefu::outgoing::{Outgoing, OutgoingConfig};

/// A CA and a server certificate for 127.0.0.1 it signed; the CA's PEM is in `ca_file`.
struct Pki {
    _dir: tempfile::TempDir,
    ca_file: PathBuf,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "kefu test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    Pki {
        _dir: dir,
        ca_file,
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// One request the HTTPS server received.
#[derive(Debug, Clone)]
struct Received {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

type Log = Arc<Mutex<Vec<Received>>>;

/// An HTTPS server on 127.0.0.1 with `pki`'s certificate that records every request:
/// `POST /desk` an agent desk (202); `POST /moved` redirects there (302); `GET
/// <prefix>/orders/{id}` an order system, where the prefix `/big` answers 2 MiB (with its
/// length), `/endless` a body that never ends, `/redirect` a redirect to the order.
async fn https_server(pki: &Pki) -> (String, Log) {
    let log: Log = Arc::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("https://{}", listener.local_addr().unwrap());
    let (seen, here) = (log.clone(), base.clone());
    let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let (seen, base) = (seen.clone(), here.clone());
        async move {
            let path = uri.path().to_string();
            seen.lock().unwrap().push(Received {
                method,
                path: path.clone(),
                headers,
                body,
            });
            let redirect =
                |to: String| (StatusCode::FOUND, [(header::LOCATION, to)], "").into_response();
            let id = path.rsplit('/').next().unwrap_or_default().to_string();
            if path == "/desk" {
                (StatusCode::ACCEPTED, "{\"received\":true}").into_response()
            } else if path == "/moved" {
                redirect(format!("{base}/desk"))
            } else if path.starts_with("/big/") {
                let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(2 << 20));
                ([(header::CONTENT_TYPE, "application/json")], huge).into_response()
            } else if path.starts_with("/endless/") {
                let chunks = futures_util::stream::repeat_with(|| {
                    Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 64 * 1024]))
                });
                Response::new(Body::from_stream(chunks))
            } else if path.starts_with("/redirect/") {
                redirect(format!("{base}/orders/{id}"))
            } else if path.starts_with("/orders/") {
                axum::Json(json!({"order_id": id, "status_zh": "已发货"})).into_response()
            } else {
                StatusCode::NOT_FOUND.into_response()
            }
        }
    };
    let app = axum::Router::new().fallback(handler);
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        pki.cert_pem.clone().into_bytes(),
        pki.key_pem.clone().into_bytes(),
    )
    .await
    .unwrap();
    listener.set_nonblocking(true).unwrap();
    let server = axum_server::from_tcp_rustls(listener, tls).unwrap();
    tokio::spawn(async move { server.serve(app.into_make_service()).await.unwrap() });
    (base, log)
}

fn requests_to(log: &Log, path: &str) -> Vec<Received> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|r| r.path == path)
        .cloned()
        .collect()
}

/// The Rust verifier of docs/WEBHOOKS.md, as a desk would write it.
fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance_secs: i64) -> bool {
    use hmac::{Hmac, Mac};
    use sha2::Sha256;
    let (mut t, mut v1) = (None, None);
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x.parse::<i64>().ok(),
            Some(("v1", x)) => v1 = hex::decode(x).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (now - t).abs() > tolerance_secs {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&v1).is_ok()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `POST /v1/chat`, waiting (on 503) for the model and the index.
async fn say(c: &reqwest::Client, s: &common::Server, session: &str, text: &str) -> Value {
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    loop {
        let (st, v) = common::call(
            c,
            reqwest::Method::POST,
            s.url("/v1/chat"),
            Some(json!({"session_id": session, "text": text})),
        )
        .await;
        if st == 200 {
            return v;
        }
        assert_eq!(st, 503, "{v}");
        assert!(Instant::now() < deadline, "chat never became ready: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The first log line of `s` containing `what`, within the wait.
fn log_line(s: &common::Server, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = s
            .log
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no log line with {what:?}"));
        if line.contains(what) {
            return line;
        }
    }
}

/// Starts kefu (empty KB, no intent models: a request for a person hands off by itself)
/// with `env`, and hands a conversation off.
async fn hand_off_with(env: &[(&str, &str)]) -> (common::Server, Value) {
    let mut all = vec![("KEFU_KB__LOAD_DEMO", "false")];
    all.extend_from_slice(env);
    let s = common::Server::start(&common::model_dir(), &all);
    let v = say(&reqwest::Client::new(), &s, "tls-1", "转人工").await;
    assert_eq!(v["action"], "handoff", "{v}");
    (s, v)
}

// The servers of these tests run on the test's runtime while the test waits on kefu's log
// (blocking): hence runtimes with worker threads.

const SECRET: &str = "kefu-test-webhook-secret-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_is_delivered_over_https_with_the_ca_file_and_signed() {
    let pki = pki();
    let (base, log) = https_server(&pki).await;
    let ca = pki.ca_file.to_str().unwrap();
    let url = format!("{base}/desk");
    let (s, v) = hand_off_with(&[
        ("KEFU_OUTGOING__CA_FILE", ca),
        ("KEFU_DIALOG__HANDOFF__WEBHOOK_URL", &url),
        ("KEFU_DIALOG__HANDOFF__WEBHOOK_SECRET", SECRET),
    ])
    .await;
    log_line(&s, "hand-off delivered to the agent desk");
    let got = requests_to(&log, "/desk");
    assert_eq!(got.len(), 1, "{got:?}");
    let r = &got[0];
    assert_eq!(r.method, Method::POST);
    let package = &v["handoff"];
    assert_eq!(
        r.headers["idempotency-key"].to_str().unwrap(),
        package["id"].as_str().unwrap()
    );
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
    let body: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(&body, package, "the package the chat returned");

    let sig = r.headers["x-kefu-signature"].to_str().unwrap();
    assert!(verify(SECRET.as_bytes(), sig, &r.body, now(), 300), "{sig}");
    let t: i64 = sig
        .strip_prefix("t=")
        .and_then(|x| x.split(',').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((now() - t).abs() <= 60, "a fresh timestamp: {t}");
    // It fails with another secret, another body, or outside the replay window.
    assert!(!verify(
        b"another-secret-0123456789",
        sig,
        &r.body,
        now(),
        300
    ));
    let mut tampered = r.body.to_vec();
    tampered.extend_from_slice(b" ");
    assert!(!verify(SECRET.as_bytes(), sig, &tampered, now(), 300));
    assert!(!verify(SECRET.as_bytes(), sig, &r.body, t + 301, 300));

    // The Python verifier of docs/WEBHOOKS.md agrees.
    let doc =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/WEBHOOKS.md"))
            .unwrap();
    let python = doc
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a Python block in docs/WEBHOOKS.md");
    let dir = tempfile::tempdir().unwrap();
    let body_file = dir.path().join("body");
    std::fs::write(&body_file, &r.body).unwrap();
    let check = format!(
        "{python}\nimport sys\nbody = open(sys.argv[3], 'rb').read()\n\
         print(verify(sys.argv[1], sys.argv[2], body), verify(sys.argv[1], sys.argv[2], body + b' '))\n"
    );
    let out = std::process::Command::new(
        std::env::var("KEFU_TEST_PYTHON").unwrap_or_else(|_| "python3".into()),
    )
    .arg("-c")
    .arg(&check)
    .arg(SECRET)
    .arg(sig)
    .arg(&body_file)
    .output()
    .expect("running python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "True False");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_file_the_delivery_fails_on_the_certificate_and_kefu_goes_on() {
    let pki = pki();
    let (base, log) = https_server(&pki).await;
    let url = format!("{base}/desk");
    let (mut s, _) = hand_off_with(&[
        ("KEFU_DIALOG__HANDOFF__WEBHOOK_URL", &url),
        ("KEFU_DIALOG__HANDOFF__WEBHOOK_RETRIES", "0"),
    ])
    .await;
    let line = log_line(&s, "hand-off could not be delivered");
    assert!(line.contains("certificate"), "{line}");
    assert!(
        requests_to(&log, "/desk").is_empty(),
        "no request got through"
    );
    assert!(
        s.child.try_wait().unwrap().is_none(),
        "kefu is still running"
    );
    let c = reqwest::Client::new();
    let v = say(&c, &s, "tls-2", "在吗").await;
    assert!(v["action"].is_string(), "still answering: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_redirects_is_not_followed() {
    let pki = pki();
    let (base, log) = https_server(&pki).await;
    let ca = pki.ca_file.to_str().unwrap();
    let url = format!("{base}/moved");
    let (s, _) = hand_off_with(&[
        ("KEFU_OUTGOING__CA_FILE", ca),
        ("KEFU_DIALOG__HANDOFF__WEBHOOK_URL", &url),
        ("KEFU_DIALOG__HANDOFF__WEBHOOK_SECRET", SECRET),
    ])
    .await;
    let line = log_line(&s, "hand-off could not be delivered");
    assert!(
        line.contains("redirect") && line.contains("302") && line.contains("/desk"),
        "{line}"
    );
    assert_eq!(requests_to(&log, "/moved").len(), 1, "not retried");
    assert!(requests_to(&log, "/desk").is_empty(), "not followed");
}

#[test]
fn a_bad_ca_file_stops_startup_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    for (file, why) in [
        (dir.path().join("missing.pem"), "cannot be read"),
        (junk, "no PEM certificate"),
    ] {
        let out = common::kefu()
            .args(["serve", "--port", "0", "--data-dir"])
            .arg(dir.path())
            .env("KEFU_OUTGOING__CA_FILE", &file)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("outgoing.ca_file") && err.contains(why),
            "{err}"
        );
    }
}

/// The demo's order-status flow, calling `base`; the call's outcome.
async fn order_status(http: &Outgoing, base: &str) -> Result<(u16, Value), String> {
    let mut flow = demo_flows().remove(0);
    assert_eq!(flow.name, "order_status");
    // Long enough that only the body cap, not the timeout, can stop an endless reply.
    flow.call.timeout_ms = 120_000;
    let flows = Flows::compile(vec![flow.clone()]).unwrap();
    let ctx = json!({"services": {"orders": base}, "slots": {"order_id": "KF2026112001"}});
    flows.call(http, &flow, &ctx, "tls-f1").await
}

fn with_ca(pki: &Pki) -> Outgoing {
    Outgoing::new(&OutgoingConfig {
        ca_file: Some(pki.ca_file.clone()),
        ..OutgoingConfig::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_calls_over_https_trust_the_ca_file_and_refuse_redirects_and_huge_replies() {
    let pki = pki();
    let (base, log) = https_server(&pki).await;
    let http = with_ca(&pki);

    let (status, body) = order_status(&http, &base).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["status_zh"], "已发货", "{body}");

    // Without the CA: the certificate is refused.
    let system_only = Outgoing::new(&OutgoingConfig::default()).unwrap();
    let e = order_status(&system_only, &base).await.unwrap_err();
    assert!(e.contains("certificate"), "{e}");

    // A redirect fails the call, named, without following it (or trying again).
    let before = requests_to(&log, "/orders/KF2026112001").len();
    let e = order_status(&http, &format!("{base}/redirect"))
        .await
        .unwrap_err();
    assert!(e.contains("redirect") && e.contains("302"), "{e}");
    assert_eq!(
        requests_to(&log, "/orders/KF2026112001").len(),
        before,
        "not followed"
    );
    assert_eq!(
        requests_to(&log, "/redirect/orders/KF2026112001").len(),
        1,
        "not retried"
    );

    // Bodies over outgoing.max_response_bytes (1 MiB): by their length, or while streaming
    // (a body that never ends is refused, not read until the call's timeout).
    for prefix in ["/big", "/endless"] {
        let e = order_status(&http, &format!("{base}{prefix}"))
            .await
            .unwrap_err();
        assert!(e.contains("outgoing.max_response_bytes"), "{prefix}: {e}");
    }
    // A larger cap takes the 2 MiB reply.
    let roomy = Outgoing::new(&OutgoingConfig {
        ca_file: Some(pki.ca_file.clone()),
        max_response_bytes: 4 << 20,
        ..OutgoingConfig::default()
    })
    .unwrap();
    let (status, body) = order_status(&roomy, &format!("{base}/big")).await.unwrap();
    assert_eq!(
        (status, body["pad"].as_str().unwrap().len()),
        (200, 2 << 20)
    );

    // https_only refuses plain http.
    let strict = Outgoing::new(&OutgoingConfig {
        https_only: true,
        ..OutgoingConfig::default()
    })
    .unwrap();
    let e = order_status(&strict, "http://127.0.0.1:9")
        .await
        .unwrap_err();
    assert!(e.contains("scheme"), "{e}");
}

/// A stand-in for Redis over TLS with `pki`'s certificate: GET, SET (with PX), DEL on a map;
/// PING; anything else +OK.
async fn rediss_server(pki: &Pki) -> String {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = vec![CertificateDer::from_pem_slice(pki.cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(pki.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("rediss://{}", listener.local_addr().unwrap());
    let data: Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>> = Arc::default();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, data) = (acceptor.clone(), data.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut conn = BufReader::new(tls);
                while let Some(cmd) = read_command(&mut conn).await {
                    let name = String::from_utf8_lossy(&cmd[0]).to_uppercase();
                    let reply: Vec<u8> = match name.as_str() {
                        "PING" => b"+PONG\r\n".to_vec(),
                        "GET" => match data.lock().unwrap().get(&cmd[1]) {
                            Some(v) => {
                                let mut r = format!("${}\r\n", v.len()).into_bytes();
                                r.extend_from_slice(v);
                                r.extend_from_slice(b"\r\n");
                                r
                            }
                            None => b"$-1\r\n".to_vec(),
                        },
                        "SET" => {
                            data.lock().unwrap().insert(cmd[1].clone(), cmd[2].clone());
                            b"+OK\r\n".to_vec()
                        }
                        "DEL" => {
                            let n = data.lock().unwrap().remove(&cmd[1]).is_some() as u8;
                            format!(":{n}\r\n").into_bytes()
                        }
                        _ => b"+OK\r\n".to_vec(),
                    };
                    let tls = conn.get_mut();
                    if tls.write_all(&reply).await.is_err() || tls.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

/// One RESP command (an array of bulk strings); `None` at the end of the stream.
async fn read_command<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Option<Vec<Vec<u8>>> {
    let mut line = String::new();
    r.read_line(&mut line).await.ok().filter(|&n| n > 0)?;
    let n: usize = line.trim().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(n);
    for _ in 0..n {
        line.clear();
        r.read_line(&mut line).await.ok()?;
        let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
        let mut buf = vec![0; len + 2];
        r.read_exact(&mut buf).await.ok()?;
        buf.truncate(len);
        args.push(buf);
    }
    Some(args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_travel_over_rediss_trusting_the_ca_file() {
    use kefu::dialog::session::{CustomerRef, RedisStore, Role, Session, SessionStore};
    let pki = pki();
    let url = rediss_server(&pki).await;
    let ca = std::fs::read(&pki.ca_file).unwrap();
    let ttl = Duration::from_secs(60);

    let store = RedisStore::connect(&url, "kefu:test:", ttl, Some(&ca))
        .await
        .unwrap();
    let mut s = Session::new("tls-r1".into(), CustomerRef::default(), None);
    s.push(Role::Customer, "转人工");
    store.put(&s).await.unwrap();
    let back = store.get("tls-r1").await.unwrap().expect("stored");
    assert_eq!(back.turns[0].text, "转人工");
    assert!(store.delete("tls-r1").await.unwrap());

    // Without the CA (the system's roots only) the certificate is refused.
    let e = match RedisStore::connect(&url, "kefu:test:", ttl, None).await {
        Ok(_) => panic!("connected without trusting the CA"),
        Err(e) => kefu::outgoing::chain(&e),
    };
    assert!(e.to_lowercase().contains("certificate"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kefu_serves_sessions_from_rediss_with_the_ca_file() {
    let pki = pki();
    let url = rediss_server(&pki).await;
    let ca = pki.ca_file.to_str().unwrap();
    let s = common::Server::start(
        &common::model_dir(),
        &[
            ("KEFU_KB__LOAD_DEMO", "false"),
            ("KEFU_DIALOG__STORE", "redis"),
            ("KEFU_DIALOG__REDIS_URL", &url),
            ("KEFU_OUTGOING__CA_FILE", ca),
        ],
    );
    // `sessions store="redis"` (with colours between the words).
    let line = log_line(&s, "\"redis\"");
    assert!(line.contains("sessions"), "{line}");
    let c = reqwest::Client::new();
    let (st, v) = common::call(&c, reqwest::Method::GET, s.url("/v1/sessions/nobody"), None).await;
    assert_eq!(st, 404, "looked up in the TLS store: {v}");

    // Without the CA the start fails on the certificate, naming the setting.
    let dir = tempfile::tempdir().unwrap();
    let out = common::kefu()
        .args(["serve", "--port", "0", "--model"])
        .arg(common::model_dir())
        .arg("--data-dir")
        .arg(dir.path())
        .env("KEFU_KB__LOAD_DEMO", "false")
        .env("KEFU_DIALOG__STORE", "redis")
        .env("KEFU_DIALOG__REDIS_URL", &url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dialog.redis_url") && err.to_lowercase().contains("certificate"),
        "{err}"
    );
}
