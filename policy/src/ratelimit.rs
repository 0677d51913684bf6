//! Rate limits: pure token buckets, refilled from the `now` they are given (no timer of their
//! own). A port's ingress limit (bits/s and packets/s, with bursts) and a network's storm
//! control (broadcast and multicast packets/s) are both made of them.

use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Storm control allowance unless configured: generous enough for ARP, DHCP and mDNS of
/// hundreds of containers, far below what a broadcast loop or flood produces.
pub const DEFAULT_STORM_PPS: u64 = 5_000;

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u64, burst: u64) -> TokenBucket {
        let burst = burst.max(1) as f64;
        TokenBucket {
            rate: rate as f64,
            burst,
            tokens: burst,
            last: None,
        }
    }

    /// Takes `amount` tokens if there are that many at `now`. A request larger than the whole
    /// burst passes when the bucket is full (and empties it), so big frames are slowed, not
    /// banned.
    pub fn take(&mut self, now: Instant, amount: u64) -> bool {
        let fits = self.fits(now, amount);
        if fits {
            self.spend(amount);
        }
        fits
    }

    /// Refills the bucket up to `now` and says whether `amount` tokens may be taken, taking
    /// none: a frame checked against two buckets spends from either only if both allow it.
    pub fn fits(&mut self, now: Instant, amount: u64) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        }
        self.last = Some(now);
        self.tokens >= (amount as f64).min(self.burst)
    }

    /// Takes `amount` tokens (after `fits` said yes).
    pub fn spend(&mut self, amount: u64) {
        self.tokens -= amount as f64;
    }
}

/// A port's ingress limit as configured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Bits per second, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits_per_sec: Option<u64>,
    /// Packets per second, if limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packets_per_sec: Option<u64>,
    /// Burst in bytes (default: 100 ms worth, at least 64 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_bytes: Option<u64>,
    /// Burst in packets (default: 100 ms worth, at least 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_packets: Option<u64>,
}

impl RateLimit {
    /// Whether anything is limited.
    pub fn is_set(&self) -> bool {
        self.bits_per_sec.is_some() || self.packets_per_sec.is_some()
    }
}

/// The buckets enforcing a `RateLimit`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limiter {
    bytes: Option<TokenBucket>,
    packets: Option<TokenBucket>,
}

impl Limiter {
    /// Buckets for `limit`, full.
    pub fn new(limit: &RateLimit) -> Limiter {
        Limiter {
            bytes: limit.bits_per_sec.map(|bits| {
                let rate = bits / 8;
                TokenBucket::new(rate, limit.burst_bytes.unwrap_or((rate / 10).max(65_536)))
            }),
            packets: limit.packets_per_sec.map(|pps| {
                TokenBucket::new(pps, limit.burst_packets.unwrap_or((pps / 10).max(32)))
            }),
        }
    }

    /// Whether a frame of `len` bytes carrying `packets` wire packets fits the limit at `now`.
    pub fn admit(&mut self, now: Instant, len: usize, packets: u64) -> bool {
        let bytes = len as u64;
        let packets_fit = self.packets.as_mut().is_none_or(|b| b.fits(now, packets));
        let bytes_fit = self.bytes.as_mut().is_none_or(|b| b.fits(now, bytes));
        if !(packets_fit && bytes_fit) {
            return false;
        }
        if let Some(b) = self.packets.as_mut() {
            b.spend(packets);
        }
        if let Some(b) = self.bytes.as_mut() {
            b.spend(bytes);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_frame_the_byte_bucket_refuses_spends_no_packet_tokens() {
        let start = Instant::now();
        let mut limiter = Limiter::new(&RateLimit {
            bits_per_sec: Some(8_000),
            burst_bytes: Some(1_500),
            packets_per_sec: Some(1),
            burst_packets: Some(10),
        });
        // A segment of 5 wire packets empties the byte bucket and half the packet bucket; the
        // next ten are refused by bytes alone.
        assert!(limiter.admit(start, 1_500, 5));
        for _ in 0..10 {
            assert!(!limiter.admit(start, 1_500, 5));
        }
        // Once bytes have refilled (1.5 s), the packet bucket still holds 5 + 1.5 tokens.
        let later = start + std::time::Duration::from_millis(1_500);
        assert!(
            limiter.admit(later, 1_500, 5),
            "packet tokens were spent on refused frames"
        );
    }

    #[test]
    fn holds_traffic_to_its_rate_after_the_burst() {
        let start = Instant::now();
        let mut limiter = Limiter::new(&RateLimit {
            bits_per_sec: Some(8_000_000),
            burst_bytes: Some(100_000),
            ..RateLimit::default()
        });
        let mut passed = 0u64;
        // 10 s of 1500-byte frames offered at 10x the rate.
        for i in 0..66_667u64 {
            let now = start + Duration::from_micros(i * 150);
            if limiter.admit(now, 1500, 1) {
                passed += 1500;
            }
        }
        let expected = 10 * 1_000_000 + 100_000;
        assert!(passed.abs_diff(expected) <= 1500, "{passed} vs {expected}");
    }

    #[test]
    fn packets_per_second() {
        let start = Instant::now();
        let mut limiter = Limiter::new(&RateLimit {
            packets_per_sec: Some(100),
            burst_packets: Some(10),
            ..RateLimit::default()
        });
        let passed = (0..10_000u64)
            .filter(|i| limiter.admit(start + Duration::from_micros(i * 100), 64, 1))
            .count();
        // One second at 100/s after a burst of 10.
        assert!(passed.abs_diff(110) <= 1, "{passed}");
    }

    #[test]
    fn a_frame_larger_than_the_burst_passes_on_a_full_bucket() {
        let now = Instant::now();
        let mut bucket = TokenBucket::new(1000, 100);
        assert!(bucket.take(now, 65_000));
        assert!(!bucket.take(now, 1));
    }
}
