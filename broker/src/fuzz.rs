//! The fuzz harness every fuzz target of the workspace shares (test support, feature
//! `testing`): seeds from the committed corpus `tests/fuzz-corpus/<target>/`, mutated by
//! proptest (byte flips, inserted tokens, splices between seeds, deep nesting, huge numbers,
//! control characters, truncation), each input checked on a tokio worker's stack size within
//! a time bound. A failure is shrunk to a minimal input, which is written out and printed.
//!
//! `HERALD_FUZZ_SECS=N` runs each target for N seconds; without it a target runs
//! [`DEFAULT_CASES`] inputs, the short run of a normal `cargo test`. `HERALD_FUZZ_SEED`
//! replays a run (every run prints its seed). The input being checked is kept in
//! `$TMPDIR/herald-fuzz-<target>-current`, for the case of a crash no test can catch.
#![allow(
    clippy::print_stderr,
    reason = "test support: the seed and a failure are printed for the person running it"
)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

/// Inputs per target in a normal test run.
pub const DEFAULT_CASES: u32 = 256;
/// The most time one input may take; far above what any input needs, so that only
/// super-linear behaviour (backtracking, quadratic scans) trips it on a busy machine.
pub const CASE_TIME_LIMIT: Duration = Duration::from_secs(3);
/// A tokio worker's default stack: where the admin API, ingress and dispatchers parse.
pub const WORKER_STACK: usize = 2 << 20;
/// An input still running after this long hangs: the watchdog reports it and ends the
/// process, as no test can interrupt it.
const HANG_LIMIT: Duration = Duration::from_secs(60);
/// Inputs are cut at this size: large enough for deep nesting, small enough to stay quick.
const MAX_INPUT: usize = 64 * 1024;

/// Tokens every target's inputs get: nesting, quoting, numbers and control characters that
/// parsers mishandle. Targets add their own grammar's words.
pub const COMMON_TOKENS: &[&str] = &[
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "\"",
    "'",
    "\\",
    ",",
    ":",
    "-",
    ".",
    "%",
    "%00",
    "%0A",
    "%C2%85",
    "%ZZ",
    "\\u0000",
    "\\u007f",
    "\\ud800",
    "\u{0}",
    "\n",
    "\r\n",
    "\t",
    "\u{7f}",
    "\u{85}",
    "\u{fffd}",
    "0",
    "-0",
    "1e999",
    "2147483647",
    "2147483648",
    "-2147483649",
    "9223372036854775808",
    "99999999999999999999999999999999",
    "null",
    "true",
    "false",
    "&a",
    "*a",
    "---",
    "#",
];

/// One edit of a seed. Positions are fractions of the length (`u16` / 65536), so that they
/// stay meaningful while proptest shrinks the other edits away.
#[derive(Clone, Debug)]
enum Mutation {
    FlipBit(u16, u8),
    InsertByte(u16, u8),
    InsertToken(u16, usize),
    /// A token repeated: deep nesting (`((((`, `NOT NOT`, `[[[[`) and long runs.
    Repeat(u16, usize, u16),
    Delete(u16, u16),
    /// A slice of another seed (or the same) inserted here.
    Splice(u16, usize, u16, u16),
    Duplicate(u16, u16),
    Truncate(u16),
}

fn at(fraction: u16, len: usize) -> usize {
    (usize::from(fraction) * (len + 1)) >> 16
}

fn mutation(seeds: usize, tokens: usize) -> impl Strategy<Value = Mutation> {
    prop_oneof![
        1 => (any::<u16>(), 0u8..8).prop_map(|(p, b)| Mutation::FlipBit(p, b)),
        1 => (any::<u16>(), any::<u8>()).prop_map(|(p, b)| Mutation::InsertByte(p, b)),
        3 => (any::<u16>(), 0..tokens).prop_map(|(p, t)| Mutation::InsertToken(p, t)),
        1 => (any::<u16>(), 0..tokens, prop_oneof![1u16..64, 64u16..5000])
            .prop_map(|(p, t, n)| Mutation::Repeat(p, t, n)),
        1 => (any::<u16>(), 1u16..64).prop_map(|(p, n)| Mutation::Delete(p, n)),
        1 => (any::<u16>(), 0..seeds, any::<u16>(), 1u16..256)
            .prop_map(|(p, s, from, n)| Mutation::Splice(p, s, from, n)),
        1 => (any::<u16>(), 1u16..64).prop_map(|(p, n)| Mutation::Duplicate(p, n)),
        1 => any::<u16>().prop_map(Mutation::Truncate),
    ]
}

