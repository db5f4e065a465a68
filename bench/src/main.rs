//! `herald-bench`: see the crate docs. `scripts/bench` builds Herald in release mode and runs it.
#![forbid(unsafe_code)]
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the CLI's output"
)]

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use herald_bench::{report, table, Settings};

#[derive(Parser, Debug)]
#[command(
    name = "herald-bench",
    about = "Herald's throughput, latency and resources, with same-run baselines and goals"
)]
struct Args {
    /// A run of seconds that only proves the tool works.
    #[arg(long)]
    smoke: bool,
    /// Backends to measure (sled, nats, kafka); nats needs nats-server (HERALD_NATS_SERVER or
    /// PATH), kafka Kafka's jars (HERALD_KAFKA_LIBS) and a JDK.
    #[arg(long, value_delimiter = ',', default_value = "sled,nats,kafka")]
    backends: Vec<String>,
    /// Parts of the run to measure: ingress, latency, resources, fanout, recovery (default:
    /// all). Each report shows what was measured.
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// Trigger counts of the fan-out (default 1,10,100,1000).
    #[arg(long, value_delimiter = ',')]
    fanout_triggers: Option<Vec<usize>>,
    /// Closed-loop connection counts (default 32,256).
    #[arg(long, value_delimiter = ',')]
    connections: Option<Vec<usize>>,
    /// The herald binary (default: next to this one).
    #[arg(long)]
    herald: Option<PathBuf>,
    /// Where reports go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Events written into the embedded log before the recovery kill (default: 1,000,000;
    /// 2,000 with --smoke). The fill stops after 180 s with what it has.
    #[arg(long)]
    recovery_events: Option<u64>,
    /// Seconds each closed-loop and open-loop measurement runs after its warm-up (default 5).
    #[arg(long)]
    duration: Option<f64>,
    /// Repetitions of each closed-loop measurement; the median is reported (default 3).
    #[arg(long)]
    repetitions: Option<usize>,
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
    if let Some(phases) = args.only {
        if let Some(unknown) = phases
            .iter()
            .find(|p| !herald_bench::PHASES.contains(&p.as_str()))
        {
            anyhow::bail!(
                "--only {unknown}: the parts are {}",
                herald_bench::PHASES.join(", ")
            );
        }
        settings.phases = phases;
    }
    if let Some(triggers) = args.fanout_triggers {
        settings.fanout_triggers = triggers;
    }
    if let Some(connections) = args.connections {
        settings.connections = connections;
    }
    if let Some(events) = args.recovery_events {
        settings.recovery_events = events;
    }
    if let Some(seconds) = args.duration {
        settings.duration = Duration::try_from_secs_f64(seconds)?;
    }
    if let Some(repetitions) = args.repetitions {
        settings.repetitions = repetitions.max(1);
    }
    for backend in settings.backends.clone() {
        eprintln!("measuring the {backend} backend…");
        let report = report::run_backend(&settings, &backend).await?;
        println!("{}", table::markdown(&report));
        for path in report::write(&report, &args.out)? {
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}
