//! Password hashing and verification on a bounded pool of blocking threads.
//!
//! Threat model:
//! - a stolen user table: passwords are stored as argon2id with the OWASP parameters
//!   (m = 19456 KiB, t = 2, p = 1), salted per user;
//! - a login flood used to starve proxied traffic: argon2 is deliberately slow and
//!   memory-hungry, so it never runs on the async workers. It runs on `workers`
//!   dedicated threads, and at most `max_pending` requests may wait; beyond that the pool
//!   answers `Busy` at once instead of queueing forever. Dedicated threads rather than
//!   tokio's blocking pool because each hash needs 19 MiB of working memory: each
//!   hashing thread keeps its own and reuses it, so a login flood neither leaves one
//!   block behind per blocking thread (~265 MiB once) nor faults 19 MiB of fresh pages
//!   in per login. The threads run at a lower priority than the serving threads;
//! - user enumeration by timing: `verify_dummy` costs the same as a wrong password, so
//!   an unknown user cannot be told apart from a known one by response time;
//! - hostile hashes in an import file: argon2 parameters above a sane ceiling are
//!   refused so a single row cannot make every login allocate gigabytes.
//!
//! Imported bcrypt (`$2a$`, `$2b$`, `$2y$`) and argon2 (any variant) hashes verify;
//! `Verification::Match { needs_rehash: true }` tells the caller to store a fresh
//! argon2id hash after a successful login.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use argon2::password_hash::{self, Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::rngs::OsRng;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// OWASP Password Storage Cheat Sheet, argon2id option 2.
pub const ARGON2_M_COST_KIB: u32 = 19_456;
pub const ARGON2_T_COST: u32 = 2;
pub const ARGON2_P_COST: u32 = 1;

/// Longer passwords are refused: hashing cost must not scale with attacker input.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Ceilings for imported argon2 hashes (256 MiB, 16 passes, 16 lanes).
const MAX_M_COST_KIB: u32 = 262_144;
const MAX_T_COST: u32 = 16;
const MAX_P_COST: u32 = 16;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Too many hashing requests already waiting: answer 503/429, do not queue.
    #[error("password hashing is busy; try again shortly")]
    Busy,
    #[error("password is longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("password hashing worker failed")]
    Worker,
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    Mismatch,
    /// The password is right; `needs_rehash` when the stored hash is bcrypt or argon2
    /// weaker than the current parameters, so the caller should store `hash(password)`.
    Match {
        needs_rehash: bool,
    },
}

impl Verification {
    pub fn is_match(&self) -> bool {
        matches!(self, Verification::Match { .. })
    }

    pub fn needs_rehash(&self) -> bool {
        matches!(self, Verification::Match { needs_rehash: true })
    }
}

/// A stored hash format this gateway can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashFormat {
    /// Argon2 PHC string; `current` when it is argon2id with at least the OWASP parameters.
    Argon2 { current: bool },
    /// `$2a$`, `$2b$` or `$2y$`: verify only, rehashed on the next login.
    Bcrypt,
}

impl HashFormat {
    /// Recognises a hash, or `None` for plaintext, unknown formats and argon2 parameters
    /// beyond the ceilings. Used to vet imported hashes before they reach the store.
    pub fn detect(hash: &str) -> Option<HashFormat> {
        if is_bcrypt(hash) {
            return Some(HashFormat::Bcrypt);
        }
        let parsed = PasswordHash::new(hash).ok()?;
        let alg = Algorithm::try_from(parsed.algorithm).ok()?;
        let params = Params::try_from(&parsed).ok()?;
        parsed.salt?;
        parsed.hash?;
        if params.m_cost() > MAX_M_COST_KIB
            || params.t_cost() > MAX_T_COST
            || params.p_cost() > MAX_P_COST
        {
            return None;
        }
        let version_current = parsed
            .version
            .is_none_or(|v| v == u32::from(Version::V0x13));
        let current = alg == Algorithm::Argon2id
            && version_current
            && params.m_cost() >= ARGON2_M_COST_KIB
            && params.t_cost() >= ARGON2_T_COST
            && params.p_cost() >= ARGON2_P_COST;
        Some(HashFormat::Argon2 { current })
    }

    pub fn needs_rehash(&self) -> bool {
        !matches!(self, HashFormat::Argon2 { current: true })
    }
}

