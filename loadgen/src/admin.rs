//! Connecting, and the topic and group administration done before and after a run.
//!
//! Administration runs on a short-lived glommio executor of its own (the client is `!Send` and
//! needs a reactor), so the main thread stays a plain thread that only coordinates.

use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};
use sluice_client::{Client, ClientConfig, GroupAdmin, OffsetSpec};

use crate::error::LoadgenError;
use crate::plan::group_id;
use crate::worker::EXECUTOR_IO_MEMORY_BYTES;

/// Extra time past the client's own connect timeout before the load generator gives up on a
/// connection attempt itself, so an unreachable broker can never hang a run.
pub const CONNECT_GRACE_MS: u64 = 1_000;
/// Replication factor of the topics the load generator creates (single node).
pub const REPLICATION_FACTOR: i16 = 1;

/// Runs `future` for at most `limit`; `None` if it did not finish in time.
pub async fn with_deadline<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    futures_lite::future::or(async { Some(future.await) }, async {
        glommio::timer::sleep(limit).await;
        None
    })
    .await
}

/// The addresses of a `--bootstrap` value: `host:port` entries separated by commas (spaces
/// around them ignored), as the `sluice` CLI takes them.
pub fn bootstrap_list(bootstrap: &str) -> Vec<String> {
    bootstrap
        .split(',')
        .map(str::trim)
        .filter(|addr| !addr.is_empty())
        .map(str::to_string)
        .collect()
}

/// Connects to the first broker of `bootstrap` (a comma-separated list) that answers, and
/// fetches the cluster's metadata, failing with a clear message within `connect_timeout` (plus
/// [`CONNECT_GRACE_MS`]) if none does. `shard_aware` as [`ClientConfig::shard_aware`].
pub async fn connect(
    bootstrap: &str,
    connect_timeout: Duration,
    shard_aware: bool,
) -> Result<Rc<Client>, LoadgenError> {
    let connect_timeout_ms = connect_timeout.as_millis() as u64;
    let config = ClientConfig {
        bootstrap: bootstrap_list(bootstrap),
        connect_timeout_ms,
        shard_aware,
        ..ClientConfig::default()
    };
    let limit = connect_timeout + Duration::from_millis(CONNECT_GRACE_MS);
    match with_deadline(limit, Client::connect(config)).await {
        Some(Ok(client)) => Ok(client),
        Some(Err(error)) => Err(LoadgenError::Unreachable {
            bootstrap: bootstrap.to_string(),
            message: error.to_string(),
        }),
        None => Err(LoadgenError::Unreachable {
            bootstrap: bootstrap.to_string(),
            message: format!("no answer within {connect_timeout_ms} ms"),
        }),
    }
}

