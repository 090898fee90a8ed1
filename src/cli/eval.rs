//! `kefu eval`: accuracy of the intent models, FAQ retrieval, context rewriting,
//! recommendations and paraphrase pairs on labelled data.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use kefu::config::Overrides;
use kefu::embed::{EngineKind, Weights};

use super::CommonFlags;
use super::common::{self, Ctx, Flags, ServedKb};

#[derive(Subcommand)]
pub enum EvalCommand {
    /// Two models of one kind measured on the same data, side by side: compare.md,
    /// compare.html (bar charts of every measure and of the per-class changes) and
    /// compare.json in --out — what a promotion is reviewed with.
    Compare {
        /// `intent`, `recommend` or `embedding`.
        #[arg(long)]
        kind: String,
        /// Model A (the one serving, usually).
        a: PathBuf,
        /// Model B (the candidate).
        b: PathBuf,
        /// intent: a labelled JSONL file (default: the golden set of --name); recommend: an
        /// interactions CSV (default: model.gate.recommend, else the demo shop's); embedding:
        /// a KB file with --queries (default: the demo KB and its queries).
        #[arg(long)]
        data: Option<PathBuf>,
        /// embedding: labelled queries for --data.
        #[arg(long, requires = "data")]
        queries: Option<PathBuf>,
        /// intent: whose golden set to use without --data (model.gate.intent.NAME, or the demo
        /// test set of `service` / `complaint_severity`).
        #[arg(long)]
        name: Option<String>,
        /// Report directory.
        #[arg(long, default_value = "compare")]
        out: PathBuf,
        /// Names for A and B in the report.
        #[arg(long, default_value = "A")]
        label_a: String,
        #[arg(long, default_value = "B")]
        label_b: String,
        /// The encoder for intent models (default: model.path).
        #[arg(long)]
        encoder: Option<PathBuf>,
        /// Print the comparison as one JSON object on the last line.
        #[arg(long)]
        json: bool,
    },
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
    /// FAQ retrieval: top-1, recall@5 and MRR@10 of the matcher on a KB file (or the KB a
    /// data directory serves) and labelled queries (`{"query", "gold": [ids]}`), with the
    /// dense-only baseline from the same run. Builds its own in-memory index; never writes the
    /// service's data.
    Faq {
        /// KB file (JSONL, CSV or Markdown), e.g. ../shared/datasets/faq/bq_dev/kb.jsonl.
        #[arg(
            long,
            required_unless_present = "data_dir",
            conflicts_with = "data_dir"
        )]
        kb: Option<PathBuf>,
        /// Evaluate the KB this data directory serves instead of --kb: its entries, documents
        /// and out-of-scope examples, and its stored calibration, exactly as `/v1/match`
        /// answers from them.
        #[arg(long)]
        data_dir: Option<PathBuf>,
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
        /// Add the questions the data directory's feedback labels with their right entry
        /// (customers' corrections and annotations; the newest entry of each question) as
        /// answerable queries. Questions that are queries or KB texts already, and entries the
        /// KB lacks or has disabled, are counted and left out. The data directory is
        /// --data-dir, else server.data_dir.
        #[arg(long)]
        with_feedback: bool,
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
        /// Int8 kernels to force (default: embed.cpu, normally auto).
        #[arg(long, value_enum)]
        cpu: Option<kefu::embed::CpuPath>,
        /// Print one JSON object as the last line of standard output.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: CommonFlags,
    },
}

