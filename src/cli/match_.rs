//! `kefu match`: one question against the data directory's knowledge base (or a KB file),
//! printed as the decision and a table.

use std::path::PathBuf;

use clap::Args;

use kefu::config::Overrides;
use kefu::core::matching::{MAX_TOP_K, MatchOptions, MatchResponse, Signals, match_offline};
use kefu::matcher::KbIndex;

use super::CommonFlags;
use super::common::{self, Ctx, Flags, ServedKb};

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
        Some(path) => ServedKb {
            entries: kefu::eval::faq::read_kb(path)?,
            documents: Vec::new(),
            out_of_scope: Vec::new(),
            calibration: cfg.matching.calibration(),
            stored_calibration: false,
            snapshot: false,
        },
        None => ServedKb::from_data_dir(&cfg)?,
    };
    let e = common::embedder(&cfg)?;
    let prior = kb
        .snapshot
        .then(|| {
            let dir = kefu::index::snapshot::dir(&cfg.server.data_dir);
            kefu::core::background::load_snapshot_for(&dir, e.version())
        })
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
    // The pipeline `/v1/match` runs, with what was just indexed as the store.
    let o = MatchOptions {
        top_k: a.top_k.clamp(1, MAX_TOP_K),
        explain: true,
        ..Default::default()
    };
    let m = match_offline(&e, &index, &kb.documents, &kb.calibration, &a.query, &o)?;
    print_table(&m);
    Ok(())
}

fn print_table(m: &MatchResponse) {
    if let Some(c) = &m.corrected_query {
        println!("corrected: {c}");
    }
    println!("decision: {}", m.decision.as_str());
    if let Some(o) = m.out_of_scope_similarity {
        println!("nearest out-of-scope example: cosine {o:.3}");
    }
    println!(
        "{:<4} {:<18} {:>6} {:>6} {:>6} {:>6} {:>6}  question / matched text",
        "#", "faq_id", "score", "dense", "lex", "fuzzy", "answer"
    );
    for (i, x) in m.matches.iter().enumerate() {
        let s = x.signals.clone().unwrap_or(Signals {
            dense: 0.0,
            lexical: 0.0,
            fuzzy: 0.0,
            answer: 0.0,
        });
        println!(
            "{:<4} {:<18} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>6.3}  {} / {}",
            i + 1,
            x.faq_id,
            x.score,
            s.dense,
            s.lexical,
            s.fuzzy,
            s.answer,
            x.question,
            x.matched_text
        );
    }
}
