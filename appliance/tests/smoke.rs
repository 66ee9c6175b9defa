mod common;

use aya::programs::{TestRun, TestRunOptions};
use mizar_ebpf::abi;

#[test]
fn unconfigured_transit_passes_everything_and_counts_it() {
    let instance = common::TestInstance::new("smoke");
    let frame = [0u8; 64];
    let mut out = [0u8; 128];
    let result = instance
        .dataplane
        .transit()
        .test_run(TestRunOptions {
            data_in: Some(&frame),
            data_out: Some(&mut out),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    assert_eq!(result.return_value, 2 /* XDP_PASS */);
    let counters = instance.dataplane.maps().counters().unwrap();
    assert_eq!(counters.packets(abi::MZ_PASS_NOT_CONFIGURED), 1);
}
