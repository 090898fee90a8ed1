//! `kefu config` and `kefu openapi`: print what the service would use.

use super::CommonFlags;
use super::common::{Ctx, Flags};

pub fn print_config(common: CommonFlags, ctx: &Ctx) -> anyhow::Result<()> {
    let cfg = ctx.config(Flags::common(common))?;
    print!("{}", toml::to_string_pretty(&cfg)?);
    Ok(())
}

pub fn print_openapi() -> anyhow::Result<()> {
    println!("{}", kefu::api::openapi::document());
    Ok(())
}
