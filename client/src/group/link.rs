//! Finding a group's coordinator and talking to it.
//!
//! FindCoordinator goes to any broker; the answer names the broker and the shard port that
//! owns the group's partition of `__consumer_offsets`. A member keeps a connection of its own
//! to it: JoinGroup and SyncGroup are long polls and a broker answers a connection's requests
//! in order, so sharing a connection with another member (whose JoinGroup the rebalance is
//! waiting for) could hold the rebalance until it times out.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use sluice_net::api::ErrorCode;
use sluice_net::frame::{ControlDecode, ControlEncode};
use sluice_net::messages::{
    FindCoordinatorRequest, FindCoordinatorResponse, Message, COORDINATOR_KEY_GROUP,
};

use crate::client::Client;
use crate::connection::BrokerConnection;
use crate::error::ClientError;
use crate::metadata::host_port;

/// Whether `code` means "find the coordinator again, then retry".
pub(crate) fn coordinator_moved(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::NotCoordinator
            | ErrorCode::CoordinatorNotAvailable
            | ErrorCode::CoordinatorLoadInProgress
    )
}

/// The address of `group_id`'s coordinator: its shard's own port when the client is shard
/// aware and the broker gave one, else the broker's native port. Waits (with backoff, within
/// the request timeout) while no coordinator is available yet, as right after
/// `__consumer_offsets` is created.
pub(crate) async fn find_coordinator(
    client: &Client,
    group_id: &str,
) -> Result<String, ClientError> {
    let request = FindCoordinatorRequest {
        key: group_id.to_string(),
        key_type: COORDINATOR_KEY_GROUP,
    };
    let deadline = Instant::now() + client.request_timeout();
    let mut attempt = 0;
    loop {
        let (response, _) = client
            .request_any::<_, FindCoordinatorResponse>(&request)
            .await?;
        match ErrorCode::from_i16(response.error) {
            Some(ErrorCode::None) => {
                let port = if client.config().shard_aware && response.shard_port != 0 {
                    response.shard_port
                } else {
                    response.port
                };
                return Ok(host_port(&response.host, port));
            }
            Some(code) if code.is_retriable() && Instant::now() < deadline => {
                tracing::debug!(group = group_id, ?code, "no coordinator yet; retrying");
                glommio::timer::sleep(client.backoff(attempt)).await;
                attempt += 1;
            }
            _ => {
                let detail = response.message.unwrap_or_default();
                return Err(ClientError::from_code(
                    response.error,
                    format!("find the coordinator of group {group_id} {detail}"),
                ));
            }
        }
    }
}

/// A member's connection to its group's coordinator, found again whenever it fails or the
/// coordinator moves.
pub(crate) struct CoordinatorLink {
    client: Rc<Client>,
    group_id: String,
    connection: RefCell<Option<Rc<BrokerConnection>>>,
}

impl CoordinatorLink {
    pub(crate) fn new(client: Rc<Client>, group_id: &str) -> CoordinatorLink {
        CoordinatorLink {
            client,
            group_id: group_id.to_string(),
            connection: RefCell::new(None),
        }
    }

    pub(crate) fn client(&self) -> &Rc<Client> {
        &self.client
    }

    /// Forgets the coordinator: the next request finds it again.
    pub(crate) fn reset(&self) {
        self.connection.borrow_mut().take();
    }

    async fn connection(&self) -> Result<Rc<BrokerConnection>, ClientError> {
        let live = self
            .connection
            .borrow()
            .as_ref()
            .filter(|connection| connection.is_alive())
            .cloned();
        if let Some(connection) = live {
            return Ok(connection);
        }
        let addr = find_coordinator(&self.client, &self.group_id).await?;
        let config = self.client.config();
        let connection = BrokerConnection::connect(
            &addr,
            config.frame_bytes_max,
            Duration::from_millis(config.connect_timeout_ms),
        )
        .await?;
        *self.connection.borrow_mut() = Some(connection.clone());
        Ok(connection)
    }

    /// Sends `request` to the coordinator and waits up to `timeout` for the answer. A failed
    /// connection is forgotten (the next request finds the coordinator again).
    pub(crate) async fn request<Req, Resp>(
        &self,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, ClientError>
    where
        Req: Message + ControlEncode,
        Resp: Message + ControlDecode,
    {
        let connection = match self.connection().await {
            Ok(connection) => connection,
            Err(error) => {
                self.reset();
                return Err(error);
            }
        };
        match connection.request::<Req, Resp>(request, &[], timeout).await {
            Ok((response, _)) => Ok(response),
            Err(error) => {
                self.reset();
                Err(error)
            }
        }
    }

    /// Sends `request` until it gets an answer whose coordinator-level error (`error_of`) is not
    /// "the coordinator moved", retrying connection failures and moves up to the client's
    /// `retries_max` with backoff. The answer may still carry another error.
    pub(crate) async fn request_retrying<Req, Resp>(
        &self,
        request: &Req,
        error_of: impl Fn(&Resp) -> i16,
    ) -> Result<Resp, ClientError>
    where
        Req: Message + ControlEncode,
        Resp: Message + ControlDecode,
    {
        let mut attempt = 0;
        loop {
            let outcome = self
                .request::<Req, Resp>(request, self.client.request_timeout())
                .await;
            let retry = match &outcome {
                Ok(response) => {
                    ErrorCode::from_i16(error_of(response)).is_some_and(coordinator_moved)
                }
                Err(error) => error.is_retriable(),
            };
            if !retry || attempt >= self.client.config().retries_max {
                return outcome;
            }
            if outcome.is_ok() {
                self.reset();
            }
            glommio::timer::sleep(self.client.backoff(attempt)).await;
            attempt += 1;
        }
    }
}
