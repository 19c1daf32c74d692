//! Generates bindings to the distribution's DPDK (22.11, found through pkg-config) and
//! compiles the wrappers for its static-inline functions plus a tiny shim.
//!
//! The exact `pkg-config --cflags libdpdk` string is handed to both bindgen and cc: the
//! pkg-config crate's parsed form drops `-include rte_config.h` and `-march=corei7`.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let lib = pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
        .expect("libdpdk (DPDK 22.11) not found through pkg-config: run ci/setup.sh (apt libdpdk-dev)");
    // The vhost PMD's own API (`rte_eth_vhost_get_queue_event`): libdpdk's pkg-config file
    // lists the libraries, not the drivers (the EAL loads those as plugins from the same
    // files, so linking one does not register it twice).
    println!("cargo:rustc-link-lib=dylib=rte_net_vhost");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let here = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());

    let cflags = Command::new("pkg-config").args(["--cflags", "libdpdk"]).output().expect("pkg-config");
    assert!(cflags.status.success(), "pkg-config --cflags libdpdk failed");
    let cflags: Vec<String> = String::from_utf8(cflags.stdout).unwrap().split_whitespace().map(str::to_owned).collect();

    let wrapper = here.join("wrapper.h");
    let static_fns = out.join("dpdk_static_fns");
    let bindings = bindgen::Builder::default()
        .header(wrapper.to_str().unwrap())
        .clang_args(&cflags)
        .clang_arg(format!("-I{}", here.display()))
        .allowlist_function("rte_(eal|eth|pktmbuf|mbuf|mempool|lcore|socket|get_tsc|rdtsc|delay|prefetch|version|thread|remote|exit|strerror|zmalloc|free|log|get_main|get_next).*")
        .allowlist_function("shim_.*")
        .allowlist_function("rte_dev_probe")
        // What a vhost-user guest negotiated (the vRouter's direct vhost data path).
        .allowlist_function("rte_vhost_get_negotiated_features")
        // The packet-capture framework's primary side (`dpdk-dumpcap` attaches to it).
        .allowlist_function("rte_pdump_(init|uninit)")
        .allowlist_type("rte_(eth|mbuf|mempool).*")
        .allowlist_var("RTE_(ETH|MBUF|PKTMBUF|MAX_ETHPORTS|MAX_LCORE|LCORE|ETHER|MEMPOOL).*")
        .opaque_type("rte_arp_ipv4|rte_arp_hdr|rte_l2tpv2_combined_msg_hdr|rte_gtp_psc_generic_hdr")
        .wrap_static_fns(true)
        .wrap_static_fns_path(&static_fns)
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .expect("bindgen over DPDK headers failed");
    bindings.write_to_file(out.join("bindings.rs")).expect("write bindings.rs");

    let mut build = cc::Build::new();
    build.file(static_fns.with_extension("c")).file(here.join("shim.c")).include(&here).opt_level(3).warnings(false);
    for inc in &lib.include_paths {
        build.include(inc);
    }
    for f in &cflags {
        if !f.starts_with("-I") {
            build.flag(f);
        }
    }
    // "-include rte_config.h" arrives as two tokens; cc passes them through in order.
    build.compile("dpdk_shim");

    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim.h");
    println!("cargo:rerun-if-changed=shim.c");
    println!("cargo:rerun-if-changed=build.rs");
}
