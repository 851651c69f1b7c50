//! Password hashing for config users: argon2id (RFC 9106) with OWASP parameters as PHC
//! strings, bounded concurrent verification that answers "busy" instead of queueing forever,
//! equal work for unknown users, and the line reader behind `gatehouse hash-password`.

use std::io::{BufRead, IsTerminal};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use super::secret::{Secret, random_bytes};

/// Longest password accepted anywhere (bytes); longer input is refused, not truncated.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// An argon2id hash (OWASP parameters) of a random password nobody knows. Unknown users are
/// checked against it so that they cost as much as a wrong password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$S7qCT+h7ys0iNaX9oP8MmtTSBXI0Z1SJU5X8sDcr7rY";

/// argon2id cost parameters of a PHC string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl HashParams {
    /// OWASP's argon2id recommendation: m = 19456 KiB, t = 2, p = 1.
    pub const OWASP: HashParams = HashParams {
        m_cost: 19_456,
        t_cost: 2,
        p_cost: 1,
    };

    /// Whether these cost at least OWASP's minimum (config validation may warn otherwise).
    pub fn is_at_least_owasp(&self) -> bool {
        self.m_cost >= Self::OWASP.m_cost && self.t_cost >= Self::OWASP.t_cost
    }

    fn to_argon2(self) -> Result<Argon2<'static>, PasswordError> {
        let params = Params::new(self.m_cost, self.t_cost, self.p_cost, None)
            .map_err(|e| PasswordError::Hash(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// Hashing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is empty")]
    Empty,
    #[error("the password is longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("the operating system's random number generator failed")]
    Rng,
    #[error("argon2: {0}")]
    Hash(String),
}

/// A `password_hash` from the config that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidHash {
    #[error("not a PHC string ($argon2id$v=19$m=…,t=…,p=…$salt$hash): {0}")]
    Malformed(String),
    #[error("the algorithm must be argon2id, found {0}")]
    WrongAlgorithm(String),
    #[error("the argon2 version must be 19 (0x13)")]
    WrongVersion,
    #[error("the hash has no salt or no output")]
    Incomplete,
    #[error("argon2 parameters out of range (m ≤ 1048576 KiB, t ≤ 16, p ≤ 16): {0}")]
    Params(String),
}

/// Hashes `password` with argon2id and OWASP parameters, as a PHC string for the config.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    hash_password_with(password, HashParams::OWASP)
}

/// Hashes with explicit parameters (tests and the demo use cheaper ones).
pub fn hash_password_with(password: &str, params: HashParams) -> Result<String, PasswordError> {
    check_length(password)?;
    let salt_bytes = random_bytes::<16>().map_err(|_| PasswordError::Rng)?;
    let salt =
        SaltString::encode_b64(&salt_bytes).map_err(|e| PasswordError::Hash(e.to_string()))?;
    let hash = params
        .to_argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(hash.to_string())
}

fn check_length(password: &str) -> Result<(), PasswordError> {
    match password.len() {
        0 => Err(PasswordError::Empty),
        n if n > MAX_PASSWORD_BYTES => Err(PasswordError::TooLong),
        _ => Ok(()),
    }
}

/// Config validation of a `password_hash`: an argon2id v19 PHC string with a salt, an
/// output and bounded costs. Returns its parameters (warn when not [`HashParams::is_at_least_owasp`]).
pub fn validate_hash(phc: &str) -> Result<HashParams, InvalidHash> {
    let parsed = PasswordHash::new(phc).map_err(|e| InvalidHash::Malformed(e.to_string()))?;
    if parsed.algorithm.as_str() != "argon2id" {
        return Err(InvalidHash::WrongAlgorithm(
            parsed.algorithm.as_str().to_owned(),
        ));
    }
    if parsed.version != Some(0x13) {
        return Err(InvalidHash::WrongVersion);
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(InvalidHash::Incomplete);
    }
    let params = Params::try_from(&parsed).map_err(|e| InvalidHash::Params(e.to_string()))?;
    let out = HashParams {
        m_cost: params.m_cost(),
        t_cost: params.t_cost(),
        p_cost: params.p_cost(),
    };
    if out.m_cost > 1_048_576 || out.t_cost > 16 || out.p_cost > 16 {
        return Err(InvalidHash::Params(format!(
            "m={},t={},p={}",
            out.m_cost, out.t_cost, out.p_cost
        )));
    }
    Ok(out)
}

