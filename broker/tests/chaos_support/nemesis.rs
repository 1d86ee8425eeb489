//! The nemesis: injects one scheduled fault into the cluster, picking the broker by its role at
//! that moment, holds it, heals it, and waits (bounded) until the cluster serves writes on
//! every partition again. Faults never overlap; the next starts after the last recovered.

use std::path::Path;
use std::time::{Duration, Instant};

use sluice_net::MetadataResponse;

use super::schedule::{Fault, FaultKind, Role};
use crate::support_cluster::{as_set, live_brokers, partition_of, Cluster};

/// Bound on the cluster's recovery after a healed fault: every broker registered, every
/// partition led with at least `MIN_INSYNC_REPLICAS` in its ISR, and a write acknowledged on
/// every partition. A cluster that does not recover within it fails the run.
pub const RECOVERY_WAIT: Duration = Duration::from_secs(60);

/// `min.insync.replicas` of the workload's topic.
pub const MIN_INSYNC_REPLICAS: usize = 2;

/// How long the nemesis watches a leader's partition directory for a segment roll.
const ROLL_WAIT: Duration = Duration::from_secs(10);

/// How long the nemesis watches a compacted partition's directory for the cleaner at work.
const CLEAN_WAIT: Duration = Duration::from_secs(15);

/// Poll interval while watching for a segment roll.
const ROLL_POLL: Duration = Duration::from_millis(2);

/// Poll interval of the recovery wait.
const RECOVERY_POLL: Duration = Duration::from_millis(100);

/// What happened to one fault.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    /// The scheduled fault.
    pub fault: Fault,
    /// The kind actually injected (a partition without network namespaces becomes a pause).
    pub injected: FaultKind,
    /// The broker hit (None for etcd).
    pub target: Option<i32>,
    /// Anything worth saying (a substitution, a roll not seen).
    pub note: String,
    /// When the fault started.
    pub injected_at: Instant,
    /// When it was healed.
    pub healed_at: Instant,
    /// Time from healing until the cluster served every partition again; None: not within
    /// `RECOVERY_WAIT`.
    pub recovered_in: Option<Duration>,
}

/// The workload the nemesis works against.
pub struct Target<'a> {
    /// The workload's topic.
    pub topic: &'a str,
    /// The compacted topic (one partition) the cleaner keeps working on.
    pub compacted_topic: &'a str,
    /// Its partitions.
    pub partitions: i32,
    /// The broker inside the network namespace, when there is one.
    pub netns_broker: Option<i32>,
    /// Whether each broker's data directory is a disk of its own that can be filled.
    pub own_disks: bool,
    /// Acknowledged writes per partition so far.
    pub acked: &'a dyn Fn() -> Vec<u64>,
}

/// Injects `fault`, holds it, heals it and waits for recovery.
pub fn inject(cluster: &mut Cluster, target: &Target<'_>, fault: Fault) -> FaultRecord {
    std::thread::sleep(fault.gap);
    let mut record = FaultRecord {
        fault,
        injected: fault.kind,
        target: None,
        note: String::new(),
        injected_at: Instant::now(),
        healed_at: Instant::now(),
        recovered_in: None,
    };
    match fault.kind {
        FaultKind::Kill => {
            let id = pick(cluster, target, fault);
            record.target = Some(id);
            record.injected_at = Instant::now();
            cluster.kill(id);
            std::thread::sleep(fault.hold);
            cluster.restart(id);
        }
        FaultKind::Pause => pause(cluster, target, fault, &mut record),
        FaultKind::Partition => match target.netns_broker {
            Some(id) => {
                record.target = Some(id);
                record.injected_at = Instant::now();
                cluster.link().cut();
                std::thread::sleep(fault.hold);
                cluster.link().restore();
            }
            None => {
                record.note = "no network namespace: paused instead".to_string();
                pause(cluster, target, fault, &mut record);
            }
        },
        FaultKind::EtcdKill => {
            record.injected_at = Instant::now();
            cluster.etcd.kill();
            std::thread::sleep(fault.hold);
            cluster.etcd.restart();
        }
        FaultKind::Wipe => wipe(cluster, target, fault, &mut record),
        FaultKind::KillAtRoll => kill_at_roll(cluster, target, fault, &mut record),
        FaultKind::DiskFull => disk_full(cluster, target, fault, &mut record),
        FaultKind::KillWhileCleaning => kill_while_cleaning(cluster, target, fault, &mut record),
        FaultKind::EtcdCut | FaultKind::OneWay => one_way(cluster, target, fault, &mut record),
    }
    record.healed_at = Instant::now();
    record.recovered_in = wait_recovered(cluster, target, record.healed_at);
    record
}

