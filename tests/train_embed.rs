//! `kefu train embed`: a few contrastive steps on tiny hand-made pairs with the real model,
//! checkpoint and `--resume`, and the tuned directory loading like any other model.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{Device, Tensor};

const PAIRS: &[(&str, &str, u8)] = &[
    ("怎么申请退款", "我想退货退钱怎么操作", 1),
    ("怎么申请退款", "怎么修改收货地址", 0),
    ("订单什么时候发货", "我买的东西多久能寄出", 1),
    ("订单什么时候发货", "订单可以取消吗", 0),
    ("花呗怎么还款", "花呗如何还钱", 1),
    ("花呗怎么还款", "借呗怎么还款", 0),
    ("发票怎么开", "可以开发票吗", 1),
    ("发票怎么开", "发票抬头写错了", 0),
    ("会员怎么取消自动续费", "不想自动续费了", 1),
    ("会员怎么取消自动续费", "会员有什么权益", 0),
    ("How do I reset my password?", "I forgot my password", 1),
    (
        "How do I reset my password?",
        "How do I change my email?",
        0,
    ),
    ("Where is my parcel?", "Track my order", 1),
    ("Where is my parcel?", "Cancel my order", 0),
    (
        "Can I pay with a credit card?",
        "Do you accept credit cards?",
        1,
    ),
    (
        "Can I pay with a credit card?",
        "Can I pay in installments?",
        0,
    ),
];

fn write_pairs(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    for (a, b, label) in PAIRS {
        writeln!(f, "{}", serde_json::json!({"a": a, "b": b, "label": label})).unwrap();
    }
}

fn write_kb(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    for (id, q, similar, cat) in [
        (
            "k1",
            "退款多久到账",
            vec!["钱什么时候退回来", "退款还没到"],
            "refunds",
        ),
        ("k2", "退款可以退到银行卡吗", vec![], "refunds"),
        (
            "k3",
            "怎么联系人工客服",
            vec!["转人工", "我要找真人客服"],
            "service",
        ),
    ] {
        let e = serde_json::json!({"id": id, "question": q, "similar": similar,
            "answer": "…", "category": cat});
        writeln!(f, "{e}").unwrap();
    }
}

/// The hand-made pairs and KB files in `dir`, and where the tuned model goes.
fn inputs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (pairs, kb) = (dir.join("pairs.jsonl"), dir.join("kb.jsonl"));
    write_pairs(&pairs);
    write_kb(&kb);
    (pairs, kb, dir.join("tuned"))
}

fn train(args: &[&str], pairs: &Path, kb: &Path, out: &Path) -> std::process::Output {
    common::kefu()
        .args(["train", "embed", "--pairs"])
        .arg(pairs)
        .arg("--kb")
        .arg(kb)
        .arg("--base")
        .arg(common::model_dir())
        .arg("--out")
        .arg(out)
        .args([
            "--layers",
            "1",
            "--batch-size",
            "4",
            "--learning-rate",
            "2e-4",
        ])
        .args(args)
        .output()
        .expect("running kefu")
}

fn card(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("training.json")).unwrap()).unwrap()
}

