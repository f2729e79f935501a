//! The agent's own sockets as the kernel sees them: the loop registers each
//! socket by inode, the scan thread joins the registry with the table.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

use super::table::SocketEntry;
use super::TcpState;
use crate::labels::label_enum;
use crate::targets::{TargetId, TargetMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owned {
    pub target: TargetId,
    /// The agent believes the session is open.
    pub open: bool,
    /// The remote port (the target's): filtered scans list sockets by it.
    pub port: u16,
}

/// Shared between the loop (writes on connect, open and close: never per
/// ping) and the scan thread (reads once per scan).
#[derive(Debug, Default)]
pub struct OwnedRegistry {
    inner: Mutex<HashMap<u64, Owned>>,
    /// Names of the live targets.
    names: Mutex<TargetMap<String>>,
}

impl OwnedRegistry {
    /// Names target `id`, or forgets it (`None`) once a reload removed it.
    pub fn set_target_name(&self, id: TargetId, name: Option<String>) {
        if let Ok(mut names) = self.names.lock() {
            match name {
                Some(name) => names.insert(id, name),
                None => {
                    names.remove(id);
                }
            }
        }
    }

    pub fn target_names(&self) -> TargetMap<String> {
        self.names.lock().map(|n| n.clone()).unwrap_or_default()
    }

    pub fn insert(&self, inode: u64, target: TargetId, port: u16) {
        if let Ok(mut m) = self.inner.lock() {
            m.insert(
                inode,
                Owned {
                    target,
                    open: false,
                    port,
                },
            );
        }
    }

    pub fn set_open(&self, inode: u64, open: bool) {
        if let Ok(mut m) = self.inner.lock() {
            if let Some(o) = m.get_mut(&inode) {
                o.open = open;
            }
        }
    }

    pub fn remove(&self, inode: u64) {
        if let Ok(mut m) = self.inner.lock() {
            m.remove(&inode);
        }
    }

    pub fn snapshot(&self) -> HashMap<u64, Owned> {
        self.inner.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn get(&self, inode: u64) -> Option<Owned> {
        self.inner.lock().ok()?.get(&inode).copied()
    }
}

/// The inode of a socket (what `/proc/net/tcp` lists it under).
pub fn socket_inode(socket: &impl AsRawFd) -> Option<u64> {
    std::fs::metadata(format!("/proc/self/fd/{}", socket.as_raw_fd()))
        .ok()
        .map(|m| m.ino())
}

label_enum! {
    /// How the kernel disagrees with a session the agent thinks open.
    pub enum Mismatch {
        /// The peer closed it.
        CloseWait,
        /// The kernel has no such socket.
        Gone,
        /// The kernel says another state.
        OtherState,
    }
}

#[derive(Debug, Default, PartialEq)]
pub struct OwnedView {
    /// Per target: owned sockets by kernel state.
    pub by_target: BTreeMap<TargetId, BTreeMap<TcpState, u64>>,
    /// (target, inode, kind) for open sessions the kernel disagrees with.
    pub mismatches: Vec<(TargetId, u64, Mismatch)>,
}

/// Joins what the agent owns with what the kernel lists; `targets` are the
/// live ones (sockets of removed targets are not reported). With
/// `established_listed` false (a filtered scan that listed only sockets not
/// ESTABLISHED), an owned socket missing from the table is ESTABLISHED;
/// otherwise it is gone from the kernel.
pub fn join<T>(
    owned: &HashMap<u64, Owned>,
    table: &[SocketEntry],
    targets: &TargetMap<T>,
    established_listed: bool,
) -> OwnedView {
    let mut view = OwnedView {
        by_target: targets.iter().map(|(id, _)| (id, BTreeMap::new())).collect(),
        mismatches: Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    for e in table {
        let Some(o) = owned.get(&e.inode) else { continue };
        if e.inode == 0 {
            continue;
        }
        let Some(states) = view.by_target.get_mut(&o.target) else {
            continue;
        };
        seen.insert(e.inode);
        *states.entry(e.state).or_default() += 1;
        if o.open {
            match e.state {
                TcpState::Established => {}
                TcpState::CloseWait => view.mismatches.push((o.target, e.inode, Mismatch::CloseWait)),
                _ => view.mismatches.push((o.target, e.inode, Mismatch::OtherState)),
            }
        }
    }
    for (inode, o) in owned {
        if seen.contains(inode) {
            continue;
        }
        if !established_listed {
            if let Some(states) = view.by_target.get_mut(&o.target) {
                *states.entry(TcpState::Established).or_default() += 1;
            }
        } else if o.open && targets.get(o.target).is_some() {
            view.mismatches.push((o.target, *inode, Mismatch::Gone));
        }
    }
    view.mismatches.sort();
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(state: TcpState, inode: u64) -> SocketEntry {
        SocketEntry::for_test("127.0.0.1:40000", "127.0.0.1:8080", state, inode)
    }

    #[test]
    fn joins_by_inode_and_finds_disagreements() {
        let mut targets = TargetMap::default();
        let (t0, t1) = (targets.push("a"), targets.push("b"));
        let owned: HashMap<u64, Owned> = [
            (
                10,
                Owned {
                    target: t0,
                    open: true,
                    port: 8080,
                },
            ),
            (
                11,
                Owned {
                    target: t0,
                    open: true,
                    port: 8080,
                },
            ),
            (
                12,
                Owned {
                    target: t1,
                    open: false,
                    port: 8080,
                },
            ), // still connecting
            (
                13,
                Owned {
                    target: t1,
                    open: true,
                    port: 8080,
                },
            ), // gone from the kernel
            (
                14,
                Owned {
                    target: t1,
                    open: true,
                    port: 8080,
                },
            ),
        ]
        .into_iter()
        .collect();
        let table = vec![
            entry(TcpState::Established, 10),
            entry(TcpState::CloseWait, 11),
            entry(TcpState::SynSent, 12),
            entry(TcpState::FinWait1, 14),
            entry(TcpState::Established, 99), // not ours
            entry(TcpState::TimeWait, 0),
        ];
        let v = join(&owned, &table, &targets, true);
        assert_eq!(v.by_target[&t0][&TcpState::Established], 1);
        assert_eq!(v.by_target[&t0][&TcpState::CloseWait], 1);
        assert_eq!(v.by_target[&t1][&TcpState::SynSent], 1);
        assert_eq!(
            v.mismatches,
            vec![
                (t0, 11, Mismatch::CloseWait),
                (t1, 13, Mismatch::Gone),
                (t1, 14, Mismatch::OtherState)
            ]
        );
        // A filtered scan lists no ESTABLISHED socket: the missing ones are.
        let listed: Vec<SocketEntry> = table
            .iter()
            .filter(|e| e.state != TcpState::Established)
            .copied()
            .collect();
        let v = join(&owned, &listed, &targets, false);
        assert_eq!(v.by_target[&t0][&TcpState::Established], 1);
        assert_eq!(v.by_target[&t1][&TcpState::Established], 1, "13, unseen");
        assert_eq!(
            v.mismatches,
            vec![(t0, 11, Mismatch::CloseWait), (t1, 14, Mismatch::OtherState)]
        );
        // A removed target's sockets are no longer reported.
        targets.remove(t1);
        let v = join(&owned, &table, &targets, true);
        assert_eq!(v.by_target.keys().collect::<Vec<_>>(), [&t0]);
        assert!(v.mismatches.iter().all(|m| m.0 == t0), "{:?}", v.mismatches);
    }

    #[test]
    fn registry_round_trip_and_real_inode() {
        let r = OwnedRegistry::default();
        let id = TargetMap::<()>::default().next_id();
        r.insert(5, id, 443);
        r.set_open(5, true);
        assert_eq!(
            r.get(5),
            Some(Owned {
                target: id,
                open: true,
                port: 443
            })
        );
        r.remove(5);
        assert!(r.snapshot().is_empty());
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inode = socket_inode(&l).expect("inode");
        let table = super::super::table::read(super::super::table::Namespace::Own).unwrap();
        assert!(table.iter().any(|e| e.inode == inode && e.state == TcpState::Listen));
    }
}
