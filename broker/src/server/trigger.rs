//! A one-shot, shard-local signal many tasks can wait on (stop accepting, abort connections).

use std::cell::{Cell, RefCell};

use futures_channel::oneshot;

/// Fires once; every current and future waiter then completes. Lives on one shard.
#[derive(Default)]
pub struct Trigger {
    fired: Cell<bool>,
    /// One sender per waiting task; bounded by the tasks of the shard (accept loops and
    /// connections), pruned of abandoned waiters on every subscribe.
    waiters: RefCell<Vec<oneshot::Sender<()>>>,
}

impl Trigger {
    /// Fires the trigger, waking every waiter.
    pub fn fire(&self) {
        self.fired.set(true);
        for waiter in std::mem::take(&mut *self.waiters.borrow_mut()) {
            let _ = waiter.send(());
        }
    }

    /// True once fired.
    pub fn is_fired(&self) -> bool {
        self.fired.get()
    }

    /// Completes when the trigger fires (at once if it already has).
    pub async fn wait(&self) {
        if self.fired.get() {
            return;
        }
        let (sender, receiver) = oneshot::channel();
        {
            let mut waiters = self.waiters.borrow_mut();
            waiters.retain(|waiter| !waiter.is_canceled());
            waiters.push(sender);
        }
        let _ = receiver.await;
    }
}
