//! Runs one agent process (OCF resource agent, fence agent) in its own process group, with a deadline that kills the whole group and a bounded capture of its output.
//!
//! Agents start helpers (`sleep`, `ip`, `ipmitool`, `ssh`, daemons); killing only the agent
//! would leave those running, so each agent leads its own process group and a timeout
//! signals the group: SIGTERM, a grace period, then SIGKILL. Output beyond a limit keeps its
//! first and last halves, so an agent printing garbage cannot exhaust memory.

use std::collections::VecDeque;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use hafen_driver_api::resource::{CapturedOutput, Termination};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::time::Instant;

/// How long a process may stay after SIGKILL before it is reported as unkillable (a
/// process stuck in the kernel cannot be killed; the caller must not wait forever).
const UNKILLABLE_AFTER_MS: u64 = 10_000;

const READ_CHUNK_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct ProcessLimits {
    pub timeout_ms: u64,
    pub kill_grace_ms: u64,
    /// Per stream; the first and last halves are kept.
    pub output_limit_bytes: usize,
    /// After the agent exits, how long its output is still read: a daemon it started may
    /// hold the pipes open forever.
    pub output_drain_ms: u64,
}

pub struct ProcessSpec<'a> {
    pub program: &'a Path,
    pub arguments: &'a [&'a str],
    /// Written to the agent's stdin, then stdin is closed (fence agents read their arguments
    /// there); `None` gives it an empty stdin. May hold secrets: never logged.
    pub input: Option<Vec<u8>>,
    /// The agent gets exactly these variables and nothing of the daemon's environment.
    pub environment: &'a [(String, String)],
    pub working_directory: &'a Path,
    pub limits: ProcessLimits,
}

#[derive(Debug)]
pub struct Finished {
    pub termination: Termination,
    pub stdout: CapturedOutput,
    pub stderr: CapturedOutput,
    pub duration_ms: u64,
}

#[derive(Debug)]
pub enum RunError {
    Spawn(std::io::Error),
    Unkillable,
}

