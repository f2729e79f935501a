//! DNS off the loop: getaddrinfo blocks, so a few helper threads run it and
//! wake the loop through its one `Waker`; they also read a target's secret
//! files for each attempt (file reads block too). IP literals of targets
//! without secret files never leave the loop.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use mio::Waker;

use crate::session::secrets::SecretFiles;

pub struct Resolved {
    pub slot: usize,
    pub seq: u64,
    pub result: io::Result<Vec<SocketAddr>>,
    /// The target's secret files, when it has any.
    pub secrets: Option<Result<SecretFiles, String>>,
}

struct Job {
    slot: usize,
    seq: u64,
    host: String,
    port: u16,
    secret_files: Arc<[PathBuf]>,
    /// `host` is an SRV name (`port` unused).
    srv: bool,
}

/// Reads `paths`; an error names the file, never its content.
pub fn read_secret_files(paths: &[PathBuf]) -> Result<SecretFiles, String> {
    paths
        .iter()
        .map(|p| match std::fs::read_to_string(p) {
            Ok(text) => Ok((p.clone(), text)),
            Err(e) => Err(format!("cannot read secret file {}: {e}", p.display())),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(SecretFiles::new)
}

#[derive(Default)]
struct Shared {
    jobs: Mutex<(VecDeque<Job>, bool)>,
    ready: Condvar,
    results: Mutex<Vec<Resolved>>,
}

pub struct Resolver {
    shared: Arc<Shared>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Resolver {
    pub fn new(waker: Arc<Waker>, threads: usize) -> io::Result<Resolver> {
        let shared = Arc::new(Shared::default());
        let mut handles = Vec::new();
        for i in 0..threads.max(1) {
            let shared = Arc::clone(&shared);
            let waker = Arc::clone(&waker);
            let handle = thread::Builder::new()
                .name(format!("sockpulse-dns-{i}"))
                .spawn(move || loop {
                    let job = {
                        let mut guard = match shared.jobs.lock() {
                            Ok(g) => g,
                            Err(_) => return,
                        };
                        loop {
                            if guard.1 {
                                return;
                            }
                            if let Some(job) = guard.0.pop_front() {
                                break job;
                            }
                            guard = match shared.ready.wait(guard) {
                                Ok(g) => g,
                                Err(_) => return,
                            };
                        }
                    };
                    let result = if job.srv {
                        super::srv::lookup(&job.host)
                    } else {
                        lookup(&job.host, job.port)
                    };
                    let secrets = (!job.secret_files.is_empty()).then(|| read_secret_files(&job.secret_files));
                    if let Ok(mut results) = shared.results.lock() {
                        results.push(Resolved {
                            slot: job.slot,
                            seq: job.seq,
                            result,
                            secrets,
                        });
                    }
                    let _ = waker.wake();
                })?;
            handles.push(handle);
        }
        Ok(Resolver {
            shared,
            threads: handles,
        })
    }

    /// Answers at once for IP literals without secret files; queues a
    /// lookup otherwise.
    pub fn submit(
        &self,
        slot: usize,
        seq: u64,
        host: &str,
        port: u16,
        secret_files: &Arc<[PathBuf]>,
    ) -> Option<io::Result<Vec<SocketAddr>>> {
        if let (Ok(ip), true) = (host.parse::<IpAddr>(), secret_files.is_empty()) {
            return Some(Ok(vec![SocketAddr::new(ip, port)]));
        }
        self.queue(slot, seq, host, port, secret_files, false)
    }

    /// Queues an SRV lookup of `name`.
    pub fn submit_srv(&self, slot: usize, seq: u64, name: &str) -> Option<io::Result<Vec<SocketAddr>>> {
        self.queue(slot, seq, name, 0, &Arc::from([]), true)
    }

    fn queue(
        &self,
        slot: usize,
        seq: u64,
        host: &str,
        port: u16,
        secret_files: &Arc<[PathBuf]>,
        srv: bool,
    ) -> Option<io::Result<Vec<SocketAddr>>> {
        match self.shared.jobs.lock() {
            Ok(mut jobs) => {
                // While DNS hangs, sessions retry faster than blocked threads
                // finish: a retry replaces its session's queued lookup, so the
                // queue never holds more than one job per session.
                match jobs.0.iter_mut().find(|j| j.slot == slot) {
                    Some(queued) => {
                        queued.seq = seq;
                        queued.host = host.to_string();
                        queued.port = port;
                        queued.secret_files = Arc::clone(secret_files);
                        queued.srv = srv;
                    }
                    None => {
                        jobs.0.push_back(Job {
                            slot,
                            seq,
                            host: host.to_string(),
                            port,
                            secret_files: Arc::clone(secret_files),
                            srv,
                        });
                        self.shared.ready.notify_one();
                    }
                }
                None
            }
            Err(_) => Some(Err(io::Error::other("resolver threads are gone"))),
        }
    }

    #[cfg(test)]
    fn queued(&self) -> usize {
        self.shared.jobs.lock().map(|j| j.0.len()).unwrap_or(0)
    }

    pub fn take_results(&self) -> Vec<Resolved> {
        self.shared
            .results
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }
}

impl Drop for Resolver {
    fn drop(&mut self) {
        if let Ok(mut jobs) = self.shared.jobs.lock() {
            jobs.1 = true;
            jobs.0.clear();
        }
        self.shared.ready.notify_all();
        // A thread stuck in getaddrinfo cannot be interrupted: detach rather
        // than hold shutdown hostage to a slow DNS server.
        self.threads.clear();
    }
}

fn lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{host} has no addresses"),
        ));
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_answer_at_once_and_retries_replace_queued_lookups() {
        // No threads take jobs here: everything submitted stays queued.
        let r = Resolver {
            shared: Arc::new(Shared::default()),
            threads: Vec::new(),
        };
        let no_files: Arc<[PathBuf]> = Arc::new([]);
        assert_eq!(
            r.submit(0, 1, "127.0.0.1", 80, &no_files).unwrap().unwrap(),
            vec!["127.0.0.1:80".parse().unwrap()]
        );
        assert_eq!(
            r.submit(0, 1, "::1", 80, &no_files).unwrap().unwrap(),
            vec!["[::1]:80".parse().unwrap()]
        );
        for seq in 0..1000 {
            assert!(r.submit(7, seq, "slow.example.test", 80, &no_files).is_none());
            assert!(r.submit(8, seq, "slow.example.test", 80, &no_files).is_none());
        }
        assert_eq!(r.queued(), 2, "one queued lookup per session, however often it retries");
        let jobs = r.shared.jobs.lock().unwrap();
        assert!(
            jobs.0.iter().all(|j| j.seq == 999),
            "the newest attempt is the one kept"
        );
        drop(jobs);
        // A target with secret files is read off the loop, IP literal or not.
        let files: Arc<[PathBuf]> = Arc::new(["/run/secret".into()]);
        assert!(r.submit(9, 1, "127.0.0.1", 80, &files).is_none());
    }
}
