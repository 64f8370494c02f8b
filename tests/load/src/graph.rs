//! A clustered social graph for placement benchmarks, generated deterministically from a
//! seed: users fall into communities whose sizes follow a truncated power law (Pareto
//! with exponent `alpha` between `min_size` and `max_size`), and each user's roster is
//! mostly inside their community with the rest drawn from the whole population. Rosters
//! are symmetric (both sides have `subscription='both'`).
//!
//! The same seed and parameters give the same graph on every machine (own PRNG, no
//! dependence on std's randomized hashing), so the accounts written by `graph --sql` and
//! the workload replayed by `placement` agree without sharing any file.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use clap::Args;
use serde_json::{json, Value};

/// SplitMix64: tiny, fast, and good enough to draw a benchmark graph from.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// An independent stream for another purpose derived from the same seed.
    pub fn derive(seed: u64, stream: u64) -> Self {
        let mut r = Rng(seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        r.next_u64();
        r
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Uniform in `(0, 1]`.
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }
}

/// Shape of the graph.
#[derive(Args, Clone, Debug)]
pub struct GraphArgs {
    /// Number of users ({prefix}0 .. {prefix}N-1).
    #[arg(long, default_value_t = 5000)]
    pub users: usize,
    /// Seed for the graph (and, in `placement`, the login order and the workload).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Smallest community.
    #[arg(long, default_value_t = 5)]
    pub min_community: usize,
    /// Largest community (sizes above are drawn again).
    #[arg(long, default_value_t = 300)]
    pub max_community: usize,
    /// Power-law exponent of community sizes: P(size > s) = (min/s)^alpha.
    #[arg(long, default_value_t = 1.0)]
    pub alpha: f64,
    /// Each user asks for between --min-degree and --max-degree contacts (before the
    /// rosters are made symmetric; small communities cap the inside share).
    #[arg(long, default_value_t = 10)]
    pub min_degree: usize,
    #[arg(long, default_value_t = 20)]
    pub max_degree: usize,
    /// Probability that a contact is drawn from the user's own community.
    #[arg(long, default_value_t = 0.9)]
    pub inside: f64,
}

/// The generated graph: community of each user and symmetric, sorted contact lists.
pub struct Graph {
    pub community: Vec<u32>,
    pub sizes: Vec<usize>,
    pub contacts: Vec<Vec<u32>>,
}

impl GraphArgs {
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.users >= 2, "--users must be at least 2");
        anyhow::ensure!(
            self.min_community >= 2 && self.min_community <= self.max_community,
            "need 2 <= --min-community <= --max-community"
        );
        anyhow::ensure!(self.alpha > 0.0 && self.alpha.is_finite(), "--alpha must be positive");
        anyhow::ensure!(
            self.min_degree >= 1 && self.min_degree <= self.max_degree,
            "need 1 <= --min-degree <= --max-degree"
        );
        anyhow::ensure!((0.0..=1.0).contains(&self.inside), "--inside must be within 0..1");
        Ok(())
    }
}

/// Community sizes summing to `users`: power-law draws, the last one absorbing a remainder
/// smaller than `min_community`.
fn community_sizes(p: &GraphArgs, rng: &mut Rng) -> Vec<usize> {
    let mut sizes = Vec::new();
    let mut left = p.users;
    while left > 0 {
        let mut s = p.max_community;
        // Rejection keeps the truncated law; bounded, with the cap as the (never hit) fallback.
        for _ in 0..1000 {
            let draw = (p.min_community as f64 * rng.unit().powf(-1.0 / p.alpha)).floor();
            if draw <= p.max_community as f64 {
                s = draw as usize;
                break;
            }
        }
        if s + p.min_community > left {
            s = left;
        }
        sizes.push(s);
        left -= s;
    }
    sizes
}

pub fn generate(p: &GraphArgs) -> Graph {
    let mut rng = Rng::derive(p.seed, 1);
    let sizes = community_sizes(p, &mut rng);
    // Members of each community: consecutive chunks of a shuffled user list, so
    // communities are not runs of consecutive names.
    let mut perm: Vec<u32> = (0..p.users as u32).collect();
    rng.shuffle(&mut perm);
    let mut members: Vec<&[u32]> = Vec::with_capacity(sizes.len());
    let mut community = vec![0u32; p.users];
    let mut at = 0;
    for (c, &s) in sizes.iter().enumerate() {
        let m = &perm[at..at + s];
        for &u in m {
            community[u as usize] = c as u32;
        }
        members.push(m);
        at += s;
    }
    let mut sets: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); p.users];
    for u in 0..p.users {
        let c = community[u] as usize;
        let m = members[c];
        let degree = p.min_degree + rng.below(p.max_degree - p.min_degree + 1);
        // Every edge lands on both rosters, so each user draws half its degree.
        let picks = degree.div_ceil(2);
        for _ in 0..picks {
            let inside = m.len() > 1 && (rng.unit() <= p.inside || m.len() == p.users);
            let v = if inside {
                let mut v = m[rng.below(m.len())];
                for _ in 0..100 {
                    if v as usize != u {
                        break;
                    }
                    v = m[rng.below(m.len())];
                }
                v
            } else {
                let mut v = rng.below(p.users) as u32;
                for _ in 0..100 {
                    if community[v as usize] as usize != c {
                        break;
                    }
                    v = rng.below(p.users) as u32;
                }
                v
            };
            if v as usize != u {
                sets[u].insert(v);
                sets[v as usize].insert(u as u32);
            }
        }
    }
    Graph {
        community,
        sizes,
        contacts: sets.into_iter().map(|s| s.into_iter().collect()).collect(),
    }
}

