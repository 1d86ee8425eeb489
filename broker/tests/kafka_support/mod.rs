//! A minimal blocking Kafka-protocol client for the broker's tests, built on the kafka-protocol
//! crate's request encoders and response decoders: one connection, one request at a time.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use sluice_kafka::kafka_protocol::messages::create_topics_request::CreatableTopic;
use sluice_kafka::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use sluice_kafka::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use sluice_kafka::kafka_protocol::messages::*;
use sluice_kafka::kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Request, StrBytes,
};

/// A blocking Kafka connection.
pub struct KafkaClient {
    pub stream: TcpStream,
    next_correlation_id: i32,
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

impl KafkaClient {
    pub fn connect(addr: SocketAddr) -> KafkaClient {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        KafkaClient {
            stream,
            next_correlation_id: 1,
        }
    }

    /// The bytes of `request` at `version`, size prefix included.
    pub fn encode<R: Request>(&mut self, version: i16, request: &R) -> (i32, Vec<u8>) {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("sluice-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .unwrap();
        request.encode(&mut body, version).unwrap();
        let mut framed = Vec::with_capacity(body.len() + 4);
        framed.put_i32(body.len() as i32);
        framed.extend_from_slice(&body);
        (correlation_id, framed)
    }

    /// Sends `request` and decodes the answer as `Resp`.
    pub fn call<R: Request, Resp: Decodable + HeaderVersion>(
        &mut self,
        version: i16,
        request: &R,
    ) -> Resp {
        let (correlation_id, framed) = self.encode(version, request);
        self.stream.write_all(&framed).unwrap();
        self.read_response::<Resp>(correlation_id, version)
    }

    /// Sends raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Reads one response frame and decodes it.
    pub fn read_response<Resp: Decodable + HeaderVersion>(
        &mut self,
        correlation_id: i32,
        version: i16,
    ) -> Resp {
        let mut body = self.read_frame().expect("the broker closed the connection");
        assert_eq!(body.get_i32(), correlation_id, "answers must come in order");
        if Resp::header_version(version) >= 1 {
            assert_eq!(body.get_u8(), 0, "no tagged fields in response headers");
        }
        let response = Resp::decode(&mut body, version).unwrap();
        assert_eq!(body.remaining(), 0, "bytes left after the response");
        response
    }

    /// One size-prefixed frame, or `None` when the broker closed the connection.
    pub fn read_frame(&mut self) -> Option<Bytes> {
        let mut prefix = [0u8; 4];
        if !read_exact(&mut self.stream, &mut prefix) {
            return None;
        }
        let size = i32::from_be_bytes(prefix) as usize;
        let mut body = vec![0u8; size];
        assert!(
            read_exact(&mut self.stream, &mut body),
            "truncated response"
        );
        Some(Bytes::from(body))
    }

    /// True when the broker closed the connection rather than answer.
    pub fn closed_by_broker(&mut self) -> bool {
        let mut buffer = [0u8; 64];
        loop {
            return match self.stream.read(&mut buffer) {
                Ok(0) => true,
                Ok(_) => false,
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                Err(error) => matches!(
                    error.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
                ),
            };
        }
    }

    pub fn create_topic(&mut self, name: &str, partitions: i32) {
        let request = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(partitions)
                .with_replication_factor(1)])
            .with_timeout_ms(30_000);
        let response: CreateTopicsResponse = self.call(7, &request);
        assert_eq!(response.topics[0].error_code, 0, "{response:?}");
    }

    /// Produces `records` (whole batches) to one partition with acks=-1; returns
    /// (error code, base offset).
    pub fn produce(
        &mut self,
        version: i16,
        topic: &str,
        partition: i32,
        records: Bytes,
    ) -> (i16, i64) {
        let response: ProduceResponse = self.call(
            version,
            &kafka_produce_request(topic, partition, records, -1),
        );
        let answer = &response.responses[0].partition_responses[0];
        (answer.error_code, answer.base_offset)
    }

    /// One fetch of one partition from `offset`: (error code, high watermark, records).
    pub fn fetch(
        &mut self,
        version: i16,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
        min_bytes: i32,
    ) -> (i16, i64, Bytes) {
        let response: FetchResponse = self.call(
            version,
            &kafka_fetch_request(topic, partition, offset, max_wait_ms, min_bytes),
        );
        let answer = &response.responses[0].partitions[0];
        (
            answer.error_code,
            answer.high_watermark,
            answer.records.clone().unwrap_or_default(),
        )
    }
}

fn read_exact(stream: &mut TcpStream, buffer: &mut [u8]) -> bool {
    let mut filled = 0;
    while filled < buffer.len() {
        match stream.read(&mut buffer[filled..]) {
            Ok(0) => return false,
            Ok(read) => filled += read,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) if error.kind() == ErrorKind::ConnectionReset => return false,
            Err(error) => panic!("read failed: {error}"),
        }
    }
    true
}

pub fn kafka_produce_request(
    topic: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

pub fn kafka_fetch_request(
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(64 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(16 << 20)])])
}
