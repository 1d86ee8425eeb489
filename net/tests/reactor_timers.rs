//! The vendored glommio's timers (vendor/glommio/SLUICE-PATCH.md): the reactor keeps a timer
//! armed across turns instead of cancelling and re-arming it, so these check that a kept timer
//! never delays a wake-up that is due sooner.

// Tests may unwrap: a failure should stop the test loudly.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::{Duration, Instant};

use futures_lite::AsyncReadExt;
use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};

/// How long the long-sleeping task sleeps; a short sleep that waited behind its timer would
/// take at least this long.
const LONG_SLEEP_S: u64 = 30;
/// Short sleeps taken after the long timer is armed.
const SHORT_SLEEPS: u32 = 20;
/// Length of each short sleep.
const SHORT_SLEEP_MS: u64 = 2;
/// Generous bound on the short sleeps together: far above their 40 ms, far below the long one.
const SHORT_SLEEPS_BOUND_S: u64 = 10;
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
            glommio::spawn_local(glommio::timer::sleep(Duration::from_secs(LONG_SLEEP_S))).detach();
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
            let started = Instant::now();
            for _ in 0..SHORT_SLEEPS {
                glommio::timer::sleep(Duration::from_millis(SHORT_SLEEP_MS)).await;
            }
            let elapsed = started.elapsed();
            drop(poker.join().unwrap());
            assert!(
                elapsed < Duration::from_secs(SHORT_SLEEPS_BOUND_S),
                "{SHORT_SLEEPS} sleeps of {SHORT_SLEEP_MS} ms took {elapsed:?}: a wake-up waited \
                 behind a timer armed for later"
            );
        });
}