pub async fn run(spec: ProcessSpec<'_>) -> Result<Finished, RunError> {
    let limits = spec.limits;
    let mut command = Command::new(spec.program);
    command
        .env_clear()
        .envs(spec.environment.iter().map(|(name, value)| (name, value)))
        .args(spec.arguments)
        .current_dir(spec.working_directory)
        .stdin(if spec.input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let started = Instant::now();
    let mut child = command.spawn().map_err(RunError::Spawn)?;
    let Some(pid) = child.id() else {
        return Err(RunError::Spawn(std::io::Error::other(
            "agent exited before its pid was known",
        )));
    };
    let pid = i32::try_from(pid)
        .map_err(|_| RunError::Spawn(std::io::Error::other("pid out of range")))?;
    let mut guard = GroupGuard {
        group: Pid::from_raw(pid),
        armed: true,
    };
    // A separate task, so an agent that never reads its stdin cannot block the deadline;
    // the write fails (broken pipe) once the agent is gone, which ends the task.
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), spec.input) {
        tokio::spawn(async move {
            let _ = stdin.write_all(&input).await;
            let _ = stdin.shutdown().await;
        });
    }
    let mut streams = Streams {
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        stdout_capture: Capture::new(limits.output_limit_bytes),
        stderr_capture: Capture::new(limits.output_limit_bytes),
    };

    let deadline = started + Duration::from_millis(limits.timeout_ms);
    let termination = match streams.pump(Some(&mut child), deadline).await {
        Some(Ok(status)) => termination_of(status),
        Some(Err(error)) => {
            terminate_group(&mut child, guard.group, limits.kill_grace_ms).await?;
            guard.armed = false;
            return Err(RunError::Spawn(error));
        }
        None => {
            terminate_group(&mut child, guard.group, limits.kill_grace_ms).await?;
            Termination::TimedOut {
                timeout_ms: limits.timeout_ms,
            }
        }
    };
    // The leader is reaped: its pid may be reused, so the group is not signalled again (and
    // processes a successful OCF `start` left behind are the service itself).
    guard.armed = false;
    let drain_deadline = Instant::now() + Duration::from_millis(limits.output_drain_ms);
    streams.pump(None, drain_deadline).await;
    Ok(Finished {
        termination,
        stdout: streams.stdout_capture.finish(),
        stderr: streams.stderr_capture.finish(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

fn termination_of(status: ExitStatus) -> Termination {
    match (status.code(), status.signal()) {
        (Some(code), _) => Termination::Exited { code },
        (None, Some(signal)) => Termination::Signaled { signal },
        (None, None) => Termination::Signaled { signal: 0 },
    }
}

/// SIGTERM the group, give the leader the grace period, then SIGKILL the group whatever
/// happened: members that ignore SIGTERM must not outlive the operation.
async fn terminate_group(
    child: &mut Child,
    group: Pid,
    kill_grace_ms: u64,
) -> Result<ExitStatus, RunError> {
    // ESRCH only means the group is already gone.
    let _ = killpg(group, Signal::SIGTERM);
    let graceful = tokio::time::timeout(Duration::from_millis(kill_grace_ms), child.wait()).await;
    let _ = killpg(group, Signal::SIGKILL);
    if let Ok(Ok(status)) = graceful {
        return Ok(status);
    }
    match tokio::time::timeout(Duration::from_millis(UNKILLABLE_AFTER_MS), child.wait()).await {
        Ok(Ok(status)) => Ok(status),
        _ => Err(RunError::Unkillable),
    }
}

/// Kills the group if the operation is abandoned (its future dropped) before the leader
/// was reaped, so a cancelled operation leaves no agent running.
struct GroupGuard {
    group: Pid,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = killpg(self.group, Signal::SIGKILL);
        }
    }
}

struct Streams<Out, Err> {
    stdout: Option<Out>,
    stderr: Option<Err>,
    stdout_capture: Capture,
    stderr_capture: Capture,
}

impl<Out: AsyncRead + Unpin, Err: AsyncRead + Unpin> Streams<Out, Err> {
    /// Reads both streams until the child exits (when given), both streams close, or the
    /// deadline passes (`None`).
    async fn pump(
        &mut self,
        mut child: Option<&mut Child>,
        deadline: Instant,
    ) -> Option<std::io::Result<ExitStatus>> {
        let mut stdout_buffer = [0_u8; READ_CHUNK_BYTES];
        let mut stderr_buffer = [0_u8; READ_CHUNK_BYTES];
        loop {
            if child.is_none() && self.stdout.is_none() && self.stderr.is_none() {
                return None;
            }
            tokio::select! {
                status = wait_for(&mut child) => return Some(status),
                read = read_some(&mut self.stdout, &mut stdout_buffer) => {
                    accept(read, &mut self.stdout, &mut self.stdout_capture, &stdout_buffer);
                }
                read = read_some(&mut self.stderr, &mut stderr_buffer) => {
                    accept(read, &mut self.stderr, &mut self.stderr_capture, &stderr_buffer);
                }
                () = tokio::time::sleep_until(deadline) => return None,
            }
        }
    }
}

async fn wait_for(child: &mut Option<&mut Child>) -> std::io::Result<ExitStatus> {
    match child {
        Some(child) => child.wait().await,
        None => std::future::pending().await,
    }
}

async fn read_some<R: AsyncRead + Unpin>(
    stream: &mut Option<R>,
    buffer: &mut [u8],
) -> std::io::Result<usize> {
    match stream {
        Some(stream) => stream.read(buffer).await,
        None => std::future::pending().await,
    }
}

fn accept<R>(
    read: std::io::Result<usize>,
    stream: &mut Option<R>,
    capture: &mut Capture,
    buffer: &[u8],
) {
    match read {
        Ok(0) | Err(_) => *stream = None,
        Ok(count) => capture.push(&buffer[..count]),
    }
}

/// Keeps the first and the last half of the limit: the head says what the agent was
/// doing, the tail holds its final error and exit reason.
struct Capture {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    half_limit_bytes: usize,
    total_bytes: u64,
}

impl Capture {
    fn new(limit_bytes: usize) -> Capture {
        Capture {
            head: Vec::new(),
            tail: VecDeque::new(),
            half_limit_bytes: limit_bytes / 2,
            total_bytes: 0,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        self.total_bytes += bytes.len() as u64;
        let head_room = self.half_limit_bytes - self.head.len();
        let into_head = head_room.min(bytes.len());
        self.head.extend_from_slice(&bytes[..into_head]);
        bytes = &bytes[into_head..];
        if bytes.len() >= self.half_limit_bytes {
            bytes = &bytes[bytes.len() - self.half_limit_bytes..];
            self.tail.clear();
        }
        self.tail.extend(bytes);
        let excess = self.tail.len().saturating_sub(self.half_limit_bytes);
        self.tail.drain(..excess);
    }

    fn finish(self) -> CapturedOutput {
        let kept = (self.head.len() + self.tail.len()) as u64;
        let omitted_bytes = self.total_bytes - kept;
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if omitted_bytes > 0 {
            text.push_str(&format!("\n[... {omitted_bytes} bytes omitted ...]\n"));
        }
        let tail: Vec<u8> = self.tail.into_iter().collect();
        text.push_str(&String::from_utf8_lossy(&tail));
        CapturedOutput {
            text,
            omitted_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Proves the capture never holds more than its limit and keeps both ends.
    #[test]
    fn capture_keeps_head_and_tail_within_limit() {
        let mut capture = Capture::new(8);
        capture.push(b"abcdef");
        capture.push(b"0123456789");
        capture.push(b"xyz");
        let output = capture.finish();
        assert_eq!(output.omitted_bytes, 19 - 8);
        assert!(output.text.starts_with("abcd"));
        assert!(output.text.ends_with("9xyz"), "{}", output.text);
    }

    #[test]
    fn capture_under_limit_is_verbatim() {
        let mut capture = Capture::new(64);
        capture.push(b"hello ");
        capture.push(b"world");
        let output = capture.finish();
        assert_eq!(output.text, "hello world");
        assert_eq!(output.omitted_bytes, 0);
    }
}
