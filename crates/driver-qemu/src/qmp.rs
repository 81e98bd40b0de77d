//! A small QMP client over a unix socket: greeting, `qmp_capabilities`, commands matched to replies by id, an event log that waiters can search, and a timeout on every call.
//!
//! One reader task owns the socket's read half. Replies complete the waiting command;
//! events are appended to a bounded log with a sequence number, so a caller can take a
//! mark, issue a command and then wait for an event that may already have arrived.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

/// Events kept for late waiters; QEMU emits a handful per operation.
const EVENT_LOG_CAPACITY: usize = 1024;
/// A QMP message larger than this is a protocol failure (the largest real replies, such
/// as `query-migrate`, are a few KiB).
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QmpError {
    #[error("cannot connect to qmp socket {path:?}: {reason}")]
    Connect { path: PathBuf, reason: String },
    #[error("qmp {what} did not answer within {timeout_ms} ms")]
    Timeout { what: String, timeout_ms: u64 },
    #[error("qmp command {command} failed: {class}: {description}")]
    Command {
        command: String,
        class: String,
        description: String,
    },
    #[error("qmp connection closed: {reason}")]
    Disconnected { reason: String },
    #[error("qmp protocol violation: {reason}")]
    Protocol { reason: String },
}

/// One asynchronous event, numbered in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    pub sequence: u64,
    pub name: String,
    pub data: Value,
}

type Reply = Result<Value, QmpError>;

#[derive(Debug, Default)]
struct Shared {
    pending: BTreeMap<u64, oneshot::Sender<Reply>>,
    events: VecDeque<QmpEvent>,
    next_sequence: u64,
    closed: Option<String>,
}

#[derive(Debug)]
pub struct QmpClient {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    shared: Arc<Mutex<Shared>>,
    /// Bumped on every event and on close; waiters watch it.
    changes: watch::Receiver<u64>,
    next_id: AtomicU64,
    reader: JoinHandle<()>,
    timeout: Duration,
}

impl Drop for QmpClient {
    fn drop(&mut self) {
        // Closing our side of the socket leaves QEMU and its guest untouched.
        self.reader.abort();
    }
}