/// Connects on a fresh executor thread, runs `job` with the client and returns its result.
pub fn with_admin_client<T, F, Fut>(
    bootstrap: &str,
    connect_timeout: Duration,
    job: F,
) -> Result<T, LoadgenError>
where
    T: Send + 'static,
    F: FnOnce(Rc<Client>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, LoadgenError>> + 'static,
{
    let bootstrap = bootstrap.to_string();
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name("loadgen-admin")
        .io_memory(EXECUTOR_IO_MEMORY_BYTES)
        .spawn(move || async move {
            let client = connect(&bootstrap, connect_timeout, true).await?;
            job(client).await
        })
        .map_err(|error| LoadgenError::Executor {
            index: usize::MAX,
            message: format!("admin executor: {error}"),
        })?;
    handle.join().map_err(|error| LoadgenError::Executor {
        index: usize::MAX,
        message: format!("admin executor: {error}"),
    })?
}

/// Creates each topic with `partitions` partitions. A topic that already exists is accepted when
/// `reuse_existing` is set and it has exactly `partitions` partitions. Returns, per topic,
/// whether this call created it (and so should delete it afterwards).
pub fn create_topics(
    bootstrap: &str,
    connect_timeout: Duration,
    topics: &[String],
    partitions: u32,
    reuse_existing: bool,
) -> Result<Vec<bool>, LoadgenError> {
    let topics = topics.to_vec();
    with_admin_client(bootstrap, connect_timeout, move |client| async move {
        let mut created = Vec::with_capacity(topics.len());
        for topic in &topics {
            match client
                .create_topic(topic, partitions as i32, REPLICATION_FACTOR, Vec::new())
                .await
            {
                Ok(()) => created.push(true),
                Err(error) if reuse_existing => {
                    let actual = client.partition_count(topic).await.map_err(|_| {
                        LoadgenError::client(format!("create topic {topic}"), error)
                    })?;
                    if actual != partitions as i32 {
                        return Err(LoadgenError::TopicMismatch {
                            topic: topic.clone(),
                            actual,
                            expected: partitions,
                        });
                    }
                    created.push(false);
                }
                Err(error) => {
                    return Err(LoadgenError::client(format!("create topic {topic}"), error))
                }
            }
        }
        // The topics must be visible in the metadata before the executors connect and look up
        // their partitions.
        client
            .refresh_metadata()
            .await
            .map_err(|error| LoadgenError::client("refresh metadata", error))?;
        Ok(created)
    })
}

/// Deletes the topics; returns the first error but tries every topic.
pub fn delete_topics(
    bootstrap: &str,
    connect_timeout: Duration,
    topics: &[String],
) -> Result<(), LoadgenError> {
    if topics.is_empty() {
        return Ok(());
    }
    let topics = topics.to_vec();
    with_admin_client(bootstrap, connect_timeout, move |client| async move {
        let mut first_error = None;
        for topic in &topics {
            if let Err(error) = client.delete_topic(topic).await {
                first_error
                    .get_or_insert(LoadgenError::client(format!("delete topic {topic}"), error));
            }
        }
        first_error.map_or(Ok(()), Err)
    })
}

/// Sets the starting point of every subscription's consumer group: its committed offset of each
/// partition is the partition's end now, so the group reads exactly what this run produces,
/// however its members join and rebalance. (A group left over from an earlier run with the same
/// `--topic` is reset the same way; that needs its old members gone.)
pub fn commit_start_offsets(
    bootstrap: &str,
    connect_timeout: Duration,
    topics: &[String],
    subscriptions_per_topic: u32,
) -> Result<(), LoadgenError> {
    if subscriptions_per_topic == 0 {
        return Ok(());
    }
    let topics = topics.to_vec();
    with_admin_client(bootstrap, connect_timeout, move |client| async move {
        let admin = GroupAdmin::new(client.clone());
        for (topic_index, topic) in topics.iter().enumerate() {
            let count = client
                .partition_count(topic)
                .await
                .map_err(|error| LoadgenError::client(format!("partitions of {topic}"), error))?;
            let mut offsets = Vec::new();
            for partition in 0..count {
                let end = client
                    .list_offset(topic, partition, OffsetSpec::Latest)
                    .await
                    .map_err(|error| {
                        LoadgenError::client(format!("end offset of {topic}/{partition}"), error)
                    })?;
                offsets.push((topic.clone(), partition, end));
            }
            for subscription in 0..subscriptions_per_topic {
                let subscription_id = topic_index as u32 * subscriptions_per_topic + subscription;
                let group = group_id(topic, subscription_id);
                admin
                    .commit_offsets(&group, &offsets)
                    .await
                    .map_err(|error| {
                        LoadgenError::client(
                            format!("set the start offsets of group {group}"),
                            error,
                        )
                    })?;
            }
        }
        Ok(())
    })
}

/// Deletes the subscriptions' consumer groups (after the run, with the topics); returns the
/// first error but tries every group.
pub fn delete_groups(
    bootstrap: &str,
    connect_timeout: Duration,
    topics: &[String],
    subscriptions_per_topic: u32,
) -> Result<(), LoadgenError> {
    if topics.is_empty() || subscriptions_per_topic == 0 {
        return Ok(());
    }
    let topics = topics.to_vec();
    with_admin_client(bootstrap, connect_timeout, move |client| async move {
        let admin = GroupAdmin::new(client);
        let mut first_error = None;
        for (topic_index, topic) in topics.iter().enumerate() {
            for subscription in 0..subscriptions_per_topic {
                let group = group_id(
                    topic,
                    topic_index as u32 * subscriptions_per_topic + subscription,
                );
                if let Err(error) = admin.delete_group(&group).await {
                    first_error.get_or_insert(LoadgenError::client(
                        format!("delete group {group}"),
                        error,
                    ));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    })
}
