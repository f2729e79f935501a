//! The sock_diag netlink dump parser: every length field is hostile.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockpulse::kernel::netlink;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let _ = netlink::parse_datagram(data, &mut out);
    // Each entry needs a 16-byte header and a 72-byte inet_diag_msg.
    assert!(out.len() <= data.len() / 88);
});