impl QmpClient {
    /// Connects, reads the greeting and leaves negotiation mode. `timeout` bounds the
    /// whole handshake and, later, every command.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<QmpClient, QmpError> {
        Self::connect_within(path, timeout, timeout).await
    }

    /// As [`QmpClient::connect`], with the handshake bounded apart from the commands: a
    /// QEMU that is still starting answers `qmp_capabilities` only once its machine is up.
    pub async fn connect_within(
        path: &Path,
        handshake_timeout: Duration,
        timeout: Duration,
    ) -> Result<QmpClient, QmpError> {
        let deadline = Instant::now() + handshake_timeout;
        let timeout_ms = millis(handshake_timeout);
        let stream = timeout_at(deadline, UnixStream::connect(path))
            .await
            .map_err(|_| QmpError::Timeout {
                what: "connect".to_string(),
                timeout_ms,
            })?
            .map_err(|error| QmpError::Connect {
                path: path.to_path_buf(),
                reason: error.to_string(),
            })?;
        let connected_at = Instant::now();
        let (read_half, write_half) = stream.into_split();
        let mut reader = BufReader::new(read_half);
        let greeting = timeout_at(deadline, read_message(&mut reader))
            .await
            .map_err(|_| QmpError::Timeout {
                what: "greeting".to_string(),
                timeout_ms,
            })??;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol {
                reason: format!("expected a greeting, got {greeting}"),
            });
        }
        let shared = Arc::new(Mutex::new(Shared::default()));
        let (changes_sender, changes) = watch::channel(0);
        let reader = tokio::spawn(read_loop(reader, shared.clone(), changes_sender));
        let client = QmpClient {
            writer: tokio::sync::Mutex::new(write_half),
            shared,
            changes,
            next_id: AtomicU64::new(1),
            reader,
            timeout,
        };
        let greeted_at = Instant::now();
        let remaining = deadline.saturating_duration_since(Instant::now());
        client
            .execute_within("qmp_capabilities", None, remaining)
            .await?;
        tracing::debug!(
            greeting_us = (greeted_at - connected_at).as_micros(),
            capabilities_us = greeted_at.elapsed().as_micros(),
            "qmp connected"
        );
        Ok(client)
    }

    /// Runs a command with the client's timeout.
    pub async fn execute(
        &self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        self.execute_within(command, arguments, self.timeout).await
    }

    /// Runs a command; its reply must arrive within `timeout`.
    pub async fn execute_within(
        &self,
        command: &str,
        arguments: Option<Value>,
        timeout: Duration,
    ) -> Result<Value, QmpError> {
        let deadline = Instant::now() + timeout;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        {
            let mut shared = lock(&self.shared);
            if let Some(reason) = &shared.closed {
                return Err(QmpError::Disconnected {
                    reason: reason.clone(),
                });
            }
            shared.pending.insert(id, sender);
        }
        let mut message = json!({ "execute": command, "id": id });
        if let Some(arguments) = arguments {
            message["arguments"] = arguments;
        }
        let mut line = message.to_string();
        line.push('\n');
        let timed_out = || QmpError::Timeout {
            what: command.to_string(),
            timeout_ms: millis(timeout),
        };
        let written = timeout_at(deadline, async {
            let mut writer = self.writer.lock().await;
            writer.write_all(line.as_bytes()).await
        })
        .await;
        let result = match written {
            Err(_) => Err(timed_out()),
            Ok(Err(error)) => Err(QmpError::Disconnected {
                reason: format!("write failed: {error}"),
            }),
            Ok(Ok(())) => match timeout_at(deadline, receiver).await {
                Err(_) => Err(timed_out()),
                Ok(Err(_)) => Err(QmpError::Disconnected {
                    reason: "reader stopped".to_string(),
                }),
                Ok(Ok(reply)) => reply.map_err(|error| match error {
                    QmpError::Command {
                        class, description, ..
                    } => QmpError::Command {
                        command: command.to_string(),
                        class,
                        description,
                    },
                    other => other,
                }),
            },
        };
        lock(&self.shared).pending.remove(&id);
        result
    }

    /// The sequence number the next event will get: wait for events from here on.
    pub fn event_mark(&self) -> u64 {
        lock(&self.shared).next_sequence
    }

    /// Waits for the first event at or after `mark` that `matches` accepts.
    pub async fn wait_event(
        &self,
        mark: u64,
        timeout: Duration,
        matches: impl Fn(&QmpEvent) -> bool,
    ) -> Result<QmpEvent, QmpError> {
        let deadline = Instant::now() + timeout;
        let mut changes = self.changes.clone();
        loop {
            {
                let shared = lock(&self.shared);
                if let Some(event) = shared
                    .events
                    .iter()
                    .find(|event| event.sequence >= mark && matches(event))
                {
                    return Ok(event.clone());
                }
                if let Some(reason) = &shared.closed {
                    return Err(QmpError::Disconnected {
                        reason: reason.clone(),
                    });
                }
            }
            match timeout_at(deadline, changes.changed()).await {
                Err(_) => {
                    return Err(QmpError::Timeout {
                        what: "event".to_string(),
                        timeout_ms: millis(timeout),
                    });
                }
                // The sender lives in the reader task; it only goes away on close,
                // which the next round reports.
                Ok(Err(_)) if lock(&self.shared).closed.is_none() => {
                    lock(&self.shared).closed = Some("reader stopped".to_string());
                }
                Ok(_) => {}
            }
        }
    }

    /// Waits until QEMU closes the connection (it exits); false on timeout.
    pub async fn wait_closed(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut changes = self.changes.clone();
        loop {
            if self.is_closed() {
                return true;
            }
            match timeout_at(deadline, changes.changed()).await {
                Err(_) => return false,
                Ok(Err(_)) => return true,
                Ok(Ok(())) => {}
            }
        }
    }

    pub fn is_closed(&self) -> bool {
        lock(&self.shared).closed.is_some()
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

async fn read_loop(
    mut reader: BufReader<OwnedReadHalf>,
    shared: Arc<Mutex<Shared>>,
    changes: watch::Sender<u64>,
) {
    let reason = loop {
        let message = match read_message(&mut reader).await {
            Ok(message) => message,
            Err(error) => break error.to_string(),
        };
        dispatch(&shared, &changes, message);
    };
    let mut shared_state = lock(&shared);
    shared_state.closed = Some(reason.clone());
    for (_, waiter) in std::mem::take(&mut shared_state.pending) {
        let _ = waiter.send(Err(QmpError::Disconnected {
            reason: reason.clone(),
        }));
    }
    drop(shared_state);
    changes.send_modify(|generation| *generation += 1);
}

fn dispatch(shared: &Mutex<Shared>, changes: &watch::Sender<u64>, message: Value) {
    if let Some(name) = message.get("event").and_then(Value::as_str) {
        let mut shared = lock(shared);
        let event = QmpEvent {
            sequence: shared.next_sequence,
            name: name.to_string(),
            data: message.get("data").cloned().unwrap_or(Value::Null),
        };
        tracing::debug!(event = %event.name, data = %event.data, "qmp event");
        shared.next_sequence += 1;
        shared.events.push_back(event);
        while shared.events.len() > EVENT_LOG_CAPACITY {
            shared.events.pop_front();
        }
        drop(shared);
        changes.send_modify(|generation| *generation += 1);
        return;
    }
    let Some(id) = message.get("id").and_then(Value::as_u64) else {
        // Replies without our id cannot be matched; QEMU only sends them for commands
        // we did not issue.
        return;
    };
    let reply = if let Some(value) = message.get("return") {
        Ok(value.clone())
    } else if let Some(error) = message.get("error") {
        Err(QmpError::Command {
            command: String::new(),
            class: error
                .get("class")
                .and_then(Value::as_str)
                .unwrap_or("GenericError")
                .to_string(),
            description: error
                .get("desc")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        })
    } else {
        return;
    };
    if let Some(waiter) = lock(shared).pending.remove(&id) {
        let _ = waiter.send(reply);
    }
}

async fn read_message(reader: &mut BufReader<OwnedReadHalf>) -> Result<Value, QmpError> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut *reader)
            .take(MAX_MESSAGE_BYTES as u64)
            .read_until(b'\n', &mut line)
            .await
            .map_err(|error| QmpError::Disconnected {
                reason: error.to_string(),
            })?;
        if read == 0 {
            return Err(QmpError::Disconnected {
                reason: "end of stream".to_string(),
            });
        }
        if line.last() != Some(&b'\n') && line.len() >= MAX_MESSAGE_BYTES {
            return Err(QmpError::Protocol {
                reason: format!("message longer than {MAX_MESSAGE_BYTES} bytes"),
            });
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        return serde_json::from_slice(&line).map_err(|error| QmpError::Protocol {
            reason: format!("invalid json: {error}"),
        });
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // The state stays consistent between statements, so a poisoned lock is still usable.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    //! The client against a scripted QMP server on a socket pair: replies matched by id
    //! out of order, events before and after a mark, and timeouts.

    use super::*;
    use tokio::net::UnixListener;

    /// Proves the handshake, id matching, the event log and command timeouts.
    #[tokio::test]
    async fn handshake_commands_events_timeouts() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let script = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let (read_half, mut write_half) = stream.into_split();
            let mut lines = BufReader::new(read_half).lines();
            write_half
                .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
                .await
                .expect("greet");
            let capabilities: Value =
                serde_json::from_str(&lines.next_line().await.expect("read").expect("line"))
                    .expect("json");
            assert_eq!(capabilities["execute"], "qmp_capabilities");
            let reply = json!({"return": {}, "id": capabilities["id"]});
            write_half
                .write_all(format!("{reply}\n").as_bytes())
                .await
                .expect("reply");
            let status: Value =
                serde_json::from_str(&lines.next_line().await.expect("read").expect("line"))
                    .expect("json");
            // An event arrives before the reply, as QEMU does for system_powerdown.
            let event = json!({"event": "POWERDOWN", "data": {}});
            let reply = json!({"return": {"status": "running"}, "id": status["id"]});
            write_half
                .write_all(format!("{event}\n{reply}\n").as_bytes())
                .await
                .expect("reply");
            // The next command gets no answer: the client must time out.
            let _ignored = lines.next_line().await;
            let mut rest = Vec::new();
            let _ = lines.into_inner().read_to_end(&mut rest).await;
        });
        let client = QmpClient::connect(&path, Duration::from_secs(5))
            .await
            .expect("connect");
        let mark = client.event_mark();
        let status = client.execute("query-status", None).await.expect("status");
        assert_eq!(status["status"], "running");
        let event = client
            .wait_event(mark, Duration::from_secs(1), |event| {
                event.name == "POWERDOWN"
            })
            .await
            .expect("the event that came before the reply is found");
        assert_eq!(event.sequence, mark);
        let later = client
            .wait_event(client.event_mark(), Duration::from_millis(50), |_| true)
            .await;
        assert!(
            matches!(later, Err(QmpError::Timeout { .. })),
            "got {later:?}"
        );
        let silent = client
            .execute_within("stop", None, Duration::from_millis(100))
            .await;
        assert!(
            matches!(silent, Err(QmpError::Timeout { .. })),
            "got {silent:?}"
        );
        drop(client);
        script.await.expect("script");
    }

    /// Proves a closed connection fails waiting commands and event waiters at once.
    #[tokio::test]
    async fn close_fails_waiters() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).expect("bind");
        let script = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let (read_half, mut write_half) = stream.into_split();
            let mut lines = BufReader::new(read_half).lines();
            write_half
                .write_all(b"{\"QMP\": {}}\n")
                .await
                .expect("greet");
            let capabilities: Value =
                serde_json::from_str(&lines.next_line().await.expect("read").expect("line"))
                    .expect("json");
            let reply = json!({"return": {}, "id": capabilities["id"]});
            write_half
                .write_all(format!("{reply}\n").as_bytes())
                .await
                .expect("reply");
            let _quit = lines.next_line().await;
            // Closing without a reply, as a crashing QEMU would.
        });
        let client = QmpClient::connect(&path, Duration::from_secs(5))
            .await
            .expect("connect");
        let result = client.execute("quit", None).await;
        assert!(
            matches!(result, Err(QmpError::Disconnected { .. })),
            "got {result:?}"
        );
        assert!(client.wait_closed(Duration::from_secs(1)).await);
        let event = client.wait_event(0, Duration::from_secs(1), |_| true).await;
        assert!(
            matches!(event, Err(QmpError::Disconnected { .. })),
            "got {event:?}"
        );
        script.await.expect("script");
    }
}
