//! `kefu eval pairs`, `kefu eval rewrite` and `kefu eval recommend` on small files.

mod common;

use std::io::Write;

#[test]
fn eval_pairs_prints_json_last_and_separates_paraphrases() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("pairs.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for (a, b, label) in [
        ("怎么申请退款", "我想退货退钱怎么操作", 1),
        ("订单什么时候发货", "我买的东西多久能寄出", 1),
        (
            "How do I reset my password?",
            "I forgot my password, what should I do",
            1,
        ),
        ("怎么申请退款", "今天天气怎么样", 0),
        ("How do I reset my password?", "Do you sell gift cards?", 0),
        ("订单什么时候发货", "你们公司在哪个城市", 0),
    ] {
        writeln!(f, "{}", serde_json::json!({"a": a, "b": b, "label": label})).unwrap();
    }
    drop(f);
    let stdout = common::run_ok(
        common::kefu()
            .args(["eval", "pairs", "--json", "--data"])
            .arg(&path)
            .arg("--model")
            .arg(common::model_dir()),
    );
    let last = stdout.lines().last().expect("a JSON line");
    let r: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(r["n"], 6);
    assert_eq!(r["positives"], 3);
    assert_eq!(r["interrupted"], false);
    assert_eq!(r["roc_auc"].as_f64().unwrap(), 1.0, "{r}");
    assert_eq!(r["best_accuracy"].as_f64().unwrap(), 1.0, "{r}");
    assert!(r["mean_cosine_positive"].as_f64() > r["mean_cosine_negative"].as_f64());
    assert_eq!(r["threshold_from"], "cross_validation");
    // Perfectly ranked binary labels, three of each: Spearman 0.8783 (ties share ranks).
    assert!(
        (r["spearman"].as_f64().unwrap() - 0.8783).abs() < 1e-3,
        "{r}"
    );

    // With --dev the threshold comes from there; separable here, so everything is right.
    let dev = tmp.path().join("dev.jsonl");
    std::fs::copy(&path, &dev).unwrap();
    let stdout = common::run_ok(
        common::kefu()
            .args(["eval", "pairs", "--json", "--data"])
            .arg(&path)
            .arg("--dev")
            .arg(&dev)
            .arg("--encoder")
            .arg(common::model_dir()),
    );
    let r: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(r["threshold_from"], "dev");
    assert_eq!(
        (r["accuracy"].as_f64(), r["f1"].as_f64()),
        (Some(1.0), Some(1.0)),
        "{r}"
    );
    let t = r["threshold"].as_f64().unwrap();
    assert!(
        t < r["mean_cosine_positive"].as_f64().unwrap()
            && t > r["mean_cosine_negative"].as_f64().unwrap(),
        "{r}"
    );
}

#[test]
fn eval_pairs_names_the_bad_line() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("pairs.jsonl");
    std::fs::write(
        &path,
        "{\"a\": \"x\", \"b\": \"y\", \"label\": 1}\n{\"a\": \"x\", \"label\": 1}\n",
    )
    .unwrap();
    let out = common::kefu()
        .args(["eval", "pairs", "--data"])
        .arg(&path)
        .arg("--model")
        .arg(common::model_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pairs.jsonl:2"), "{err}");
}

#[test]
fn eval_rewrite_scores_kefu_and_both_baselines() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("rewrite.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for (context, utterance, rewrite) in [
        (
            ["马云是谁", "做过中国首富也是有名的慈善家"],
            "他是共产党员吗",
            "马云是共产党员吗",
        ),
        (
            ["周杰伦是谁", "感觉还是和蔡依林最配"],
            "他最好听的歌是",
            "周杰伦最好听的歌是",
        ),
        (
            ["Do you ship to Canada?", "Yes, in 5-10 days."],
            "what about Japan?",
            "Do you ship to Japan?",
        ),
        (
            ["今天北京天气怎么样", "晴，最高气温12度"],
            "上海呢",
            "今天上海天气怎么样",
        ),
    ] {
        let row =
            serde_json::json!({"context": context, "utterance": utterance, "rewrite": rewrite});
        writeln!(f, "{row}").unwrap();
    }
    drop(f);
    let stdout = common::run_ok(
        common::kefu()
            .args(["eval", "rewrite", "--json", "--data"])
            .arg(&path)
            .arg("--model")
            .arg(common::model_dir()),
    );
    let r: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(r["n"], 4);
    assert_eq!(r["kb_entries"], 4);
    let bare = &r["baselines"]["bare"];
    let concat = &r["baselines"]["concat"];
    // No bare utterance is its own rewrite; kefu restores at least the three simple ones.
    assert_eq!(bare["exact_match"], 0.0, "{r}");
    assert!(r["exact_match"].as_f64().unwrap() >= 0.75, "{r}");
    for k in ["char_f1", "retrieval_agreement"] {
        let ours = r[k].as_f64().unwrap();
        assert!(ours >= bare[k].as_f64().unwrap(), "{k}: {r}");
        assert!(ours >= concat[k].as_f64().unwrap(), "{k}: {r}");
    }
    assert_eq!(r["retrieval_agreement"].as_f64().unwrap(), 1.0, "{r}");
}

#[test]
fn eval_recommend_on_the_demo_shop_beats_popularity() {
    let demo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets/demo/recommend");
    let tmp = tempfile::tempdir().unwrap();
    for split in ["last", "last20"] {
        let report = tmp.path().join(split);
        let stdout = common::run_ok(
            common::kefu()
                .args([
                    "eval",
                    "recommend",
                    "--json",
                    "--split",
                    split,
                    "--interactions",
                ])
                .arg(demo.join("interactions.csv"))
                .arg("--items")
                .arg(demo.join("items.jsonl"))
                .arg("--report")
                .arg(&report),
        );
        let summary = std::fs::read_to_string(report.join("summary.json")).unwrap();
        assert!(summary.contains("recency_ease"));
        let per = std::fs::read_to_string(report.join("per_customer.csv")).unwrap();
        assert!(per.starts_with("user_id,held_out,top_10,hits"), "{per}");
        assert_eq!(
            per.lines().count(),
            351,
            "a header and one row per customer"
        );
        let r: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(r["split"], split);
        assert_eq!(r["users"], 350);
        assert_eq!(
            r["items"], 299,
            "catalogue items without sales are ranked too"
        );
        assert!(r["chosen"]["tried"].as_u64().unwrap() > 1);
        let pop = &r["popularity"];
        for k in ["hr_at_10", "ndcg_at_10", "recall_at_10", "coverage_at_10"] {
            assert!(
                r[k].as_f64().unwrap() > pop[k].as_f64().unwrap(),
                "{split} {k}: {r}"
            );
        }
    }
}

#[test]
fn eval_recommend_names_bad_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("log.csv");
    std::fs::write(
        &path,
        "user_id,item_id,rating,timestamp\nu1,a,5,100\nu1,b,x,101\n,c,1,102\nu2,a,4,yesterday\n",
    )
    .unwrap();
    let out = common::kefu()
        .args(["eval", "recommend", "--interactions"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "3 bad line(s)",
        "line 3: rating",
        "line 4: user_id",
        "line 5: timestamp",
    ] {
        assert!(err.contains(want), "{want}: {err}");
    }
}
