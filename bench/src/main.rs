//! `herald-bench`: see the crate docs. `scripts/bench` builds Herald in release mode and runs it.
#![forbid(unsafe_code)]
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the CLI's output"
)]

use std::path::PathBuf;

use clap::Parser;
use herald_bench::{report, Settings};

#[derive(Parser, Debug)]
#[command(
    name = "herald-bench",
    about = "Herald's throughput and latency, with same-run baselines"
)]
struct Args {
    /// A run of seconds that only proves the tool works.
    #[arg(long)]
    smoke: bool,
    /// Backends to measure (sled, nats, kafka); nats needs nats-server (HERALD_NATS_SERVER or
    /// PATH), kafka Kafka's jars (HERALD_KAFKA_LIBS) and a JDK.
    #[arg(long, value_delimiter = ',', default_value = "sled,nats,kafka")]
    backends: Vec<String>,
    /// The herald binary (default: next to this one).
    #[arg(long)]
    herald: Option<PathBuf>,
    /// Where reports go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let herald = match args.herald {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("herald"),
    };
    let mut settings = if args.smoke {
        Settings::smoke(herald)
    } else {
        Settings::full(herald)
    };
    settings.backends = args.backends;
    for backend in settings.backends.clone() {
        eprintln!("measuring the {backend} backend…");
        let report = report::run_backend(&settings, &backend).await?;
        println!("{}", report::markdown(&report));
        for path in report::write(&report, &args.out)? {
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}
