//! The scheduler: which models are loaded, for how long, and who waits.
//!
//! - A request needs a runner *compatible* with it: same weights, adapters and load options, and
//!   a context at least as long as the request's `num_ctx`. A loaded runner with a longer context
//!   serves a shorter request, so two models built on the same weights with different `num_ctx`
//!   share one runner instead of evicting each other in a loop (a long-standing Ollama bug).
//! - At most `max_loaded` runners exist; when another is needed, and when the estimated memory
//!   does not fit what the system has available, idle runners are unloaded least recently used
//!   first. A request that finds every runner busy waits for one to be released.
//! - Every release restarts the runner's keep-alive; an expiry task unloads idle runners whose
//!   time is up. `keep_alive: 0` unloads as soon as the last request ends.
//! - At most `max_queue` requests may wait; more get 503.
//! - A dead runner (its process exited) is dropped and the next request loads a fresh one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corral_types::duration::KeepAlive;
use corral_types::runner::{DeviceInfo, LoadOptions};
use tokio::sync::Notify;

use crate::backend::Backend;
use crate::placement::{self, GpuConfig};
use crate::runner::{Runner, RunnerError};

/// Scheduler settings.
#[derive(Clone)]
pub struct SchedConfig {
    /// What loads models: runner processes, or the scripted fake in tests.
    pub backend: Arc<dyn Backend>,
    /// The devices the runner probe found at start, with their free memory then.
    pub devices: Vec<DeviceInfo>,
    /// GPU settings from the environment.
    pub gpu: GpuConfig,
    /// `OLLAMA_MAX_LOADED_MODELS` (0 means 3).
    pub max_loaded: usize,
    /// `OLLAMA_MAX_QUEUE`.
    pub max_queue: usize,
    /// `OLLAMA_LOAD_TIMEOUT`: the longest a load may go without progress.
    pub load_timeout: Duration,
    /// How often idle runners are checked for an expired keep-alive.
    pub expiry_tick: Duration,
    /// How long a runner may leave a heartbeat unanswered before it is killed.
    pub heartbeat: Duration,
}

/// What requests get once the server is stopping.
pub const SHUTTING_DOWN: &str = "the server is shutting down";

/// Why a model could not be scheduled.
#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    #[error("server busy, please try again.  maximum pending requests exceeded")]
    Busy,
    #[error("{SHUTTING_DOWN}")]
    ShuttingDown,
    #[error(transparent)]
    Runner(#[from] RunnerError),
}

/// What a request needs loaded.
#[derive(Debug, Clone)]
pub struct LoadRequest {
    /// Display name (`/api/ps` `name`).
    pub name: String,
    /// Hex digest of the model's manifest.
    pub digest: String,
    pub details: corral_types::api::ModelDetails,
    pub options: LoadOptions,
    pub keep_alive: KeepAlive,
    /// Estimated bytes of weights and KV cache.
    pub estimate: u64,
    /// What placement needs to know of the model.
    pub needs: placement::Needs,
}

enum State {
    Loading,
    Ready(Arc<Runner>),
}

struct Slot {
    id: u64,
    request: LoadRequest,
    state: State,
    /// Requests using it right now.
    refs: usize,
    last_used: Instant,
    /// When an idle runner is unloaded; `None` while busy or kept forever.
    expires: Option<Instant>,
    keep_alive: KeepAlive,
    /// GPU bytes a loading runner is expected to take, by device (until it reports its own).
    planned: Vec<(String, u64)>,
}

impl Slot {
    fn serves(&self, want: &LoadOptions) -> bool {
        let have = &self.request.options;
        have.model_path == want.model_path
            && have.adapters == want.adapters
            && have.draft_path == want.draft_path
            && have.projector_path == want.projector_path
            && have.num_batch == want.num_batch
            && have.num_thread == want.num_thread
            && have.num_gpu == want.num_gpu
            && have.main_gpu == want.main_gpu
            && have.use_mmap == want.use_mmap
            && have.parallel == want.parallel
            && have.num_ctx >= want.num_ctx
    }

