//! `kefu bench http` briefly against the real server it starts: the report's shape, and that
//! the loaded server answered nothing but 2xx, 429 and 503 (those with `Retry-After`).

mod common;

use serde_json::Value;

#[test]
fn bench_http_loads_chat_and_match_and_reports_each_level() {
    let out = common::run_ok(
        common::kefu()
            .args([
                "bench",
                "http",
                "--seconds",
                "2",
                "--concurrency",
                "1,16",
                "--json",
                "--model",
            ])
            .arg(common::model_dir())
            // The server the bench starts inherits these: no demo intent training (slow).
            .env("KEFU_INTENT__LOAD_DEMO", "false")
            .env("KEFU_RECOMMEND__LOAD_DEMO", "false"),
    );
    let r: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(
        r["model"]
            .as_str()
            .unwrap()
            .starts_with("multilingual-e5-small@"),
        "{r}"
    );
    assert_eq!(r["routes"], serde_json::json!(["/v1/chat", "/v1/match"]));
    assert_eq!(r["unique_texts"], true);
    assert_eq!(r["problems"], 0, "{r}");
    assert!(r["server_peak_rss_mib"].as_f64().unwrap() > 0.0, "{r}");
    let levels = r["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 2);
    for (l, c) in levels.iter().zip([1, 16]) {
        assert_eq!(l["concurrency"], c);
        let statuses = l["statuses"].as_object().unwrap();
        for s in statuses.keys() {
            assert!(["200", "429", "503"].contains(&s.as_str()), "{l}");
        }
        let total: u64 = statuses.values().map(|n| n.as_u64().unwrap()).sum();
        assert_eq!(l["requests"].as_u64().unwrap(), total);
        assert!(l["ok"].as_u64().unwrap() > 0, "{l}");
        assert_eq!(l["unexpected"], 0);
        assert_eq!(l["missing_retry_after"], 0);
        for k in [
            "throughput_rps",
            "p50_ms",
            "p95_ms",
            "p99_ms",
            "max_ms",
            "seconds",
        ] {
            assert!(l[k].as_f64().unwrap() > 0.0, "{k}: {l}");
        }
        assert!(l["p50_ms"].as_f64() <= l["p95_ms"].as_f64());
        assert!(l["p95_ms"].as_f64() <= l["p99_ms"].as_f64());
        let routes: Vec<&str> = l["by_route"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert!(r["ok"].as_u64().unwrap() > 0, "{r}");
                r["route"].as_str().unwrap()
            })
            .collect();
        assert_eq!(routes, ["/v1/chat", "/v1/match"]);
        assert!(l["server_rss_mib"].as_f64().unwrap() > 0.0, "{l}");
        assert!(l["health"]["probes"].as_u64().unwrap() >= 1, "{l}");
        assert!(l["health"]["failures"].is_u64() && l["health"]["max_ms"].is_f64());
    }
}

#[test]
fn bench_http_refuses_bad_levels() {
    let out = common::kefu()
        .args([
            "bench",
            "http",
            "--concurrency",
            "0",
            "--url",
            "http://127.0.0.1:9",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--concurrency"), "{err}");
}

#[test]
fn bench_http_loads_the_channels_signed_as_their_platforms() {
    let routes = [
        "/channels/web/turn",
        "/channels/sms",
        "/channels/wechat/bench",
    ];
    let out = common::run_ok(
        common::kefu()
            .args([
                "bench",
                "http",
                "--seconds",
                "2",
                "--concurrency",
                "4",
                "--routes",
                &routes.join(","),
                "--json",
                "--model",
            ])
            .arg(common::model_dir())
            .env("KEFU_INTENT__LOAD_DEMO", "false")
            .env("KEFU_RECOMMEND__LOAD_DEMO", "false"),
    );
    let r: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(r["problems"], 0, "{r}");
    let level = &r["levels"][0];
    // Signed as each platform signs: every request answered (a refused signature is a 403).
    let statuses = level["statuses"].as_object().unwrap();
    assert_eq!(statuses.keys().collect::<Vec<_>>(), ["200"], "{level}");
    for (run, route) in level["by_route"].as_array().unwrap().iter().zip(routes) {
        assert_eq!(run["route"], route);
        assert!(run["ok"].as_u64().unwrap() > 0, "{run}");
    }
    // A server that was not started by the bench needs the secrets to sign with.
    let out = common::kefu()
        .args([
            "bench",
            "http",
            "--routes",
            "/channels/sms",
            "--url",
            "http://127.0.0.1:9",
        ])
        .env_remove("KEFU_BENCH_SMS_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--sms-secret"), "{err}");
}
