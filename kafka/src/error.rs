//! The errors of reading Kafka requests off the wire.

/// What can be wrong with the bytes a Kafka client sent. Every variant is bad input: the
/// connection that sent it is closed (after an UNSUPPORTED_VERSION answer for ApiVersions, the
/// only request Kafka answers at a version it does not know), and the broker serves everyone
/// else as before.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// The size prefix is zero or negative.
    #[error("request size prefix is {size}; a request holds at least its header")]
    BadSize {
        /// The size read from the prefix.
        size: i32,
    },
    /// The size prefix announces more than `request_bytes_max`; refused before anything is
    /// allocated for it.
    #[error("request of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The size read from the prefix.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// The peer closed the connection in the middle of a request.
    #[error("connection closed with {buffered_bytes} bytes of an unfinished request")]
    Truncated {
        /// Bytes of the unfinished request that had arrived.
        buffered_bytes: usize,
    },
    /// The request header is shorter than its fields or inconsistent.
    #[error("malformed request header: {what}")]
    BadHeader {
        /// What is wrong.
        what: &'static str,
    },
    /// An API key Kafka does not define.
    #[error("unknown API key {api_key} (correlation id {correlation_id})")]
    UnknownApi {
        /// The key.
        api_key: i16,
        /// The request's correlation id.
        correlation_id: i32,
    },
    /// A known API at a version this broker does not implement.
    #[error("{api} version {version} is not supported (supported: {min} to {max})")]
    UnsupportedVersion {
        /// The API's name.
        api: &'static str,
        /// The version asked for.
        version: i16,
        /// Lowest version implemented.
        min: i16,
        /// Highest version implemented.
        max: i16,
    },
    /// A known API this broker does not implement at all.
    #[error("{api} (API key {api_key}) is not implemented by this broker")]
    UnsupportedApi {
        /// The API's name.
        api: &'static str,
        /// Its key.
        api_key: i16,
    },
    /// The request body does not decode as the API and version say.
    #[error("malformed {api} v{version} request: {reason}")]
    BadBody {
        /// The API's name.
        api: &'static str,
        /// The version.
        version: i16,
        /// The decoder's reason.
        reason: String,
    },
    /// The generated decoder panicked on the body (a codec bug, caught so that only this
    /// connection closes).
    #[error("the {api} v{version} decoder panicked on the request body")]
    DecoderPanicked {
        /// The API's name.
        api: &'static str,
        /// The version.
        version: i16,
    },
    /// A response could not be encoded (a bug, or a value a field cannot hold).
    #[error("cannot encode the {api} v{version} response: {reason}")]
    Encode {
        /// The API's name.
        api: &'static str,
        /// The version.
        version: i16,
        /// The encoder's reason.
        reason: String,
    },
}