pub fn run(cmd: EvalCommand, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        EvalCommand::Faq {
            kb,
            data_dir,
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
            with_feedback,
            target_precision,
            perturb,
            seed,
            report,
            sweep,
            json,
            common,
        } => {
            let cfg = ctx.config(Flags::with(Overrides {
                data_dir: data_dir.clone(),
                model: common.model,
                ..Default::default()
            }))?;
            let (kb, served) = match (kb, &data_dir) {
                (Some(kb), _) => (kb, None),
                (None, Some(dir)) => (dir.clone(), Some(ServedKb::from_data_dir(&cfg)?)),
                (None, None) => anyhow::bail!("give --kb FILE or --data-dir DIR"),
            };
            let mut qs = kefu::eval::faq::read_queries(&queries, limit)?;
            for f in &oos {
                qs.extend(kefu::eval::faq::read_oos(f, oos_limit)?);
            }
            let mut examples = kefu::kb::out_of_scope::read_all(
                &out_of_scope,
                kefu::kb::out_of_scope::MAX_EXAMPLES,
            )?;
            let (mut cal, mut source) = (cfg.matching.calibration(), "config".to_string());
            let (entries, documents) = match served {
                Some(s) => {
                    examples.extend(s.out_of_scope);
                    if s.stored_calibration {
                        (cal, source) = (s.calibration, "kb".into());
                    }
                    (s.entries, s.documents)
                }
                None => (kefu::eval::faq::read_kb(&kb)?, Vec::new()),
            };
            if with_feedback {
                let labelled: Vec<kefu::eval::faq::Query> =
                    common::labelled_feedback(&cfg.server.data_dir)?
                        .into_iter()
                        .filter_map(|f| {
                            Some(kefu::eval::faq::Query {
                                query: f.question?,
                                gold: vec![f.faq_id.filter(|id| !id.trim().is_empty())?],
                            })
                        })
                        .collect();
                let used = kefu::eval::faq::add_feedback(&mut qs, &labelled, &entries);
                print_feedback_queries(&cfg.server.data_dir, &used);
            }
            if let Some(f) = &calibration {
                cal = common::read_calibration(f)?;
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
            let e = common::embedder(&cfg)?;
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
                documents,
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
            common::print_report(json, &r, print_faq_report)
        }
        EvalCommand::Rewrite {
            data,
            limit,
            json,
            common,
        } => {
            let cfg = ctx.config(Flags::common(common))?;
            let rows = kefu::eval::rewrite::read(&data, limit)?;
            let e = common::embedder(&cfg)?;
            let r = kefu::eval::rewrite::run(
                &e,
                &data,
                &rows,
                &cfg.index.options(),
                cfg.matching.calibration().weights(),
            )?;
            common::print_report(json, &r, |r| {
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
            })
        }
        EvalCommand::Recommend {
            interactions,
            items,
            split,
            report,
            json,
        } => {
            let log = kefu::recommend::data::read_interactions(&interactions)?;
            let catalogue = match &items {
                Some(p) => kefu::recommend::data::read_item_ids(p)?,
                None => vec![],
            };
            let h = kefu::recommend::data::Histories::build(&log, &catalogue);
            let r =
                kefu::recommend::eval::run(&interactions, &h, split, log.len(), report.as_deref())?;
            common::print_report(json, &r, |r| {
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
            })
        }
        EvalCommand::Pairs {
            data,
            dev,
            limit,
            engine,
            weights,
            cpu,
            json,
            common,
        } => {
            let cfg = ctx.config(Flags {
                engine,
                weights,
                cpu,
                ..Flags::common(common)
            })?;
            let pairs = kefu::eval::pairs::read_pairs(&data, limit)?;
            let dev_pairs = match &dev {
                Some(p) => Some((p.as_path(), kefu::eval::pairs::read_pairs(p, None)?)),
                None => None,
            };
            let e = common::embedder(&cfg)?;
            let r = kefu::eval::pairs::run(&e, &data, pairs, dev_pairs)?;
            common::print_report(json, &r, |r| {
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
            })
        }
        EvalCommand::Compare {
            kind,
            a,
            b,
            data,
            queries,
            name,
            out,
            label_a,
            label_b,
            encoder,
            json,
        } => {
            let cfg = ctx.config(Flags::model(encoder))?;
            let kind: kefu::model::registry::Kind = kind.parse().map_err(anyhow::Error::msg)?;
            let c = compare(
                &cfg,
                kind,
                (&a, label_a),
                (&b, label_b),
                data.as_deref(),
                queries.as_deref(),
                name.as_deref(),
            )?;
            c.write(&out)?;
            common::print_report(json, &c, |c| {
                println!(
                    "{} {} vs {} {} on {} ({} rows)",
                    c.a.label, c.a.version, c.b.label, c.b.version, c.data, c.rows
                );
                for m in &c.measures {
                    println!(
                        "  {:<22} {:.4}  {:.4}  ({:+.4})",
                        m.name, m.a, m.b, m.change
                    );
                }
                for x in c.classes.iter().take(5) {
                    println!("  {}: {:.4} → {:.4} ({:+.4})", x.name, x.a, x.b, x.change);
                }
                println!("report written to {}", out.join("compare.html").display());
            })
        }
        EvalCommand::Intent {
            model_dir,
            test,
            threshold,
            limit,
            report,
            cache,
            json,
            encoder,
        } => {
            use kefu::intent;
            let cfg = ctx.config(Flags::model(encoder))?;
            let mut m = intent::IntentModel::load(&model_dir)?;
            let rows = intent::read_examples(&test, limit)?;
            let e = common::embedder(&cfg)?;
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
            common::print_report(json, &r, |r| {
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
            })
        }
    }
}

