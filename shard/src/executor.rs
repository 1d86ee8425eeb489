//! Starting, addressing and joining the shards: one glommio `LocalExecutor` per shard, each on
//! its own thread, pinned to a CPU unless told otherwise, joined into a full channel mesh.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use futures_channel::mpsc;
use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
use glommio::{LocalExecutorBuilder, Placement};

use crate::error::ShardError;
use crate::message::ShardRequest;
use crate::table::{ShardId, ShardTable};

/// How often a shard waiting for its peers to join the mesh checks whether startup was
/// aborted (another shard failed to start), in milliseconds.
const STARTUP_ABORT_POLL_MS: u64 = 10;
/// How often a thread blocked on a shard (room in its inbox, or its reply) checks that the
/// shard's thread still runs, in milliseconds; a reply or room wakes it at once.
const LIVENESS_POLL_MS: u64 = 10;

/// Where the shards' executors run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardPlacement {
    /// Shard `i` is pinned to `cpus[i]` (`Placement::Fixed`). The list must have at least as many
    /// CPUs as there are shards.
    Pinned(Vec<usize>),
    /// Executors float on any CPU (tests, and embedding a broker next to other work).
    Unbound,
}

/// How to start a [`ShardSet`].
#[derive(Debug, Clone)]
pub struct ShardSetConfig {
    /// Number of shards (executors). Must be at least 1.
    pub shard_count: usize,
    /// Where the executors run.
    pub placement: ShardPlacement,
    /// Capacity of each directed channel of the cross-shard mesh, in messages. A sender waits
    /// when the owner's queue is full (backpressure).
    pub mesh_queue_depth_max: usize,
    /// Capacity of each shard's control inbox, in messages.
    pub control_queue_depth_max: usize,
    /// Prefix of the executor thread names (`<name>-<shard>`).
    pub name: String,
}

impl Default for ShardSetConfig {
    fn default() -> Self {
        ShardSetConfig {
            shard_count: 1,
            placement: ShardPlacement::Unbound,
            mesh_queue_depth_max: 1024,
            control_queue_depth_max: 16,
            name: "sluice-shard".to_string(),
        }
    }
}

impl ShardSetConfig {
    /// Checks the bounds, naming the offending setting.
    pub fn validate(&self) -> Result<(), ShardError> {
        if self.shard_count == 0 {
            return Err(ShardError::InvalidConfig(
                "shard_count must be at least 1".to_string(),
            ));
        }
        if u32::try_from(self.shard_count).is_err() {
            return Err(ShardError::InvalidConfig(format!(
                "shard_count {} is too large",
                self.shard_count
            )));
        }
        if self.mesh_queue_depth_max == 0 || self.control_queue_depth_max == 0 {
            return Err(ShardError::InvalidConfig(
                "mesh_queue_depth_max and control_queue_depth_max must be at least 1".to_string(),
            ));
        }
        if let ShardPlacement::Pinned(cpus) = &self.placement {
            if cpus.len() < self.shard_count {
                return Err(ShardError::InvalidConfig(format!(
                    "{} shards need {} CPUs to pin to but the CPU list {cpus:?} has {}; \
                     list more CPUs, use fewer shards, or turn pinning off",
                    self.shard_count,
                    self.shard_count,
                    cpus.len()
                )));
            }
        }
        Ok(())
    }

    fn placement_of(&self, index: usize) -> Placement {
        match &self.placement {
            ShardPlacement::Pinned(cpus) => Placement::Fixed(cpus[index]),
            ShardPlacement::Unbound => Placement::Unbound,
        }
    }
}

/// Largest allocation the C allocator serves from its heaps rather than from a fresh `mmap`, in
/// bytes (glibc's own ceiling for the setting). Every request and response frame is one
/// allocation of its whole size, often megabytes.
const ALLOCATOR_MMAP_THRESHOLD_BYTES: libc::c_int = 32 * 1024 * 1024;
/// Freed memory the C allocator keeps on top of each of its heaps, in bytes, rather than giving
/// it back to the kernel (trimming the main heap, or unmapping a thread's extra 64 MiB heap once
/// it empties): about what a busy shard's frames in flight hold.
const ALLOCATOR_KEPT_BYTES: libc::c_int = 64 * 1024 * 1024;

