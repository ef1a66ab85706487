//! What the bench binaries share: latency summaries and an open-loop driver.

use std::{future::Future, time::Duration};

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
}

/// The summary of latencies given in nanoseconds.
pub fn summarize(mut nanos: Vec<u64>) -> Summary {
    if nanos.is_empty() {
        return Summary::default();
    }
    nanos.sort_unstable();
    let at = |q: f64| {
        let i = ((nanos.len() as f64 * q).ceil() as usize).clamp(1, nanos.len()) - 1;
        nanos[i] as f64 / 1e6
    };
    Summary {
        count: nanos.len(),
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        p999: at(0.999),
        max: at(1.0),
    }
}

/// Prints one summary line, `name` padded to `width`.
pub fn print_summary(name: &str, width: usize, s: &Summary) {
    println!(
        "  {name:<width$} n={:<7} p50 {:>7.3} ms  p90 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  max {:>8.3} ms",
        s.count, s.p50, s.p90, s.p99, s.p999, s.max
    );
}

/// Drives `send(i)` for `count` indexes at `rate` per second, each in its
/// own task; returns the achieved rate.
pub async fn drive<F, Fut>(rate: u64, first: u64, count: u64, send: F) -> f64
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let period = Duration::from_nanos(1_000_000_000 / rate);
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..count {
        tokio::time::sleep_until(start + period * n as u32).await;
        tasks.spawn(send(first + n));
        while tasks.try_join_next().is_some() {}
    }
    let elapsed = start.elapsed().as_secs_f64();
    while tasks.join_next().await.is_some() {}
    count as f64 / elapsed.max(1e-9)
}
