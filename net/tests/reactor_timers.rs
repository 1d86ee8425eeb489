//! The vendored glommio's timers (vendor/glommio/SLUICE-PATCH.md): the reactor keeps a timer
//! armed across turns instead of cancelling and re-arming it, so these check that a kept timer
//! never delays a wake-up that is due sooner, and that a kept timer firing between two turns
//! never lets the executor park over runnable tasks; and, since the reactor parks behind a
//! fence instead of a process-wide membarrier, that a parked executor wakes for every message
//! another executor sends it.

// Tests may unwrap: a failure should stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::cell::Cell;
use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::AsyncReadExt;
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};

/// How long the long-sleeping task sleeps; a short sleep that waited behind its timer would
/// end with it.
const LONG_SLEEP_S: u64 = 30;
/// Short sleeps taken after the long timer is armed.
const SHORT_SLEEPS: u32 = 20;
/// Length of each short sleep.
const SHORT_SLEEP_MS: u64 = 2;
/// When the outside thread wakes the executor through a socket.
const POKE_AFTER_MS: u64 = 100;

#[test]
fn a_short_sleep_is_not_held_behind_a_longer_timer_already_armed() {
    LocalExecutorBuilder::new(Placement::Unbound)
        // A preemption timer far in the future must not stand in for a wake-up either.
        .preempt_timer(Duration::from_secs(LONG_SLEEP_S * 2))
        .make()
        .unwrap()
        .run(async {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let address = listener.local_addr().unwrap();
            // The only timer for now: the executor parks with a wake-up LONG_SLEEP_S away.
            let long_sleep_over = Rc::new(Cell::new(false));
            let over = long_sleep_over.clone();
            glommio::spawn_local(async move {
                glommio::timer::sleep(Duration::from_secs(LONG_SLEEP_S)).await;
                over.set(true);
            })
            .detach();
            // Wakes the parked executor with I/O, not with a timer.
            let poker = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(POKE_AFTER_MS));
                let mut stream = std::net::TcpStream::connect(address).unwrap();
                stream.write_all(b"x").unwrap();
                stream
            });
            let mut accepted = listener.accept().await.unwrap();
            let mut byte = [0u8; 1];
            accepted.read_exact(&mut byte).await.unwrap();
            for _ in 0..SHORT_SLEEPS {
                glommio::timer::sleep(Duration::from_millis(SHORT_SLEEP_MS)).await;
            }
            drop(poker.join().unwrap());
            // Held behind the long timer, the first short sleep would end with it, and the
            // long sleep would be over before the last short one.
            assert!(
                !long_sleep_over.get(),
                "{SHORT_SLEEPS} sleeps of {SHORT_SLEEP_MS} ms ended after a {LONG_SLEEP_S} s one: \
                 a wake-up waited behind a timer armed for later"
            );
        });
}

/// Preemption timer of the executor that keeps turning: short, so it fires at many points
/// of the executor's loop (at 500 us the fault below went unseen in two runs of three; at 50
/// us it hung every run).
const BUSY_PREEMPT_US: u64 = 50;
/// Yields each busy task makes.
const BUSY_YIELDS: u32 = 2_000_000;
/// Task queues taking turns.
const BUSY_QUEUES: usize = 2;
/// Generous bound on the whole busy run (a few seconds): a parked executor never finishes.
const BUSY_RUN_BOUND_S: u64 = 120;

#[test]
fn a_preemption_landing_between_turns_never_parks_over_runnable_tasks() {
    let (done, finished) = std::sync::mpsc::channel();
    let executor = std::thread::spawn(move || {
        LocalExecutorBuilder::new(Placement::Unbound)
            .preempt_timer(Duration::from_micros(BUSY_PREEMPT_US))
            .make()
            .unwrap()
            .run(async {
                let tasks: Vec<_> = (0..BUSY_QUEUES)
                    .map(|index| {
                        let queue = glommio::executor().create_task_queue(
                            glommio::Shares::Static(1000),
                            glommio::Latency::NotImportant,
                            &format!("busy-{index}"),
                        );
                        glommio::spawn_local_into(
                            async {
                                for _ in 0..BUSY_YIELDS {
                                    futures_lite::future::yield_now().await;
                                }
                            },
                            queue,
                        )
                        .unwrap()
                    })
                    .collect();
                for task in tasks {
                    task.await;
                }
            });
        done.send(()).unwrap();
    });
    let outcome = finished.recv_timeout(Duration::from_secs(BUSY_RUN_BOUND_S));
    assert!(
        outcome.is_ok(),
        "the executor parked with runnable tasks after a preemption between two turns"
    );
    executor.join().unwrap();
}

/// Round trips between two executors in the parking test.
const PING_PONGS: u32 = 20_000;
/// Upper bound on the whole ping-pong (a few seconds when no wake-up is lost).
const PING_PONG_BOUND_S: u64 = 120;

/// One side of the ping-pong: echoes (or, for the first side, starts) `PING_PONGS` messages.
fn ping_pong_side(
    inbox: glommio::channels::shared_channel::SharedReceiver<u32>,
    outbox: glommio::channels::shared_channel::SharedSender<u32>,
    starts: bool,
) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        LocalExecutorBuilder::new(Placement::Unbound)
            .make()
            .unwrap()
            .run(async move {
                // Each connection waits for its peer: connect both at once.
                let (inbox, outbox) =
                    futures_lite::future::zip(inbox.connect(), outbox.connect()).await;
                if starts {
                    outbox.send(0).await.unwrap();
                }
                let mut last = 0;
                for _ in 0..PING_PONGS {
                    // Nothing else runs here: the executor parks until the other side's message
                    // wakes it.
                    last = inbox.recv().await.unwrap();
                    if last + 1 < 2 * PING_PONGS {
                        outbox.send(last + 1).await.unwrap();
                    }
                }
                last
            })
    })
}

// The vendored glommio replaced the membarrier an executor issued before parking with a fence
// paired with one in the remote sender; two executors that park between every message must
// still wake for each of the other's messages (a lost wake-up hangs the exchange).
#[test]
fn executors_parked_between_messages_wake_for_every_remote_message() {
    use glommio::channels::shared_channel;
    let (to_second, second_inbox) = shared_channel::new_bounded(1);
    let (to_first, first_inbox) = shared_channel::new_bounded(1);
    let (done, finished) = std::sync::mpsc::channel();
    let watched = std::thread::spawn(move || {
        let first = ping_pong_side(first_inbox, to_second, true);
        let second = ping_pong_side(second_inbox, to_first, false);
        let last = (first.join().unwrap(), second.join().unwrap());
        done.send(last).unwrap();
    });
    let last = finished
        .recv_timeout(Duration::from_secs(PING_PONG_BOUND_S))
        .expect("an executor slept through a remote message");
    assert_eq!(last, (2 * PING_PONGS - 1, 2 * PING_PONGS - 2));
    watched.join().unwrap();
}