fn pause(cluster: &mut Cluster, target: &Target<'_>, fault: Fault, record: &mut FaultRecord) {
    let id = pick(cluster, target, fault);
    record.injected = FaultKind::Pause;
    record.target = Some(id);
    record.injected_at = Instant::now();
    cluster.node_mut(id).stop();
    std::thread::sleep(fault.hold);
    cluster.node_mut(id).cont();
}

/// Fills the disk of the broker with the fault's role for `hold`: its appends (as leader or
/// follower) fail until the space comes back. Without disks of their own (not root), a pause.
fn disk_full(cluster: &mut Cluster, target: &Target<'_>, fault: Fault, record: &mut FaultRecord) {
    if !target.own_disks {
        record.note = "no disk of its own: paused instead".to_string();
        pause(cluster, target, fault, record);
        return;
    }
    let id = pick(cluster, target, fault);
    record.target = Some(id);
    record.injected_at = Instant::now();
    let seen_before = disk_full_errors(cluster, id);
    cluster.node(id).fill_disk();
    std::thread::sleep(fault.hold);
    cluster.node(id).free_disk();
    let seen = disk_full_errors(cluster, id) - seen_before;
    record.note = format!("{seen} ENOSPC errors logged");
}

/// How many times broker `id` has logged a write refused for want of space.
fn disk_full_errors(cluster: &Cluster, id: i32) -> usize {
    std::fs::read_to_string(cluster.node(id).log_path())
        .map_or(0, |log| log.matches("No space left on device").count())
}

/// Drops what the broker in the network namespace sends to etcd (`EtcdCut`) or to everyone
/// else (`OneWay`) for `hold`. Without a namespace, a pause.
fn one_way(cluster: &mut Cluster, target: &Target<'_>, fault: Fault, record: &mut FaultRecord) {
    let Some(id) = target.netns_broker else {
        record.note = "no network namespace: paused instead".to_string();
        pause(cluster, target, fault, record);
        return;
    };
    let address = match fault.kind {
        FaultKind::EtcdCut => cluster.link().etcd_ip.clone(),
        _ => cluster.link().host_ip.clone(),
    };
    record.target = Some(id);
    record.injected_at = Instant::now();
    cluster.link().drop_outgoing(&address);
    std::thread::sleep(fault.hold);
    cluster.link().restore_outgoing(&address);
}

/// Wipes a replica only while every partition of every topic has its whole replica set in the
/// ISR: each acknowledged record then has two intact copies besides the wiped one. (With
/// min.insync.replicas 2 a record may be acknowledged by two replicas only; wiping one of them
/// while the third is behind leaves a single copy, and losing that too is allowed loss, which
/// is why the nemesis never wipes then.)
fn wipe(cluster: &mut Cluster, target: &Target<'_>, fault: Fault, record: &mut FaultRecord) {
    cluster.wait_view("every ISR complete before a wipe", every_isr_complete);
    let id = pick(cluster, target, fault);
    record.target = Some(id);
    record.injected_at = Instant::now();
    cluster.kill(id);
    cluster.node_mut(id).wipe_data();
    std::thread::sleep(fault.hold);
    cluster.restart(id);
}

/// SIGKILLs the leader of the fault's partition as soon as a new segment file appears in its
/// partition directory (the producer keeps writing, and segments are small).
fn kill_at_roll(
    cluster: &mut Cluster,
    target: &Target<'_>,
    fault: Fault,
    record: &mut FaultRecord,
) {
    let partition = fault_partition(target, fault);
    let id = cluster.partition(target.topic, partition).leader;
    let dir = cluster.partition_dir(id, target.topic, partition);
    let before = segment_count(&dir);
    let deadline = Instant::now() + ROLL_WAIT;
    while segment_count(&dir) == before && Instant::now() < deadline {
        std::thread::sleep(ROLL_POLL);
    }
    if segment_count(&dir) == before {
        record.note = format!("no roll within {ROLL_WAIT:?}: killed anyway");
    }
    record.target = Some(id);
    record.injected_at = Instant::now();
    cluster.kill(id);
    std::thread::sleep(fault.hold);
    cluster.restart(id);
}

