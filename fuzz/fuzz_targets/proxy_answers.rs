//! What a proxy (HTTP CONNECT or SOCKS5) answers, and what a nameserver
//! answers to an SRV query: hostile bytes in any split, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockpulse::session::proxy::{ProxyAuth, ProxyHandshake, ProxyKind, ProxySpec, TunnelTo};
use sockpulse::session::secrets::SecretFiles;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let proxy = ProxySpec {
        kind: ProxyKind::ALL[usize::from(mode) % ProxyKind::ALL.len()],
        host: "proxy.test".into(),
        port: 3128,
        auth: (mode & 0x10 != 0).then(|| ProxyAuth {
            user: "u".into(),
            password: "p".into(),
        }),
    };
    let mut out = sockpulse::session::OutBuf::new();
    let to = TunnelTo::Name("target.test".into(), 443);
    let Ok(mut hs) = ProxyHandshake::start(&proxy, &to, &SecretFiles::EMPTY, &mut out) else {
        return;
    };
    // The answer in chunks of a size the input picks.
    let step = usize::from(mode >> 5) + 1;
    for chunk in rest.chunks(step) {
        match hs.input(chunk, &mut out) {
            Ok(None) => assert!(out.len() < 4096, "a proxy must not make us say much"),
            Ok(Some(leftover)) => {
                assert!(leftover.len() <= rest.len());
                break;
            }
            Err(e) => {
                assert!(!e.is_empty());
                break;
            }
        }
    }
    sockpulse::driver::srv_services_of(data);
});
