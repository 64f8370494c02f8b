//! Measurement helpers: latency percentiles, error tallies, and CPU / memory
//! readings for both the load generator itself and (optionally) the server
//! process. The generator's own CPU is always reported so a saturated
//! generator - which would make any server look slow - is visible.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Raw latency samples in microseconds. Exact percentiles by sorting: sample
/// counts are at most a few million, which is cheap to sort once at the end.
#[derive(Default, Debug)]
pub struct Latencies(Vec<u64>);

impl Latencies {
    pub fn record(&mut self, d: Duration) {
        self.0.push(d.as_micros() as u64);
    }

    pub fn record_micros(&mut self, us: u64) {
        self.0.push(us);
    }

    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Summary in milliseconds (count, mean, min, p50, p90, p99, max).
    pub fn summary(&mut self) -> Value {
        if self.0.is_empty() {
            return json!({ "count": 0 });
        }
        self.0.sort_unstable();
        let v = &self.0;
        let pct = |p: f64| {
            let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
            ms(v[idx])
        };
        let mean = v.iter().sum::<u64>() as f64 / v.len() as f64 / 1000.0;
        json!({
            "count": v.len(),
            "mean_ms": round3(mean),
            "min_ms": ms(v[0]),
            "p50_ms": pct(50.0),
            "p90_ms": pct(90.0),
            "p99_ms": pct(99.0),
            "max_ms": ms(v[v.len() - 1]),
        })
    }
}

/// Clock shared by every task of the run (one process), in microseconds: a timestamp
/// taken when a stanza is sent can be compared with one taken when its effect arrives.
pub fn now_us() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_micros() as u64
}

fn ms(us: u64) -> f64 {
    round3(us as f64 / 1000.0)
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Counts errors by message, remembering the order in which reasons first appeared.
#[derive(Default, Debug)]
pub struct ErrorTally {
    counts: HashMap<String, u64>,
    order: Vec<String>,
    total: u64,
}

impl ErrorTally {
    pub fn add(&mut self, err: &anyhow::Error) {
        self.add_msg(format!("{err:#}"));
    }

    pub fn add_msg(&mut self, msg: String) {
        self.total += 1;
        let c = self.counts.entry(msg.clone()).or_insert(0);
        if *c == 0 {
            self.order.push(msg);
        }
        *c += 1;
    }

    pub fn merge(&mut self, other: ErrorTally) {
        for msg in other.order {
            let n = other.counts[&msg];
            self.total += n;
            let c = self.counts.entry(msg.clone()).or_insert(0);
            if *c == 0 {
                self.order.push(msg);
            }
            *c += n;
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// The first few distinct reasons with their counts.
    pub fn report(&self, max: usize) -> Value {
        Value::Array(
            self.order
                .iter()
                .take(max)
                .map(|m| json!({ "reason": m, "count": self.counts[m] }))
                .collect(),
        )
    }
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// user+sys CPU time of this process (getrusage: microsecond resolution).
fn self_cpu() -> Duration {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// user+sys CPU time of another process from /proc/PID/stat (fields 14, 15).
pub fn proc_cpu(pid: u32) -> Option<Duration> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields restart after the last ')'.
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_micros(ticks * 1_000_000 / clock_ticks()))
}

/// Resident set size of a process in KiB (VmRSS from /proc/PID/status).
pub fn proc_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whole-machine (busy, total) jiffies from the first line of /proc/stat.
fn machine_jiffies() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = s
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

/// CPU meter started at some instant; covers this process, optionally the
/// server, and the whole machine (so CPU taken by unrelated processes - which
/// skews any benchmark on a shared box - shows up as `other_pct_of_machine`).
pub struct CpuMeter {
    wall: Instant,
    own: Duration,
    server: Option<(u32, Duration)>,
    machine: Option<(u64, u64)>,
}

impl CpuMeter {
    pub fn start(server_pid: Option<u32>) -> Self {
        Self {
            wall: Instant::now(),
            own: self_cpu(),
            server: server_pid.and_then(|p| proc_cpu(p).map(|c| (p, c))),
            machine: machine_jiffies(),
        }
    }

    /// The server's CPU time since `start`, unrounded (for a cost per stanza); `None`
    /// without a server PID or once it can no longer be read.
    pub fn server_cpu(&self) -> Option<Duration> {
        let (pid, before) = self.server?;
        Some(proc_cpu(pid)?.saturating_sub(before))
    }

    /// CPU used since `start`, as seconds, % of one core and % of all cores.
    pub fn report(&self) -> Value {
        let wall = self.wall.elapsed().as_secs_f64().max(1e-9);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let usage = |cpu: Duration| {
            let c = cpu.as_secs_f64();
            json!({
                "cpu_s": round3(c),
                "pct_of_one_core": round3(100.0 * c / wall),
                "pct_of_machine": round3(100.0 * c / wall / cores),
            })
        };
        let own = self_cpu().saturating_sub(self.own).as_secs_f64();
        let mut out = json!({
            "wall_s": round3(wall),
            "load_tool": usage(Duration::from_secs_f64(own)),
        });
        let mut server = 0.0;
        if let Some(cpu) = self.server_cpu() {
            server = cpu.as_secs_f64();
            out["server"] = usage(cpu);
        }
        if let (Some((b0, t0)), Some((b1, t1))) = (self.machine, machine_jiffies()) {
            let total = (t1 - t0).max(1) as f64;
            let busy_pct = 100.0 * (b1 - b0) as f64 / total;
            // Convert our own + server CPU into the same "% of machine" scale.
            let ours_pct = 100.0 * (own + server) / wall / cores;
            out["machine_busy_pct"] = json!(round3(busy_pct));
            out["other_pct_of_machine"] = json!(round3((busy_pct - ours_pct).max(0.0)));
        }
        if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
            out["loadavg_1m"] = json!(l.split_whitespace().next().unwrap_or("?"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let mut l = Latencies::default();
        for i in 1..=100 {
            l.record_micros(i * 1000);
        }
        let s = l.summary();
        assert_eq!(s["count"], 100);
        assert_eq!(s["p50_ms"], 51.0);
        assert_eq!(s["p99_ms"], 99.0);
        assert_eq!(s["max_ms"], 100.0);
    }

    #[test]
    fn tally_keeps_first_order() {
        let mut t = ErrorTally::default();
        t.add_msg("b".into());
        t.add_msg("a".into());
        t.add_msg("b".into());
        assert_eq!(t.total(), 3);
        assert_eq!(t.report(1)[0]["reason"], "b");
        assert_eq!(t.report(5)[0]["count"], 2);
    }

    #[test]
    fn reads_own_proc() {
        let pid = std::process::id();
        assert!(proc_rss_kib(pid).unwrap() > 0);
        assert!(proc_cpu(pid).is_some());
    }
}
