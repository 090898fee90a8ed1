//! Model directories a user brings: an XLM-RoBERTa-type model (bge-m3, multilingual-e5-base…)
//! whose position ids start after the padding id, served by both engines.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::{Device, Tensor};
use kefu::analytics::metrics::Metrics;
use kefu::config::EmbedConfig;
use kefu::embed::{Embedder, EngineKind, Weights, cosine};
use kefu::model::Pooling;

const H: usize = 32;
const FF: usize = 64;
const VOC: usize = 12;
const MAXP: usize = 24;

fn random(seed: &mut u64, shape: &[usize], base: f32, spread: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            base + spread * (((*seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5)
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn write_xlmr(dir: &Path, prefix: &str) {
    let mut seed = 7u64;
    let mut t: HashMap<String, Tensor> = HashMap::new();
    let mut put = |name: &str, shape: &[usize], base: f32, spread: f32| {
        t.insert(
            format!("{prefix}{name}"),
            random(&mut seed, shape, base, spread),
        );
    };
    put("embeddings.word_embeddings.weight", &[VOC, H], 0.0, 1.0);
    // Large position embeddings: an off-by-offset position id changes the output visibly.
    put(
        "embeddings.position_embeddings.weight",
        &[MAXP, H],
        0.0,
        2.0,
    );
    put("embeddings.token_type_embeddings.weight", &[1, H], 0.0, 0.2);
    put("embeddings.LayerNorm.weight", &[H], 1.0, 0.2);
    put("embeddings.LayerNorm.bias", &[H], 0.0, 0.2);
    for l in 0..2 {
        let p = format!("encoder.layer.{l}");
        for (m, n, k) in [
            ("attention.self.query", H, H),
            ("attention.self.key", H, H),
            ("attention.self.value", H, H),
            ("attention.output.dense", H, H),
            ("intermediate.dense", FF, H),
            ("output.dense", H, FF),
        ] {
            put(&format!("{p}.{m}.weight"), &[n, k], 0.0, 0.3);
            put(&format!("{p}.{m}.bias"), &[n], 0.0, 0.1);
        }
        for m in ["attention.output.LayerNorm", "output.LayerNorm"] {
            put(&format!("{p}.{m}.weight"), &[H], 1.0, 0.2);
            put(&format!("{p}.{m}.bias"), &[H], 0.0, 0.2);
        }
    }
    candle_core::safetensors::save(&t, dir.join("model.safetensors")).unwrap();
    let cfg = serde_json::json!({
        "architectures": ["XLMRobertaModel"], "model_type": "xlm-roberta",
        "hidden_size": H, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": FF,
        "vocab_size": VOC, "max_position_embeddings": MAXP, "type_vocab_size": 1, "pad_token_id": 1,
        "layer_norm_eps": 1e-5, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "position_embedding_type": "absolute"
    });
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
    let tokenizer = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,"model":{"type":"WordLevel","vocab":{"<s>":0,"<pad>":1,"</s>":2,"<unk>":3,"a":4,"b":5,"c":6,"d":7,"e":8,"f":9,"g":10,"h":11},"unk_token":"<unk>"}}"#;
    std::fs::write(dir.join("tokenizer.json"), tokenizer).unwrap();
}

fn embed(dir: &Path, engine: EngineKind, texts: &[String]) -> Vec<Vec<f32>> {
    let cfg = EmbedConfig {
        engine,
        weights: Weights::Int8,
        cache_size: 0,
        pooling: Some(Pooling::Cls),
        ..Default::default()
    };
    let e = Embedder::load(dir, &cfg, Arc::new(Metrics::new())).unwrap();
    assert_eq!(
        e.manifest().max_tokens,
        MAXP - 2,
        "positions after the padding id are usable"
    );
    e.embed_blocking(texts)
        .unwrap()
        .into_iter()
        .map(|x| x.vector.to_vec())
        .collect()
}

#[test]
fn xlm_roberta_directories_serve_with_int8_and_candle() {
    for prefix in ["", "roberta."] {
        let tmp = tempfile::tempdir().unwrap();
        write_xlmr(tmp.path(), prefix);
        // Different lengths in one batch: padding (candle) and packing (int8) must agree.
        let texts: Vec<String> = ["a b c d", "e", "f g h a b c d e f g"]
            .map(String::from)
            .to_vec();
        let reference = embed(tmp.path(), EngineKind::Candle, &texts);
        let ours = embed(tmp.path(), EngineKind::Kefu, &texts);
        for (r, o) in reference.iter().zip(&ours) {
            let c = cosine(r, o);
            assert!(
                c > 0.99,
                "prefix {prefix:?}: int8 vs candle XLMRobertaModel cosine {c}"
            );
        }
    }
}
