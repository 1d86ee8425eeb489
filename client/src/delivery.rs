//! Delivery results: one shared outcome per batch, one small future per record.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::error::ClientError;

/// Where an acknowledged record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The record's offset, or -1 with `Acks::None` (the broker does not answer).
    pub offset: i64,
    /// The record's timestamp (create time), in Unix milliseconds.
    pub timestamp_ms: i64,
}

#[derive(Debug)]
enum OutcomeState {
    /// Not yet answered; the wakers of everything waiting on the batch, one slot per waiter.
    Pending { wakers: Vec<Waker> },
    /// The base offset the broker gave the batch (`None` with acks=0), or why it failed.
    Done(Result<Option<i64>, ClientError>),
}

/// The result of one batch, shared by the futures of all its records: one allocation per batch
/// rather than a channel per record. Lives on the producer's executor.
#[derive(Debug)]
pub(crate) struct BatchOutcome {
    topic: Rc<str>,
    partition: i32,
    state: RefCell<OutcomeState>,
}

impl BatchOutcome {
    /// A pending outcome for a batch of `topic`/`partition`.
    pub(crate) fn new(topic: Rc<str>, partition: i32) -> Rc<BatchOutcome> {
        Rc::new(BatchOutcome {
            topic,
            partition,
            state: RefCell::new(OutcomeState::Pending { wakers: Vec::new() }),
        })
    }

