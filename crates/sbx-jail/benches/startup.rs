//! Start-up of a namespace sandbox: from `Jail::spawn` to the first command running (its `Started` report), next to
//! the floor of what any namespace sandbox costs here — util-linux `unshare` creating the same namespaces and
//! running `true`. Goal (issue 8): ≤ 50 ms.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sbx_jail::Jail;
use sbx_proto::ExecRequest;

fn startup(c: &mut Criterion) {
    if !common::namespaces_available("startup bench") {
        return;
    }
    let mut group = c.benchmark_group("sandbox_startup");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    let (config, _guard) = common::config("bench");
    group.bench_function("sbx_jail_spawn_to_first_command", |b| {
        b.iter(|| {
            let mut sb = Jail::spawn(&config).expect("spawn");
            sb.set_kill_on_drop(true);
            let client = sb.connect().expect("connect");
            let session = client
                .exec(ExecRequest {
                    argv: vec!["true".into()],
                    ..Default::default()
                })
                .expect("exec");
            std::hint::black_box(session.pid());
            drop(client);
            sb.kill();
        });
    });
    group.bench_function("unshare_user_mount_pid_net_true", |b| {
        b.iter(|| {
            let ok = Command::new("unshare")
                .args([
                    "--user",
                    "--map-root-user",
                    "--mount",
                    "--pid",
                    "--fork",
                    "--net",
                    "--ipc",
                    "--uts",
                    "true",
                ])
                .status()
                .expect("unshare");
            assert!(ok.success());
        });
    });
    group.finish();
}

criterion_group!(benches, startup);
criterion_main!(benches);
