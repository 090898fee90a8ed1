//! The `kefu` command line: the top-level clap types and the dispatch to one module per
//! subcommand group (each group's flags live next to its code).

mod auth;
mod bench;
mod common;
mod config;
mod embed;
mod eval;
mod kb;
mod lifecycle;
mod match_;
mod model;
mod report;
mod serve;
mod train;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use common::Ctx;

/// kefu (客服): semantic search and intent service for customer support.
#[derive(Parser)]
#[command(name = "kefu", version, about)]
pub struct Cli {
    /// Configuration file (default: ./kefu.toml when it exists).
    #[arg(long, global = true, env = "KEFU_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Clone, Default)]
pub struct CommonFlags {
    /// Embedding model directory: evaluate or match with an encoder other than the active one
    /// (the model activated in the data directory, else model.path).
    #[arg(long, visible_alias = "encoder")]
    pub model: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve(serve::ServeArgs),
    /// Embed texts and print the vectors (or their pairwise cosines).
    Embed(embed::EmbedArgs),
    /// Manage model directories.
    #[command(subcommand)]
    Model(model::ModelCommand),
    /// Measure speed.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Match a question against the knowledge base and print the best entries as a table.
    Match(match_::MatchArgs),
    /// Manage the knowledge base in the data directory.
    #[command(subcommand)]
    Kb(kb::KbCommand),
    /// Measure accuracy on labelled data.
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// Train models on labelled data.
    #[command(subcommand)]
    Train(train::TrainCommand),
    /// Write the operations report (stats, SLA, hot topics, knowledge gaps, weak spots and the
    /// change from the period before) as one HTML page.
    Report(report::ReportArgs),
    /// Print the effective configuration (defaults, file, environment and flags merged).
    Config {
        #[command(flatten)]
        common: CommonFlags,
    },
    /// Print the OpenAPI document.
    Openapi,
    /// API keys: mint one, or hash one you have.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
}

/// Runs one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Ctx::new(cli.config);
    match cli.command {
        Command::Serve(a) => serve::run(a, &ctx),
        Command::Embed(a) => embed::run(a, &ctx),
        Command::Model(c) => model::run(c, &ctx),
        Command::Bench(c) => bench::run(c, &ctx),
        Command::Match(a) => match_::run(a, &ctx),
        Command::Kb(c) => kb::run(c, &ctx),
        Command::Eval(c) => eval::run(c, &ctx),
        Command::Train(c) => train::run(c, &ctx),
        Command::Report(a) => report::run(a, &ctx),
        Command::Config { common } => config::print_config(common, &ctx),
        Command::Openapi => config::print_openapi(),
        Command::Auth(c) => auth::run(c),
    }
}
