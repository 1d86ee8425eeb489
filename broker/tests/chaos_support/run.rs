//! One run of one seed: start the cluster, the workload and the reader; inject faults until the
//! duration is over; heal, settle, and check.

use std::time::{Duration, Instant};

use sluice_client::{Acks, ProducerConfig};

use super::checker::{
    availability, check_compacted, check_live_after_healing, check_partition, check_reader,
    compare_replicas, Findings, PartitionEnd, Report,
};
use super::consumer::Reader;
use super::nemesis::{every_isr_complete, inject, FaultRecord, Target};
use super::schedule::Schedule;
use crate::support_cluster::{
    read_partition, Cluster, ClusterSpec, NetnsLink, NumberedProducer, ProducerOptions,
};

/// The workload's topic.
const TOPIC: &str = "chaos";

/// Its partitions.
const PARTITIONS: i32 = 3;

/// The compacted topic (one partition, keyed writes), whose replicas' cleaners are always at
/// work, so a kill can land inside a segment swap.
const COMPACTED_TOPIC: &str = "chaos-compacted";

/// Its configuration: tiny segments that roll every 300 ms, any dirty segment cleanable.
const COMPACTED_CONFIGS: [(&str, &str); 5] = [
    ("min.insync.replicas", "2"),
    ("cleanup.policy", "compact"),
    ("segment.bytes", "4096"),
    ("segment.ms", "300"),
    ("min.cleanable.dirty.ratio", "0.01"),
];

/// Distinct keys of the compacted topic's writes.
const COMPACTED_KEYS: u64 = 20;

/// Writes per second to the compacted topic.
const COMPACTED_RATE_PER_S: u64 = 100;

/// Pause of each shard's log cleaner between rounds, ms.
const CLEANER_BACKOFF_MS: &str = "100";

/// Its replication factor.
const REPLICATION_FACTOR: i16 = 3;

/// Producer rate, messages per second over all partitions.
const RATE_PER_S: u64 = 300;

/// Messages sent but not yet answered, at most.
const WINDOW: usize = 128;

/// Segment size of the brokers, bytes: small, so each partition's segments roll every two
/// seconds or so under the workload (about 8 KB/s per partition) and the nemesis can kill a
/// leader during a roll.
const SEGMENT_BYTES: u64 = 16 * 1024;

/// The broker run inside the network namespace (when namespaces are available).
const NETNS_BROKER: i32 = 3;

/// Bound on the workload's first acknowledgement on every partition.
const FIRST_ACK_WAIT: Duration = Duration::from_secs(60);

/// How long the workload keeps writing after everything was healed, before it stops.
const TAIL_WRITES: Duration = Duration::from_secs(5);

/// Whether the workload's producer is idempotent, which makes duplicates a failure.
fn producer_is_idempotent(config: &ProducerConfig) -> bool {
    config.enable_idempotence
}

/// Size of each broker's own disk (a tmpfs, when run as root), bytes: far more than a long run
/// writes, and what a disk-full fault allocates (in memory) while it lasts.
const DISK_BYTES: u64 = 256 * 1024 * 1024;

/// Whether brokers get disks of their own (a tmpfs each) that disk-full faults can fill.
fn own_disks() -> bool {
    match Cluster::own_disks_unavailable_reason() {
        None => true,
        Some(reason) => {
            eprintln!("chaos: no disks of their own ({reason}); disk-full faults become pauses");
            false
        }
    }
}

fn spec(own_disks: bool) -> ClusterSpec {
    let flags = [
        "--segment-bytes-max",
        &SEGMENT_BYTES.to_string(),
        "--offsets-topic-partitions",
        "3",
        "--initial-rebalance-delay-ms",
        "500",
        "--session-timeout-ms-min",
        "1000",
        "--log-cleaner-backoff-ms",
        CLEANER_BACKOFF_MS,
    ]
    .iter()
    .map(|flag| flag.to_string())
    .collect();
    ClusterSpec {
        extra_flags: flags,
        disk_bytes: own_disks.then_some(DISK_BYTES),
        ..ClusterSpec::default()
    }
}

/// The cluster, with broker `NETNS_BROKER` in a network namespace when namespaces work here.
fn start_cluster(own_disks: bool) -> (Cluster, Option<i32>) {
    match NetnsLink::unavailable_reason() {
        None => {
            let link = NetnsLink::create()
                .unwrap_or_else(|error| panic!("cannot set up the network namespace: {error}"));
            (
                Cluster::start_with_netns(spec(own_disks), link, NETNS_BROKER),
                Some(NETNS_BROKER),
            )
        }
        Some(reason) => {
            eprintln!("chaos: no network partitions ({reason}); they become pauses");
            (Cluster::start(spec(own_disks)), None)
        }
    }
}

fn producer_config() -> ProducerConfig {
    ProducerConfig {
        acks: Acks::All,
        linger_ms: 5,
        // Idempotent with up to 5 requests per partition in flight: the leader's sequence
        // checks keep each partition's order and drop retried copies, so the checker requires
        // acknowledged offsets in send order and no duplicate.
        enable_idempotence: true,
        ..ProducerConfig::default()
    }
}