/// Makes the C allocator (glibc's) keep and reuse freed frame buffers instead of unmapping them
/// and faulting fresh zeroed pages back in for the next frame. Left to itself, glibc adapts
/// its thresholds as it goes, and a thread whose frames in flight crossed its first 64 MiB heap
/// mapped and unmapped a second one over and over: at max rate one run in three took four
/// times the page faults of the others (1.2 million in 16 s, every fetched page faulted
/// afresh) and ran about 15 % slower. Called at the start of `main`. Not glibc (or a setting
/// refused): the allocator's defaults stay.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    for (option, bytes) in [
        (libc::M_MMAP_THRESHOLD, ALLOCATOR_MMAP_THRESHOLD_BYTES),
        (libc::M_TRIM_THRESHOLD, ALLOCATOR_KEPT_BYTES),
        (libc::M_TOP_PAD, ALLOCATOR_KEPT_BYTES),
    ] {
        // SAFETY: mallopt only sets a malloc parameter, under the allocator's own lock.
        if unsafe { libc::mallopt(option, bytes) } != 1 {
            tracing::debug!(option, bytes, "the C allocator refused a setting");
        }
    }
}

/// The CPUs this process may run on (its affinity mask), in ascending order.
pub fn usable_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for the calling thread.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: `set` is a valid, writable cpu_set_t of `size` bytes.
    let result = unsafe { libc::sched_getaffinity(0, size, &mut set) };
    if result != 0 {
        let count = std::thread::available_parallelism().map_or(1, |n| n.get());
        return (0..count).collect();
    }
    let bits = 8 * size;
    // SAFETY: CPU_ISSET reads the bit of a valid cpu_set_t; `cpu` stays below its bit size.
    (0..bits)
        .filter(|cpu| unsafe { libc::CPU_ISSET(*cpu, &set) })
        .collect()
}

/// A control message to one shard, sent by the control plane (not on the data path).
///
/// Each variant lists what the receiving shard touches.
#[derive(Debug)]
pub enum ShardControl {
    /// Install a newer shard table. Touches: the shard's table copy, its PartitionRegistry
    /// (opens logs of partitions it now owns, deletes logs of partitions that no longer exist).
    /// The reply is sent once the shard has applied it.
    ApplyTable {
        /// The new table.
        table: ShardTable,
        /// Answered when applied.
        reply: oneshot::Sender<Result<(), ShardError>>,
    },
    /// Stop accepting connections and finish in-flight requests within the drain bound.
    /// Touches: the shard's listeners and connections. The shard keeps serving the mesh so
    /// peers can finish their forwarded requests.
    Drain {
        /// Answered when the shard's connections are finished (or the bound expired).
        reply: oneshot::Sender<()>,
    },
    /// Flush and close every log this shard owns (writing the clean-shutdown marker), then
    /// return from the shard's main function. Touches: the PartitionRegistry.
    Close {
        /// Answered when every log is closed.
        reply: oneshot::Sender<Result<(), ShardError>>,
    },
}

/// The sending side of one shard's control inbox. `Send + Clone`: usable from any thread.
#[derive(Debug, Clone)]
pub struct ControlSender {
    shard: ShardId,
    inner: mpsc::Sender<ShardControl>,
    /// False once the shard's thread has ended, by return or by panic. A panic need not drop
    /// the shard's tasks (a broker shard's inbox stayed open after one, most likely kept alive
    /// by tasks holding each other through `Rc`s), so the inbox and the replies queued in it can
    /// stay open: waiting on them alone could block forever.
    alive: Arc<AtomicBool>,
}

