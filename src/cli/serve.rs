//! `kefu serve`.

use std::path::PathBuf;

use clap::Args;
use kefu::config::Overrides;

use super::CommonFlags;
use super::common::{Ctx, Flags};

#[derive(Args)]
pub struct ServeArgs {
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
}

pub fn run(a: ServeArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let cfg = ctx.config_as_given(Flags::with(Overrides {
        host: a.host,
        port: a.port,
        data_dir: a.data_dir,
        model: a.common.model,
    }))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = rt.block_on(kefu::serve::run(cfg));
    // `serve::run` has waited for background work as long as the grace period allows: what
    // still runs (a model load, a training) ends with the process instead of holding it.
    rt.shutdown_background();
    served
}