/// Creates the compacted topic and starts its keyed producer (the workload's settings otherwise).
fn start_compacted(
    cluster: &Cluster,
    options: ProducerOptions,
    config: ProducerConfig,
) -> NumberedProducer {
    cluster.create_topic(COMPACTED_TOPIC, 1, REPLICATION_FACTOR, &COMPACTED_CONFIGS);
    let options = ProducerOptions {
        topic: COMPACTED_TOPIC.to_string(),
        partitions: 1,
        rate_per_s: COMPACTED_RATE_PER_S,
        keys: Some(COMPACTED_KEYS),
        ..options
    };
    let producer = NumberedProducer::start_with(options, config);
    producer.wait_progress(&[0], 1, FIRST_ACK_WAIT, "the first compacted writes");
    producer
}

/// Runs `seed` for `duration` of faults and returns the report.
pub fn run_seed(seed: u64, duration: Duration) -> Report {
    eprintln!("chaos: seed {seed}, {} s of faults", duration.as_secs());
    let own_disks = own_disks();
    let (mut cluster, netns_broker) = start_cluster(own_disks);
    cluster.create_topic(
        TOPIC,
        PARTITIONS,
        REPLICATION_FACTOR,
        &[("min.insync.replicas", "2")],
    );
    let config = producer_config();
    let idempotent = producer_is_idempotent(&config);
    let options = workload_options(&cluster);
    let producer = NumberedProducer::start_with(options.clone(), config.clone());
    let compacted = start_compacted(&cluster, options, config);
    let reader = Reader::start(cluster.client_config(), TOPIC);
    producer.wait_progress(&[0; 3], 1, FIRST_ACK_WAIT, "the first writes");
    let acked = || producer.acked_all();
    let target = Target {
        topic: TOPIC,
        compacted_topic: COMPACTED_TOPIC,
        partitions: PARTITIONS,
        netns_broker,
        own_disks,
        acked: &acked,
    };
    let started = Instant::now();
    let faults = inject_faults(&mut cluster, &target, seed, duration);
    let ran = started.elapsed();
    cluster.wait_view("every ISR complete after healing", every_isr_complete);
    let healed_at = Instant::now();
    std::thread::sleep(TAIL_WRITES);
    let outcomes = producer.finish();
    let compacted_outcomes = compacted.finish();
    let log = reader.finish();
    let ends = read_back(&cluster);
    let mut findings = Findings {
        sent: outcomes.len(),
        acknowledged: outcomes.iter().filter(|o| o.result.is_ok()).count(),
        failed: outcomes.iter().filter(|o| o.result.is_err()).count(),
        ..Findings::default()
    };
    for (partition, end) in (0..PARTITIONS).zip(&ends) {
        check_partition(partition, end, &outcomes, &mut findings);
    }
    check_reader(&log, &ends, &mut findings);
    let (_, compacted_end) = cluster.wait_settled(COMPACTED_TOPIC, 0);
    let compacted_records =
        read_partition(cluster.client_config(), COMPACTED_TOPIC, 0, compacted_end);
    check_compacted(
        &compacted_records,
        &compacted_outcomes,
        COMPACTED_KEYS,
        &mut findings,
    );
    check_live_after_healing("producer", &outcomes, healed_at, &mut findings);
    check_live_after_healing(
        "compacted producer",
        &compacted_outcomes,
        healed_at,
        &mut findings,
    );
    let unavailable = availability(&faults, &outcomes, PARTITIONS);
    Report {
        seed,
        ran,
        faults,
        findings,
        unavailable,
        idempotent,
    }
}

/// The workload's producer settings.
fn workload_options(cluster: &Cluster) -> ProducerOptions {
    ProducerOptions {
        client: cluster.client_config(),
        topic: TOPIC.to_string(),
        partitions: PARTITIONS,
        acks: Acks::All,
        rate_per_s: RATE_PER_S,
        window: WINDOW,
        first_seq: 0,
        keys: None,
    }
}

/// Injects the seed's faults until `duration` passed and every kind ran.
fn inject_faults(
    cluster: &mut Cluster,
    target: &Target<'_>,
    seed: u64,
    duration: Duration,
) -> Vec<FaultRecord> {
    let mut schedule = Schedule::new(seed);
    let started = Instant::now();
    let mut faults = Vec::new();
    while started.elapsed() < duration || !schedule.covered_every_kind() {
        let fault = schedule.next_fault();
        let record = inject(cluster, target, fault);
        eprintln!(
            "chaos: {:>4} s  {fault} -> broker {:?} {}; recovered in {:?}",
            started.elapsed().as_secs(),
            record.target,
            record.note,
            record.recovered_in
        );
        faults.push(record);
    }
    faults
}

/// Every partition of the workload's topic, compared across replicas and read back.
fn read_back(cluster: &Cluster) -> Vec<PartitionEnd> {
    (0..PARTITIONS)
        .map(|partition| {
            let (high_watermark, divergence) = compare_replicas(cluster, TOPIC, partition);
            let records = read_partition(cluster.client_config(), TOPIC, partition, high_watermark);
            PartitionEnd {
                high_watermark,
                records,
                divergence,
            }
        })
        .collect()
}
