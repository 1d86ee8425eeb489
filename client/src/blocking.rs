//! Blocking wrappers for plain (non-async) Rust programs. Each runs the async type on a
//! dedicated glommio executor thread and forwards calls to it over a bounded queue; calls
//! block the calling thread until the executor answered. The wrappers are `Send + Sync`.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures_channel::{mpsc, oneshot};
use futures_lite::future::block_on;
use futures_lite::StreamExt;
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};
use sluice_net::messages::{MetadataResponse, TopicMeta};

use crate::client::Client;
use crate::config::{ClientConfig, ConsumerConfig, OffsetSpec, ProducerConfig, SeekTo};
use crate::consumer::Consumer;
use crate::delivery::RecordMetadata;
use crate::error::ClientError;
use crate::producer::{Producer, ProducerRecord};

/// Calls queued for an executor thread at most; callers wait beyond that.
const COMMAND_QUEUE_DEPTH_MAX: usize = 64;

type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;
type Command<S> = Box<dyn FnOnce(Rc<S>) -> LocalFuture<()> + Send>;

/// An executor thread owning a state `S` and running the commands sent to it one at a time.
struct Worker<S: 'static> {
    commands: Mutex<Option<mpsc::Sender<Command<S>>>>,
    thread: Option<ExecutorJoinHandle<()>>,
}

impl<S: 'static> Worker<S> {
    /// Starts the thread, builds the state with `init` on it, and returns once that finished.
    /// `shutdown` runs on the thread after the last command, when the worker is dropped.
    fn start<I, F, D, G>(name: &str, init: I, shutdown: D) -> Result<Self, ClientError>
    where
        I: FnOnce() -> F + Send + 'static,
        F: Future<Output = Result<Rc<S>, ClientError>> + 'static,
        D: FnOnce(Rc<S>) -> G + Send + 'static,
        G: Future<Output = ()> + 'static,
    {
        let (sender, mut receiver) = mpsc::channel::<Command<S>>(COMMAND_QUEUE_DEPTH_MAX);
        let (ready, started) = oneshot::channel::<Result<(), ClientError>>();
        let thread = LocalExecutorBuilder::new(Placement::Unbound)
            .name(name)
            .spawn(move || async move {
                let state = match init().await {
                    Ok(state) => state,
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                while let Some(command) = receiver.next().await {
                    command(Rc::clone(&state)).await;
                }
                shutdown(state).await;
            })
            .map_err(|error| ClientError::Config {
                reason: format!("cannot start the {name} executor thread: {error}"),
            })?;
        let mut worker = Worker {
            commands: Mutex::new(Some(sender)),
            thread: Some(thread),
        };
        match block_on(started) {
            Ok(Ok(())) => Ok(worker),
            Ok(Err(error)) => Err(error),
            Err(oneshot::Canceled) => {
                worker.stop();
                Err(ClientError::Closed)
            }
        }
    }

    /// Runs `call` on the executor thread and waits for its result.
    fn call<T, C>(&self, call: C) -> Result<T, ClientError>
    where
        T: Send + 'static,
        C: FnOnce(Rc<S>) -> LocalFuture<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let command: Command<S> = Box::new(move |state| {
            Box::pin(async move {
                let _ = reply.send(call(state).await);
            })
        });
        {
            let mut commands = self.commands.lock().map_err(|_| ClientError::Closed)?;
            let sender = commands.as_mut().ok_or(ClientError::Closed)?;
            block_on(futures_lite::future::poll_fn(|context| {
                sender.poll_ready(context)
            }))
            .map_err(|_| ClientError::Closed)?;
            sender
                .start_send(command)
                .map_err(|_| ClientError::Closed)?;
        }
        block_on(answer).map_err(|_| ClientError::Closed)
    }

    /// Closes the queue and joins the thread (after its shutdown step ran).
    fn stop(&mut self) {
        if let Ok(mut commands) = self.commands.lock() {
            commands.take();
        }
        if let Some(thread) = self.thread.take() {
            if let Err(error) = thread.join() {
                tracing::warn!(%error, "blocking client executor thread failed");
            }
        }
    }
}

impl<S: 'static> Drop for Worker<S> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The admin side of [`Client`], blocking.
pub struct BlockingClient {
    worker: Worker<Client>,
}