fn apply(input: &mut Vec<u8>, mutation: &Mutation, seeds: &[Vec<u8>], tokens: &[&str]) {
    let len = input.len();
    match *mutation {
        Mutation::FlipBit(p, bit) => {
            if len > 0 {
                input[at(p, len - 1)] ^= 1 << bit;
            }
        }
        Mutation::InsertByte(p, byte) => input.insert(at(p, len), byte),
        Mutation::InsertToken(p, t) => {
            let at = at(p, len);
            input.splice(at..at, tokens[t].bytes());
        }
        Mutation::Repeat(p, t, n) => {
            let at = at(p, len);
            let run = tokens[t].repeat(usize::from(n));
            input.splice(at..at, run.bytes());
        }
        Mutation::Delete(p, n) => {
            let from = at(p, len);
            input.drain(from..(from + usize::from(n)).min(len));
        }
        Mutation::Splice(p, s, from, n) => {
            let other = &seeds[s];
            let start = at(from, other.len());
            let slice = other[start..(start + usize::from(n)).min(other.len())].to_vec();
            let at = at(p, len);
            input.splice(at..at, slice);
        }
        Mutation::Duplicate(p, n) => {
            let start = at(p, len);
            let slice = input[start..(start + usize::from(n)).min(len)].to_vec();
            input.splice(start..start, slice);
        }
        Mutation::Truncate(p) => input.truncate(at(p, len)),
    }
    input.truncate(MAX_INPUT);
}

/// The workspace's `tests/fuzz-corpus/<target>/`.
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fuzz-corpus")
        .join(target)
}

/// Every file of a target's corpus, in name order.
pub fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the fuzz corpus {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let seeds: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .collect();
    assert!(
        !seeds.is_empty(),
        "the fuzz corpus {} is empty",
        dir.display()
    );
    seeds
}

/// Seeds of `target`'s corpus with zero to seven mutations each.
pub fn inputs(target: &str, tokens: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    let seeds = corpus(target);
    let tokens: Vec<&'static str> = COMMON_TOKENS.iter().chain(tokens).copied().collect();
    let count = seeds.len();
    let edits = prop::collection::vec(mutation(count, tokens.len()), 0..8);
    (0..count, edits).prop_map(move |(seed, edits)| {
        let mut input = seeds[seed].clone();
        for edit in &edits {
            apply(&mut input, edit, &seeds, &tokens);
        }
        input
    })
}

/// How long to fuzz: `HERALD_FUZZ_SECS`, or [`DEFAULT_CASES`] inputs.
enum Budget {
    Cases(u32),
    Time(Duration),
}

fn budget() -> Budget {
    match std::env::var("HERALD_FUZZ_SECS") {
        Ok(secs) => Budget::Time(Duration::from_secs(
            secs.parse()
                .expect("HERALD_FUZZ_SECS is a number of seconds"),
        )),
        Err(_) => Budget::Cases(DEFAULT_CASES),
    }
}

/// Fuzzes `check` with `strategy` on a thread with a worker's stack. `check` returns an
/// error (or panics) when a property fails; taking longer than [`CASE_TIME_LIMIT`] fails
/// too. Panics with the minimal failing input, also written to the temp directory.
pub fn run<S>(
    target: &str,
    strategy: S,
    check: impl Fn(&[u8]) -> Result<(), String> + Send + 'static,
) where
    S: Strategy<Value = Vec<u8>> + Send + 'static,
{
    let seed = std::env::var("HERALD_FUZZ_SEED")
        .ok()
        .map(|s| s.parse::<u64>().expect("HERALD_FUZZ_SEED is a number"))
        .unwrap_or_else(rand_seed);
    let target = target.to_owned();
    let worker = std::thread::Builder::new()
        .name(format!("fuzz-{target}"))
        .stack_size(WORKER_STACK)
        .spawn(move || fuzz(&target, seed, strategy, check))
        .expect("a fuzz thread");
    if let Err(failure) = worker.join() {
        std::panic::resume_unwind(failure);
    }
}

