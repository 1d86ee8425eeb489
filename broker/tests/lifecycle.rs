//! Integration tests; helpers may unwrap, since a failure there is a test failure.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use sluice_broker::{Broker, BrokerError};
use sluice_net::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    ErrorCode, MetadataRequest, MetadataResponse, NewTopic,
};

// Proves a second broker cannot take a data directory in use, nor silently share a native port
// another broker listens on; both fail with errors naming the problem.
#[test]
fn data_dir_and_port_conflicts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = start_broker(&dir.path().join("a"), 1);
    let same_dir = Broker::start(test_config(&dir.path().join("a"), 1));
    assert!(matches!(same_dir, Err(BrokerError::DataDirLocked(_))));
    let mut same_port = test_config(&dir.path().join("b"), 1);
    same_port.native_addr = first.native_addr();
    match Broker::start(same_port) {
        Err(BrokerError::Bind { addr, .. }) => assert_eq!(addr, first.native_addr()),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("a second broker must not share the native port"),
    }
    first.shutdown().unwrap();
}

/// Sends one CreateTopics with four bad topics and checks each gets its own error and a message.
async fn assert_invalid_creates_refused(client: &mut RawClient) {
    let topic = |name: &str, partitions, replication_factor| NewTopic {
        name: name.to_string(),
        partitions,
        replication_factor,
        configs: Vec::new(),
    };
    let request = CreateTopicsRequest {
        topics: vec![
            topic("bad/name", 1, 1),
            topic("zero", 0, 1),
            topic("replicated", 1, 3),
            topic("kept", 1, 1),
        ],
        timeout_ms: 1000,
    };
    let (response, _): (CreateTopicsResponse, _) = client.call(&request, &[]).await;
    let codes: Vec<i16> = response.results.iter().map(|result| result.error).collect();
    let expected = [
        ErrorCode::InvalidTopic,
        ErrorCode::InvalidPartitions,
        ErrorCode::InvalidReplicationFactor,
        ErrorCode::TopicAlreadyExists,
    ];
    assert_eq!(codes, expected.map(ErrorCode::code).to_vec());
    assert!(response
        .results
        .iter()
        .all(|result| result.message.is_some()));
}

// Proves topics survive a restart (metadata store) and their logs continue at the right offset;
// that CreateTopics validates name, partitions and replication factor with clear errors; and
// that a deleted topic is gone, and a new topic of the same name starts empty.
#[test]
fn topics_survive_restart_and_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), 2);
    let native = broker.native_addr();
    run(async move {
        let mut client = RawClient::connect(native).await;
        client.create_topic("kept", 3).await;
        client.create_topic("dropped", 1).await;
        assert_eq!(
            client.produce("kept", 2, batch("one", 2)).await.partitions[0].base_offset,
            0
        );
        assert_eq!(
            client
                .produce("dropped", 0, batch("old", 5))
                .await
                .partitions[0]
                .error,
            0
        );
        assert_invalid_creates_refused(&mut client).await;
        let delete = DeleteTopicsRequest {
            names: vec!["dropped".to_string()],
            timeout_ms: 1000,
        };
        let (deleted, _): (DeleteTopicsResponse, _) = client.call(&delete, &[]).await;
        assert_eq!(deleted.results[0].error, 0);
    });
    broker.shutdown().unwrap();

    let broker = start_broker(dir.path(), 2);
    let native = broker.native_addr();
    run(async move {
        let mut client = RawClient::connect(native).await;
        let (metadata, _): (MetadataResponse, _) =
            client.call(&MetadataRequest { topics: None }, &[]).await;
        let names: Vec<&str> = metadata
            .topics
            .iter()
            .map(|topic| topic.name.as_str())
            .collect();
        assert_eq!(names, vec!["kept"]);
        assert_eq!(metadata.topics[0].partitions.len(), 3);
        assert_eq!(
            client.produce("kept", 2, batch("two", 1)).await.partitions[0].base_offset,
            2
        );
        client.create_topic("dropped", 1).await;
        let (fetched, payload) = client.fetch("dropped", 0, 0).await;
        assert_eq!(
            fetched.partitions[0].high_watermark, 0,
            "a re-created topic starts empty"
        );
        assert!(payload.is_empty());
    });
    broker.shutdown().unwrap();
}