    /// Records the batch's result and wakes every waiter. Only the first completion counts:
    /// a batch is answered once.
    pub(crate) fn complete(&self, result: Result<Option<i64>, ClientError>) {
        let wakers = {
            let mut state = self.state.borrow_mut();
            let OutcomeState::Pending { wakers } = &mut *state else {
                return;
            };
            let wakers = std::mem::take(wakers);
            *state = OutcomeState::Done(result);
            wakers
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// True once the batch was answered.
    pub(crate) fn is_done(&self) -> bool {
        matches!(*self.state.borrow(), OutcomeState::Done(_))
    }

    /// Waits until the batch is answered (for `flush`).
    pub(crate) async fn wait(&self) {
        let mut slot = None;
        poll_fn(|context| self.poll_done(&mut slot, context)).await;
    }

    /// Ready once answered; otherwise registers the waker in `slot` (reusing the slot on later
    /// polls, so a waiter polled many times takes one entry).
    fn poll_done(&self, slot: &mut Option<usize>, context: &Context<'_>) -> Poll<()> {
        let mut state = self.state.borrow_mut();
        let OutcomeState::Pending { wakers } = &mut *state else {
            return Poll::Ready(());
        };
        match *slot {
            Some(index) if index < wakers.len() => {
                if !wakers[index].will_wake(context.waker()) {
                    wakers[index] = context.waker().clone();
                }
            }
            _ => {
                *slot = Some(wakers.len());
                wakers.push(context.waker().clone());
            }
        }
        Poll::Pending
    }

    /// The metadata of record `index` of the batch, once answered.
    fn record_result(&self, index: u32, timestamp_ms: i64) -> Result<RecordMetadata, ClientError> {
        match &*self.state.borrow() {
            OutcomeState::Done(Ok(base_offset)) => Ok(RecordMetadata {
                topic: self.topic.to_string(),
                partition: self.partition,
                offset: base_offset.map_or(-1, |base| base + i64::from(index)),
                timestamp_ms,
            }),
            OutcomeState::Done(Err(error)) => Err(error.duplicate()),
            OutcomeState::Pending { .. } => Err(ClientError::Closed),
        }
    }
}

/// Resolves when the broker acknowledged the record (or at once, with offset -1, once the
/// request carrying it was written, for `Acks::None`), or with the error that failed its batch.
#[derive(Debug)]
#[must_use = "a delivery future reports whether the record was acknowledged"]
pub struct DeliveryFuture {
    outcome: Rc<BatchOutcome>,
    index: u32,
    timestamp_ms: i64,
    waker_slot: Option<usize>,
}

impl DeliveryFuture {
    /// The future of record `index` of the batch whose outcome is `outcome`.
    pub(crate) fn new(outcome: Rc<BatchOutcome>, index: u32, timestamp_ms: i64) -> Self {
        DeliveryFuture {
            outcome,
            index,
            timestamp_ms,
            waker_slot: None,
        }
    }

    /// True once the result is known (polling would return at once).
    pub fn is_done(&self) -> bool {
        self.outcome.is_done()
    }

    /// A future of the same record, for comparing batches with [`DeliveryFuture::same_batch`]
    /// while this one is awaited elsewhere.
    pub fn clone_for_batch(&self) -> DeliveryFuture {
        DeliveryFuture::new(self.outcome.clone(), self.index, self.timestamp_ms)
    }

    /// True when both records are in the same batch, so they are answered together with the
    /// same outcome: a caller tracking many records can await one future per batch.
    pub fn same_batch(&self, other: &DeliveryFuture) -> bool {
        Rc::ptr_eq(&self.outcome, &other.outcome)
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata, ClientError>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match this.outcome.poll_done(&mut this.waker_slot, context) {
            Poll::Ready(()) => {
                Poll::Ready(this.outcome.record_result(this.index, this.timestamp_ms))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_net::api::ErrorCode;

    fn run<T>(future: impl Future<Output = T>) -> T {
        futures_lite::future::block_on(future)
    }

    // Proves every record future of an acknowledged batch resolves to base offset + its index,
    // with the topic, partition and its own timestamp.
    #[test]
    fn acknowledged_batch_resolves_each_record_offset() {
        let outcome = BatchOutcome::new(Rc::from("orders"), 3);
        let futures: Vec<DeliveryFuture> = (0..4)
            .map(|index| DeliveryFuture::new(Rc::clone(&outcome), index, 1_000 + i64::from(index)))
            .collect();
        assert!(!futures[0].is_done());
        outcome.complete(Ok(Some(100)));
        for (index, future) in futures.into_iter().enumerate() {
            let metadata = run(future).unwrap();
            assert_eq!(metadata.topic, "orders");
            assert_eq!(metadata.partition, 3);
            assert_eq!(metadata.offset, 100 + index as i64);
            assert_eq!(metadata.timestamp_ms, 1_000 + index as i64);
        }
    }

    // Proves acks=0 batches resolve with offset -1 for every record.
    #[test]
    fn unacknowledged_batch_resolves_minus_one() {
        let outcome = BatchOutcome::new(Rc::from("t"), 0);
        let future = DeliveryFuture::new(Rc::clone(&outcome), 5, 7);
        outcome.complete(Ok(None));
        assert_eq!(run(future).unwrap().offset, -1);
    }

    // Proves a failed batch fails every record with the same error, and that a second
    // completion cannot overwrite the first.
    #[test]
    fn failed_batch_fails_every_record_once() {
        let outcome = BatchOutcome::new(Rc::from("t"), 0);
        let first = DeliveryFuture::new(Rc::clone(&outcome), 0, 0);
        let second = DeliveryFuture::new(Rc::clone(&outcome), 1, 0);
        outcome.complete(Err(ClientError::Broker {
            code: ErrorCode::MessageTooLarge,
            message: "produce t-0".into(),
        }));
        outcome.complete(Ok(Some(5)));
        for future in [first, second] {
            match run(future) {
                Err(ClientError::Broker { code, .. }) => {
                    assert_eq!(code, ErrorCode::MessageTooLarge)
                }
                other => panic!("expected a broker error, got {other:?}"),
            }
        }
    }

    // Proves a waiting future is woken by completion: it is polled pending first, then the
    // outcome completes, and the executor's waker makes it finish.
    #[test]
    fn pending_future_is_woken_by_completion() {
        let outcome = BatchOutcome::new(Rc::from("t"), 0);
        let future = DeliveryFuture::new(Rc::clone(&outcome), 2, 0);
        let waiter = Rc::clone(&outcome);
        let result = run(async move {
            let completer = async {
                futures_lite::future::yield_now().await;
                outcome.complete(Ok(Some(10)));
            };
            let (metadata, ()) = futures_lite::future::zip(future, completer).await;
            waiter.wait().await;
            metadata
        });
        assert_eq!(result.unwrap().offset, 12);
    }
}
