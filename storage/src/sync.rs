//! A cancel-safe acquire for glommio's semaphore.
//!
//! glommio 0.9's `Semaphore` hands a released permit's wakeup to the first waiters that fit and
//! forgets it: a waiter that was woken but dropped before it ran (its task cancelled, a request
//! given up) leaves the permit free while every other waiter sleeps on, until some later
//! acquire happens to release one. A follower fetcher cancelled on a role change right after
//! being woken could so leave the next role change of its partition waiting for good, and with
//! it the control thread that broadcast the change (a cluster test hung that way).
//! [`acquire_permit`] and [`acquire_static_permit`] re-run the wake pass when their acquire is
//! dropped unfinished, so the wakeup goes to the next waiter. Every semaphore of the append,
//! admin and role paths is taken through them.

use std::rc::Rc;

use glommio::sync::{Permit, Semaphore, StaticPermit};

/// Re-runs the semaphore's wake pass on drop unless the acquire finished.
struct Rewake<'a> {
    semaphore: &'a Semaphore,
    finished: bool,
}

impl Drop for Rewake<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // Adds no units: only wakes the waiters the free units now fit.
            self.semaphore.signal(0);
        }
    }
}

/// `semaphore.acquire_permit(units)`, safe to drop at any point (see the module docs).
pub async fn acquire_permit(semaphore: &Semaphore, units: u64) -> glommio::Result<Permit<'_>, ()> {
    let mut rewake = Rewake {
        semaphore,
        finished: false,
    };
    // Declared after `rewake`, so dropped first: the waiter leaves the queue before the pass.
    let acquire = semaphore.acquire_permit(units);
    let permit = acquire.await;
    rewake.finished = true;
    permit
}

/// `semaphore.acquire_static_permit(units)`, safe to drop at any point (see the module docs).
pub async fn acquire_static_permit(
    semaphore: &Rc<Semaphore>,
    units: u64,
) -> glommio::Result<StaticPermit, ()> {
    let mut rewake = Rewake {
        semaphore,
        finished: false,
    };
    let acquire = semaphore.acquire_static_permit(units);
    let permit = acquire.await;
    rewake.finished = true;
    permit
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;
    use std::time::Duration;

    use glommio::{LocalExecutorBuilder, Placement};

    use super::*;

    /// Waiter A is woken by a release and cancelled before it runs; does waiter B, queued behind
    /// it, get the free permit?
    fn second_waiter_gets_the_permit(cancel_safe: bool) -> bool {
        LocalExecutorBuilder::new(Placement::Unbound)
            .make()
            .expect("cannot start a glommio executor")
            .run(async move {
                let semaphore = Rc::new(Semaphore::new(1));
                let held = semaphore.acquire_permit(1).await.expect("free permit");
                let waiter = |semaphore: Rc<Semaphore>| async move {
                    let permit = if cancel_safe {
                        acquire_permit(&semaphore, 1).await
                    } else {
                        semaphore.acquire_permit(1).await
                    };
                    drop(permit);
                };
                let first = glommio::spawn_local(waiter(Rc::clone(&semaphore)));
                glommio::timer::sleep(Duration::from_millis(5)).await;
                let second = glommio::spawn_local(waiter(Rc::clone(&semaphore)));
                glommio::timer::sleep(Duration::from_millis(5)).await;
                drop(held);
                drop(first.cancel());
                glommio::timer::timeout(Duration::from_secs(2), async move {
                    second.await;
                    Ok(())
                })
                .await
                .is_ok()
            })
    }

    // Proves the lost wakeup is glommio's (a plain acquire leaves the second waiter asleep
    // with the permit free) and that the cancel-safe acquire hands it on.
    #[test]
    fn cancelled_waiter_passes_its_wakeup_on() {
        assert!(
            !second_waiter_gets_the_permit(false),
            "glommio's semaphore no longer loses the wakeup: this workaround can go"
        );
        assert!(second_waiter_gets_the_permit(true));
    }
}
