//! The `herald` binary.

mod admin;
mod cli;
mod config;
mod filter_test;
mod runtime;
mod serve;

use std::io::IsTerminal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli.command {
        cli::Command::Serve(args) => block_on(serve::run(args)),
        cli::Command::Filter {
            command: cli::FilterCommand::Test(args),
        } => filter_test::run(args).unwrap_or_else(|error| {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(2)
        }),
    }
}

/// Runs a command on a multi-threaded runtime; its error is printed and exits 1.
fn block_on(
    command: impl std::future::Future<Output = anyhow::Result<()>>,
) -> std::process::ExitCode {
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|runtime| runtime.block_on(command));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