/// SIGKILLs a replica of the compacted topic (by the fault's role) as soon as its partition
/// directory shows the cleaner's swap in progress (a `.cleaned` file or the `cleaner-swap`
/// manifest), restarts it after `hold`.
fn kill_while_cleaning(
    cluster: &mut Cluster,
    target: &Target<'_>,
    fault: Fault,
    record: &mut FaultRecord,
) {
    let compacted = Target {
        topic: target.compacted_topic,
        partitions: 1,
        ..*target
    };
    let id = pick(cluster, &compacted, fault);
    let dir = cluster.partition_dir(id, target.compacted_topic, 0);
    let deadline = Instant::now() + CLEAN_WAIT;
    while !cleaning(&dir) && Instant::now() < deadline {
        std::thread::sleep(ROLL_POLL);
    }
    if !cleaning(&dir) {
        record.note = format!("no cleaning seen within {CLEAN_WAIT:?}: killed anyway");
    }
    record.target = Some(id);
    record.injected_at = Instant::now();
    cluster.kill(id);
    std::thread::sleep(fault.hold);
    cluster.restart(id);
}

/// Whether the cleaner is between writing a cleaned segment and finishing its swap in `dir`.
fn cleaning(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".cleaned") || name == "cleaner-swap"
        })
    })
}

fn segment_count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "log"))
            .count()
    })
}

fn fault_partition(target: &Target<'_>, fault: Fault) -> i32 {
    i32::try_from(fault.partition % u32::try_from(target.partitions).unwrap()).unwrap()
}

/// The broker that has the fault's role now.
fn pick(cluster: &Cluster, target: &Target<'_>, fault: Fault) -> i32 {
    let partition = fault_partition(target, fault);
    let meta = cluster.partition(target.topic, partition);
    match fault.role {
        Role::Leader => meta.leader,
        Role::Controller => cluster.controller_in_etcd().unwrap_or(meta.leader),
        Role::Follower => {
            let followers: Vec<i32> = meta
                .replicas
                .iter()
                .copied()
                .filter(|id| *id != meta.leader)
                .collect();
            let index = usize::try_from(fault.partition / 7).unwrap() % followers.len().max(1);
            followers.get(index).copied().unwrap_or(meta.leader)
        }
    }
}

/// Every partition of every topic led, with its whole replica set in the ISR.
pub fn every_isr_complete(view: &MetadataResponse) -> bool {
    view.topics.iter().all(|topic| {
        topic.partitions.iter().all(|meta| {
            meta.error == 0 && meta.leader >= 0 && as_set(&meta.isr) == as_set(&meta.replicas)
        })
    })
}

/// Waits until every broker is registered, every partition of the topic has a leader and at
/// least `MIN_INSYNC_REPLICAS` in its ISR as every answering broker sees it, and every
/// partition acknowledged a write since `healed_at`; returns how long that took.
fn wait_recovered(cluster: &Cluster, target: &Target<'_>, healed_at: Instant) -> Option<Duration> {
    let acked_at_heal = (target.acked)();
    let all = as_set(&cluster.ids());
    loop {
        let views = cluster.views();
        let answered: Vec<&MetadataResponse> = views
            .iter()
            .filter_map(|(_, view)| view.as_ref().ok())
            .collect();
        let served = !answered.is_empty()
            && answered.iter().all(|view| {
                live_brokers(view) == all
                    && (0..target.partitions).all(|partition| {
                        partition_of(view, target.topic, partition).is_some_and(|meta| {
                            meta.leader >= 0 && meta.isr.len() >= MIN_INSYNC_REPLICAS
                        })
                    })
            });
        let written = (target.acked)()
            .iter()
            .zip(&acked_at_heal)
            .all(|(now, then)| now > then);
        if served && written {
            return Some(healed_at.elapsed());
        }
        if healed_at.elapsed() >= RECOVERY_WAIT {
            return None;
        }
        std::thread::sleep(RECOVERY_POLL);
    }
}
