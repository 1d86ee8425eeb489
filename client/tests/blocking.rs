//! The blocking wrappers against the fake broker running on its own executor thread.

mod support;

use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use glommio::{LocalExecutorBuilder, Placement};
use sluice_client::blocking::{BlockingClient, BlockingConsumer, BlockingProducer};
use sluice_client::{ClientConfig, ConsumerConfig, ProducerConfig, ProducerRecord, SeekTo};

/// Starts the fake broker on a thread of its own; returns its main address and a sender that
/// stops it.
fn start_broker(partitions: i32) -> (String, futures_channel::oneshot::Sender<()>) {
    let (addr_sender, addr_receiver) = mpsc::channel();
    let (stop, stopped) = futures_channel::oneshot::channel::<()>();
    LocalExecutorBuilder::new(Placement::Unbound)
        .spawn(move || async move {
            let broker = support::start(2, "t", partitions);
            addr_sender
                .send(broker.main_addr())
                .expect("the test stopped waiting for the broker");
            let _ = stopped.await;
        })
        .expect("cannot start the fake broker's executor");
    let addr = addr_receiver
        .recv()
        .expect("the fake broker did not report its address");
    (addr, stop)
}

// Proves a plain-thread program can produce 200 keyed records with BlockingProducer, see every
// acknowledgement, and read back exactly those values per partition with BlockingConsumer.
#[test]
fn blocking_produce_then_consume() {
    let (addr, _stop) = start_broker(3);
    let config = ClientConfig {
        bootstrap: vec![addr],
        ..ClientConfig::default()
    };
    let admin = BlockingClient::connect(config.clone()).unwrap();
    assert_eq!(admin.partition_count("t").unwrap(), 3);

    let producer = BlockingProducer::new(config.clone(), ProducerConfig::default()).unwrap();
    let mut handles = Vec::new();
    for index in 0..200 {
        let record = ProducerRecord {
            key: Some(Bytes::from(format!("key-{}", index % 7))),
            ..ProducerRecord::new("t", format!("value-{index}"))
        };
        handles.push((index, producer.send(record).unwrap()));
    }
    producer.flush().unwrap();
    let mut expected: Vec<Vec<String>> = vec![Vec::new(); 3];
    for (index, handle) in handles {
        let metadata = handle.wait().unwrap();
        assert_eq!(
            metadata.offset,
            expected[metadata.partition as usize].len() as i64
        );
        expected[metadata.partition as usize].push(format!("value-{index}"));
    }
    producer.close().unwrap();

    let consumer = BlockingConsumer::new(config, ConsumerConfig::default()).unwrap();
    consumer
        .assign(
            (0..3)
                .map(|partition| ("t".to_string(), partition))
                .collect(),
            SeekTo::Earliest,
        )
        .unwrap();
    let mut got: Vec<Vec<String>> = vec![Vec::new(); 3];
    let total = 200;
    let mut seen = 0;
    while seen < total {
        let records = consumer.poll(Duration::from_secs(5)).unwrap();
        assert!(
            !records.is_empty(),
            "only {seen} of {total} records came back"
        );
        for record in records {
            assert_eq!(record.offset, got[record.partition as usize].len() as i64);
            got[record.partition as usize]
                .push(String::from_utf8(record.value.unwrap().to_vec()).unwrap());
            seen += 1;
        }
    }
    assert_eq!(got, expected);
    assert_eq!(
        consumer.position("t", 0).unwrap(),
        Some(expected[0].len() as i64)
    );
}

// Proves the blocking client reports an unreachable broker as an error instead of hanging.
#[test]
fn blocking_client_unreachable_broker() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    drop(listener);
    let result = BlockingClient::connect(ClientConfig {
        bootstrap: vec![addr.clone()],
        ..ClientConfig::default()
    });
    let error = result.err().expect("connect to a closed port succeeded");
    assert!(error.to_string().contains(&addr), "{error}");
}
