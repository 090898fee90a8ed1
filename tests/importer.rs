//! The E5S1 importer on a small synthetic image the test writes itself.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use half::f16;
use kefu::analytics::metrics::Metrics;
use kefu::config::EmbedConfig;
use kefu::embed::{Embedder, EngineKind, Weights, cosine};
use kefu::model::{ModelError, Pooling, e5s1};

const H: usize = 32;
const NL: usize = 1;
const NH: usize = 2;
const FF: usize = 64;
const VOC: usize = 40;
const MAXP: usize = 16;
const TVS: usize = 2;

/// A tiny deterministic pseudo-random source.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u32
    }
    fn unit(&mut self) -> f32 {
        self.next() as f32 / u32::MAX as f32 - 0.5
    }
}

enum Data {
    F32(Vec<f32>),
    /// Quant values 0..16 and one scale per 32-block; expected weight (q - 8) * d.
    Q4 {
        q: Vec<u8>,
        d: Vec<f32>,
    },
}

impl Data {
    fn expected(&self) -> Vec<f32> {
        match self {
            Data::F32(v) => v.clone(),
            Data::Q4 { q, d } => q
                .iter()
                .enumerate()
                .map(|(i, &q)| (q as f32 - 8.0) * d[i / 32])
                .collect(),
        }
    }
    fn bytes(&self) -> (u8, Vec<u8>) {
        match self {
            Data::F32(v) => (0, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
            Data::Q4 { q, d } => {
                let mut out = Vec::new();
                for (b, chunk) in q.chunks(32).enumerate() {
                    out.extend(f16::from_f32(d[b]).to_le_bytes());
                    for j in 0..16 {
                        out.push(chunk[j] | (chunk[j + 16] << 4));
                    }
                }
                (1, out)
            }
        }
    }
}

fn q4(rng: &mut Rng, n: usize, scale: f32) -> Data {
    let q = (0..n).map(|_| (rng.next() % 16) as u8).collect();
    // Scales exactly representable in f16 so the expectation is exact.
    let d = (0..n / 32)
        .map(|_| f16::from_f32(scale * (1.0 + (rng.next() % 8) as f32 / 8.0)).to_f32())
        .collect();
    Data::Q4 { q, d }
}

fn f32s(rng: &mut Rng, n: usize, base: f32, spread: f32) -> Data {
    Data::F32((0..n).map(|_| base + spread * rng.unit()).collect())
}

/// Writes an E5S1 image; returns its bytes and the tensors under their E5S1 names.
fn synthetic_image() -> (Vec<u8>, Vec<(String, Data)>) {
    let mut rng = Rng(42);
    let mut tensors: Vec<(String, Data)> = vec![
        ("emb.word".into(), q4(&mut rng, VOC * H, 0.05)),
        ("emb.pos".into(), f32s(&mut rng, MAXP * H, 0.0, 0.1)),
        ("emb.type".into(), f32s(&mut rng, TVS * H, 0.0, 0.1)),
        ("emb.ln.w".into(), f32s(&mut rng, H, 1.0, 0.1)),
        ("emb.ln.b".into(), f32s(&mut rng, H, 0.0, 0.1)),
    ];
    for l in 0..NL {
        for (name, rows, cols) in [
            ("q", H, H),
            ("k", H, H),
            ("v", H, H),
            ("ao", H, H),
            ("fi", FF, H),
            ("fo", H, FF),
        ] {
            tensors.push((format!("l{l}.{name}.w"), q4(&mut rng, rows * cols, 0.02)));
            tensors.push((format!("l{l}.{name}.b"), f32s(&mut rng, rows, 0.0, 0.05)));
        }
        for name in ["aln", "oln"] {
            tensors.push((format!("l{l}.{name}.w"), f32s(&mut rng, H, 1.0, 0.1)));
            tensors.push((format!("l{l}.{name}.b"), f32s(&mut rng, H, 0.0, 0.1)));
        }
    }
    let mut head = Vec::new();
    head.extend(b"E5S1");
    head.extend(1u32.to_le_bytes());
    for v in [H, NL, NH, FF, VOC, MAXP, TVS] {
        head.extend((v as i32).to_le_bytes());
    }
    head.extend(1e-12f32.to_le_bytes());
    head.extend(32i32.to_le_bytes());
    // Tokenizer section: two pieces "a", "b".
    for v in [2i32, 0, 2, 1, 3] {
        head.extend(v.to_le_bytes());
    }
    head.extend(2u64.to_le_bytes());
    for o in [0u32, 1, 2] {
        head.extend(o.to_le_bytes());
    }
    for s in [0f32, -1.0] {
        head.extend(s.to_le_bytes());
    }
    head.extend(b"ab");
    // Normaliser: none.
    head.extend(0i32.to_le_bytes());
    head.extend(0u32.to_le_bytes());
    // Directory, then the data after it.
    let dir_len: usize = 4 + tensors
        .iter()
        .map(|(n, _)| 2 + n.len() + 1 + 4 + 8 + 8)
        .sum::<usize>();
    let mut offset = head.len() + dir_len;
    let mut dir = Vec::new();
    let mut data = Vec::new();
    dir.extend((tensors.len() as i32).to_le_bytes());
    for (name, t) in &tensors {
        let (dtype, bytes) = t.bytes();
        let n = t.expected().len();
        dir.extend((name.len() as u16).to_le_bytes());
        dir.extend(name.as_bytes());
        dir.push(dtype);
        dir.extend((n as u32).to_le_bytes());
        dir.extend((offset as u64).to_le_bytes());
        dir.extend((bytes.len() as u64).to_le_bytes());
        offset += bytes.len();
        data.extend(bytes);
    }
    let mut file = head;
    file.extend(dir);
    file.extend(data);
    (file, tensors)
}

const TOKENIZER: &str = r#"{"version":"1.0","truncation":null,"padding":{"strategy":{"Fixed":128},"direction":"Right","pad_to_multiple_of":null,"pad_id":0,"pad_type_id":0,"pad_token":"<pad>"},"added_tokens":[],"normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,"model":{"type":"WordLevel","vocab":{"<pad>":0,"<unk>":1,"a":2,"b":3,"c":4,"d":5,"e":6},"unk_token":"<unk>"}}"#;

fn write_inputs(dir: &Path, image: &[u8]) -> (std::path::PathBuf, std::path::PathBuf) {
    let img = dir.join("tiny.e5s1");
    let tok = dir.join("tokenizer.json");
    std::fs::write(&img, image).unwrap();
    std::fs::write(&tok, TOKENIZER).unwrap();
    (img, tok)
}

fn opts(force: bool) -> e5s1::ImportOptions<'static> {
    e5s1::ImportOptions {
        name: "tiny",
        pooling: Pooling::Mean,
        prefix: "",
        force,
    }
}