/// Clears a shard's liveness flag when its thread ends, unwinding included.
struct AliveGuard(Arc<AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Wakes a thread parked in [`ControlSender::block_while_alive`].
struct ThreadWaker(std::thread::Thread);

impl std::task::Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

impl ControlSender {
    /// The shard this sender addresses.
    pub fn shard(&self) -> ShardId {
        self.shard
    }

    /// True while the shard's thread runs.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Waits, from a thread that is not an executor, for the shard's answer to a message sent
    /// with `reply`: `None` when the shard dropped the reply or its thread ended without
    /// answering.
    pub fn wait_reply<R>(&self, answer: oneshot::Receiver<R>) -> Option<R> {
        self.block_while_alive(answer).and_then(Result::ok)
    }

    /// Runs `future` to completion on this thread while the shard lives; `None` when the
    /// shard's thread ended first (checked every `LIVENESS_POLL_MS`, and once more after).
    fn block_while_alive<F: Future>(&self, future: F) -> Option<F::Output> {
        let mut future = std::pin::pin!(future);
        let waker = std::task::Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut context = std::task::Context::from_waker(&waker);
        loop {
            let alive = self.is_alive();
            if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut context) {
                return Some(output);
            }
            if !alive {
                return None;
            }
            std::thread::park_timeout(Duration::from_millis(LIVENESS_POLL_MS));
        }
    }

    /// Sends `message`, waiting for room in the bounded inbox.
    pub async fn send(&self, message: ShardControl) -> Result<(), ShardError> {
        if !self.is_alive() {
            return Err(ShardError::Stopped {
                shard: self.shard.0,
            });
        }
        let mut sender = self.inner.clone();
        futures_lite::future::poll_fn(|context| sender.poll_ready(context))
            .await
            .map_err(|_| ShardError::Stopped {
                shard: self.shard.0,
            })?;
        sender.start_send(message).map_err(|_| ShardError::Stopped {
            shard: self.shard.0,
        })
    }

    /// Sends `message` from a thread that is not an executor, blocking until there is room
    /// (or the shard's thread has ended).
    pub fn send_blocking(&self, message: ShardControl) -> Result<(), ShardError> {
        self.block_while_alive(self.send(message))
            .unwrap_or(Err(ShardError::Stopped {
                shard: self.shard.0,
            }))
    }
}

/// The receiving side of a shard's control inbox (a `futures_core::Stream`).
pub type ControlReceiver = mpsc::Receiver<ShardControl>;

/// What a shard's main function is given.
pub struct ShardContext {
    /// This shard.
    pub id: ShardId,
    /// How many shards there are.
    pub shard_count: u32,
    /// Senders to every other shard's mesh inbox (index = shard id; own slot is empty).
    pub senders: Senders<ShardRequest>,
    /// Receivers of every other shard's messages to this shard.
    pub receivers: Receivers<ShardRequest>,
    /// Control messages from the control plane.
    pub control: ControlReceiver,
}

/// The running shards. Join them with [`ShardSet::join`].
pub struct ShardSet<T> {
    threads: Vec<JoinHandle<Result<T, ShardError>>>,
    controls: Vec<ControlSender>,
}

impl<T: Send + 'static> ShardSet<T> {
    /// Starts `config.shard_count` executors, joins them into a full mesh, and runs
    /// `shard_main(context)` on each. Returns once every executor exists; a failure to create
    /// any of them stops the others and is returned.
    pub fn start<F, Fut>(config: ShardSetConfig, shard_main: F) -> Result<ShardSet<T>, ShardError>
    where
        F: Fn(ShardContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = T> + 'static,
    {
        config.validate()?;
        let shard_count = config.shard_count;
        let shard_main = Arc::new(shard_main);
        let abort = Arc::new(AtomicBool::new(false));
        // glommio's MeshBuilder shares a non-atomic Rc between its clones. Every clone is made
        // here, before any shard thread exists, so the only cross-thread refcount traffic is
        // drops (which at worst leak the builder, never free it early).
        let mesh =
            MeshBuilder::<ShardRequest, Full>::full(shard_count, config.mesh_queue_depth_max);
        let meshes: Vec<_> = (0..shard_count).map(|_| mesh.clone()).collect();
        drop(mesh);
        let mut set = ShardSet {
            threads: Vec::with_capacity(shard_count),
            controls: Vec::with_capacity(shard_count),
        };
        for (index, mesh) in meshes.into_iter().enumerate() {
            let spawned = spawn_shard(&config, index, mesh, shard_main.clone(), abort.clone());
            match spawned {
                Ok((thread, control)) => {
                    set.threads.push(thread);
                    set.controls.push(control);
                }
                Err(error) => {
                    abort.store(true, Ordering::Release);
                    let _ = set.join();
                    return Err(error);
                }
            }
        }
        Ok(set)
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.controls.len()
    }

    /// The control sender of every shard, by shard id.
    pub fn controls(&self) -> &[ControlSender] {
        &self.controls
    }

    /// True when any shard's thread has ended (its main function returned or it panicked).
    pub fn any_finished(&self) -> bool {
        self.first_finished().is_some()
    }

    /// The lowest shard id whose thread has ended (its main function returned or it panicked).
    pub fn first_finished(&self) -> Option<ShardId> {
        self.threads
            .iter()
            .position(JoinHandle::is_finished)
            .map(|index| ShardId(shard_number(index)))
    }

    /// Waits for every shard's main function to return, giving each shard's result by shard id.
    pub fn join(self) -> Vec<Result<T, ShardError>> {
        drop(self.controls);
        self.threads
            .into_iter()
            .enumerate()
            .map(|(index, thread)| match thread.join() {
                Ok(result) => result,
                Err(_) => Err(ShardError::Panicked {
                    shard: shard_number(index),
                }),
            })
            .collect()
    }
}

