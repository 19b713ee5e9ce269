//! The latency histogram: fixed relative error, so one shape serves microseconds to minutes,
//! and its buckets add up, so the parent can merge its children's exactly.

/// Log-linear histogram: exact below 256, then 128 buckets per power of two, so a bucket's
/// midpoint is within 0.4% of every value in it.
#[derive(Default)]
pub struct Histogram {
    /// Values counted per bucket, up to the highest bucket used.
    pub buckets: Vec<u64>,
    pub count: u64,
    pub max: u64,
}

const SUB_BITS: u32 = 7;

impl Histogram {
    fn bucket(v: u64) -> usize {
        if v < 2 << SUB_BITS {
            return v as usize;
        }
        let shift = 63 - v.leading_zeros() - SUB_BITS;
        ((shift as usize) << SUB_BITS) + (v >> shift) as usize
    }

    fn midpoint(i: usize) -> u64 {
        if i < 2 << SUB_BITS {
            return i as u64;
        }
        let shift = (i >> SUB_BITS) as u32 - 1;
        let low = ((i & ((1 << SUB_BITS) - 1)) as u64 + (1 << SUB_BITS)) << shift;
        low + ((1u64 << shift) - 1) / 2
    }

    pub fn add(&mut self, bucket: usize, n: u64) {
        if self.buckets.len() <= bucket {
            self.buckets.resize(bucket + 1, 0);
        }
        self.buckets[bucket] += n;
        self.count += n;
    }

    pub fn record(&mut self, v: u64) {
        self.add(Self::bucket(v), 1);
        self.max = self.max.max(v);
    }

    pub fn percentile(&self, q: f64) -> u64 {
        let rank = ((q * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::midpoint(i).min(self.max);
            }
        }
        self.max
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (i, &n) in other.buckets.iter().enumerate() {
            self.add(i, n);
        }
        self.max = self.max.max(other.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_error_and_percentiles() {
        for v in (0..2_000_000u64).step_by(7).chain([u64::MAX / 3, u64::MAX]) {
            let mid = Histogram::midpoint(Histogram::bucket(v));
            assert!(mid.abs_diff(v) as f64 <= v as f64 * 0.004, "{v} -> {mid}");
        }
        let mut h = Histogram::default();
        (1..=1000).for_each(|v| h.record(v * 100));
        assert!(h.percentile(0.5).abs_diff(50_000) <= 200);
        assert!(h.percentile(0.99).abs_diff(99_000) <= 400);
        assert_eq!(
            (h.percentile(1.0), h.max, h.count),
            (100_000, 100_000, 1000)
        );
    }
}