impl BlockingClient {
    /// Starts an executor thread and connects a `Client` on it.
    pub fn connect(config: ClientConfig) -> Result<Self, ClientError> {
        let worker = Worker::start(
            "sluice-client",
            move || Client::connect(config),
            |_| async {},
        )?;
        Ok(BlockingClient { worker })
    }

    /// See [`Client::metadata`].
    pub fn metadata(&self, topics: Option<Vec<String>>) -> Result<MetadataResponse, ClientError> {
        self.worker
            .call(move |client| Box::pin(async move { client.metadata(topics).await }))?
    }

    /// See [`Client::init_producer_id`].
    pub fn init_producer_id(&self) -> Result<(i64, i16), ClientError> {
        self.worker
            .call(|client| Box::pin(async move { client.init_producer_id().await }))?
    }

    /// See [`Client::refresh_metadata`].
    pub fn refresh_metadata(&self) -> Result<(), ClientError> {
        self.worker
            .call(|client| Box::pin(async move { client.refresh_metadata().await }))?
    }

    /// See [`Client::create_topic`].
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: Vec<(String, String)>,
    ) -> Result<(), ClientError> {
        let name = name.to_string();
        self.worker.call(move |client| {
            Box::pin(async move {
                client
                    .create_topic(&name, partitions, replication_factor, configs)
                    .await
            })
        })?
    }

    /// See [`Client::delete_topic`].
    pub fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        let name = name.to_string();
        self.worker
            .call(move |client| Box::pin(async move { client.delete_topic(&name).await }))?
    }

    /// See [`Client::list_topics`].
    pub fn list_topics(&self) -> Result<Vec<TopicMeta>, ClientError> {
        self.worker
            .call(|client| Box::pin(async move { client.list_topics().await }))?
    }

    /// See [`Client::describe_topic`].
    pub fn describe_topic(&self, name: &str) -> Result<TopicMeta, ClientError> {
        let name = name.to_string();
        self.worker
            .call(move |client| Box::pin(async move { client.describe_topic(&name).await }))?
    }

    /// See [`Client::partition_count`].
    pub fn partition_count(&self, topic: &str) -> Result<i32, ClientError> {
        let topic = topic.to_string();
        self.worker
            .call(move |client| Box::pin(async move { client.partition_count(&topic).await }))?
    }

    /// See [`Client::list_offset`].
    pub fn list_offset(
        &self,
        topic: &str,
        partition: i32,
        spec: OffsetSpec,
    ) -> Result<i64, ClientError> {
        let topic = topic.to_string();
        self.worker.call(move |client| {
            Box::pin(async move { client.list_offset(&topic, partition, spec).await })
        })?
    }
}

/// Waits for one record's acknowledgement.
#[derive(Debug)]
pub struct DeliveryHandle {
    answer: oneshot::Receiver<Result<RecordMetadata, ClientError>>,
}

impl DeliveryHandle {
    /// Blocks until the record was acknowledged or failed.
    pub fn wait(self) -> Result<RecordMetadata, ClientError> {
        block_on(self.answer).unwrap_or(Err(ClientError::Closed))
    }
}

/// A [`Producer`] on its own executor thread, blocking. Dropping it flushes and closes.
pub struct BlockingProducer {
    worker: Worker<Producer>,
}

impl BlockingProducer {
    /// Starts an executor thread with a client and a producer on it.
    pub fn new(config: ClientConfig, producer_config: ProducerConfig) -> Result<Self, ClientError> {
        producer_config.validate()?;
        let worker = Worker::start(
            "sluice-producer",
            move || async move {
                let client = Client::connect(config).await?;
                Ok(Rc::new(Producer::new(client, producer_config)))
            },
            |producer: Rc<Producer>| async move {
                if let Err(error) = producer.close().await {
                    tracing::warn!(%error, "closing the blocking producer failed");
                }
            },
        )?;
        Ok(BlockingProducer { worker })
    }

