//! `/v1/embeddings` as OpenAI's clients use it: the official Python SDK (which asks for
//! base64 by default), token-id input, and plain-worded 422s.

mod common;

use common::Server;
use reqwest::Client;
use serde_json::{Value, json};

/// The SDK's default call (base64) and an explicit float call agree, at dimension 384; the raw
/// response shows the base64 form was the one asked for.
const SDK_SCRIPT: &str = r#"
import json, sys
import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key="dummy", max_retries=0)
texts = ["怎么申请退款", "How do I get a refund?"]
raw = client.embeddings.with_raw_response.create(model="multilingual-e5-small", input=texts)
sent = json.loads(raw.http_request.content)
default = raw.parse()
floats = client.embeddings.create(
    model="multilingual-e5-small", input=texts, encoding_format="float"
)
print(json.dumps({
    "sent_encoding": sent.get("encoding_format"),
    "raw_is_string": isinstance(raw.http_response.json()["data"][0]["embedding"], str),
    "default": [list(map(float, d.embedding)) for d in default.data],
    "float": [d.embedding for d in floats.data],
    "model": floats.model,
    "usage": floats.usage.total_tokens,
}))
"#;

#[tokio::test]
async fn official_openai_sdk_float_and_base64_agree() {
    let s = Server::start(&common::model_dir(), &[]);
    s.ready().await;
    let out = tokio::task::spawn_blocking({
        let base = s.url("/v1");
        move || common::run_python(SDK_SCRIPT, &[&base])
    })
    .await
    .unwrap();
    let v: Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(v["sent_encoding"], "base64", "the SDK's default: {v}");
    assert_eq!(v["raw_is_string"], true);
    assert_eq!(v["model"], "multilingual-e5-small");
    assert!(v["usage"].as_u64().unwrap() > 4);
    for form in ["default", "float"] {
        let vectors = v[form].as_array().unwrap();
        assert_eq!(vectors.len(), 2);
        for e in vectors {
            assert_eq!(e.as_array().unwrap().len(), 384, "{form}");
        }
    }
    for i in 0..2 {
        let a = v["default"][i].as_array().unwrap();
        let b = v["float"][i].as_array().unwrap();
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x.as_f64().unwrap() - y.as_f64().unwrap()).abs())
            .fold(0.0, f64::max);
        assert!(
            worst < 1e-6,
            "input {i}: base64 and float differ by {worst}"
        );
    }
}

async fn post(c: &Client, s: &Server, body: Value) -> (u16, Value) {
    common::call(
        c,
        reqwest::Method::POST,
        s.url("/v1/embeddings"),
        Some(body),
    )
    .await
}

fn vector(v: &Value, i: usize) -> Vec<f64> {
    v["data"][i]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The 422 names the field and what it takes, in JSON words.
fn assert_plain_422(st: u16, v: &Value, says: &str) {
    assert_eq!(st, 422, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains(says), "{says:?} in {msg}");
    for rust in ["enum", "usize", "u32", "struct", "Failed to", "untagged"] {
        assert!(!msg.contains(rust), "{rust:?} in {msg}");
    }
}

#[tokio::test]
async fn token_ids_base64_and_bad_input() {
    let model = common::model_dir();
    let s = Server::start(&model, &[]);
    s.ready().await;
    let c = Client::new();
    // Ids of the serving model's tokenizer, as a client with that tokenizer would send them.
    let tok = tokenizers::Tokenizer::from_file(model.join("tokenizer.json")).unwrap();
    let ids = |t: &str| tok.encode(t, false).unwrap().get_ids().to_vec();
    let (a, b) = ("怎么申请退款", "订单什么时候发货");

    let (st, texts) = post(&c, &s, json!({"input": [a, b]})).await;
    assert_eq!(st, 200, "{texts}");
    let (st, one) = post(&c, &s, json!({"input": ids(a)})).await;
    assert_eq!(st, 200, "{one}");
    assert!(cosine(&vector(&one, 0), &vector(&texts, 0)) > 0.999);
    let (st, two) = post(&c, &s, json!({"input": [ids(a), ids(b)]})).await;
    assert_eq!(st, 200, "{two}");
    assert_eq!(two["data"].as_array().unwrap().len(), 2);
    assert!(cosine(&vector(&two, 1), &vector(&texts, 1)) > 0.999);

    // base64: the little-endian f32 bytes of the float vector.
    let (st, b64) = post(&c, &s, json!({"input": [a], "encoding_format": "base64"})).await;
    assert_eq!(st, 200, "{b64}");
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f64> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
        .collect();
    assert_eq!(decoded.len(), 384);
    let float = vector(&texts, 0);
    assert!(
        decoded
            .iter()
            .zip(&float)
            .all(|(x, y)| (x - y).abs() < 1e-6)
    );

    // Bad input: 422 in plain words.
    let (st, v) = post(&c, &s, json!({"input": [1, -2]})).await;
    assert_plain_422(st, &v, "input: [1] is -2");
    let (st, v) = post(&c, &s, json!({"input": [[1, 2], "x"]})).await;
    assert_plain_422(st, &v, "[1] is a string");
    let (st, v) = post(&c, &s, json!({"input": 5})).await;
    assert_plain_422(
        st,
        &v,
        "must be a text, a list of texts, a list of token ids",
    );
    let (st, v) = post(&c, &s, json!({"input": [ids(a), vec![4_000_000]]})).await;
    assert_plain_422(
        st,
        &v,
        "input[1][0] is token id 4000000, outside the model's vocabulary",
    );
    let (st, v) = post(&c, &s, json!({"input": ["a"], "encoding_format": "int8"})).await;
    assert_plain_422(st, &v, "\"float\" or \"base64\"");
    let (st, v) = post(&c, &s, json!({"input": ["a"], "dimensions": "big"})).await;
    assert_plain_422(st, &v, "dimensions: expected a whole number ≥ 0");
    let (st, v) = post(&c, &s, json!({"input": [[0, 2]]})).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (422, Some("empty_input")),
        "{v}"
    );
    // /v1/embed keeps to texts, and says so.
    let (st, v) = common::call(
        &c,
        reqwest::Method::POST,
        s.url("/v1/embed"),
        Some(json!({"inputs": [1, 2]})),
    )
    .await;
    assert_plain_422(st, &v, "inputs: must be a text or a list of texts");
}