/// Checks `password` against a PHC string, blocking for the whole argon2 computation.
/// Anything but a valid argon2id hash that matches is `false`.
pub fn verify_password_blocking(password: &str, phc: &str) -> bool {
    verify_with_memory(password, phc, &mut Vec::new())
}

/// [`verify_password_blocking`] with argon2's working memory (`m_cost` KiB) in `memory`, grown
/// when too small and kept by the caller for the next verification. A fresh 19 MiB block per
/// login made glibc raise its mmap threshold past that size once the first block was freed;
/// every later block then came from the arena of whichever blocking thread ran it and stayed
/// resident after it was freed (~200 MiB held in a mixed soak). Kept buffers are allocated
/// once and reused, so memory is flat. The buffer is zeroed after use: it holds
/// password-derived state.
fn verify_with_memory(password: &str, phc: &str, memory: &mut Vec<Block>) -> bool {
    if validate_hash(phc).is_err() || check_length(password).is_err() {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let needed = params.block_count();
    if memory.len() < needed {
        *memory = vec![Block::default(); needed];
    }
    let mut computed = Zeroizing::new(vec![0u8; expected.len()]);
    let hashed = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut computed,
            &mut memory[..needed],
        );
    memory[..needed].fill(Block::default());
    hashed.is_ok() && bool::from(expected.as_bytes().ct_eq(&computed))
}

/// How much password hashing may run at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifierLimits {
    /// Verifications running at once (each takes one blocking thread and ~19 MiB).
    pub max_concurrent: usize,
    /// Further verifications allowed to wait; beyond this, [`VerifyError::Busy`] at once.
    pub max_waiting: usize,
}

impl Default for VerifierLimits {
    fn default() -> Self {
        Self {
            max_concurrent: 2,
            max_waiting: 32,
        }
    }
}

/// A verification that did not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("too many password verifications in progress")]
    Busy,
    #[error("the password verification task failed")]
    Internal,
}

/// Verifies login passwords off the async threads, a bounded number at a time. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PasswordVerifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    permits: Arc<Semaphore>,
    admitted: AtomicUsize,
    max_admitted: usize,
    dummy_hash: String,
    /// argon2 working memory kept between verifications, one buffer per verification running
    /// at once (see [`verify_with_memory`]).
    memory: std::sync::Mutex<Vec<Vec<Block>>>,
    /// argon2 verifications actually run, known user or not.
    computed: std::sync::atomic::AtomicU64,
}

impl Inner {
    /// A kept working-memory buffer, or an empty one that the verification grows. At most one
    /// buffer per permit exists, since each is taken under a permit and given back before it.
    fn take_memory(&self) -> Vec<Block> {
        let mut kept = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        kept.pop().unwrap_or_default()
    }

    fn give_back_memory(&self, memory: Vec<Block>) {
        let mut kept = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        kept.push(memory);
    }
}

/// Counts one admitted verification until dropped.
struct Admission(Arc<Inner>);

impl Drop for Admission {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PasswordVerifier {
    /// A verifier whose unknown-user work is an OWASP-parameter argon2id hash.
    pub fn new(limits: VerifierLimits) -> Self {
        Self::build(limits, DUMMY_HASH.to_owned())
    }

    /// A verifier whose unknown-user work uses `dummy_hash` (pick one with the same
    /// parameters as the configured users' hashes so both paths cost the same).
    pub fn with_dummy_hash(limits: VerifierLimits, dummy_hash: &str) -> Result<Self, InvalidHash> {
        validate_hash(dummy_hash)?;
        Ok(Self::build(limits, dummy_hash.to_owned()))
    }

