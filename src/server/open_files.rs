//! The process's open-file limit, which every connection counts against.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// `RLIM_INFINITY` as [`OpenFiles`] reports it (rustix says `None`).
const UNLIMITED: u64 = u64::MAX;

/// The `RLIMIT_NOFILE` limits.
#[derive(Debug, Clone, Copy)]
pub struct OpenFiles {
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft open-file limit to the hard one, so that the usual default of 1,024 does
/// not make `accept` fail long before the connection limits (the hard limit is what the
/// administrator allows; only the soft one is low by tradition). Returns the limits in force,
/// and the error if the raise failed (the old soft limit then stays).
pub fn raise_soft_limit() -> std::io::Result<(OpenFiles, Option<std::io::Error>)> {
    let current = get();
    if current.soft >= target(current.hard) {
        return Ok((current, None));
    }
    let raised = Rlimit {
        current: limit(target(current.hard)),
        maximum: limit(current.hard),
    };
    if let Err(error) = setrlimit(Resource::Nofile, raised) {
        return Ok((current, Some(error.into())));
    }
    Ok((get(), None))
}

fn get() -> OpenFiles {
    let limits = getrlimit(Resource::Nofile);
    OpenFiles {
        soft: limits.current.unwrap_or(UNLIMITED),
        hard: limits.maximum.unwrap_or(UNLIMITED),
    }
}

/// A limit as rustix takes it: `None` is unlimited.
fn limit(value: u64) -> Option<u64> {
    (value != UNLIMITED).then_some(value)
}

/// The hard limit, or, when that is unlimited, the kernel's ceiling for open files (a soft
/// limit of "unlimited" is refused).
fn target(hard: u64) -> u64 {
    if hard != UNLIMITED {
        return hard;
    }
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(hard)
}
