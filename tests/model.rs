//! The real default model: reference cosines, tokenizer padding and truncation, batching.

mod common;

use std::sync::Arc;

use kefu::analytics::metrics::Metrics;
use kefu::config::EmbedConfig;
use kefu::embed::{CpuPath, Embedder, EngineKind, Kernel, Weights, cosine};

/// Cosines from an independent float implementation of the same model (tolerance 0.01).
const REFERENCE: &[(&str, &str, f32)] = &[
    ("怎么申请退款", "我想退货退钱怎么操作", 0.926),
    ("订单什么时候发货", "我买的东西多久能寄出", 0.903),
    (
        "How do I reset my password?",
        "I forgot my password, what should I do",
        0.917,
    ),
    ("怎么申请退款", "会员积分怎么兑换", 0.847),
];

fn embedder(engine: EngineKind, weights: Weights) -> Embedder {
    let cfg = EmbedConfig {
        engine,
        weights,
        cache_size: 0,
        ..Default::default()
    };
    Embedder::load(&common::model_dir(), &cfg, Arc::new(Metrics::new())).unwrap()
}

fn check_reference(e: &Embedder) {
    for (a, b, want) in REFERENCE {
        let out = e.embed_blocking(&[a.to_string(), b.to_string()]).unwrap();
        assert_eq!(out[0].vector.len(), 384);
        let got = cosine(&out[0].vector, &out[1].vector);
        assert!(
            (got - want).abs() <= 0.01,
            "{a} / {b}: cosine {got:.4}, reference {want}"
        );
    }
}

#[test]
fn reference_cosines_kefu_engine_int8() {
    let e = embedder(EngineKind::Kefu, Weights::Int8);
    eprintln!("auto path: {:?}", e.engine());
    if Kernel::best() != Kernel::Scalar {
        assert_eq!(e.engine().kernel.as_deref(), Some(Kernel::best().name()));
    }
    // The default model is published in Q4_0: its word table is kept in those exact blocks.
    assert_eq!(e.engine().word_table.as_deref(), Some("q4_0"));
    check_reference(&e);
}

/// Every int8 path this CPU runs, forced one at a time (`embed.cpu`), stays within the
/// reference tolerance.
#[test]
fn reference_cosines_on_every_int8_path_this_cpu_has() {
    let mut ran = Vec::new();
    for cpu in [
        CpuPath::Avx512,
        CpuPath::Avxvnni,
        CpuPath::Avx2,
        CpuPath::Neon,
        CpuPath::Scalar,
    ] {
        if Kernel::select(cpu).is_err() {
            eprintln!("{cpu:?}: this CPU lacks it");
            continue;
        }
        let cfg = EmbedConfig {
            cpu,
            cache_size: 0,
            ..Default::default()
        };
        let e = Embedder::load(&common::model_dir(), &cfg, Arc::new(Metrics::new())).unwrap();
        let kernel = e.engine().kernel.clone().expect("int8 engine");
        eprintln!("{cpu:?}: kernel {kernel}");
        check_reference(&e);
        ran.push(kernel);
    }
    assert!(ran.contains(&"scalar".to_string()), "{ran:?}");
    assert!(ran.contains(&Kernel::best().name().to_string()), "{ran:?}");
}

#[test]
fn reference_cosines_kefu_engine_q8() {
    check_reference(&embedder(EngineKind::Kefu, Weights::Q8_0));
}

#[test]
fn reference_cosines_candle_bert_model() {
    check_reference(&embedder(EngineKind::Candle, Weights::F32));
}

#[test]
fn engines_agree_vector_by_vector() {
    let texts: Vec<String> = ["退货运费谁承担", "Where is my order?", "积分什么时候到账"]
        .map(String::from)
        .to_vec();
    let a = embedder(EngineKind::Candle, Weights::F32)
        .embed_blocking(&texts)
        .unwrap();
    let b = embedder(EngineKind::Kefu, Weights::Q8_0)
        .embed_blocking(&texts)
        .unwrap();
    for (x, y) in a.iter().zip(&b) {
        let c = cosine(&x.vector, &y.vector);
        assert!(c > 0.995, "engines disagree: cosine {c}");
    }
}

#[test]
fn vectors_are_unit_length() {
    let e = embedder(EngineKind::Kefu, Weights::Int8);
    let out = e.embed_blocking(&["你好".to_string()]).unwrap();
    let norm: f32 = out[0].vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
}

#[test]
fn tokenizer_adds_prefix_and_does_not_pad() {
    let e = embedder(EngineKind::Kefu, Weights::Int8);
    let short = e.tokenize("退款").unwrap();
    // <s> query : ▁ 退款 </s>: a handful of tokens, not a fixed 128/512
    assert!(short.len() < 10, "short text got {} tokens", short.len());
    assert_eq!(short.ids[0], 0, "starts with <s>");
    assert_eq!(*short.ids.last().unwrap(), 2, "ends with </s>");
    let with_prefix = e.tokenize("query: 退款").unwrap();
    assert!(
        with_prefix.len() > short.len(),
        "the manifest's prefix is applied once more"
    );
}