fn hf_name(e5: &str) -> String {
    let map: HashMap<&str, &str> = [
        ("emb.word", "embeddings.word_embeddings.weight"),
        ("emb.pos", "embeddings.position_embeddings.weight"),
        ("emb.type", "embeddings.token_type_embeddings.weight"),
        ("emb.ln.w", "embeddings.LayerNorm.weight"),
        ("emb.ln.b", "embeddings.LayerNorm.bias"),
    ]
    .into();
    if let Some(n) = map.get(e5) {
        return n.to_string();
    }
    let (layer, rest) = e5[1..].split_once('.').unwrap();
    let (part, wb) = rest.split_once('.').unwrap();
    let module = match part {
        "q" => "attention.self.query",
        "k" => "attention.self.key",
        "v" => "attention.self.value",
        "ao" => "attention.output.dense",
        "fi" => "intermediate.dense",
        "fo" => "output.dense",
        "aln" => "attention.output.LayerNorm",
        "oln" => "output.LayerNorm",
        other => panic!("{other}"),
    };
    let suffix = if wb == "w" { "weight" } else { "bias" };
    format!("encoder.layer.{layer}.{module}.{suffix}")
}

#[test]
fn round_trip_dequantises_every_tensor_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (image, tensors) = synthetic_image();
    let (img, tok) = write_inputs(tmp.path(), &image);
    let out = tmp.path().join("model");
    let manifest = e5s1::import(&img, &tok, &out, &opts(false)).unwrap();
    assert_eq!(manifest.dimension, H);
    assert_eq!(manifest.max_tokens, MAXP);
    assert!(manifest.version.starts_with("tiny@"));
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(manifest.files.contains_key(f), "manifest lists {f}");
    }
    manifest.verify(&out).unwrap();
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["hidden_size"], H);
    assert_eq!(cfg["num_attention_heads"], NH);
    assert_eq!(cfg["intermediate_size"], FF);
    assert_eq!(cfg["vocab_size"], VOC);
    let loaded =
        candle_core::safetensors::load(out.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    assert_eq!(loaded.len(), tensors.len());
    for (name, data) in &tensors {
        let t = &loaded[&hf_name(name)];
        assert_eq!(t.dtype(), candle_core::DType::F32, "{name} is f32");
        let got = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(got, data.expected(), "{name} round trip");
    }
    // The linear weights keep their [out, in] shape.
    assert_eq!(
        loaded["encoder.layer.0.intermediate.dense.weight"].dims(),
        &[FF, H]
    );
}