impl Graph {
    pub fn users(&self) -> usize {
        self.community.len()
    }

    /// Shape figures for the report.
    pub fn summary(&self) -> Value {
        let mut sizes = self.sizes.clone();
        sizes.sort_unstable();
        let n = self.users();
        let edges: usize = self.contacts.iter().map(Vec::len).sum();
        let inside: usize = self
            .contacts
            .iter()
            .enumerate()
            .map(|(u, cs)| {
                cs.iter()
                    .filter(|&&v| self.community[v as usize] == self.community[u])
                    .count()
            })
            .sum();
        let degrees: Vec<usize> = self.contacts.iter().map(Vec::len).collect();
        json!({
            "users": n,
            "communities": sizes.len(),
            "community_size": {
                "min": sizes.first(),
                "p50": sizes.get(sizes.len() / 2),
                "p90": sizes.get(sizes.len() * 9 / 10),
                "max": sizes.last(),
                "largest_share_of_users": crate::stats::round3(*sizes.last().unwrap_or(&0) as f64 / n.max(1) as f64),
            },
            "roster_items": edges,
            "mean_roster": crate::stats::round3(edges as f64 / n.max(1) as f64),
            "min_roster": degrees.iter().min(),
            "max_roster": degrees.iter().max(),
            "inside_community_fraction": crate::stats::round3(inside as f64 / edges.max(1) as f64),
        })
    }

    /// PostgreSQL script (psql) that stores every roster: one `COPY` of all items,
    /// `subscription='both'`, no pending ask or pre-approval, no groups (the store keeps
    /// groups as a JSON array).
    pub fn roster_sql(&self, prefix: &str, domain: &str) -> String {
        let mut out = String::with_capacity(self.contacts.iter().map(Vec::len).sum::<usize>() * 48 + 256);
        out.push_str("BEGIN;\nCOPY roster (owner, contact, name, subscription, ask, approved, groups) FROM stdin;\n");
        for (u, cs) in self.contacts.iter().enumerate() {
            for v in cs {
                let _ = writeln!(out, "{prefix}{u}@{domain}\t{prefix}{v}@{domain}\t\\N\tboth\t0\t0\t[]");
            }
        }
        out.push_str("\\.\nCOMMIT;\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(users: usize, seed: u64) -> GraphArgs {
        GraphArgs {
            users,
            seed,
            min_community: 5,
            max_community: 300,
            alpha: 1.0,
            min_degree: 10,
            max_degree: 20,
            inside: 0.9,
        }
    }

    #[test]
    fn deterministic_symmetric_and_clustered() {
        let a = generate(&args(2000, 7));
        let b = generate(&args(2000, 7));
        assert_eq!(a.contacts, b.contacts);
        assert_ne!(a.contacts, generate(&args(2000, 8)).contacts);
        assert_eq!(a.sizes.iter().sum::<usize>(), 2000);
        assert!(a.sizes.iter().all(|s| (5..305).contains(s)));
        for (u, cs) in a.contacts.iter().enumerate() {
            assert!(!cs.contains(&(u as u32)));
            for &v in cs {
                assert!(a.contacts[v as usize].binary_search(&(u as u32)).is_ok());
            }
        }
        let s = a.summary();
        let inside = s["inside_community_fraction"].as_f64().unwrap();
        assert!((0.8..0.97).contains(&inside), "{s}");
        let mean = s["mean_roster"].as_f64().unwrap();
        assert!((8.0..20.0).contains(&mean), "{s}");
    }

    #[test]
    fn sql_has_one_row_per_item() {
        let g = generate(&args(50, 1));
        let sql = g.roster_sql("u", "l");
        let rows = sql.lines().filter(|l| l.contains("\tboth\t")).count();
        assert_eq!(rows, g.contacts.iter().map(Vec::len).sum::<usize>());
        assert!(sql.ends_with("\\.\nCOMMIT;\n"));
    }
}
