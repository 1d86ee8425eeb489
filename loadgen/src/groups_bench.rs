//! `sluice-loadgen --groups-bench MEMBERS`: consumer-group timings against a real broker
//! (embedded or `--bootstrap`), with the native client's group members:
//!
//! 1. formation: MEMBERS members of a fresh group start at once; the time until every one holds
//!    its share of the topic's partitions in one generation (the group is Stable). It includes
//!    the broker's `initial_rebalance_delay_ms`, which exists to gather members.
//! 2. leave: one member leaves (LeaveGroup); the time until the others hold every partition in
//!    the next generation.
//! 3. commits: every member commits its positions in a loop for the run's duration; commits per
//!    second (requests, and partition offsets) through the group's one coordinator shard.
//!
//! The numbers are printed; `benches/RESULTS.md` records them with the command.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use sluice_client::{
    Assignor, Client, ClientError, ConsumerConfig, GroupAdmin, GroupConsumer, GroupConsumerConfig,
};

use crate::admin::{connect, with_admin_client};
use crate::embedded::EmbeddedBroker;
use crate::error::LoadgenError;
use crate::runner::{BrokerTarget, RunOptions};

/// Longest the formation or the leave may take before the bench gives up, ms.
const STABLE_WAIT_MS_MAX: u64 = 120_000;

/// Poll slice of the members while waiting for stability, ms.
const POLL_SLICE_MS: u64 = 20;

/// What the group bench measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupsBenchReport {
    /// Members.
    pub members: usize,
    /// Partitions of the topic.
    pub partitions: u32,
    /// From the members' start to a Stable group, ms.
    pub formation_ms: f64,
    /// From one member's LeaveGroup to the others Stable again, ms.
    pub leave_ms: f64,
    /// OffsetCommit requests answered per second (one group, one coordinator shard).
    pub commits_per_s: f64,
    /// Partition offsets committed per second.
    pub offsets_per_s: f64,
}

impl std::fmt::Display for GroupsBenchReport {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            formatter,
            "Group bench: {} members, {} partitions",
            self.members, self.partitions
        )?;
        writeln!(
            formatter,
            "  {} members starting -> Stable: {:.1} ms",
            self.members, self.formation_ms
        )?;
        writeln!(
            formatter,
            "  one member leaving -> Stable: {:.1} ms",
            self.leave_ms
        )?;
        write!(
            formatter,
            "  offset commits: {:.0} requests/s, {:.0} partition offsets/s (one coordinator shard)",
            self.commits_per_s, self.offsets_per_s
        )
    }
}

/// Runs the bench on `topic` (created here with `partitions` partitions and deleted after),
/// committing for `commit_duration`.
pub fn run_groups_bench(
    bootstrap: &str,
    connect_timeout: Duration,
    topic: &str,
    members: usize,
    partitions: u32,
    commit_duration: Duration,
) -> Result<GroupsBenchReport, LoadgenError> {
    let topic = topic.to_string();
    let bootstrap_owned = bootstrap.to_string();
    with_admin_client(bootstrap, connect_timeout, move |client| async move {
        client
            .create_topic(&topic, partitions as i32, 1, Vec::new())
            .await
            .map_err(|error| LoadgenError::client(format!("create topic {topic}"), error))?;
        let group = format!("{topic}-bench");
        let result = bench(
            &client,
            &bootstrap_owned,
            connect_timeout,
            &topic,
            &group,
            members,
            commit_duration,
        )
        .await;
        let _ = GroupAdmin::new(client.clone()).delete_group(&group).await;
        let _ = client.delete_topic(&topic).await;
        let (formation_ms, leave_ms, commits, offsets) = result?;
        let seconds = commit_duration.as_secs_f64().max(f64::EPSILON);
        Ok(GroupsBenchReport {
            members,
            partitions,
            formation_ms,
            leave_ms,
            commits_per_s: commits as f64 / seconds,
            offsets_per_s: offsets as f64 / seconds,
        })
    })
}

/// The three phases; returns (formation ms, leave ms, commits, offsets committed).
async fn bench(
    client: &Rc<Client>,
    bootstrap: &str,
    connect_timeout: Duration,
    topic: &str,
    group: &str,
    members: usize,
    commit_duration: Duration,
) -> Result<(f64, f64, u64, u64), LoadgenError> {
    let partitions = client
        .partition_count(topic)
        .await
        .map_err(|error| LoadgenError::client("partition count", error))?;
    let mut consumers = Vec::with_capacity(members);
    for index in 0..members {
        // A client each, as separate processes would have.
        let own = connect(bootstrap, connect_timeout, true).await?;
        let config = GroupConsumerConfig {
            client_id: format!("bench-{index}"),
            session_timeout_ms: 10_000,
            heartbeat_interval_ms: 1_000,
            rebalance_timeout_ms: 30_000,
            assignors: vec![Assignor::Range],
            ..GroupConsumerConfig::new(group)
        };
        let mut member = GroupConsumer::new(own, ConsumerConfig::default(), config)
            .map_err(|error| LoadgenError::client("group member", error))?;
        member.subscribe(vec![topic.to_string()]);
        consumers.push(member);
    }
    let started = Instant::now();
    let mut consumers = wait_stable(consumers, partitions, -1).await?;
    let formation_ms = started.elapsed().as_secs_f64() * 1e3;
    let generation = consumers.first().map_or(-1, GroupConsumer::generation);
    let leaving = consumers.remove(0);
    let left_at = Instant::now();
    leaving
        .close()
        .await
        .map_err(|error| LoadgenError::client("leave group", error))?;
    let consumers = wait_stable(consumers, partitions, generation).await?;
    let leave_ms = left_at.elapsed().as_secs_f64() * 1e3;
    let (commits, offsets) = commit_loop(consumers, commit_duration).await?;
    Ok((formation_ms, leave_ms, commits, offsets))
}