#[test]
fn imported_directory_serves_with_both_engines() {
    let tmp = tempfile::tempdir().unwrap();
    let (image, _) = synthetic_image();
    let (img, tok) = write_inputs(tmp.path(), &image);
    let out = tmp.path().join("model");
    e5s1::import(&img, &tok, &out, &opts(false)).unwrap();
    let texts: Vec<String> = ["a b c", "d", "e a a b c d"].map(String::from).to_vec();
    let run = |engine, weights| {
        let cfg = EmbedConfig {
            engine,
            weights,
            cache_size: 0,
            ..Default::default()
        };
        Embedder::load(&out, &cfg, Arc::new(Metrics::new()))
            .unwrap()
            .embed_blocking(&texts)
            .unwrap()
    };
    let reference = run(EngineKind::Candle, Weights::F32);
    for weights in [Weights::F32, Weights::Q8_0, Weights::Int8] {
        let ours = run(EngineKind::Kefu, weights);
        for (r, o) in reference.iter().zip(&ours) {
            assert_eq!(o.vector.len(), H);
            let c = cosine(&r.vector, &o.vector);
            assert!(
                c > 0.999,
                "{weights:?}: kefu engine vs candle BertModel cosine {c}"
            );
        }
    }
    // The tokenizer's fixed padding preset is ignored: "d" is 1 token, not 128.
    assert_eq!(reference[1].tokens, 1);
}

fn no_leftovers(dir: &Path) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with(".kefu-") || n == "model"),
        "left behind: {names:?}"
    );
}

#[test]
fn truncated_image_fails_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (image, _) = synthetic_image();
    for cut in [image.len() - 10, image.len() / 2, 100, 6] {
        let (img, tok) = write_inputs(tmp.path(), &image[..cut]);
        let err = e5s1::import(&img, &tok, &tmp.path().join("model"), &opts(false)).unwrap_err();
        assert!(matches!(err, ModelError::Corrupt(_)), "cut at {cut}: {err}");
        assert!(err.to_string().contains("truncated"), "cut at {cut}: {err}");
        std::fs::remove_file(&img).unwrap();
        std::fs::remove_file(&tok).unwrap();
        no_leftovers(tmp.path());
    }
}

#[test]
fn corrupt_image_fails_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut image, _) = synthetic_image();
    image[0] = b'X';
    let (img, tok) = write_inputs(tmp.path(), &image);
    let err = e5s1::import(&img, &tok, &tmp.path().join("model"), &opts(false)).unwrap_err();
    assert!(err.to_string().contains("bad magic"), "{err}");
    // A broken tokenizer is refused before anything is written.
    let (image, _) = synthetic_image();
    let (img, tok) = write_inputs(tmp.path(), &image);
    std::fs::write(&tok, "{not json").unwrap();
    let err = e5s1::import(&img, &tok, &tmp.path().join("model"), &opts(false)).unwrap_err();
    assert!(err.to_string().contains("tokenizer"), "{err}");
    std::fs::remove_file(&img).unwrap();
    std::fs::remove_file(&tok).unwrap();
    no_leftovers(tmp.path());
}

#[test]
fn existing_directory_is_kept_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let (image, _) = synthetic_image();
    let (img, tok) = write_inputs(tmp.path(), &image);
    let out = tmp.path().join("model");
    let first = e5s1::import(&img, &tok, &out, &opts(false)).unwrap();
    let err = e5s1::import(&img, &tok, &out, &opts(false)).unwrap_err();
    assert!(matches!(err, ModelError::Exists(_)), "{err}");
    // A failed forced import leaves the old directory intact.
    let (img2, tok2) = {
        let d = tmp.path().join("bad");
        std::fs::create_dir(&d).unwrap();
        write_inputs(&d, &image[..image.len() / 2])
    };
    assert!(e5s1::import(&img2, &tok2, &out, &opts(true)).is_err());
    first.verify(&out).unwrap();
    let second = e5s1::import(&img, &tok, &out, &opts(true)).unwrap();
    assert_eq!(first.version, second.version);
}

#[test]
fn cli_reports_a_truncated_image() {
    let tmp = tempfile::tempdir().unwrap();
    let (image, _) = synthetic_image();
    let (img, tok) = write_inputs(tmp.path(), &image[..image.len() / 3]);
    let out = common::kefu()
        .args(["model", "import-e5s1"])
        .arg(&img)
        .arg("--tokenizer")
        .arg(&tok)
        .arg("--out")
        .arg(tmp.path().join("model"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("truncated"), "{stderr}");
    assert!(!tmp.path().join("model").exists());
}
