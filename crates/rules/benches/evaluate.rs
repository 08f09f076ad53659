//! Rules host benchmarks (`cargo bench -p sluice-rules`). The rule components are built
//! from `plugins/` first, as in the tests.
//!
//! The `evaluate` group measures the evaluating thread's CPU time, not wall time: the
//! target is per core, and CPU time does not count the time other processes on a busy
//! machine take the core away. (`load` measures wall time.)
//!
//! - `evaluate/threshold`: one evaluation with a fresh store and instance each time, on a
//!   realistic window (20 services, 25 patterns), of the `threshold` rule built in release
//!   (as uploaded rules are): the target is 30,000 evaluations/s per core, i.e. at most
//!   33 µs each. `evaluate/threshold_debug_build`: the same rule built in the debug profile
//!   the tests use.
//! - `load/compile`: compiling the component from `.wasm` (what the registry does once).
//! - `load/deserialize_cwasm`: loading precompiled code (what the evaluator does).
//! - `load/instance_pre`: linking a loaded component into an `InstancePre`.
//! - `load/precompiled_total`: `Host::load_precompiled` (deserialise, contract checks,
//!   `InstancePre`, trial instantiation).
//! - `evaluate/threshold_empty_window`: the same on a window with no services or patterns:
//!   the fixed cost of an evaluation.
//! - `evaluate/instantiate_only`: a fresh store and instance, without the call.

#[path = "../../core/benches/support/cpu_time.rs"]
mod cpu_time;
#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::Duration;

use cpu_time::ThreadCpuTime;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_rules::{Policy, phases, sample_window};
use support::{example_manifest, host, rule, wasm, wasm_built};

fn evaluate(c: &mut Criterion<ThreadCpuTime>) {
    let host = host();
    let threshold = host
        .load(&wasm_built("threshold", "release"))
        .expect("the release build of threshold loads");
    let threshold_debug = rule("threshold");
    let params = example_manifest("threshold").params;
    let window = sample_window("acme", 1_700_000_000_000, 20, 25);
    let policy = Policy::default();
    let mut group = c.benchmark_group("evaluate");
    group.throughput(Throughput::Elements(1));
    group.bench_function("threshold", |b| {
        b.iter(|| {
            let outcome = host
                .evaluate(&threshold, black_box(&window), &params, None, &policy)
                .expect("threshold evaluates");
            black_box(outcome.alerts.len())
        })
    });
    let empty = sample_window("acme", 1_700_000_000_000, 0, 0);
    group.bench_function("threshold_empty_window", |b| {
        b.iter(|| {
            let outcome = host
                .evaluate(&threshold, black_box(&empty), &params, None, &policy)
                .expect("threshold evaluates");
            black_box(outcome.alerts.len())
        })
    });
    group.bench_function("threshold_debug_build", |b| {
        b.iter(|| {
            let outcome = host
                .evaluate(&threshold_debug, black_box(&window), &params, None, &policy)
                .expect("threshold evaluates");
            black_box(outcome.alerts.len())
        })
    });
    group.bench_function("instantiate_only", |b| {
        b.iter(|| phases::instantiate(host, &threshold).expect("instantiates"))
    });
    group.finish();
}

fn load(c: &mut Criterion) {
    let host = host();
    let module = wasm("threshold");
    let artifact = host.precompile(&module).expect("precompiles");
    let component = phases::deserialize(host, &artifact).expect("deserialises");
    let mut group = c.benchmark_group("load");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("compile", |b| {
        b.iter(|| phases::compile(host, black_box(&module)).expect("compiles"))
    });
    group.finish();

    let mut group = c.benchmark_group("load");
    group.bench_function("deserialize_cwasm", |b| {
        b.iter(|| phases::deserialize(host, black_box(&artifact)).expect("deserialises"))
    });
    group.bench_function("instance_pre", |b| {
        b.iter(|| phases::instance_pre(host, black_box(&component)).expect("links"))
    });
    group.bench_function("precompiled_total", |b| {
        b.iter(|| host.load_precompiled(black_box(&artifact)).expect("loads"))
    });
    group.finish();
}

criterion_group!(
    name = cpu;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = evaluate
);
criterion_group!(wall, load);
criterion_main!(cpu, wall);
