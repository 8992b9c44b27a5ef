//! Where a Redis consumer, a saga participant or the service's sink connects: one server or
//! a Redis Cluster ([`RedisTarget`]), and the connection to either ([`RedisConnection`]).

use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

/// A connection to one Redis server or to a Redis Cluster (which routes each command to
/// its key's slot and follows slot moves and failovers).
#[derive(Clone)]
pub enum RedisConnection {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl RedisConnection {
    /// Whether commands on different keys may not be combined in one transaction.
    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConnection::Cluster(_))
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConnection::Single(c) => c.req_packed_command(cmd),
            RedisConnection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConnection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConnection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConnection::Single(c) => c.get_db(),
            RedisConnection::Cluster(c) => c.get_db(),
        }
    }
}

/// Where a consumer reads: one server, or a cluster from its seed nodes.
#[derive(Clone)]
#[expect(
    clippy::large_enum_variant,
    reason = "one per consumer or tool, made once"
)]
pub enum RedisTarget {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

impl RedisTarget {
    /// One server at `url`.
    pub fn single(url: &str) -> Result<RedisTarget, RedisError> {
        Ok(RedisTarget::Single(redis::Client::open(url)?))
    }

    /// A Redis Cluster from its seed nodes (`redis://host:port` each).
    pub fn cluster(nodes: Vec<String>) -> Result<RedisTarget, RedisError> {
        Ok(RedisTarget::Cluster(redis::cluster::ClusterClient::new(
            nodes,
        )?))
    }

    /// A connection whose answers may take `patience` (blocking reads).
    pub async fn connect(&self, patience: Duration) -> Result<RedisConnection, RedisError> {
        match self {
            RedisTarget::Single(client) => client
                .get_multiplexed_async_connection_with_config(
                    &redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(Duration::from_secs(5)))
                        .set_response_timeout(Some(patience)),
                )
                .await
                .map(RedisConnection::Single),
            RedisTarget::Cluster(client) => {
                let config = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(Duration::from_secs(5))
                    .set_response_timeout(patience);
                client
                    .get_async_connection_with_config(config)
                    .await
                    .map(RedisConnection::Cluster)
            }
        }
    }
}
