//! `kefu auth new-key` and `kefu auth hash`: API keys for `[auth]`.

use clap::{Args, Subcommand};
use kefu::auth::{Scope, hash_key, new_key};

#[derive(Subcommand)]
pub enum AuthCommand {
    /// Mint an API key: prints the key (shown once; kefu keeps only its hash) and the lines
    /// to paste into kefu.toml.
    NewKey(NewKeyArgs),
    /// Print the `hash` line for a key you already have (e.g. one kept in a secret store).
    Hash {
        /// The key.
        key: String,
    },
}

#[derive(Args)]
pub struct NewKeyArgs {
    /// Who holds the key (logs, limits and errors name it).
    #[arg(long)]
    name: String,
    /// Comma-separated: chat, query, agent, admin.
    #[arg(long, value_delimiter = ',', required = true)]
    scopes: Vec<Scope>,
}

pub fn run(cmd: AuthCommand) -> anyhow::Result<()> {
    match cmd {
        AuthCommand::NewKey(a) => {
            let name = a.name.trim();
            if name.is_empty() || name.len() > 64 {
                anyhow::bail!("--name must be 1–64 characters");
            }
            let mut scopes = a.scopes;
            scopes.sort();
            scopes.dedup();
            let k = new_key(name, scopes);
            let scopes = k
                .config
                .scopes
                .iter()
                .map(|s| format!("{:?}", s.as_str()))
                .collect::<Vec<_>>()
                .join(", ");
            eprintln!("The key (shown once: give it to {name}; kefu keeps only its hash):\n");
            println!("{}", k.key);
            eprintln!("\nAdd to kefu.toml:\n");
            eprintln!(
                "[[auth.keys]]\nname = {:?}\nscopes = [{scopes}]\nhash = {:?}",
                k.config.name, k.config.hash
            );
            Ok(())
        }
        AuthCommand::Hash { key } => {
            println!("hash = {:?}", hash_key(key.trim()));
            Ok(())
        }
    }
}
