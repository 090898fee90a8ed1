//! Prometheus metrics, served at `/metrics`.

use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    /// From a channel's request to its reply (`channel`: `wechat`, `sms`, `web`; `delivery`:
    /// `passive` in the webhook's answer, `pushed` through the platform's send API).
    pub channel_reply_seconds: HistogramVec,
    /// Channel messages by channel and what became of them (`answered`, `duplicate`,
    /// `refused`, `opted_out`, `failed`, …).
    pub channel_messages: IntCounterVec,
    pub queue_seconds: Histogram,
    pub tokenization_seconds: Histogram,
    pub inference_seconds: Histogram,
    pub batch_size: Histogram,
    pub batch_tokens: Histogram,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub queue_depth: IntGauge,
    /// Sequences the model encoded.
    pub embed_sequences: IntCounter,
    /// Embedding requests dropped unfinished because nobody waited for them any more, and the
    /// sequences of theirs left unencoded.
    pub embed_cancelled: IntCounter,
    pub embed_cancelled_sequences: IntCounter,
    /// HTTP requests being answered now (what a graceful shutdown waits for).
    pub requests_in_flight: IntGauge,
    pub model_ready: IntGauge,
    /// Chat turns by the bot's action (`answer`, `clarify`, `handoff`, …).
    pub chat_actions: IntCounterVec,
    /// Hand-offs by reason, and webhook deliveries by outcome.
    pub handoffs: IntCounterVec,
    pub handoff_deliveries: IntCounterVec,
    /// Turn records written to the analytics store, dropped because its queue was full, and
    /// lost to a failed write.
    pub analytics_recorded: IntCounter,
    pub analytics_dropped: IntCounter,
    pub analytics_failed: IntCounter,
}

fn latency_buckets() -> Vec<f64> {
    vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ]
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("kefu".into()), None).expect("registry");
        let h = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("histogram");
            registry.register(Box::new(h.clone())).expect("register");
            h
        };
        let requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests by route and status"),
            &["route", "status"],
        )
        .expect("counter");
        registry
            .register(Box::new(requests.clone()))
            .expect("register");
        let request_seconds = HistogramVec::new(
            HistogramOpts::new("http_request_duration_seconds", "HTTP request duration")
                .buckets(latency_buckets()),
            &["route"],
        )
        .expect("histogram");
        registry
            .register(Box::new(request_seconds.clone()))
            .expect("register");
        let channel_reply_seconds = HistogramVec::new(
            HistogramOpts::new(
                "channel_reply_duration_seconds",
                "From a channel's request to its reply",
            )
            .buckets(latency_buckets()),
            &["channel", "delivery"],
        )
        .expect("histogram");
        registry
            .register(Box::new(channel_reply_seconds.clone()))
            .expect("register");
        let channel_messages = IntCounterVec::new(
            Opts::new(
                "channel_messages_total",
                "Channel messages by channel and outcome",
            ),
            &["channel", "outcome"],
        )
        .expect("counter");
        registry
            .register(Box::new(channel_messages.clone()))
            .expect("register");
        let c = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("counter");
            registry.register(Box::new(c.clone())).expect("register");
            c
        };
        let g = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("gauge");
            registry.register(Box::new(g.clone())).expect("register");
            g
        };
        let v = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("counter");
            registry.register(Box::new(c.clone())).expect("register");
            c
        };
        Self {
            analytics_recorded: c(
                "analytics_turns_recorded_total",
                "Turns written to the analytics store",
            ),
            analytics_dropped: c(
                "analytics_turns_dropped_total",
                "Turns not recorded because the analytics queue was full",
            ),
            analytics_failed: c(
                "analytics_turns_failed_total",
                "Turns lost to a failed analytics write",
            ),
            chat_actions: v(
                "chat_turns_total",
                "Chat turns by the bot's action",
                "action",
            ),
            handoffs: v(
                "handoffs_total",
                "Hand-offs to a person by reason",
                "reason",
            ),
            handoff_deliveries: v(
                "handoff_deliveries_total",
                "Hand-off webhook deliveries by outcome (delivered, failed)",
                "outcome",
            ),
            requests,
            request_seconds,
            channel_reply_seconds,
            channel_messages,
            queue_seconds: h(
                "embed_queue_duration_seconds",
                "Time a request waited for the inference worker",
                latency_buckets(),
            ),
            tokenization_seconds: h(
                "embed_tokenization_duration_seconds",
                "Tokenization time per request",
                latency_buckets(),
            ),
            inference_seconds: h(
                "embed_inference_duration_seconds",
                "Forward pass time per batch",
                latency_buckets(),
            ),
            batch_size: h(
                "embed_batch_size",
                "Sequences per forward pass",
                vec![1., 2., 4., 8., 16., 32., 64., 128., 256.],
            ),
            batch_tokens: h(
                "embed_batch_tokens",
                "Padded tokens per forward pass",
                vec![16., 64., 256., 1024., 4096., 16384., 65536.],
            ),
            cache_hits: c(
                "embed_cache_hits_total",
                "Query embeddings served from the cache",
            ),
            cache_misses: c(
                "embed_cache_misses_total",
                "Query embeddings computed by the model",
            ),
            queue_depth: g(
                "embed_queue_depth",
                "Requests accepted by the inference worker and not yet answered",
            ),
            embed_sequences: c("embed_sequences_total", "Sequences encoded by the model"),
            embed_cancelled: c(
                "embed_cancelled_total",
                "Embedding requests dropped unfinished: the client hung up or the request timed out",
            ),
            embed_cancelled_sequences: c(
                "embed_cancelled_sequences_total",
                "Sequences of dropped embedding requests left unencoded",
            ),
            requests_in_flight: g(
                "http_requests_in_flight",
                "HTTP requests being answered now",
            ),
            model_ready: g("model_ready", "1 once the embedding model is loaded"),
            registry,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encode metrics");
        String::from_utf8(buf).expect("metrics are UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
