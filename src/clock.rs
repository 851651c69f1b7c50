//! The one place that reads the wall clock; everything else takes `now` as a parameter,
//! so expiry is tested by moving a clock rather than by sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of "now". `Clock::system()` reads the OS clock; `Clock::manual()` is moved by tests.
#[derive(Clone, Debug)]
pub struct Clock {
    offset_micros: Arc<AtomicI64>,
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// The wall clock.
    pub fn system() -> Self {
        Self {
            offset_micros: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Moves this clock (and every clone of it) forward by `by`.
    pub fn advance(&self, by: Duration) {
        let micros = i64::try_from(by.as_micros()).unwrap_or(i64::MAX);
        self.offset_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The current time as a `SystemTime`, including any test offset.
    pub fn now(&self) -> SystemTime {
        let offset = self.offset_micros.load(Ordering::Relaxed);
        let base = SystemTime::now();
        if offset >= 0 {
            base + Duration::from_micros(offset.unsigned_abs())
        } else {
            base - Duration::from_micros(offset.unsigned_abs())
        }
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(&self) -> i64 {
        unix_seconds(self.now())
    }
}

/// Seconds since the Unix epoch for `t` (negative before 1970).
pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_every_clone() {
        let clock = Clock::system();
        let other = clock.clone();
        let before = other.unix_seconds();
        clock.advance(Duration::from_secs(3600));
        assert!(other.unix_seconds() >= before + 3600);
    }
}