/// A fresh seed per run: the standard library's randomly keyed hasher, no extra crate.
fn rand_seed() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::process::id())
}

fn fuzz<S: Strategy<Value = Vec<u8>>>(
    target: &str,
    seed: u64,
    strategy: S,
    check: impl Fn(&[u8]) -> Result<(), String>,
) {
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    });
    // A stack overflow aborts the process before any report: the input at hand is on disk.
    let current = std::env::temp_dir().join(format!("herald-fuzz-{target}-current"));
    let clock = Instant::now();
    // When the running input started, in ms since `clock` (0: none is running).
    let running_since = Arc::new(AtomicU64::new(0));
    watchdog(target, &current, clock, running_since.clone());
    let timed = |input: Vec<u8>| -> Result<(), TestCaseError> {
        let _ = std::fs::write(&current, &input);
        let started = Instant::now();
        running_since.store(elapsed_ms(clock).max(1), Ordering::Relaxed);
        let result = check(&input).map_err(TestCaseError::fail);
        running_since.store(0, Ordering::Relaxed);
        result?;
        let took = started.elapsed();
        if took > CASE_TIME_LIMIT {
            return Err(TestCaseError::fail(format!(
                "took {took:?}, more than {CASE_TIME_LIMIT:?}"
            )));
        }
        Ok(())
    };
    let budget = budget();
    let started = Instant::now();
    let mut cases = 0u64;
    loop {
        match budget {
            Budget::Cases(n) if cases >= u64::from(n) => break,
            Budget::Time(limit) if started.elapsed() >= limit => break,
            _ => {}
        }
        let tree = strategy
            .new_tree(&mut runner)
            .unwrap_or_else(|e| panic!("{target}: no input: {e}"));
        cases += 1;
        if let Err(error) = runner.run_one(tree, timed) {
            let (why, input) = match error {
                TestError::Fail(why, input) => (why, input),
                TestError::Abort(why) => panic!("{target}: aborted: {why}"),
            };
            let saved = std::env::temp_dir().join(format!("herald-fuzz-{target}-{seed}"));
            let _ = std::fs::write(&saved, &input);
            panic!(
                "fuzz target {target} (HERALD_FUZZ_SEED={seed}) fails after {cases} inputs: {why}\n\
                 minimal input ({} bytes, saved to {}): {:?}",
                input.len(),
                saved.display(),
                String::from_utf8_lossy(&input)
            );
        }
    }
    running_since.store(u64::MAX, Ordering::Relaxed);
    eprintln!(
        "fuzz target {target}: {cases} inputs in {:.1?} (HERALD_FUZZ_SEED={seed})",
        started.elapsed()
    );
}

fn elapsed_ms(clock: Instant) -> u64 {
    u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Ends the process, naming the input, when one input runs past [`HANG_LIMIT`]; stops when
/// `running_since` is `u64::MAX` (the run is over).
fn watchdog(target: &str, current: &Path, clock: Instant, running_since: Arc<AtomicU64>) {
    let (target, current) = (target.to_owned(), current.to_owned());
    let limit = u64::try_from(HANG_LIMIT.as_millis()).unwrap_or(u64::MAX);
    std::thread::spawn(move || loop {
        // Polling is the point here: the watched thread cannot signal that it is stuck.
        #[allow(
            clippy::disallowed_methods,
            reason = "a plain thread, polling on purpose"
        )]
        std::thread::sleep(Duration::from_secs(1));
        match running_since.load(Ordering::Relaxed) {
            u64::MAX => return,
            0 => {}
            since if elapsed_ms(clock).saturating_sub(since) > limit => {
                eprintln!(
                    "fuzz target {target}: an input has run for more than {HANG_LIMIT:?}; it is in {}",
                    current.display()
                );
                std::process::exit(101);
            }
            _ => {}
        }
    });
}