fn is_bcrypt(hash: &str) -> bool {
    // $2b$12$ + 22 salt chars + 31 hash chars = 60
    hash.len() == 60
        && (hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$"))
        && hash.as_bytes()[6] == b'$'
        && hash[4..6].bytes().all(|b| b.is_ascii_digit())
}

struct Inner {
    argon2: Argon2<'static>,
    /// A hash of a random password with the current parameters, made on first use;
    /// unknown users are verified against it.
    dummy: OnceLock<String>,
}

thread_local! {
    /// This thread's argon2 working memory (19 MiB at the current parameters), kept from
    /// one hash to the next. Why: allocating and freeing it per hash made the allocator
    /// hand the pages back and fault them in again, 19 MiB of page faults per login,
    /// which also slowed the serving threads during a login flood.
    static BLOCKS: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Argon2 of `password` with `salt`, written to an output of `out_len` bytes, using this
/// thread's kept working memory when the parameters fit in the current ones (a stronger
/// imported hash gets a temporary buffer, so the kept one never grows past 19 MiB).
fn argon2_output(
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: Salt<'_>,
    out_len: usize,
) -> password_hash::Result<Output> {
    let mut salt_buf = [0u8; 64];
    let salt = salt.decode_b64(&mut salt_buf)?;
    let needed = argon2.params().block_count();
    let kept = usize::try_from(ARGON2_M_COST_KIB).unwrap_or(usize::MAX);
    Output::init_with(out_len, |out| {
        let mut run = |blocks: &mut [Block]| {
            argon2
                .hash_password_into_with_memory(password, salt, out, blocks)
                .map_err(password_hash::Error::from)
        };
        if needed > kept {
            return run(&mut vec![Block::default(); needed]);
        }
        BLOCKS.with(|b| {
            let mut blocks = b.borrow_mut();
            if blocks.len() < needed {
                blocks.resize(needed, Block::default());
            }
            run(&mut blocks[..needed])
        })
    })
}

/// Recomputes a stored argon2 hash with its own algorithm, version and parameters and
/// compares in constant time (`Output`'s equality).
fn argon2_verify(password: &[u8], stored: &PasswordHash<'_>) -> password_hash::Result<bool> {
    let (Some(salt), Some(expected)) = (stored.salt, stored.hash) else {
        return Ok(false);
    };
    let algorithm = Algorithm::try_from(stored.algorithm)?;
    let version = stored
        .version
        .map(Version::try_from)
        .transpose()?
        .unwrap_or_default();
    let params = Params::try_from(stored)?;
    let argon2 = Argon2::new(algorithm, version, params);
    Ok(argon2_output(&argon2, password, salt, expected.len())? == expected)
}

impl Inner {
    fn hash(&self, password: &[u8]) -> Result<String, PasswordError> {
        let salt = SaltString::generate(&mut OsRng);
        let fail = |e: password_hash::Error| PasswordError::Hash(e.to_string());
        let output = argon2_output(
            &self.argon2,
            password,
            salt.as_salt(),
            Params::DEFAULT_OUTPUT_LEN,
        )
        .map_err(fail)?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(self.argon2.params()).map_err(fail)?,
            salt: Some(salt.as_salt()),
            hash: Some(output),
        };
        Ok(phc.to_string())
    }

    fn dummy_hash(&self) -> &str {
        self.dummy.get_or_init(|| {
            let random = Zeroizing::new(crate::crypto::token::random_token());
            self.hash(random.as_bytes())
                .expect("hashing a random password with valid params succeeds")
        })
    }

    fn verify(&self, password: &[u8], hash: &str) -> Verification {
        let Some(format) = HashFormat::detect(hash) else {
            tracing::warn!("stored password hash has an unsupported format; treating as mismatch");
            self.verify_dummy(password);
            return Verification::Mismatch;
        };
        let ok = match format {
            HashFormat::Bcrypt => bcrypt::verify(password, hash).unwrap_or(false),
            HashFormat::Argon2 { .. } => match PasswordHash::new(hash) {
                // The hash's own algorithm, version and parameters are used to recompute.
                Ok(parsed) => argon2_verify(password, &parsed).unwrap_or(false),
                Err(_) => false,
            },
        };
        if ok {
            Verification::Match {
                needs_rehash: format.needs_rehash(),
            }
        } else {
            Verification::Mismatch
        }
    }

    fn verify_dummy(&self, password: &[u8]) {
        let dummy = self.dummy_hash().to_owned();
        if let Ok(parsed) = PasswordHash::new(&dummy) {
            let _ = argon2_verify(password, &parsed);
        }
    }
}

/// Counts a finished verification by what it was checked against (`stored`: a user's
/// or client's hash, `dummy`: the stand-in for an unknown user), so operators see the
/// hashing load and the enumeration defence can be observed without timing it.
fn count_verification(against: &'static str) {
    metrics::counter!("tollgate_password_verifications_total", "against" => against).increment(1);
}

type Job = Box<dyn FnOnce() + Send>;

/// The dedicated hashing threads. They end when the last pool handle is dropped (their
/// job channel closes).
struct HashThreads {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl HashThreads {
    fn start(n: usize) -> HashThreads {
        let (jobs, rx) = std::sync::mpsc::channel::<Job>();
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..n.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tollgate-hash-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            // A panicking job drops its reply sender (the caller sees
                            // `Worker`); the thread lives on.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        HashThreads { jobs }
    }
}

/// Makes the calling hashing thread yield to the serving threads when they compete for a
/// core: during a login flood, proxied requests keep their latency and the logins wait.
/// Best effort: where the platform refuses, hashing runs at normal priority.
/// On Linux this is nice 9 (crossplatform priority 24 of 0–99 maps to it): under
/// contention a hashing thread gets about a tenth of a core, never none.
fn lower_priority() {
    use thread_priority::{set_current_thread_priority, ThreadPriority, ThreadPriorityValue};
    let Ok(value) = ThreadPriorityValue::try_from(24u8) else {
        return;
    };
    if let Err(e) = set_current_thread_priority(ThreadPriority::Crossplatform(value)) {
        tracing::debug!(error = ?e, "cannot lower the hashing thread's priority");
    }
}

/// Hashes and verifies passwords on a bounded pool; cheap to clone.
#[derive(Clone)]
pub struct PasswordHasherPool {
    inner: Arc<Inner>,
    threads: Arc<HashThreads>,
    permits: Arc<Semaphore>,
    pending: Arc<AtomicUsize>,
    max_pending: usize,
}

impl std::fmt::Debug for PasswordHasherPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasherPool")
            .field("workers", &self.permits.available_permits())
            .field("max_pending", &self.max_pending)
            .finish()
    }
}

