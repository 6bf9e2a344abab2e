//! Bounded waiting: every wait in the kit has a deadline, and a timeout says what it waited for.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(50);

/// Polls `cond` every [`POLL`] until it returns true or `timeout` passes.
///
/// `what` names the condition in the timeout error ("seeder READY", "tracker up").
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Result<()> {
    wait_for(timeout, what, || Ok(cond().then_some(())))
}

/// Polls `f` until it yields `Some(value)`, an error, or `timeout` passes.
///
/// An error from `f` ends the wait at once (a peer that died will not become ready).
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if start.elapsed() >= timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_once_condition_holds() {
        let mut n = 0;
        wait_until(Duration::from_secs(5), "three polls", || {
            n += 1;
            n >= 3
        })
        .unwrap();
        assert_eq!(n, 3);
    }

    #[test]
    fn times_out_with_the_condition_named() {
        let start = Instant::now();
        let err = wait_until(Duration::from_millis(120), "never", || false).unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(120));
        assert!(err.to_string().contains("never"), "{err}");
    }

    #[test]
    fn an_error_ends_the_wait_early() {
        let start = Instant::now();
        let r: Result<()> = wait_for(Duration::from_secs(10), "x", || bail!("peer died"));
        assert!(r.unwrap_err().to_string().contains("peer died"));
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