    /// GPU bytes held on device `id`: measured once loaded, expected while loading.
    fn gpu_bytes(&self, id: &str) -> u64 {
        match &self.state {
            State::Ready(r) => r.info.devices.iter().filter(|d| d.id == id).map(|d| d.bytes).sum(),
            State::Loading => self.planned.iter().filter(|(d, _)| d == id).map(|(_, b)| *b).sum(),
        }
    }

    fn runner(&self) -> Option<&Arc<Runner>> {
        match &self.state {
            State::Ready(r) => Some(r),
            State::Loading => None,
        }
    }
}

/// The loaded models.
pub struct Scheduler {
    config: SchedConfig,
    slots: Mutex<Vec<Slot>>,
    next_id: std::sync::atomic::AtomicU64,
    waiting: AtomicUsize,
    changed: Notify,
    /// Set by [`Scheduler::close`]: no more requests are served.
    closing: std::sync::atomic::AtomicBool,
}

/// A loaded model for `/api/ps` and `/metrics`: its request, runner, when it expires (`None`:
/// never, or busy), and whether it is kept forever.
pub type Loaded = (LoadRequest, Arc<Runner>, Option<Instant>, bool);

/// A runner in use by one request. Dropping it releases the runner (restarting its keep-alive).
pub struct Lease {
    pub runner: Arc<Runner>,
    slot: u64,
    sched: Arc<Scheduler>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.sched.release(self.slot);
    }
}

/// A waiting request, counted while it waits.
struct Waiting<'a>(&'a AtomicUsize);
impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn expiry(keep_alive: KeepAlive, now: Instant) -> Option<Instant> {
    match keep_alive {
        KeepAlive::Forever => None,
        KeepAlive::For(d) => Some(now + d),
    }
}

