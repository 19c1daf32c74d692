//! libFuzzer target: arbitrary frame sequences through the forwarding path with the flow
//! stage, policy, security group and mirroring on; every invariant of
//! `vrouter_fuzz::harness` checked on every input (a violation panics = a finding).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    vrouter_fuzz::check(data);
});
