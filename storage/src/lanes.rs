//! Turns for a shard's background file work, so it never queues the shard's foreground file
//! calls behind it.
//!
//! A shard has one blocking thread (glommio's default pool), and every synchronous file call of
//! the shard waits there in order: a roll's rename, a commit round's directory fsync, a read
//! that is not cached, as much as a seal's index files or a checkpoint's write, fsync and
//! rename. When the 16 partitions of a topic rolled together (they fill at the same rate), their
//! seals queued about 100 ms of such work, each piece with its own fsync, ahead of the
//! directory fsyncs of the rolled partitions' next commit rounds, and every acknowledgement of
//! those partitions waited for it (benches/RESULTS.md, fifteenth record).
//!
//! Background work therefore runs one operation of the executor at a time ([`background`],
//! [`background_turn`]): a foreground call queues behind at most one of them, and the
//! background work as a whole goes no slower, since the single thread ran it one at a time
//! anyway. Turns are kept per executor: a thread may run one executor after another (tests
//! do), and a task the earlier one left unfinished must not keep the later one's turn.

use std::{cell::RefCell, collections::HashMap, rc::Rc, thread::LocalKey};

use glommio::sync::{Semaphore, StaticPermit};

/// One semaphore per executor that ran on this thread, by executor id.
pub(crate) type Turns = RefCell<HashMap<usize, Rc<Semaphore>>>;

thread_local! {
    static BACKGROUND_TURNS: Turns = RefCell::new(HashMap::new());
}

/// The current executor's semaphore of one unit in `turns`.
pub(crate) fn of_executor(turns: &'static LocalKey<Turns>) -> Rc<Semaphore> {
    let executor = glommio::executor().id();
    turns.with(|turns| {
        turns
            .borrow_mut()
            .entry(executor)
            .or_insert_with(|| Rc::new(Semaphore::new(1)))
            .clone()
    })
}

/// Waits for this executor's background turn; hold it while background file work runs. `None`
/// only if the semaphore was closed, which nothing does.
pub(crate) async fn background_turn() -> Option<StaticPermit> {
    let turn = crate::sync::acquire_static_permit(&of_executor(&BACKGROUND_TURNS), 1)
        .await
        .ok();
    crate::fault::background_gate().await;
    turn
}

/// Runs background file work on the blocking thread in this executor's background turn.
pub(crate) async fn background<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> R {
    let _turn = background_turn().await;
    crate::log::blocking(work).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        sync::{Arc, Mutex},
        time::Duration,
    };

    /// How long each background operation of the test holds the blocking thread, in ms.
    const OPERATION_MS: u64 = 20;
    const BACKGROUND_OPERATIONS: usize = 5;

    // Proves a foreground blocking call issued while several background operations wait runs
    // after at most one of them: without turns it would run after all of them.
    #[test]
    fn foreground_calls_queue_behind_at_most_one_background_operation() {
        glommio::LocalExecutorBuilder::default()
            .spawn(|| async {
                let order = Arc::new(Mutex::new(Vec::new()));
                let mut tasks = Vec::new();
                for index in 0..BACKGROUND_OPERATIONS {
                    let order = order.clone();
                    tasks.push(glommio::spawn_local(background(move || {
                        std::thread::sleep(Duration::from_millis(OPERATION_MS));
                        order.lock().unwrap().push(format!("background {index}"));
                    })));
                }
                for _ in 0..BACKGROUND_OPERATIONS {
                    futures_lite::future::yield_now().await;
                }
                let foreground = order.clone();
                crate::log::blocking(move || foreground.lock().unwrap().push("foreground".into()))
                    .await;
                for task in tasks {
                    task.await;
                }
                let order = order.lock().unwrap();
                let position = order.iter().position(|entry| entry == "foreground");
                assert!(position <= Some(1), "ran in this order: {order:?}");
                assert_eq!(order.len(), BACKGROUND_OPERATIONS + 1);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
