//! The per-connection token bucket of client messages (`ws.client_send_rate`,
//! docs/api.md §2.1): it holds `rate` messages and refills at `rate` per second.
//!
//! Every connection carries one, so it is 8 bytes: it counts tokens *spent*
//! (a new bucket is full whatever the rate) and stamps the last refill in
//! milliseconds of the owning core's clock, which wraps after 49 days — a
//! gap that long only means the bucket is full, which `min` below ensures
//! for any gap of more than a second.

#[derive(Debug, Default, Clone, Copy)]
pub struct TokenBucket {
    spent: f32,
    stamp_ms: u32,
}

impl TokenBucket {
    /// Takes one token at `now_ms`; false when none is left. `rate` 0 is
    /// unlimited.
    pub fn take(&mut self, now_ms: u32, rate: u32) -> bool {
        if rate == 0 {
            return true;
        }
        let rate = rate as f32;
        let elapsed = now_ms.wrapping_sub(self.stamp_ms).min(60_000) as f32 / 1000.0;
        self.stamp_ms = now_ms;
        self.spent = (self.spent - elapsed * rate).max(0.0);
        if self.spent + 1.0 > rate {
            return false;
        }
        self.spent += 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(b: &mut TokenBucket, now: u32, rate: u32, tries: u32) -> u32 {
        (0..tries).filter(|_| b.take(now, rate)).count() as u32
    }

    #[test]
    fn a_full_bucket_gives_rate_then_refills_per_second() {
        let mut b = TokenBucket::default();
        assert_eq!(taken(&mut b, 5_000, 20, 50), 20);
        assert_eq!(taken(&mut b, 5_100, 20, 50), 2, "100 ms refills 2 of 20/s");
        assert_eq!(taken(&mut b, 7_000, 20, 50), 20, "never more than full");
    }

    #[test]
    fn zero_is_unlimited_and_refused_tries_cost_nothing_more() {
        let mut b = TokenBucket::default();
        assert_eq!(taken(&mut b, 0, 0, 10_000), 10_000);
        let mut b = TokenBucket::default();
        assert_eq!(taken(&mut b, 1_000, 1, 5), 1);
        assert!(b.take(2_000, 1), "one second later one more");
    }

    #[test]
    fn the_clock_wrapping_leaves_a_full_bucket() {
        let mut b = TokenBucket::default();
        assert_eq!(taken(&mut b, u32::MAX - 10, 3, 5), 3);
        assert_eq!(taken(&mut b, 2_000, 3, 5), 3);
    }
}
