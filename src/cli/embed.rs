//! `kefu embed`.

use clap::Args;

use super::CommonFlags;
use super::common::{self, Ctx, Flags};

#[derive(Args)]
pub struct EmbedArgs {
    /// Texts to embed.
    #[arg(required = true)]
    texts: Vec<String>,
    /// Print the cosine similarity of every pair instead of vectors.
    #[arg(long)]
    cosine: bool,
    #[command(flatten)]
    common: CommonFlags,
}

pub fn run(a: EmbedArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let cfg = ctx.config(Flags::common(a.common))?;
    let e = common::embedder(&cfg)?;
    let (texts, out) = (&a.texts, e.embed_blocking(&a.texts)?);
    if a.cosine {
        for i in 0..texts.len() {
            for j in i + 1..texts.len() {
                let c = kefu::embed::cosine(&out[i].vector, &out[j].vector);
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
