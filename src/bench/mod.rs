//! `kefu bench embed`: in-process speed of the embedding engine on real short questions
//! (`kefu bench match`, end to end over HTTP, is in [`matching`]; `kefu bench http`, load on
//! the API at several concurrency levels, in [`http`]).
//!
//! Three measurements: single-question latency (batch 1, real questions of varying length),
//! fixed shapes (1 × 16 and 32 × 32 tokens, the shapes of the reference figures in
//! docs/BENCHMARKS.md), and throughput on batches of 32 real questions.

pub mod http;
pub mod matching;
pub mod server;

use std::time::Instant;

use serde::Serialize;

use crate::embed::Embedder;
use crate::embed::tokenize::Tokens;

/// Short customer-service questions in Chinese and English, as customers type them.
pub const QUESTIONS: &[&str] = &[
    "怎么申请退款",
    "订单什么时候发货",
    "我买的东西多久能寄出",
    "会员积分怎么兑换",
    "快递显示已签收但我没收到",
    "可以开发票吗",
    "怎么修改收货地址",
    "优惠券为什么用不了",
    "退货运费谁承担",
    "商品有质量问题怎么办",
    "支付失败了钱扣了吗",
    "客服电话是多少",
    "我想转人工",
    "七天无理由退货怎么操作",
    "能不能货到付款",
    "How do I reset my password?",
    "Where is my order?",
    "Can I change my delivery address?",
    "How long does a refund take?",
    "The item arrived damaged, what should I do",
    "Do you ship internationally?",
    "How can I cancel my subscription",
    "I was charged twice for the same order",
    "What is your return policy for electronics?",
    "Can I talk to a human agent please",
    "Why was my payment declined",
    "How do I apply a discount code at checkout?",
    "When will my package arrive",
    "我的账号被锁了怎么解锁",
    "买了两件能分开发货吗",
    "Is there a warranty on this product?",
    "积分什么时候到账",
];

#[derive(Debug, Serialize)]
pub struct Latency {
    pub n: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct FixedShape {
    pub batch: usize,
    pub tokens: usize,
    pub runs: usize,
    pub median_ms: f64,
    pub sentences_per_s: f64,
}

#[derive(Debug, Serialize)]
pub struct EmbedBench {
    pub model: String,
    pub engine: String,
    pub weights: String,
    /// The int8 kernels that ran (`avx512-vnni`, `avx2`, `neon-dotprod`, `neon`, `scalar`);
    /// absent for the other engines.
    pub kernel: Option<String>,
    pub threads: usize,
    pub single: Latency,
    pub fixed: Vec<FixedShape>,
    pub batch32_real_sentences_per_s: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    crate::eval::percentile(&v, 0.5)
}

/// A sequence of exactly `len` tokens built from real question tokens: the first question's
/// ids (special tokens kept at both ends), cycled through the question text as needed.
fn fixed_tokens(real: &[Tokens], len: usize, shift: usize) -> Tokens {
    let body: Vec<u32> = real
        .iter()
        .cycle()
        .skip(shift)
        .take(real.len())
        .flat_map(|t| t.ids[1..t.ids.len() - 1].iter().copied())
        .collect();
    let first = real[0].ids[0];
    let last = *real[0].ids.last().unwrap();
    let mut ids = vec![first];
    ids.extend(body.iter().cycle().take(len - 2));
    ids.push(last);
    Tokens { ids }
}

pub struct BenchOptions {
    pub iterations: usize,
    pub threads: usize,
    pub engine: String,
    pub weights: String,
    pub kernel: Option<String>,
}

pub fn run(
    e: &Embedder,
    opts: &BenchOptions,
    progress: impl Fn(&str),
) -> anyhow::Result<EmbedBench> {
    let real: Vec<Tokens> = QUESTIONS
        .iter()
        .map(|q| e.tokenize(q))
        .collect::<Result<_, _>>()?;
    // Warm up: first calls allocate and page weights in.
    for t in real.iter().take(4) {
        e.embed_tokens_blocking(vec![t.clone()])?;
    }
    e.embed_tokens_blocking(real.clone())?;

    progress("single-question latency");
    let mut times = Vec::with_capacity(opts.iterations);
    for i in 0..opts.iterations {
        let t = real[i % real.len()].clone();
        let started = Instant::now();
        e.embed_tokens_blocking(vec![t])?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let single = Latency {
        n: times.len(),
        p50_ms: crate::eval::percentile(&times, 0.5),
        p95_ms: crate::eval::percentile(&times, 0.95),
        p99_ms: crate::eval::percentile(&times, 0.99),
        mean_ms: times.iter().sum::<f64>() / times.len() as f64,
    };

    let mut fixed = Vec::new();
    for (batch, tokens, runs) in [
        (1usize, 16usize, opts.iterations),
        (32, 32, (opts.iterations / 10).max(5)),
    ] {
        progress(&format!("fixed shape {batch} x {tokens}"));
        let inputs: Vec<Tokens> = (0..batch).map(|i| fixed_tokens(&real, tokens, i)).collect();
        let mut t = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            e.embed_tokens_blocking(inputs.clone())?;
            t.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let median_ms = median(t);
        fixed.push(FixedShape {
            batch,
            tokens,
            runs,
            median_ms,
            sentences_per_s: batch as f64 * 1000.0 / median_ms,
        });
    }

    progress("throughput on batches of 32 real questions");
    let runs = (opts.iterations / 10).max(5);
    let batch: Vec<Tokens> = real.iter().cycle().take(32).cloned().collect();
    let started = Instant::now();
    for _ in 0..runs {
        e.embed_tokens_blocking(batch.clone())?;
    }
    let secs = started.elapsed().as_secs_f64();

    Ok(EmbedBench {
        model: e.version().to_string(),
        engine: opts.engine.clone(),
        weights: opts.weights.clone(),
        kernel: opts.kernel.clone(),
        threads: opts.threads,
        single,
        fixed,
        batch32_real_sentences_per_s: (runs * 32) as f64 / secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_tokens_have_exact_length_and_special_ends() {
        let real = vec![
            Tokens {
                ids: vec![0, 5, 6, 2],
            },
            Tokens { ids: vec![0, 7, 2] },
        ];
        for len in [3, 16, 32] {
            let t = fixed_tokens(&real, len, 1);
            assert_eq!(t.len(), len);
            assert_eq!(t.ids[0], 0);
            assert_eq!(*t.ids.last().unwrap(), 2);
        }
    }
}