#[test]
fn long_input_is_truncated_at_the_model_limit() {
    let e = embedder(EngineKind::Kefu, Weights::Int8);
    let long = "退款 ".repeat(2000);
    let t = e.tokenize(&long).unwrap();
    assert_eq!(t.len(), 512);
    assert_eq!(*t.ids.last().unwrap(), 2, "truncation keeps </s>");
    let out = e.embed_blocking(&[long]).unwrap();
    assert_eq!(out[0].tokens, 512);
}

#[test]
fn padding_inside_a_batch_does_not_change_vectors() {
    for (engine, weights) in [
        (EngineKind::Kefu, Weights::Q8_0),
        (EngineKind::Candle, Weights::F32),
    ] {
        let e = embedder(engine, weights);
        let texts: Vec<String> = [
            "退款",
            "我买的东西多久能寄出，已经等了三天了",
            "Where is my order?",
        ]
        .map(String::from)
        .to_vec();
        let together = e.embed_blocking(&texts).unwrap();
        for (t, v) in texts.iter().zip(&together) {
            let alone = e.embed_blocking(std::slice::from_ref(t)).unwrap();
            let c = cosine(&alone[0].vector, &v.vector);
            assert!(
                c > 0.9999,
                "{engine:?}: {t} alone vs in a padded batch: cosine {c}"
            );
        }
    }
}

#[test]
fn cache_serves_the_same_vector_for_normalised_text() {
    let cfg = EmbedConfig {
        cache_size: 16,
        ..Default::default()
    };
    let metrics = Arc::new(Metrics::new());
    let e = Embedder::load(&common::model_dir(), &cfg, metrics.clone()).unwrap();
    let a = e.embed_blocking(&["怎么申请退款".to_string()]).unwrap();
    let b = e.embed_blocking(&["  怎么申请退款 ".to_string()]).unwrap();
    assert_eq!(a[0].vector, b[0].vector);
    assert_eq!(metrics.cache_hits.get(), 1);
    assert_eq!(metrics.cache_misses.get(), 1);
}

fn cosine_by_cli(cpu: &str) -> std::process::Output {
    common::kefu()
        .env("KEFU_EMBED__CPU", cpu)
        .args(["embed", "--cosine", "--model"])
        .arg(common::model_dir())
        .args(["怎么申请退款", "我想退货退钱怎么操作"])
        .output()
        .unwrap()
}

#[test]
fn a_forced_cpu_path_runs_or_is_refused_at_start_by_name() {
    // The portable loop runs everywhere.
    let out = cosine_by_cli("scalar");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("kernel=\"scalar\""), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let cos: f32 = stdout.split('\t').next().unwrap().trim().parse().unwrap();
    assert!((cos - 0.926).abs() <= 0.01, "{stdout}");
    // A path of the other architecture is refused, naming the setting.
    let foreign = if cfg!(target_arch = "x86_64") {
        "neon"
    } else {
        "avx2"
    };
    let out = cosine_by_cli(foreign);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("embed.cpu = \"{foreign}\"")) && stderr.contains("lacks"),
        "{stderr}"
    );
    // A value that is no path at all is a configuration error.
    let out = cosine_by_cli("sse9");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("sse9"), "{stderr}");
}

#[test]
fn fetch_leaves_an_intact_model_alone_and_refuses_a_damaged_one() {
    // The fetched model, intact: nothing is downloaded, the command succeeds (so the README's
    // "fetch, then test" runs again and again).
    let model = common::model_dir();
    let out = common::kefu()
        .args(["model", "fetch", "--out"])
        .arg(&model)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("nothing fetched"), "{stderr}");
    // A directory whose files no longer match its manifest is not taken for the model.
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("m");
    std::fs::create_dir(&broken).unwrap();
    for f in ["manifest.json", "config.json"] {
        std::fs::copy(model.join(f), broken.join(f)).unwrap();
    }
    let out = common::kefu()
        .args(["model", "fetch", "--out"])
        .arg(&broken)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("already exists") && stderr.contains("--force"),
        "{stderr}"
    );
}

/// A batch of more tokens than one pass of the int8 engine takes runs as several passes and
/// gives each text the vector it gets alone.
#[test]
fn a_batch_longer_than_one_pass_gives_each_text_its_own_vector() {
    let e = embedder(EngineKind::Kefu, Weights::Int8);
    let texts: Vec<String> = (0..6)
        .map(|i| {
            format!("第{i}个问题：") + &"我的订单为什么还没有发货，请帮我查一下物流。".repeat(30)
        })
        .collect();
    let tokens: usize = texts.iter().map(|t| e.tokenize(t).unwrap().len()).sum();
    assert!(tokens > 2048, "only {tokens} tokens");
    let together = e.embed_blocking(&texts).unwrap();
    for (t, v) in texts.iter().zip(&together) {
        let alone = e.embed_blocking(std::slice::from_ref(t)).unwrap();
        let c = cosine(&alone[0].vector, &v.vector);
        assert!(c > 0.99999, "{t}: alone vs in a long batch: cosine {c}");
    }
}

