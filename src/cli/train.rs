//! `kefu train`: recommenders, intent classifiers and encoder domain adaptation.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use kefu::model;

use super::common::{self, Ctx, Flags};

#[derive(Subcommand)]
pub enum TrainCommand {
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
        /// Add the questions annotated with an intent in the data directory
        /// (`POST /v1/annotations`) to the training rows: the newest label of each question,
        /// never to dev, and only labels the training file has (others are reported and left
        /// out).
        #[arg(long)]
        with_feedback: bool,
        /// Data directory (server.data_dir): its annotations for --with-feedback and the
        /// default embedding cache.
        #[arg(long)]
        data_dir: Option<PathBuf>,
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

pub fn run(cmd: TrainCommand, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        TrainCommand::Recommend {
            interactions,
            items,
            out,
        } => {
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
        TrainCommand::Intent {
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
            with_feedback,
            data_dir,
        } => {
            use kefu::intent;
            anyhow::ensure!(
                (0.0..1.0).contains(&dev_fraction) && (0.0..1.0).contains(&oos_reject_rate),
                "--dev-fraction and --oos-reject-rate must be in [0, 1)"
            );
            let cfg = ctx.config(Flags::with(kefu::config::Overrides {
                model: encoder,
                data_dir,
                ..Default::default()
            }))?;
            let examples = intent::read_examples(&train, limit)?;
            let dev_examples = dev
                .as_ref()
                .map(|d| intent::read_examples(d, None))
                .transpose()?;
            let annotated: Vec<intent::Example> = if with_feedback {
                common::labelled_feedback(&cfg.server.data_dir)?
                    .into_iter()
                    .filter_map(|f| {
                        Some(intent::Example {
                            text: f.question?,
                            label: f.intent.filter(|i| !i.trim().is_empty())?,
                        })
                    })
                    .collect()
            } else {
                Vec::new()
            };
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
            let e = common::embedder(&cfg)?;
            let cache =
                cache.unwrap_or_else(|| intent::features::default_cache_dir(&cfg.server.data_dir));
            let sha = |p: &PathBuf| model::manifest::sha256_file(p).map_err(anyhow::Error::from);
            // The dev rows are chosen before the annotated questions join: they train only.
            let set =
                intent::train::with_feedback(&examples, dev_examples.as_deref(), &annotated, &opts);
            let mut training = serde_json::json!({
                "train": train.display().to_string(),
                "train_sha256": sha(&train)?,
                "dev": dev.as_ref().map(|d| d.display().to_string()),
                "dev_sha256": dev.as_ref().map(sha).transpose()?,
                "limit": limit,
                "options": opts,
            });
            if with_feedback {
                print_feedback_use(&cfg.server.data_dir, &set.feedback);
                training["feedback"] = serde_json::json!({
                    "data_dir": cfg.server.data_dir.display().to_string(),
                    "use": set.feedback,
                });
            }
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
                &set.train,
                Some(&set.dev),
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
            common::print_report(json, &r, |r| {
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
            })
        }
        TrainCommand::Embed {
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
        } => {
            let cfg = ctx.config(Flags::model(base))?;
            let opts = kefu::embed::train::EmbedTrainOptions {
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
            let c = kefu::embed::train::train(
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
    }
}

/// What `--with-feedback` took from the data directory, on standard error.
fn print_feedback_use(data_dir: &std::path::Path, f: &kefu::intent::train::FeedbackUse) {
    eprintln!(
        "with feedback from {}: {} annotated questions, {} added to the training rows ({} already \
         training rows, {} dev rows left out, {} labelled otherwise by the training file, {} with \
         labels the training file lacks)",
        data_dir.display(),
        f.annotated,
        f.added,
        f.duplicates,
        f.in_dev,
        f.conflicts.len(),
        f.unknown_labels.values().sum::<usize>()
    );
    for c in f.conflicts.iter().take(10) {
        eprintln!(
            "  kept the training file's label {:?} of {:?} (annotated {:?})",
            c.file_label, c.text, c.annotated_label
        );
    }
    if !f.unknown_labels.is_empty() {
        eprintln!(
            "  left out, not labels of the training file (add examples of a new intent to the file): {}",
            f.unknown_labels
                .iter()
                .map(|(l, n)| format!("{l} ({n})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
