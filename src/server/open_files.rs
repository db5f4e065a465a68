//! The process's open-file limit, which every connection counts against.

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
    let current = get()?;
    if current.soft >= target(current.hard) {
        return Ok((current, None));
    }
    let raised = libc::rlimit {
        rlim_cur: target(current.hard),
        rlim_max: current.hard,
    };
    // SAFETY: setrlimit only reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Ok((current, Some(std::io::Error::last_os_error())));
    }
    Ok((get()?, None))
}

fn get() -> std::io::Result<OpenFiles> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(OpenFiles {
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    })
}

/// The hard limit, or, when that is unlimited, the kernel's ceiling for open files (a soft
/// limit of "unlimited" is refused).
fn target(hard: u64) -> u64 {
    if hard != libc::RLIM_INFINITY {
        return hard;
    }
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(hard)
}
