//! `kefu kb`: the knowledge base in the data directory. Import, add-document and the writing
//! forms of calibrate / out-of-scope create the data directory; export and the reading forms
//! refuse one that holds no kefu data (a mistyped --data-dir would otherwise get an empty KB).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use kefu::config::Config;
use kefu::kb::KbStore;
use kefu::kb::import::{self, Format};

use super::common::{self, Ctx, Flags};

#[derive(Subcommand)]
pub enum KbCommand {
    /// Import FAQ entries (JSONL, CSV or Markdown; by extension unless --format). Every file is
    /// validated first and every problem reported with its line; then all entries are written
    /// in one transaction (entries with an existing id are replaced), or none.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long, value_enum)]
        format: Option<Format>,
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
    /// Knowledge gaps: the unanswered, abandoned and badly rated questions of a window,
    /// clustered by meaning (what `GET /v1/stats/unanswered` lists), each with a count, a
    /// representative, other wordings and the nearest entry. `--draft ID` turns one into a
    /// disabled draft entry.
    Suggest {
        /// Start: RFC 3339, a UTC day or Unix seconds; default: 24 hours before --to.
        #[arg(long)]
        from: Option<String>,
        /// End (exclusive); default: now.
        #[arg(long)]
        to: Option<String>,
        /// Leave out clusters of fewer questions.
        #[arg(long, default_value_t = 2)]
        min_count: u64,
        /// Make the cluster with this id a draft FAQ entry (disabled until answered).
        #[arg(long)]
        draft: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Data directory (server.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Write every entry to standard output (or --out) in a format `kb import` reads.
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: Format,
        #[arg(long)]
        out: Option<PathBuf>,
        /// Data directory (server.data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

pub fn run(cmd: KbCommand, ctx: &Ctx) -> anyhow::Result<()> {
    if let KbCommand::Suggest {
        from,
        to,
        min_count,
        draft,
        json,
        data_dir,
    } = cmd
    {
        let cfg = ctx.config(Flags::data_dir(data_dir))?;
        common::require_kefu_data(&cfg.server.data_dir)?;
        let q = kefu::core::analytics::StatsQuery {
            from,
            to,
            min_count: Some(min_count),
            limit: Some(1000),
            ..Default::default()
        };
        return super::report::with_core(cfg, |k| async move {
            let fail = |e: kefu::error::Error| anyhow::anyhow!("{e}");
            if let Some(id) = draft {
                let e = k.draft_from_gap(&id, &q).await.map_err(fail)?;
                println!("{}", serde_json::to_string_pretty(&e)?);
                eprintln!(
                    "draft entry {} added (disabled): write its answer and enable it",
                    e.entry.id
                );
                return Ok(());
            }
            let u = k.unanswered(&q).await.map_err(fail)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&u)?);
                return Ok(());
            }
            println!(
                "{} unanswered questions, {} clusters of at least {min_count}",
                u.questions,
                u.clusters.len()
            );
            for c in &u.clusters {
                println!("\n[{}] ×{}  {}", c.id, c.count, c.representative);
                for e in c.examples.iter().filter(|e| **e != c.representative) {
                    println!("          {e}");
                }
                if let Some(n) = &c.nearest {
                    println!("    nearest: {} {} ({:.2})", n.faq_id, n.question, n.score);
                }
            }
            Ok(())
        });
    }
    let data_dir = match &cmd {
        KbCommand::Import { data_dir, .. }
        | KbCommand::Export { data_dir, .. }
        | KbCommand::Calibrate { data_dir, .. }
        | KbCommand::OutOfScope { data_dir, .. }
        | KbCommand::AddDocument { data_dir, .. } => data_dir.clone(),
        KbCommand::Suggest { .. } => unreachable!("handled above"),
    };
    let cfg = ctx.config(Flags::data_dir(data_dir))?;
    if cmd.only_reads() {
        common::require_kefu_data(&cfg.server.data_dir)?;
    }
    common::block_on(kb_command(cmd, &cfg))?
}

impl KbCommand {
    /// Whether the command only reads the KB, so must find one rather than create it.
    fn only_reads(&self) -> bool {
        match self {
            KbCommand::Export { .. } | KbCommand::Suggest { .. } => true,
            KbCommand::Calibrate { file, clear, .. } => file.is_none() && !clear,
            KbCommand::OutOfScope { files, clear, .. } => files.is_empty() && !clear,
            KbCommand::Import { .. } | KbCommand::AddDocument { .. } => false,
        }
    }
}

async fn kb_command(cmd: KbCommand, cfg: &Config) -> anyhow::Result<()> {
    match cmd {
        KbCommand::Suggest { .. } => unreachable!("kb suggest runs on the core (run)"),
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
            let store = KbStore::open(&cfg.server.data_dir).await?;
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
            let store = KbStore::open(&cfg.server.data_dir).await?;
            if clear {
                store.set_calibration(None).await?;
                eprintln!("calibration removed: [matching] applies");
            } else if let Some(f) = file {
                let c = common::read_calibration(&f)?;
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
            let store = KbStore::open(&cfg.server.data_dir).await?;
            if clear {
                store.set_out_of_scope(&[]).await?;
                eprintln!("out-of-scope examples removed");
            } else if files.is_empty() {
                for t in store.out_of_scope().await? {
                    println!("{}", serde_json::json!({ "text": t }));
                }
            } else {
                let examples = kefu::kb::out_of_scope::read_all(&files, cfg.kb.max_out_of_scope)?;
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
            let store = KbStore::open(&cfg.server.data_dir).await?;
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
            let store = KbStore::open(&cfg.server.data_dir).await?;
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
