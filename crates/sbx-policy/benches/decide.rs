//! Decision latency at 10, 1,000 and 100,000 rules, with the anchor side by side: globset
//! (`literal_separator(true)`) over the same `*.domN.com` host patterns.
//!
//! Run: `cargo bench -p sbx-policy --bench decide`. Results and method: docs/benchmarks.md.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use sbx_policy::{LayerLevel, NetworkRequest, Policy, PolicyLayer, Protocol};

/// Rule sizes for our engine; the anchor stops at 10,000 (its build and lookup cost grow
/// linearly: ~780 µs a lookup at 10,000 was the measured fact this bench checks).
const SIZES: &[usize] = &[10, 1_000, 100_000];
const ANCHOR_SIZES: &[usize] = &[10, 1_000, 10_000];

/// A policy file with `n` rules: mostly `*.domN.com` allows, every 10th limited to methods and a
/// path glob, every 50th a deny; the balanced preset adds its ~190 hosts on top.
fn policy_text(n: usize) -> String {
    let mut text = String::from("name = \"bench\"\npreset = \"balanced\"\n");
    for i in 0..n {
        if i % 50 == 49 {
            text.push_str(&format!(
                "[[network]]\naction = \"deny\"\nhosts = [\"bad.dom{i}.com\"]\n"
            ));
        } else if i % 10 == 9 {
            text.push_str(&format!(
                "[[network]]\naction = \"allow\"\nhosts = [\"*.dom{i}.com\"]\nmethods = [\"GET\", \"HEAD\"]\npaths = [\"/repos/org{i}/**\"]\n"
            ));
        } else {
            text.push_str(&format!(
                "[[network]]\naction = \"allow\"\nhosts = [\"*.dom{i}.com\"]\n"
            ));
        }
    }
    text
}

fn policy(n: usize) -> Policy {
    let layer = PolicyLayer::parse("bench.toml", &policy_text(n)).expect("bench policy parses");
    Policy::new(vec![(LayerLevel::User, layer)])
}

fn anchor(n: usize) -> GlobSet {
    let mut builder = GlobSetBuilder::new();
    for i in 0..n {
        let glob = GlobBuilder::new(&format!("*.dom{i}.com"))
            .literal_separator(true)
            .build()
            .expect("anchor glob");
        builder.add(glob);
    }
    builder.build().expect("anchor set")
}

/// Requests: a hit on a plain rule, a hit on a path-limited rule (with a path to normalise), a
/// hit on a deny, and a miss.
fn hosts(n: usize) -> [(String, &'static str, String); 4] {
    let plain = (n / 2) / 10 * 10;
    let limited = (n / 2) / 10 * 10 + 9;
    let denied = (n / 2) / 50 * 50 + 49;
    [
        (
            format!("api.dom{plain}.com"),
            "GET",
            "/v1/things".to_owned(),
        ),
        (
            format!("api.dom{limited}.com"),
            "GET",
            format!("/repos/org{limited}/x/../y/%2e%2e/pulls?state=open"),
        ),
        (format!("bad.dom{denied}.com"), "GET", "/".to_owned()),
        ("api.nowhere.example".to_owned(), "GET", "/".to_owned()),
    ]
}

fn bench_policy(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide/sbx-policy");
    for &n in SIZES {
        let policy = policy(n);
        let requests = hosts(n);
        let expected = [true, true, false, false];
        for ((host, method, path), want) in requests.iter().zip(expected) {
            let request = NetworkRequest::https(host, method, path);
            assert_eq!(policy.check_network(&request).allowed, want, "{host}{path}");
        }
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            let mut i = 0;
            b.iter(|| {
                let (host, method, path) = &requests[i % requests.len()];
                i += 1;
                let request = NetworkRequest {
                    host,
                    port: 443,
                    protocol: Protocol::Https,
                    method: Some(method),
                    path: Some(path),
                };
                black_box(policy.check_network(black_box(&request)).allowed)
            });
        });
    }
    group.finish();
}

fn bench_anchor(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide/globset-anchor");
    for &n in ANCHOR_SIZES {
        let set = anchor(n);
        let requests = hosts(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            let mut i = 0;
            b.iter(|| {
                let (host, _, _) = &requests[i % requests.len()];
                i += 1;
                black_box(set.is_match(black_box(host.as_str())))
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_policy, bench_anchor
}
criterion_main!(benches);
