//! SRV lookups (RFC 2782) for `endpoints = "all"` with `srv`: the system
//! resolver has no SRV call, so this asks the nameservers of
//! /etc/resolv.conf itself, over UDP (TCP when the answer is truncated), on
//! a resolver thread. hickory-proto builds and parses the messages: DNS
//! answers are input from the network, and its parser is fuzzed and kept.
//! Each SRV target's addresses come from the answer's additional records,
//! else from the system resolver.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

const TIMEOUT: Duration = Duration::from_secs(2);
const RESOLV_CONF: &str = "/etc/resolv.conf";

/// One SRV record: where the service is, in the order clients try it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub priority: u16,
    pub weight: u16,
    pub target: String,
    pub port: u16,
}

/// Every address behind the SRV name `name`, each with its record's port,
/// in priority order (then heavier weights first).
pub fn lookup(name: &str) -> io::Result<Vec<SocketAddr>> {
    let servers = nameservers(&std::fs::read_to_string(RESOLV_CONF).unwrap_or_default());
    let mut last_err = io::Error::other("no nameserver answered");
    for server in servers {
        match ask(server, name) {
            Ok(answer) => return addresses(&answer, name),
            Err(e) => last_err = io::Error::new(e.kind(), format!("nameserver {server}: {e}")),
        }
    }
    Err(last_err)
}

/// `nameserver` lines of a resolv.conf; the local resolver when none.
pub fn nameservers(text: &str) -> Vec<SocketAddr> {
    let servers: Vec<SocketAddr> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.split_whitespace().next())
        // A scoped IPv6 address (fe80::1%eth0) is not usable here.
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    if servers.is_empty() {
        vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 53)]
    } else {
        servers
    }
}

/// Queries `server` for the SRV records of `name`.
fn ask(server: SocketAddr, name: &str) -> io::Result<Message> {
    let fqdn = Name::from_str(name)
        .map(|mut n| {
            n.set_fqdn(true);
            n
        })
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{name:?} is not a DNS name: {e}")))?;
    let id: u16 = rand_id();
    let mut query = Message::new();
    query
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(fqdn, RecordType::SRV));
    let wire = query.to_vec().map_err(io::Error::other)?;

    let bind = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    let udp = UdpSocket::bind(bind)?;
    udp.set_read_timeout(Some(TIMEOUT))?;
    udp.connect(server)?;
    udp.send(&wire)?;
    let mut buf = vec![0u8; 4096];
    let answer = loop {
        let n = udp.recv(&mut buf)?;
        match Message::from_vec(&buf[..n]) {
            // Anything else on the socket is not the answer: keep waiting.
            Ok(m) if m.id() == id && m.message_type() == MessageType::Response => break m,
            _ => continue,
        }
    };
    let answer = if answer.truncated() {
        ask_tcp(server, &wire, id)?
    } else {
        answer
    };
    match answer.response_code() {
        ResponseCode::NoError => Ok(answer),
        code => Err(io::Error::new(io::ErrorKind::NotFound, format!("{name}: {code}"))),
    }
}

/// The same query over TCP (two-byte length prefix, RFC 1035 4.2.2).
fn ask_tcp(server: SocketAddr, wire: &[u8], id: u16) -> io::Result<Message> {
    let mut tcp = TcpStream::connect_timeout(&server, TIMEOUT)?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    tcp.set_write_timeout(Some(TIMEOUT))?;
    let len = u16::try_from(wire.len()).map_err(io::Error::other)?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(wire);
    tcp.write_all(&framed)?;
    let mut len = [0u8; 2];
    tcp.read_exact(&mut len)?;
    let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
    tcp.read_exact(&mut body)?;
    let m = Message::from_vec(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    if m.id() != id {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "answer to another query"));
    }
    Ok(m)
}

fn rand_id() -> u16 {
    let mut b = [0u8; 2];
    // Unpredictable ids make spoofed answers harder; a fixed one still works.
    let _ = getrandom::getrandom(&mut b);
    u16::from_le_bytes(b)
}