impl Default for PasswordHasherPool {
    /// One worker per core but one: a login flood leaves a core for proxied traffic.
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Self::new(cores.saturating_sub(1).max(1))
    }
}

struct PendingGuard<'a>(&'a AtomicUsize);

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PasswordHasherPool {
    /// `workers` hashes at once; up to 64 requests per worker may wait for a turn.
    pub fn new(workers: usize) -> Self {
        Self::with_limits(workers, workers.max(1) * 64)
    }

    pub fn with_limits(workers: usize, max_pending: usize) -> Self {
        crate::telemetry::at_zero(|| {
            ["stored", "dummy"].map(|against| {
                metrics::counter!("tollgate_password_verifications_total", "against" => against)
            })
        });
        let params = Params::new(ARGON2_M_COST_KIB, ARGON2_T_COST, ARGON2_P_COST, None)
            .expect("OWASP argon2 parameters are valid");
        PasswordHasherPool {
            inner: Arc::new(Inner {
                argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
                dummy: OnceLock::new(),
            }),
            threads: Arc::new(HashThreads::start(workers)),
            permits: Arc::new(Semaphore::new(workers.max(1))),
            pending: Arc::new(AtomicUsize::new(0)),
            max_pending: max_pending.max(1),
        }
    }

    /// A new argon2id PHC string for `password`.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(PasswordError::TooLong);
        }
        let password = Zeroizing::new(password.as_bytes().to_vec());
        self.run("hash", move |inner| inner.hash(&password)).await?
    }

    /// Checks `password` against a stored argon2 or bcrypt hash. An unsupported stored
    /// hash or an over-long password is a mismatch that costs the same as any other.
    pub async fn verify(&self, password: &str, hash: &str) -> Result<Verification, PasswordError> {
        let too_long = password.len() > MAX_PASSWORD_BYTES;
        let password = Zeroizing::new(if too_long {
            Vec::new()
        } else {
            password.as_bytes().to_vec()
        });
        let hash = hash.to_owned();
        let v = self
            .run("verify", move |inner| {
                if too_long {
                    inner.verify_dummy(&password);
                    Verification::Mismatch
                } else {
                    inner.verify(&password, &hash)
                }
            })
            .await?;
        count_verification("stored");
        Ok(v)
    }

    /// Burns the time of one verification, for a login naming an unknown user.
    pub async fn verify_dummy(&self, password: &str) -> Result<(), PasswordError> {
        let bytes = password.as_bytes();
        let password = Zeroizing::new(bytes[..bytes.len().min(MAX_PASSWORD_BYTES)].to_vec());
        self.run("verify", move |inner| inner.verify_dummy(&password))
            .await?;
        count_verification("dummy");
        Ok(())
    }

    /// Runs `f` on a hashing thread once a worker permit is free, in a span of its own
    /// when tracing is on (`op` names it; a dummy verification is a `verify` too, so a
    /// trace does not tell unknown accounts from known ones).
    async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, PasswordError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> T + Send + 'static,
    {
        let span = crate::otel_span!(
            "password",
            opentelemetry::trace::SpanKind::Internal,
            "tollgate.operation" => op,
        );
        span.instrument(self.run_on_pool(f)).await
    }

    async fn run_on_pool<T, F>(&self, f: F) -> Result<T, PasswordError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> T + Send + 'static,
    {
        let before = self.pending.fetch_add(1, Ordering::AcqRel);
        let _pending = PendingGuard(&self.pending);
        if before >= self.max_pending {
            return Err(PasswordError::Busy);
        }
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::Worker)?;
        let inner = self.inner.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _permit = permit;
            let _ = tx.send(f(&inner));
        });
        self.threads
            .jobs
            .send(job)
            .map_err(|_| PasswordError::Worker)?;
        rx.await.map_err(|_| PasswordError::Worker)
    }
}

#[cfg(test)]
mod tests;