    /// Queues the record (blocking while the producer's buffer is full) and returns a handle
    /// that waits for its acknowledgement.
    pub fn send(&self, record: ProducerRecord) -> Result<DeliveryHandle, ClientError> {
        self.worker.call(move |producer| {
            Box::pin(async move {
                let delivery = producer.send(record).await?;
                let (reply, answer) = oneshot::channel();
                glommio::spawn_local(async move {
                    let _ = reply.send(delivery.await);
                })
                .detach();
                Ok(DeliveryHandle { answer })
            })
        })?
    }

    /// See [`Producer::flush`].
    pub fn flush(&self) -> Result<(), ClientError> {
        self.worker
            .call(|producer| Box::pin(async move { producer.flush().await }))?
    }

    /// See [`Producer::close`].
    pub fn close(&self) -> Result<(), ClientError> {
        self.worker
            .call(|producer| Box::pin(async move { producer.close().await }))?
    }
}

/// A consumed record that can cross threads (the async `ConsumerRecord` shares topic names
/// through `Rc`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
    /// The record's timestamp, in Unix milliseconds.
    pub timestamp_ms: i64,
    /// The key.
    pub key: Option<Bytes>,
    /// The value.
    pub value: Option<Bytes>,
    /// Record headers.
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// A [`Consumer`] on its own executor thread, blocking.
pub struct BlockingConsumer {
    worker: Worker<RefCell<Option<Consumer>>>,
}

/// Runs `call` with the consumer taken out of its cell, so no `RefCell` borrow is held across
/// an await; commands run one at a time, so the consumer is always back for the next one.
async fn with_consumer<T, F, Fut>(
    cell: Rc<RefCell<Option<Consumer>>>,
    call: F,
) -> Result<T, ClientError>
where
    F: FnOnce(Consumer) -> Fut,
    Fut: Future<Output = (Consumer, Result<T, ClientError>)>,
{
    let consumer = cell.borrow_mut().take().ok_or(ClientError::Closed)?;
    let (consumer, result) = call(consumer).await;
    *cell.borrow_mut() = Some(consumer);
    result
}

impl BlockingConsumer {
    /// Starts an executor thread with a client and a consumer on it.
    pub fn new(config: ClientConfig, consumer_config: ConsumerConfig) -> Result<Self, ClientError> {
        let worker = Worker::start(
            "sluice-consumer",
            move || async move {
                let client = Client::connect(config).await?;
                Ok(Rc::new(RefCell::new(Some(Consumer::new(
                    client,
                    consumer_config,
                )))))
            },
            |_| async {},
        )?;
        Ok(BlockingConsumer { worker })
    }

    /// See [`Consumer::assign`].
    pub fn assign(&self, partitions: Vec<(String, i32)>, start: SeekTo) -> Result<(), ClientError> {
        self.worker.call(move |cell| {
            Box::pin(with_consumer(cell, move |mut consumer| async move {
                let result = consumer.assign(partitions, start).await;
                (consumer, result)
            }))
        })?
    }

    /// See [`Consumer::seek`].
    pub fn seek(&self, topic: &str, partition: i32, to: SeekTo) -> Result<(), ClientError> {
        let topic = topic.to_string();
        self.worker.call(move |cell| {
            Box::pin(with_consumer(cell, move |mut consumer| async move {
                let result = consumer.seek(&topic, partition, to).await;
                (consumer, result)
            }))
        })?
    }

    /// See [`Consumer::position`].
    pub fn position(&self, topic: &str, partition: i32) -> Result<Option<i64>, ClientError> {
        let topic = topic.to_string();
        self.worker.call(move |cell| {
            Box::pin(async move {
                cell.borrow()
                    .as_ref()
                    .and_then(|consumer| consumer.position(&topic, partition))
            })
        })
    }

    /// See [`Consumer::poll`].
    pub fn poll(&self, timeout: Duration) -> Result<Vec<OwnedRecord>, ClientError> {
        self.worker.call(move |cell| {
            Box::pin(with_consumer(cell, move |mut consumer| async move {
                let result = consumer.poll(timeout).await.map(|records| {
                    records
                        .into_iter()
                        .map(|record| OwnedRecord {
                            topic: record.topic.to_string(),
                            partition: record.partition,
                            offset: record.offset,
                            timestamp_ms: record.timestamp_ms,
                            key: record.key,
                            value: record.value,
                            headers: record.headers,
                        })
                        .collect()
                });
                (consumer, result)
            }))
        })?
    }
}