/// The SRV records of an answer, in the order to use them.
pub fn services(answer: &Message) -> Vec<Service> {
    let mut services: Vec<Service> = answer
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::SRV(srv) => Some(Service {
                priority: srv.priority(),
                weight: srv.weight(),
                target: srv.target().to_ascii().trim_end_matches('.').to_string(),
                port: srv.port(),
            }),
            _ => None,
        })
        // "." as the target: the service is decidedly not available.
        .filter(|s| !s.target.is_empty() && s.port != 0)
        .collect();
    services.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.weight.cmp(&a.weight)));
    services
}

/// Addresses the answer's additional section gives for `target`.
fn glue(answer: &Message, target: &str) -> Vec<IpAddr> {
    answer
        .additionals()
        .iter()
        .filter(|r| r.name().to_ascii().trim_end_matches('.').eq_ignore_ascii_case(target))
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

fn addresses(answer: &Message, name: &str) -> io::Result<Vec<SocketAddr>> {
    let services = services(answer);
    if services.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{name} has no SRV records"),
        ));
    }
    let mut out: Vec<SocketAddr> = Vec::new();
    let mut last_err = None;
    for s in services {
        let ips = glue(answer, &s.target);
        let found: Vec<SocketAddr> = if ips.is_empty() {
            match (s.target.as_str(), s.port).to_socket_addrs() {
                Ok(addrs) => addrs.collect(),
                Err(e) => {
                    last_err = Some(io::Error::new(e.kind(), format!("{}: {e}", s.target)));
                    continue;
                }
            }
        } else {
            ips.into_iter().map(|ip| SocketAddr::new(ip, s.port)).collect()
        };
        for a in found {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    match (out.is_empty(), last_err) {
        (true, Some(e)) => Err(e),
        _ => Ok(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, SRV};
    use hickory_proto::rr::Record;

    #[test]
    fn resolv_conf_nameservers_are_read_and_default_to_localhost() {
        let text =
            "# comment\nsearch corp\nnameserver 10.0.0.2\nnameserver ::1\nnameserver fe80::1%eth0\noptions ndots:5\n";
        assert_eq!(
            nameservers(text),
            ["10.0.0.2:53".parse().unwrap(), "[::1]:53".parse().unwrap()]
        );
        assert_eq!(nameservers(""), ["127.0.0.1:53".parse().unwrap()]);
    }

    #[test]
    fn services_come_in_priority_then_weight_order_with_glue_addresses() {
        let srv = |prio, weight, port, target: &str| {
            Record::from_rdata(
                Name::from_ascii("_ws._tcp.svc.test.").unwrap(),
                30,
                RData::SRV(SRV::new(prio, weight, port, Name::from_ascii(target).unwrap())),
            )
        };
        let mut m = Message::new();
        m.add_answer(srv(20, 0, 8080, "c.svc.test."));
        m.add_answer(srv(10, 5, 8081, "a.svc.test."));
        m.add_answer(srv(10, 50, 8082, "b.svc.test."));
        m.add_answer(srv(0, 0, 0, "."));
        m.add_additional(Record::from_rdata(
            Name::from_ascii("b.svc.test.").unwrap(),
            30,
            RData::A(A::new(127, 0, 0, 3)),
        ));
        // Round trip through the wire format, as an answer would arrive.
        let m = Message::from_vec(&m.to_vec().unwrap()).unwrap();
        let order: Vec<(String, u16)> = services(&m).into_iter().map(|s| (s.target, s.port)).collect();
        assert_eq!(
            order,
            [
                ("b.svc.test".to_string(), 8082),
                ("a.svc.test".to_string(), 8081),
                ("c.svc.test".to_string(), 8080)
            ]
        );
        assert_eq!(glue(&m, "b.svc.test"), [IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))]);
        assert!(glue(&m, "a.svc.test").is_empty());
    }

    #[test]
    fn garbage_answers_are_errors_not_panics() {
        for bytes in [&b""[..], b"\x00", &[0xff; 12], &[0u8; 600]] {
            let _ = Message::from_vec(bytes);
        }
        let empty = Message::new();
        assert!(addresses(&empty, "_x._tcp.test").is_err());
    }
}