fn tensor(st: &MmapedSafetensors, name: &str) -> Vec<f32> {
    let t: Tensor = st.load(name, &Device::Cpu).unwrap();
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// `kefu eval pairs --json` on `pairs` with the model in `out`: its JSON report.
fn eval_pairs(pairs: &Path, out: &Path) -> serde_json::Value {
    let stdout = common::run_ok(
        common::kefu()
            .args(["eval", "pairs", "--json", "--data"])
            .arg(pairs)
            .arg("--encoder")
            .arg(out),
    );
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

/// Checks the tuned model in `out` against the base: the same tensors, `changed` ones differing,
/// `same` ones equal. Returns the tuned weights.
fn against_base(out: &Path, changed: &[&str], same: &[&str]) -> MmapedSafetensors {
    let base =
        unsafe { MmapedSafetensors::new(common::model_dir().join("model.safetensors")) }.unwrap();
    let tuned = unsafe { MmapedSafetensors::new(out.join("model.safetensors")) }.unwrap();
    assert_eq!(base.tensors().len(), tuned.tensors().len());
    for name in changed {
        assert_ne!(tensor(&base, name), tensor(&tuned, name), "{name}");
    }
    for name in same {
        assert_eq!(tensor(&base, name), tensor(&tuned, name), "{name}");
    }
    tuned
}

#[test]
fn trains_top_layer_resumes_and_loads_as_a_model() {
    let tmp = tempfile::tempdir().unwrap();
    let (pairs, kb, out) = inputs(tmp.path());

    // Epoch 1: 8 pair examples + 4 KB examples, batches of 4: 3 steps.
    let o = train(&["--epochs", "1"], &pairs, &kb, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c = card(&out);
    assert_eq!(c["examples"], 12, "{c}");
    assert_eq!(c["steps"], 3, "{c}");
    assert_eq!(c["layers_tuned"], 1);
    assert!(c["resumed_from_step"].is_null());
    assert_eq!(c["data"].as_array().unwrap().len(), 2);
    assert!(Path::new(&format!("{}.checkpoint", out.display())).is_dir());

    // Other options than the checkpoint's: refused, naming the difference.
    let o = train(
        &["--epochs", "3", "--resume", "--seed", "7"],
        &pairs,
        &kb,
        &out,
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("seed (checkpoint 42, now 7)"), "{err}");

    // Two more epochs from the checkpoint: steps 3..9.
    let o = train(&["--epochs", "3", "--resume"], &pairs, &kb, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c = card(&out);
    assert_eq!(c["resumed_from_step"], 3, "{c}");
    assert_eq!(c["steps"], 9, "{c}");
    assert_eq!(c["steps_this_run"], 6, "{c}");
    let (first, last) = (
        c["initial_loss"].as_f64().unwrap(),
        c["final_loss"].as_f64().unwrap(),
    );
    assert!(last < first, "loss {first} -> {last}");
    assert_eq!(
        c["base"]["weights_sha256"].as_str().unwrap().len(),
        64,
        "{c}"
    );

    // The top layer changed, everything else is the base's.
    against_base(
        &out,
        &[
            "encoder.layer.11.attention.self.query.weight",
            "encoder.layer.11.output.dense.weight",
        ],
        &[
            "encoder.layer.10.attention.self.query.weight",
            "encoder.layer.10.output.LayerNorm.bias",
            "encoder.layer.0.output.dense.weight",
            "embeddings.LayerNorm.weight",
        ],
    );

    // It loads like any model: eval pairs (default engine) and embed.
    let r = eval_pairs(&pairs, &out);
    let version = r["model"].as_str().unwrap();
    assert!(version.starts_with("multilingual-e5-small-tuned@"), "{r}");
    assert_eq!(version, c["model_version"]);
    // The hard negatives here are close paraphrase look-alikes (花呗/借呗): just better than chance.
    assert!(r["roc_auc"].as_f64().unwrap() > 0.5, "{r}");
    let stdout = common::run_ok(
        common::kefu()
            .args(["embed", "怎么申请退款", "--model"])
            .arg(&out),
    );
    let v: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    assert_eq!(v["embedding"].as_array().unwrap().len(), 384);
}

#[test]
fn bad_pairs_line_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let pairs = tmp.path().join("pairs.jsonl");
    std::fs::write(
        &pairs,
        "{\"a\": \"x\", \"b\": \"y\", \"label\": 1}\n{\"a\": \"x\", \"label\": 1}\n",
    )
    .unwrap();
    let out = tmp.path().join("tuned");
    let o = common::kefu()
        .args(["train", "embed", "--pairs"])
        .arg(&pairs)
        .arg("--base")
        .arg(common::model_dir())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("pairs.jsonl:2"), "{err}");
    assert!(!out.exists());

    std::fs::write(&pairs, "{\"a\": \"x\", \"b\": \"y\", \"label\": 3}\n").unwrap();
    let o = common::kefu()
        .args(["train", "embed", "--pairs"])
        .arg(&pairs)
        .arg("--base")
        .arg(common::model_dir())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("pairs.jsonl:1: label must be 0 or 1"), "{err}");
}

#[test]
fn mines_hard_negatives_with_the_starting_model() {
    let tmp = tempfile::tempdir().unwrap();
    let (pairs, kb, out) = inputs(tmp.path());
    let o = train(&["--mine-negatives", "2"], &pairs, &kb, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c = card(&out);
    // 12 examples over 22 texts with a positive; each gets at most 2 mined negatives.
    let mined = c["mined_negatives"].as_u64().unwrap();
    assert!(mined > 0 && mined <= 2 * 22, "{c}");
    assert_eq!(c["options"]["mine_negatives"], 2, "{c}");
    assert_eq!(c["examples_with_hard_negatives"], 12, "{c}");
    // The checkpoint remembers the setting: resuming without it is refused.
    let o = train(&["--epochs", "2", "--resume"], &pairs, &kb, &out);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("mine-negatives (checkpoint 2, now 0)"),
        "{err}"
    );
}

#[test]
fn trains_adapters_and_merges_them_into_the_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let (pairs, kb, out) = inputs(tmp.path());
    let o = train(&["--adapter-rank", "4", "--epochs", "3"], &pairs, &kb, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let c = card(&out);
    // One layer, six linear maps, rank 4: 4 · (in + out) each.
    let per_layer = 4 * (4 * (384 + 384) + 2 * (384 + 1536));
    assert_eq!(c["trained_parameters"], per_layer, "{c}");
    assert_eq!(c["options"]["adapter_rank"], 4, "{c}");
    let (first, last) = (
        c["initial_loss"].as_f64().unwrap(),
        c["final_loss"].as_f64().unwrap(),
    );
    assert!(last < first, "loss {first} -> {last}");

    // The adapters are merged into the top layer's linear maps; its biases and layer norms,
    // and every other layer, are the base's.
    let tuned = against_base(
        &out,
        &[
            "encoder.layer.11.attention.self.query.weight",
            "encoder.layer.11.intermediate.dense.weight",
            "encoder.layer.11.output.dense.weight",
        ],
        &[
            "encoder.layer.11.attention.self.query.bias",
            "encoder.layer.11.output.LayerNorm.weight",
            "encoder.layer.10.attention.self.query.weight",
            "embeddings.word_embeddings.weight",
        ],
    );
    assert!(
        tuned.tensors().iter().all(|(n, _)| !n.contains("lora")),
        "no adapter tensors in the model"
    );

    // A checkpoint of adapters does not resume plain training.
    let o = train(&["--epochs", "4", "--resume"], &pairs, &kb, &out);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("adapter-rank (checkpoint 4, now 0)"), "{err}");

    // The merged model serves like any other.
    let r = eval_pairs(&pairs, &out);
    assert_eq!(r["model"], c["model_version"], "{r}");
}
