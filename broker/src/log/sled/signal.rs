//! Wake-ups for the log's background threads, so that they sleep until there is work
//! instead of polling: whoever makes work raises the signal, and stopping wakes them too.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Why [`Signal::wait`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Woken {
    /// Raised since the last wait; the raise is taken.
    Raised,
    /// The deadline passed first.
    Deadline,
    /// Stopped: the thread should finish.
    Stopped,
}

#[derive(Default)]
struct State {
    raised: bool,
    stopped: bool,
}

/// A raised flag and a stop flag under one lock, with a condition variable.
#[derive(Default)]
pub(super) struct Signal {
    state: Mutex<State>,
    changed: Condvar,
}

impl Signal {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is two flags: a panic elsewhere cannot leave them half-written.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// There is work: the next (or current) wait returns.
    pub(super) fn raise(&self) {
        let mut state = self.lock();
        if !state.raised {
            state.raised = true;
            self.changed.notify_all();
        }
    }

    /// Every wait returns `Stopped` from now on.
    pub(super) fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }

    /// Waits until raised (taking the raise), stopped, or `deadline` (none: no timer at all).
    pub(super) fn wait(&self, deadline: Option<Instant>) -> Woken {
        let mut state = self.lock();
        loop {
            if state.stopped {
                return Woken::Stopped;
            }
            if state.raised {
                state.raised = false;
                return Woken::Raised;
            }
            state = match deadline {
                None => self
                    .changed
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Woken::Deadline;
                    }
                    self.changed
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0
                }
            };
        }
    }

    /// Sleeps until `until` whether raised or not (a raise stays for the next wait);
    /// `false` if stopped meanwhile.
    pub(super) fn sleep_until(&self, until: Instant) -> bool {
        let mut state = self.lock();
        loop {
            if state.stopped {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            state = self
                .changed
                .wait_timeout(state, until - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_raise_before_the_wait_is_not_lost_and_is_taken_once() {
        let signal = Signal::default();
        signal.raise();
        signal.raise();
        assert_eq!(signal.wait(None), Woken::Raised);
        let soon = Instant::now() + Duration::from_millis(1);
        assert_eq!(signal.wait(Some(soon)), Woken::Deadline);
    }

    #[test]
    fn stop_wakes_a_waiter_without_deadline() {
        let signal = std::sync::Arc::new(Signal::default());
        let waiter = {
            let signal = signal.clone();
            std::thread::spawn(move || signal.wait(None))
        };
        signal.stop();
        assert_eq!(waiter.join().unwrap(), Woken::Stopped);
        assert!(!signal.sleep_until(Instant::now() + Duration::from_secs(60)));
    }

    #[test]
    fn sleep_until_keeps_the_raise_for_the_next_wait() {
        let signal = Signal::default();
        signal.raise();
        assert!(signal.sleep_until(Instant::now()));
        assert_eq!(signal.wait(None), Woken::Raised);
    }
}