fn shard_number(index: usize) -> u32 {
    // The shard count was checked to fit in a u32.
    u32::try_from(index).unwrap_or(u32::MAX)
}

type SpawnedShard<T> = (JoinHandle<Result<T, ShardError>>, ControlSender);

/// Spawns shard `index`'s thread and waits until its executor exists, so executors are created
/// one after the other: glommio numbers executors in creation order and orders mesh peers by
/// that number, which makes mesh peer `i` equal to shard `i`.
fn spawn_shard<T, F, Fut>(
    config: &ShardSetConfig,
    index: usize,
    mesh: MeshBuilder<ShardRequest, Full>,
    shard_main: Arc<F>,
    abort: Arc<AtomicBool>,
) -> Result<SpawnedShard<T>, ShardError>
where
    T: Send + 'static,
    F: Fn(ShardContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + 'static,
{
    let id = ShardId(shard_number(index));
    let shard_count = shard_number(config.shard_count);
    let (control_sender, control_receiver) = mpsc::channel(config.control_queue_depth_max);
    let (made_sender, made_receiver) = std::sync::mpsc::channel::<Result<(), String>>();
    let name = format!("{}-{index}", config.name);
    let builder = LocalExecutorBuilder::new(config.placement_of(index)).name(&name);
    let alive = Arc::new(AtomicBool::new(true));
    let guard = AliveGuard(alive.clone());
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let _alive = guard;
            let executor = match builder.make() {
                Ok(executor) => executor,
                Err(error) => {
                    let reason = error.to_string();
                    let _ = made_sender.send(Err(reason.clone()));
                    return Err(ShardError::Start {
                        shard: id.0,
                        reason,
                    });
                }
            };
            let _ = made_sender.send(Ok(()));
            executor.run(async move {
                let (senders, receivers) = join_mesh(id, mesh, &abort).await?;
                let context = ShardContext {
                    id,
                    shard_count,
                    senders,
                    receivers,
                    control: control_receiver,
                };
                Ok(shard_main(context).await)
            })
        })
        .map_err(|error| ShardError::Start {
            shard: id.0,
            reason: format!("cannot spawn thread: {error}"),
        })?;
    match made_receiver.recv() {
        Ok(Ok(())) => Ok((
            thread,
            ControlSender {
                shard: id,
                inner: control_sender,
                alive,
            },
        )),
        Ok(Err(reason)) => {
            let _ = thread.join();
            Err(ShardError::Start {
                shard: id.0,
                reason,
            })
        }
        Err(_) => {
            let _ = thread.join();
            Err(ShardError::Start {
                shard: id.0,
                reason: "executor thread exited before creating its executor".to_string(),
            })
        }
    }
}

type MeshEnds = (Senders<ShardRequest>, Receivers<ShardRequest>);

async fn join_mesh(
    id: ShardId,
    mesh: MeshBuilder<ShardRequest, Full>,
    abort: &AtomicBool,
) -> Result<MeshEnds, ShardError> {
    let aborted = async {
        while !abort.load(Ordering::Acquire) {
            glommio::timer::sleep(Duration::from_millis(STARTUP_ABORT_POLL_MS)).await;
        }
        Err(ShardError::Start {
            shard: id.0,
            reason: "startup aborted because another shard failed to start".to_string(),
        })
    };
    let joined = async {
        mesh.join().await.map_err(|error| ShardError::Start {
            shard: id.0,
            reason: format!("cannot join the shard mesh: {error}"),
        })
    };
    let (senders, receivers) = futures_lite::future::or(joined, aborted).await?;
    if senders.peer_id() != id.index() {
        return Err(ShardError::Start {
            shard: id.0,
            reason: format!(
                "mesh peer id {} does not match the shard id (executors created out of order)",
                senders.peer_id()
            ),
        });
    }
    Ok((senders, receivers))
}
