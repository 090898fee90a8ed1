//! `kefu match`: one question against the data directory's knowledge base (or a KB file),
//! printed as the decision and a table.

use std::path::{Path, PathBuf};

use clap::Args;

use kefu::config::{Config, Overrides};
use kefu::embed::Embedder;
use kefu::index::snapshot::{self, Prior};
use kefu::kb::{Document, FaqEntry};
use kefu::matcher::{Calibration, Candidate, KbIndex};

use super::CommonFlags;
use super::common::{self, Ctx, Flags};

#[derive(Args)]
pub struct MatchArgs {
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
}

pub fn run(a: MatchArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let cfg = ctx.config(Flags::with(Overrides {
        data_dir: a.data_dir,
        model: a.common.model,
        ..Default::default()
    }))?;
    let kb = match &a.kb {
        Some(path) => Kb {
            entries: kefu::eval::faq::read_kb(path)?,
            documents: Vec::new(),
            out_of_scope: Vec::new(),
            calibration: cfg.matching.calibration(),
            snapshot: false,
        },
        None => Kb::from_data_dir(&cfg)?,
    };
    let e = common::embedder(&cfg)?;
    let prior = kb
        .snapshot
        .then(|| load_snapshot(&cfg.server.data_dir, e.version()))
        .flatten();
    let index = KbIndex::build(
        kb.entries,
        &kb.documents,
        &kb.out_of_scope,
        &e,
        prior,
        &cfg.index.options(),
        |_, _| {},
    )?;
    let st = &index.stats;
    tracing::info!(
        "KB index built: {} vectors reused from the snapshot, {} embedded, {:.1} s",
        st.reused,
        st.embedded,
        st.seconds
    );
    let m = match_query(&index, &e, &kb.calibration, a.query, a.top_k)?;
    print_table(&index, &m);
    Ok(())
}

/// What a question is matched against.
struct Kb {
    entries: Vec<FaqEntry>,
    documents: Vec<Document>,
    out_of_scope: Vec<String>,
    calibration: Calibration,
    /// Whether the data directory's index snapshot may supply vectors.
    snapshot: bool,
}

impl Kb {
    /// The data directory's KB as `kefu serve` indexes it: the demo only when the KB has
    /// neither entries nor documents, the stored calibration else [matching].
    fn from_data_dir(cfg: &Config) -> anyhow::Result<Self> {
        let dir = &cfg.server.data_dir;
        common::require_kefu_data(dir)?;
        let ((entries, documents, out_of_scope), cal) = common::block_on(async {
            let store = kefu::kb::KbStore::open(dir).await?;
            Ok::<_, kefu::kb::store::StoreError>((
                store.index_inputs().await?,
                store.calibration().await?,
            ))
        })??;
        let calibration = cal.unwrap_or_else(|| cfg.matching.calibration());
        let snapshot = cfg.index.snapshot;
        if entries.is_empty() && documents.is_empty() && cfg.kb.load_demo {
            return Ok(Self {
                entries: kefu::kb::demo::entries(),
                documents: kefu::kb::demo::documents(),
                out_of_scope: kefu::kb::demo::out_of_scope(),
                calibration,
                snapshot,
            });
        }
        Ok(Self {
            entries,
            documents,
            out_of_scope,
            calibration,
            snapshot,
        })
    }
}

/// The snapshot `kefu serve` saved in the data directory, when the same model made it: its
/// vectors spare embedding the whole KB again (seconds per thousand texts).
fn load_snapshot(data_dir: &Path, model_version: &str) -> Option<Prior> {
    use kefu::index::snapshot::Unusable;
    match snapshot::load(&snapshot::dir(data_dir), model_version) {
        Ok(p) => Some(p),
        Err(Unusable::Missing) => None,
        Err(Unusable::OtherModel(m)) => {
            tracing::info!(
                snapshot_model = m,
                "index snapshot is from another model: embedding the KB"
            );
            None
        }
        Err(Unusable::Broken(why)) => {
            tracing::warn!(why, "index snapshot unreadable: embedding the KB");
            None
        }
    }
}

/// One question's outcome.
struct Matched {
    corrected: Option<String>,
    decision: &'static str,
    /// Cosine of the nearest out-of-scope example.
    out_of_scope: Option<f32>,
    found: Vec<Candidate>,
}

/// The matching pipeline, kept in one place so the library's can replace it: spelling
/// correction from the KB's vocabulary, encoding, fused search, the out-of-scope gap, the
/// decision.
fn match_query(
    index: &KbIndex,
    e: &Embedder,
    cal: &Calibration,
    query: String,
    top_k: usize,
) -> anyhow::Result<Matched> {
    let corrected = index.correct(&query);
    let query = corrected.clone().unwrap_or(query);
    let v = e.embed_blocking(std::slice::from_ref(&query))?;
    let found = index.search(&v[0].vector, &query, top_k.clamp(1, 50), cal.weights());
    let scores: Vec<f32> = found.iter().map(|c| c.score).collect();
    let out_of_scope = index.out_of_scope_similarity(&v[0].vector);
    let gap = found.first().zip(out_of_scope).map(|(c, o)| c.dense - o);
    Ok(Matched {
        corrected,
        decision: cal.decide(&scores, gap).as_str(),
        out_of_scope,
        found,
    })
}

fn print_table(index: &KbIndex, m: &Matched) {
    if let Some(c) = &m.corrected {
        println!("corrected: {c}");
    }
    println!("decision: {}", m.decision);
    if let Some(o) = m.out_of_scope {
        println!("nearest out-of-scope example: cosine {o:.3}");
    }
    println!(
        "{:<4} {:<18} {:>6} {:>6} {:>6} {:>6} {:>6}  question / matched text",
        "#", "faq_id", "score", "dense", "lex", "fuzzy", "answer"
    );
    for (i, c) in m.found.iter().enumerate() {
        let entry = &index.entries[c.entry];
        println!(
            "{:<4} {:<18} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>6.3}  {} / {}",
            i + 1,
            entry.id,
            c.score.clamp(0.0, 1.0),
            c.dense,
            c.lexical,
            c.fuzzy,
            c.answer,
            entry.question,
            index.texts[c.text].1
        );
    }
}