/// What `--with-feedback` took from the data directory, on standard error.
fn print_feedback_queries(data_dir: &std::path::Path, f: &kefu::eval::faq::FeedbackQueries) {
    let list = |m: &std::collections::BTreeMap<String, usize>| {
        m.iter()
            .map(|(id, n)| format!("{id} ({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    eprintln!(
        "with feedback from {}: {} labelled questions, {} added as queries ({} already queries, \
         {} queries with other gold kept, {} texts of the KB, {} naming entries the KB lacks, {} \
         naming disabled entries)",
        data_dir.display(),
        f.labelled,
        f.added,
        f.duplicates,
        f.conflicts,
        f.kb_texts,
        f.unknown_entries.values().sum::<usize>(),
        f.disabled_entries.values().sum::<usize>()
    );
    if !f.unknown_entries.is_empty() {
        eprintln!("  entries the KB lacks: {}", list(&f.unknown_entries));
    }
    if !f.disabled_entries.is_empty() {
        eprintln!(
            "  disabled entries (enable them to calibrate on their questions): {}",
            list(&f.disabled_entries)
        );
    }
}

fn print_faq_report(r: &kefu::eval::faq::FaqReport) {
    println!(
        "{} ({} entries, {} questions) × {} queries ({} answerable, {} out of scope){}",
        r.kb,
        r.entries,
        r.texts,
        // `n` counts the answerable queries only (the metrics' denominator).
        r.n + r.out_of_scope,
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

/// `kefu eval compare`: both models on the same data, with the code the gate runs.
fn compare(
    cfg: &kefu::config::Config,
    kind: kefu::model::registry::Kind,
    (a, label_a): (&std::path::Path, String),
    (b, label_b): (&std::path::Path, String),
    data: Option<&std::path::Path>,
    queries: Option<&std::path::Path>,
    name: Option<&str>,
) -> anyhow::Result<kefu::eval::compare::Comparison> {
    use kefu::eval::compare::{Comparison, Side};
    use kefu::model::gate;
    use kefu::model::registry::Kind;
    let side = |label: String, r: kefu::model::registry::ModelRef| Side {
        label,
        path: r.path,
        version: r.version,
    };
    match kind {
        Kind::Intent => {
            let golden = match (data, name) {
                (Some(d), _) => gate::intent_golden(cfg, "", Some(d))?,
                (None, Some(n)) => gate::intent_golden(cfg, n, None)?,
                (None, None) => anyhow::bail!(
                    "pass --data FILE (labelled JSONL) or --name NAME (an intent model's golden set)"
                ),
            };
            let e = common::embedder(cfg)?;
            let ma = gate::load_intent(&e, a)?;
            let mb = gate::load_intent(&e, b)?;
            let (ra, da) = gate::intent_scores(&e, &ma, &golden)?;
            let (rb, db) = gate::intent_scores(&e, &mb, &golden)?;
            let mut measures = vec![
                ("accuracy", ra.accuracy, rb.accuracy),
                (
                    "in_scope_accuracy",
                    ra.in_scope_accuracy,
                    rb.in_scope_accuracy,
                ),
                ("macro_f1", ra.macro_f1, rb.macro_f1),
            ];
            if let (Some(x), Some(y)) = (ra.oos_precision, rb.oos_precision) {
                measures.push(("oos_precision", x, y));
            }
            if let (Some(x), Some(y)) = (ra.oos_recall, rb.oos_recall) {
                measures.push(("oos_recall", x, y));
            }
            let mut per: std::collections::BTreeMap<String, (usize, f64, f64)> = Default::default();
            for p in &da.per_intent {
                let e = per.entry(p.intent.clone()).or_default();
                e.0 = e.0.max(p.support);
                e.1 = p.f1;
            }
            for p in &db.per_intent {
                let e = per.entry(p.intent.clone()).or_default();
                e.0 = e.0.max(p.support);
                e.2 = p.f1;
            }
            let mut c = Comparison::new(
                "intent",
                golden.source.clone(),
                ra.n,
                side(label_a, ma.origin.clone().unwrap_or_else(|| unsaved(a))),
                side(label_b, mb.origin.clone().unwrap_or_else(|| unsaved(b))),
                measures,
                "F1 per intent",
                per.into_iter().map(|(k, (s, x, y))| (k, s, x, y)).collect(),
            );
            c.notes.push(format!(
                "Both classified with the encoder {} at their own calibrated out-of-scope thresholds.",
                e.version()
            ));
            Ok(c)
        }
        Kind::Recommend => {
            let golden = gate::recommend_golden(cfg, data)?;
            let (ma, oa) = kefu::recommend::serving::load_dir(a)?;
            let (mb, ob) = kefu::recommend::serving::load_dir(b)?;
            let (sa, sb) = (
                gate::recommend_scores(&ma, &golden),
                gate::recommend_scores(&mb, &golden),
            );
            let mut segs: std::collections::BTreeMap<String, (usize, f64, f64)> =
                Default::default();
            for (n, u, v) in &sa.segments {
                let e = segs.entry(n.clone()).or_default();
                e.0 = *u;
                e.1 = *v;
            }
            for (n, u, v) in &sb.segments {
                let e = segs.entry(n.clone()).or_default();
                e.0 = *u;
                e.2 = *v;
            }
            let mut c = Comparison::new(
                "recommend",
                golden.source.clone(),
                sa.users,
                side(label_a, oa),
                side(label_b, ob),
                vec![
                    ("hr_at_10", sa.hr_at_10, sb.hr_at_10),
                    ("ndcg_at_10", sa.ndcg_at_10, sb.ndcg_at_10),
                    ("recall_at_10", sa.recall_at_10, sb.recall_at_10),
                ],
                "NDCG@10 by events before the held-out one",
                segs.into_iter()
                    .map(|(k, (u, x, y))| (format!("{k} events"), u, x, y))
                    .collect(),
            );
            c.notes.push(
                "Each customer's last interaction is held out and ranked among every item the model knows, from the collaborative scores of what came before (fold-in)."
                    .into(),
            );
            Ok(c)
        }
        Kind::Embedding => {
            let (kb_path, q_path, entries, qs) = match (data, queries) {
                (Some(k), Some(q)) => (
                    k.to_path_buf(),
                    q.to_path_buf(),
                    kefu::eval::faq::read_kb(k)?,
                    kefu::eval::faq::read_queries(q, None)?,
                ),
                (Some(_), None) => {
                    anyhow::bail!("--data is a KB file for embeddings: add --queries")
                }
                _ => (
                    "built-in demo KB".into(),
                    "built-in demo queries".into(),
                    kefu::kb::demo::entries(),
                    gate::demo_queries()?,
                ),
            };
            let opts = gate::faq_options(cfg);
            let mut reports = Vec::new();
            let mut refs = Vec::new();
            for dir in [a, b] {
                let e = gate::load_checked(cfg, dir)?;
                let r = kefu::eval::faq::run(
                    &e,
                    &kb_path,
                    &q_path,
                    entries.clone(),
                    qs.clone(),
                    &opts,
                )?;
                anyhow::ensure!(!r.interrupted, "interrupted");
                refs.push(kefu::model::registry::model_ref(&e));
                reports.push(r);
            }
            let (ra, rb) = (&reports[0], &reports[1]);
            let mut c = Comparison::new(
                "embedding",
                format!("{} with {}", kb_path.display(), q_path.display()),
                ra.n,
                side(label_a, refs[0].clone()),
                side(label_b, refs[1].clone()),
                vec![
                    ("top1", ra.top1, rb.top1),
                    ("recall_at_5", ra.recall_at_5, rb.recall_at_5),
                    ("mrr_at_10", ra.mrr_at_10, rb.mrr_at_10),
                ],
                "",
                Vec::new(),
            );
            c.notes.push("The matcher (dense, lexical and fuzzy, fused with the configured calibration) with each encoder; `kefu eval faq --report` gives either's misses.".into());
            Ok(c)
        }
    }
}

fn unsaved(dir: &std::path::Path) -> kefu::model::registry::ModelRef {
    kefu::model::registry::ModelRef {
        path: dir.display().to_string(),
        version: "unsaved".into(),
    }
}