    fn build(limits: VerifierLimits, dummy_hash: String) -> Self {
        let concurrent = limits.max_concurrent.max(1);
        Self {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(concurrent)),
                admitted: AtomicUsize::new(0),
                max_admitted: concurrent.saturating_add(limits.max_waiting),
                dummy_hash,
                memory: std::sync::Mutex::new(Vec::new()),
                computed: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// argon2 verifications run so far, for unknown users as for known ones.
    pub fn computed(&self) -> u64 {
        self.inner.computed.load(Ordering::Relaxed)
    }

    /// Verifications running or waiting now (for a gauge and for tests).
    pub fn in_flight(&self) -> usize {
        self.inner.admitted.load(Ordering::Acquire)
    }

    /// Whether `password` matches `stored_hash`. `None` (unknown user) runs the same argon2
    /// work against a dummy hash and answers `false`, so a wrong user name and a wrong password
    /// take the same time. Fails fast with `Busy` when the queue is full.
    pub async fn verify(
        &self,
        password: &str,
        stored_hash: Option<&str>,
    ) -> Result<bool, VerifyError> {
        let admission = self.admit()?;
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|_| VerifyError::Internal)?;
        let password = Zeroizing::new(password.to_owned());
        let known = stored_hash.is_some();
        let target = stored_hash.unwrap_or(&self.inner.dummy_hash).to_owned();
        let inner = Arc::clone(&self.inner);
        let task = tokio::task::spawn_blocking(move || {
            // The permit and the admission end with the work, even if the caller went away.
            let _held = (permit, admission);
            let mut memory = inner.take_memory();
            let matched = verify_with_memory(&password, &target, &mut memory);
            inner.give_back_memory(memory);
            inner.computed.fetch_add(1, Ordering::Relaxed);
            matched
        });
        let matched = task.await.map_err(|_| VerifyError::Internal)?;
        Ok(known && matched)
    }

    /// Takes one of the verifier's worker slots without counting as an admitted verification,
    /// so a test can hold verifications waiting for as long as it needs.
    #[cfg(test)]
    pub(crate) async fn occupy_slot(&self) -> tokio::sync::OwnedSemaphorePermit {
        Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .unwrap_or_else(|_| unreachable!("the semaphore is never closed"))
    }

    fn admit(&self) -> Result<Admission, VerifyError> {
        let before = self.inner.admitted.fetch_add(1, Ordering::AcqRel);
        let admission = Admission(Arc::clone(&self.inner));
        if before >= self.inner.max_admitted {
            return Err(VerifyError::Busy); // dropping `admission` undoes the increment
        }
        Ok(admission)
    }
}

/// Why no password could be read for `gatehouse hash-password`.
#[derive(Debug, thiserror::Error)]
pub enum PasswordInputError {
    #[error("no password given (empty input)")]
    Empty,
    #[error("the password is longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("the password is not valid UTF-8")]
    NotUtf8,
    #[error("the passwords do not match")]
    Mismatch,
    #[error("reading the password: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one line as a password: the trailing `\n` or `\r\n` is not part of it, anything after
/// the first line is ignored, and an empty line (or no input) is an error.
pub fn read_password_line(input: impl BufRead) -> Result<Secret, PasswordInputError> {
    let mut line = Zeroizing::new(Vec::with_capacity(64));
    let limit = u64::try_from(MAX_PASSWORD_BYTES + 2).unwrap_or(u64::MAX);
    input.take(limit).read_until(b'\n', &mut line)?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordInputError::TooLong);
    }
    if line.is_empty() {
        return Err(PasswordInputError::Empty);
    }
    let text = std::str::from_utf8(&line).map_err(|_| PasswordInputError::NotUtf8)?;
    Ok(Secret::new(text))
}

/// The password for `gatehouse hash-password`: on a terminal, prompted twice with echo off
/// (prompts go to the terminal, not stdout); otherwise one line of stdin.
pub fn read_password_from_stdin() -> Result<Secret, PasswordInputError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return read_password_line(stdin.lock());
    }
    let first = Secret::new(rpassword::prompt_password("Password: ")?);
    let second = Secret::new(rpassword::prompt_password("Confirm password: ")?);
    if first != second {
        return Err(PasswordInputError::Mismatch);
    }
    // rpassword already dropped the line ending; apply the same checks as the pipe path.
    read_password_line(first.expose().as_bytes())
}

#[cfg(test)]
#[path = "password_tests.rs"]
mod tests;
