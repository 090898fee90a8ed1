//! The `kefu` command line: parse, set up logging, dispatch to `cli`.

mod cli;

use clap::Parser;

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEFU_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only for a person at a terminal: log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // Every line masked: personal numbers never reach the log (kefu::privacy).
        .with_writer(kefu::privacy::MaskedStderr)
        .init();
}

fn main() {
    let cli = cli::Cli::parse();
    init_logging();
    if let Err(e) = cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