/// Polls every member (each on its own task) until they all hold an assignment of one
/// generation newer than `after_generation`, covering every partition once.
async fn wait_stable(
    consumers: Vec<GroupConsumer>,
    partitions: i32,
    after_generation: i32,
) -> Result<Vec<GroupConsumer>, LoadgenError> {
    let deadline = Instant::now() + Duration::from_millis(STABLE_WAIT_MS_MAX);
    let done = Rc::new(Cell::new(false));
    // Each member's (generation, partitions held), as of its last poll.
    let progress = Rc::new(RefCell::new(vec![(-1, 0usize); consumers.len()]));
    let tasks: Vec<_> = consumers
        .into_iter()
        .enumerate()
        .map(|(index, mut member)| {
            let (done, progress) = (done.clone(), progress.clone());
            glommio::spawn_local(async move {
                while !done.get() && Instant::now() < deadline {
                    if let Err(error) = member.poll(Duration::from_millis(POLL_SLICE_MS)).await {
                        tracing::warn!(%error, "bench member poll failed");
                    }
                    progress.borrow_mut()[index] = (member.generation(), member.assignment().len());
                }
                member
            })
        })
        .collect();
    let stable = |progress: &[(i32, usize)]| {
        let generation = progress.first().map_or(-1, |(generation, _)| *generation);
        generation > after_generation
            && progress.iter().all(|(other, _)| *other == generation)
            && progress.iter().map(|(_, held)| held).sum::<usize>() == partitions as usize
    };
    while !stable(&progress.borrow()) && Instant::now() < deadline {
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
    let reached = stable(&progress.borrow());
    done.set(true);
    let mut members = Vec::with_capacity(tasks.len());
    for task in tasks {
        members.push(task.await);
    }
    if !reached {
        return Err(LoadgenError::client(
            "wait for a stable group",
            ClientError::Timeout {
                op: format!("group not stable within {STABLE_WAIT_MS_MAX} ms"),
            },
        ));
    }
    Ok(members)
}

/// Every member commits its positions as fast as answers come, for `duration`.
async fn commit_loop(
    consumers: Vec<GroupConsumer>,
    duration: Duration,
) -> Result<(u64, u64), LoadgenError> {
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = consumers
        .into_iter()
        .map(|mut member| {
            glommio::spawn_local(async move {
                let (mut commits, mut offsets) = (0u64, 0u64);
                let partitions = member.assignment().len() as u64;
                while Instant::now() < deadline {
                    match member.commit_sync().await {
                        Ok(()) => {
                            commits += 1;
                            offsets += partitions;
                        }
                        Err(error) => {
                            tracing::warn!(%error, "bench commit failed");
                            let _ = member.poll(Duration::from_millis(POLL_SLICE_MS)).await;
                        }
                    }
                }
                let _ = member.close().await;
                (commits, offsets)
            })
        })
        .collect();
    let mut totals = (0, 0);
    for task in tasks {
        let (commits, offsets) = task.await;
        totals.0 += commits;
        totals.1 += offsets;
    }
    Ok(totals)
}

/// Runs the bench on the broker `options` names (starting an embedded one if asked), on a
/// run-unique topic of the workload's partition count.
pub fn run_groups_bench_on(
    options: &RunOptions,
    members: usize,
    commit_duration: Duration,
) -> Result<GroupsBenchReport, LoadgenError> {
    let (embedded, bootstrap) = match &options.broker {
        BrokerTarget::Embedded(embedded) => {
            let embedded = EmbeddedBroker::start(embedded)?;
            let bootstrap = embedded.bootstrap();
            (Some(embedded), bootstrap)
        }
        BrokerTarget::Remote { bootstrap } => (None, bootstrap.clone()),
    };
    let topic = format!("groups-bench-{:08x}", rand::random::<u32>());
    let result = run_groups_bench(
        &bootstrap,
        options.connect_timeout,
        &topic,
        members.max(2),
        options.workload.partitions_per_topic,
        commit_duration,
    );
    if let Some(embedded) = embedded {
        embedded.shutdown()?;
    }
    result
}
