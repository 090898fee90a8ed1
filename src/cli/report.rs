//! `kefu report` (the operations report as one HTML page) and the core they share with
//! `kefu kb suggest`: the service's own operations over a data directory, without serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use kefu::config::Config;
use kefu::core::Kefu;

use super::common::{self, Ctx, Flags};

#[derive(Args)]
pub struct ReportArgs {
    /// Start: RFC 3339, a UTC day (2026-12-01) or Unix seconds; default: 7 days before --to.
    #[arg(long)]
    from: Option<String>,
    /// End (exclusive), in the same forms; default: now.
    #[arg(long)]
    to: Option<String>,
    /// `zh` or `en`.
    #[arg(long, default_value = "zh")]
    lang: String,
    /// Only turns of this channel (web, app, wechat, sms).
    #[arg(long)]
    channel: Option<String>,
    /// Where the HTML page goes.
    #[arg(long, default_value = "report.html")]
    out: PathBuf,
    /// Data directory (server.data_dir).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub fn run(a: ReportArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let cfg = ctx.config(Flags::data_dir(a.data_dir))?;
    common::require_kefu_data(&cfg.server.data_dir)?;
    let q = kefu::core::report::ReportQuery {
        from: a.from,
        to: a.to,
        lang: Some(a.lang),
        channel: a.channel,
    };
    let out = a.out;
    with_core(cfg, |k| async move {
        let r = k.report(&q).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        write_atomic(&out, kefu::analytics::report::html(&r).as_bytes())?;
        eprintln!(
            "report of {} turns ({} conversations) written to {}",
            r.stats.totals.volume,
            r.stats.totals.conversations,
            out.display()
        );
        Ok(())
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut f = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing into {}", dir.display()))?;
    std::io::Write::write_all(&mut f, bytes)?;
    f.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Runs `f` on the core opened over `cfg`'s data directory once its encoder and KB index are
/// ready. Nothing is added to the directory: no demo data, no intent training.
pub fn with_core<F, Fut>(mut cfg: Config, f: F) -> anyhow::Result<()>
where
    F: FnOnce(Arc<Kefu>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    cfg.kb.load_demo = false;
    cfg.intent.load_demo = false;
    cfg.recommend.load_demo = false;
    cfg.alerts.enabled = false;
    let serving = kefu::model::registry::serving_path(&cfg.server.data_dir, &cfg.model.path)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let done = rt.block_on(async move {
        let k = Kefu::open(cfg).await?;
        let mut errors = k.start(serving);
        eprintln!("loading the encoder and the KB index…");
        loop {
            if k.encoder_and_index().is_ok() {
                break;
            }
            tokio::select! {
                Some(e) = errors.recv() => return Err(e),
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        let r = f(k.clone()).await;
        k.stop(tokio::time::Instant::now() + Duration::from_secs(5))
            .await;
        r
    });
    rt.shutdown_background();
    done
}