/// The compact Unigram vocabulary (src/embed/unigram.rs) gives exactly the ids `tokenizers`'
/// own Unigram gives, on real text in both languages: intent queries, question pairs, long FAQ
/// answers (truncated), Weibo customer-service dialogues (emoji, odd punctuation), and edge
/// cases. The default model is loaded in the compact form, and the form is small.
#[test]
fn the_compact_tokenizer_gives_the_ids_tokenizers_gives_on_the_shared_datasets() {
    use kefu::embed::tokenize::TextTokenizer;
    use std::io::BufRead;

    let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets");
    assert!(
        shared.is_dir(),
        "the shared datasets are missing at {}",
        shared.display()
    );
    let path = common::model_dir().join("tokenizer.json");
    let prefix = "query: ";
    let lean = TextTokenizer::from_file(&path, prefix, 512).unwrap();
    let bytes = lean
        .compact_vocab_bytes()
        .expect("the default model is a Unigram one");
    assert!(bytes < 24 << 20, "compact vocabulary holds {bytes} bytes");
    let mut full = tokenizers::Tokenizer::from_file(&path).unwrap();
    full.with_padding(None);
    full.with_truncation(Some(tokenizers::TruncationParams {
        max_length: 512,
        ..Default::default()
    }))
    .unwrap();

    let mut texts: Vec<String> = [
        "",
        " ",
        "   leading and trailing   ",
        "😀🙏 谢谢！！！",
        "ＡＢＣ１２３ full-width",
        "tab\there\nnewline\r\n",
        "\u{200b}zero\u{feff}width",
        "Ünïcödé naïve café",
        "한국어 日本語 العربية Ελληνικά",
        "\u{1F9FF}\u{E000}\u{10FFFF}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    texts.push("很长的问题".repeat(300));
    let sets: &[(&str, &[&str])] = &[
        ("intent/smp2017/test.jsonl", &["text"]),
        ("intent/clinc150/test.jsonl", &["text"]),
        ("intent/banking77/test.jsonl", &["text"]),
        ("pairs/lcqmc_test.jsonl", &["a", "b"]),
        ("pairs/atec_ccks_dev.jsonl", &["a", "b"]),
        ("faq/stackfaq/kb.jsonl", &["question", "answer"]),
    ];
    for (file, fields) in sets {
        let f = std::fs::File::open(shared.join(file)).unwrap();
        for line in std::io::BufReader::new(f).lines().take(3000) {
            let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            for field in *fields {
                texts.push(v[field].as_str().unwrap().to_string());
            }
        }
    }
    let f = std::fs::File::open(shared.join("dialogs/stc3_zh/test.jsonl")).unwrap();
    for line in std::io::BufReader::new(f).lines() {
        let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        for turn in v["turns"].as_array().unwrap() {
            texts.push(turn["text"].as_str().unwrap().to_string());
        }
    }
    for text in &texts {
        let want = full.encode(format!("{prefix}{text}"), true).unwrap();
        let got = lean.encode(text).unwrap();
        assert_eq!(got.ids, want.get_ids(), "{text:?}");
    }
    assert!(texts.len() > 20_000, "{} texts", texts.len());
    let sample = lean.encode("怎么申请退款").unwrap();
    assert_eq!(
        lean.decode(&sample.ids).unwrap(),
        full.decode(&sample.ids, true).unwrap()
    );
    assert_eq!(lean.vocab_size(), full.get_vocab_size(true));
}

/// Knowledge-gap clustering over the real encoder's vectors: paraphrases of one question come
/// out together and apart from another question's, in both languages.
#[test]
fn paraphrases_cluster_together_and_apart_from_another_question() {
    use kefu::analytics::cluster::agglomerate;
    let e = embedder(EngineKind::Kefu, Weights::Int8);
    let texts = [
        "怎么开发票",
        "我要开发票怎么弄",
        "发票在哪里申请",
        "能给我开个发票吗",
        "收货地址填错了怎么改",
        "怎么修改收货地址",
        "地址写错了能改吗",
        "How do I change my delivery address?",
        "I entered the wrong shipping address, can I fix it?",
    ];
    let owned: Vec<String> = texts.iter().map(|s| s.to_string()).collect();
    let vecs = e.embed_blocking(&owned).unwrap();
    let mut m = ndarray::Array2::<f32>::zeros((vecs.len(), 384));
    for (i, v) in vecs.iter().enumerate() {
        m.row_mut(i)
            .assign(&ndarray::ArrayView1::from(&v.vector[..]));
    }
    let clusters = agglomerate(m.view(), 0.88, 1);
    let groups: Vec<Vec<usize>> = clusters.iter().map(|c| c.members.clone()).collect();
    eprintln!("{groups:?}");
    let invoice = groups.iter().find(|g| g.contains(&0)).unwrap();
    let address = groups.iter().find(|g| g.contains(&4)).unwrap();
    assert_eq!(invoice, &vec![0, 1, 2, 3], "{groups:?}");
    assert!(address.starts_with(&[4, 5, 6]), "{groups:?}");
}