impl Scheduler {
    /// Creates the scheduler and its expiry task.
    pub fn new(config: SchedConfig) -> Arc<Self> {
        let sched = Arc::new(Scheduler {
            config,
            slots: Mutex::new(Vec::new()),
            next_id: Default::default(),
            waiting: AtomicUsize::new(0),
            changed: Notify::new(),
            closing: Default::default(),
        });
        let weak = Arc::downgrade(&sched);
        let tick = sched.config.expiry_tick;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(tick).await;
                let Some(s) = weak.upgrade() else { return };
                s.expire();
            }
        });
        sched
    }

    /// Bytes of host memory available to new models, as the backend sees it.
    pub fn available_memory(&self) -> Option<u64> {
        self.config.backend.available_memory()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most runners loaded at once (`OLLAMA_MAX_LOADED_MODELS`, 3 when 0).
    pub fn max_loaded(&self) -> usize {
        if self.config.max_loaded == 0 {
            3
        } else {
            self.config.max_loaded
        }
    }

    /// Unloads idle runners whose keep-alive is over, and drops dead ones.
    fn expire(&self) {
        let now = Instant::now();
        let mut slots = self.lock();
        let before = slots.len();
        slots.retain(|s| {
            let dead = s.runner().is_some_and(|r| !r.alive());
            let expired = s.refs == 0 && s.expires.is_some_and(|e| e <= now);
            if let (true, Some(r)) = (expired || dead, s.runner()) {
                tracing::info!(model = %s.request.name, dead, "unloading model");
                r.kill();
            }
            // A loading slot is neither: it has no runner yet and holds its loader's reference.
            !(expired || dead)
        });
        if slots.len() != before {
            self.changed.notify_waiters();
        }
    }

    /// A runner for `req`, loading one if needed. `progress` reports loading.
    pub async fn acquire(self: &Arc<Self>, req: LoadRequest) -> Result<Lease, SchedError> {
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= self.config.max_queue {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(SchedError::Busy);
        }
        let _waiting = Waiting(&self.waiting);
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.closing.load(Ordering::SeqCst) {
                return Err(SchedError::ShuttingDown);
            }
            match self.try_acquire(&req) {
                Step::Got(lease) => return Ok(lease),
                Step::Load(id, options) => return self.load(id, req, options).await,
                Step::Wait => {
                    // Woken by a release or an unload; the timeout guards against a missed wake.
                    let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
                }
            }
        }
    }

    fn try_acquire(self: &Arc<Self>, req: &LoadRequest) -> Step {
        let now = Instant::now();
        let mut slots = self.lock();
        slots.retain(|s| s.runner().is_none_or(|r| r.alive()) || s.refs > 0);
        if let Some(s) = slots.iter_mut().find(|s| s.runner().is_some_and(|r| r.alive()) && s.serves(&req.options)) {
            s.refs += 1;
            s.last_used = now;
            s.expires = None;
            s.keep_alive = req.keep_alive;
            let runner = s.runner().expect("checked").clone();
            return Step::Got(Lease { runner, slot: s.id, sched: self.clone() });
        }
        if slots.iter().any(|s| matches!(s.state, State::Loading) && s.serves(&req.options)) {
            return Step::Wait;
        }
        // Make room (see `placement::make_room`): by GPU memory, count and host memory, evicting
        // idle runners least recently used first.
        let loaded: Vec<placement::Loaded> = slots
            .iter()
            .map(|s| placement::Loaded {
                gpu: self.config.devices.iter().map(|d| (d.id.clone(), s.gpu_bytes(&d.id))).collect(),
                host_bytes: s.request.estimate.saturating_sub(s.runner().map_or(0, |r| r.info.gpu_bytes())),
                idle: s.refs == 0 && s.runner().is_some(),
                last_used: u64::MAX
                    - now.saturating_duration_since(s.last_used).as_nanos().min(u64::MAX as u128) as u64,
            })
            .collect();
        let host = placement::Host { available: self.available_memory(), max_loaded: self.max_loaded() };
        let ask = placement::Ask { num_gpu: req.options.num_gpu, main_gpu: req.options.main_gpu };
        let (plan, mut evict) =
            match placement::make_room(&self.config.devices, &loaded, &host, &req.needs, &ask, &self.config.gpu) {
                placement::Room::Wait => return Step::Wait,
                placement::Room::Load { plan, evict } => (plan, evict),
            };
        // Highest index first, so that the others stay where they are.
        evict.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
        for (i, why) in evict {
            let s = slots.remove(i);
            tracing::info!(model = %s.request.name, reason = why, "evicting model to make room");
            if let Some(r) = s.runner() {
                r.kill();
            }
        }
        let gpus = self.gpus(&slots);
        let planned =
            gpus.iter().zip(&plan.expected).map(|(g, b)| (g.id.clone(), *b)).filter(|(_, b)| *b > 0).collect();
        let mut options = req.options.clone();
        options.main_gpu = plan.main_gpu;
        options.gpu_margin = plan.margin;
        options.flash_attention = plan.flash_attention;
        options.kv_cache_type = plan.kv_cache_type;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        slots.push(Slot {
            id,
            request: req.clone(),
            state: State::Loading,
            refs: 1,
            last_used: now,
            expires: None,
            keep_alive: req.keep_alive,
            planned,
        });
        Step::Load(id, options)
    }

    /// The GPUs with what loaded and loading runners hold taken off.
    fn gpus(&self, slots: &[Slot]) -> Vec<placement::Gpu> {
        placement::Gpu::from_devices(&self.config.devices, |id| slots.iter().map(|s| s.gpu_bytes(id)).sum())
    }

    /// Starts the runner of slot `id` with `options` (the request's, with the placement filled in).
    async fn load(self: &Arc<Self>, id: u64, req: LoadRequest, options: LoadOptions) -> Result<Lease, SchedError> {
        tracing::info!(model = %req.name, num_ctx = req.options.num_ctx, "loading model");
        // If this future is dropped (the client left), the slot must not stay "loading".
        struct Abandon<'a>(&'a Scheduler, u64, bool);
        impl Drop for Abandon<'_> {
            fn drop(&mut self) {
                if !self.2 {
                    self.0.lock().retain(|s| s.id != self.1);
                    self.0.changed.notify_waiters();
                }
            }
        }
        let mut guard = Abandon(self, id, false);
        let started = self.config.backend.load(options.clone(), self.config.load_timeout).await.map(|mut link| {
            corral_types::remote::name_remote_devices(&mut link.info.devices, &self.config.devices);
            Runner::connect(link, options, self.config.heartbeat)
        });
        let mut slots = self.lock();
        let result = match started {
            Ok(runner) => match slots.iter_mut().find(|s| s.id == id) {
                Some(s) => {
                    s.state = State::Ready(runner.clone());
                    guard.2 = true;
                    Ok(Lease { runner, slot: id, sched: self.clone() })
                }
                None => {
                    runner.kill();
                    Err(SchedError::Runner(RunnerError::Load("model was unloaded while loading".into())))
                }
            },
            Err(e) => Err(e.into()),
        };
        drop(slots);
        drop(guard);
        self.changed.notify_waiters();
        result
    }

    fn release(&self, id: u64) {
        let now = Instant::now();
        let mut slots = self.lock();
        if let Some(i) = slots.iter().position(|s| s.id == id) {
            let s = &mut slots[i];
            s.refs = s.refs.saturating_sub(1);
            s.last_used = now;
            if s.refs == 0 {
                s.expires = expiry(s.keep_alive, now);
                if s.keep_alive.is_zero() {
                    if let Some(r) = s.runner() {
                        r.kill();
                    }
                    slots.remove(i);
                }
            }
        }
        drop(slots);
        self.changed.notify_waiters();
    }

    /// Unloads every runner of the model whose weights are at `model_path` (at once if idle,
    /// else when its last request ends). Returns whether one was loaded.
    pub fn unload(&self, model_path: &str) -> bool {
        let mut slots = self.lock();
        let mut found = false;
        slots.retain_mut(|s| {
            if s.request.options.model_path != model_path {
                return true;
            }
            found = true;
            s.keep_alive = KeepAlive::For(Duration::ZERO);
            if s.refs == 0 {
                if let Some(r) = s.runner() {
                    r.kill();
                }
                return false;
            }
            true
        });
        drop(slots);
        self.changed.notify_waiters();
        found
    }

    /// Requests waiting for a runner to load or free up.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Loaded runners for `/api/ps`: request, runner, and when it expires (`None`: never, or busy).
    pub fn loaded(&self) -> Vec<Loaded> {
        let slots = self.lock();
        let mut out: Vec<_> = slots
            .iter()
            .filter_map(|s| {
                let r = s.runner()?.clone();
                let forever = s.keep_alive == KeepAlive::Forever;
                Some((s.request.clone(), r, s.expires, forever))
            })
            .collect();
        out.sort_by_key(|(_, _, e, forever)| std::cmp::Reverse((*forever, *e)));
        out
    }

    /// What the runners being loaded were asked for.
    pub fn loading(&self) -> Vec<LoadRequest> {
        self.lock().iter().filter(|s| s.runner().is_none()).map(|s| s.request.clone()).collect()
    }

    /// Stops every runner (server shutdown).
    pub fn shutdown(&self) {
        self.close();
        for s in self.lock().drain(..) {
            if let Some(r) = s.runner() {
                r.end(SHUTTING_DOWN);
            }
        }
    }

    /// Whether [`Scheduler::close`] was called.
    pub fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Serves no more requests: new and waiting ones get [`SchedError::ShuttingDown`]; those
    /// already running go on.
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
    }
}

enum Step {
    Got(Lease),
    Load(u64, LoadOptions),
    Wait,
}
