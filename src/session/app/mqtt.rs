//! MQTT 3.1.1 and 5 over WebSocket (subprotocol `mqtt`): CONNECT answered
//! by CONNACK opens the session; PINGREQ/PINGRESP is the timed probe; an
//! optional QoS 0 subscription makes PUBLISH the feed `message_timeout`
//! watches; a broker's DISCONNECT (MQTT 5) or refused CONNACK is its error.
//! Packets may span or share WebSocket messages: they are read as a stream,
//! keeping only control packets, never a PUBLISH payload.

use std::time::Duration;

use super::{answer_in_flight, failed, most_telling, run_probe, Ctx, Input, Keep, ProbeKind, Protocol, Report};
use crate::clock::Instant;
use crate::session::reason::DisconnectReason;
use crate::session::schedule::ProbeSchedule;
use crate::session::spec::{MqttOptions, MqttVersion, TargetSpec};

const CONNACK: u8 = 2;
const PUBLISH: u8 = 3;
const SUBACK: u8 = 9;
const PINGRESP: u8 = 13;
const DISCONNECT: u8 = 14;
/// Control packets larger than this are not kept (a broker's CONNACK or
/// DISCONNECT with properties is far smaller).
const MAX_KEPT: usize = 4096;

/// The MQTT keep-alive for a probe interval: twice the interval in whole
/// seconds, so the broker never gives up on a client that probes on time;
/// 0 (off) without probes.
pub fn keep_alive(ping_interval: Option<Duration>) -> u16 {
    match ping_interval {
        None => 0,
        Some(i) => u16::try_from((2 * i.as_millis()).div_ceil(1000))
            .unwrap_or(u16::MAX)
            .max(1),
    }
}

fn push_remaining_length(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}

fn push_string(out: &mut Vec<u8>, s: &[u8]) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&s[..usize::from(len)]);
}

/// A packet: fixed header `first`, then `body`.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    push_remaining_length(&mut p, body.len());
    p.extend_from_slice(body);
    p
}

/// The CONNECT packet.
pub fn connect_packet(o: &MqttOptions, keep_alive: u16) -> Vec<u8> {
    let mut body = Vec::new();
    push_string(&mut body, b"MQTT");
    body.push(o.version.level());
    let mut flags = 0u8;
    if o.username.is_some() {
        flags |= 0x80;
    }
    if o.password.is_some() {
        flags |= 0x40;
    }
    if o.clean_session {
        flags |= 0x02;
    }
    body.push(flags);
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if o.version == MqttVersion::V5 {
        body.push(0); // no properties
    }
    push_string(&mut body, o.client_id.as_bytes());
    if let Some(u) = &o.username {
        push_string(&mut body, u.as_bytes());
    }
    if let Some(p) = &o.password {
        push_string(&mut body, p.as_bytes());
    }
    packet(0x10, &body)
}

/// A QoS 0 SUBSCRIBE to `topic` with packet id 1.
pub fn subscribe_packet(version: MqttVersion, topic: &str) -> Vec<u8> {
    let mut body = vec![0, 1];
    if version == MqttVersion::V5 {
        body.push(0);
    }
    push_string(&mut body, topic.as_bytes());
    body.push(0);
    packet(0x82, &body)
}

pub const PINGREQ: [u8; 2] = [0xC0, 0x00];

/// What a CONNACK or DISCONNECT code means.
pub fn reason_name(version: MqttVersion, code: u8) -> &'static str {
    match (version, code) {
        (_, 0) => "success",
        (MqttVersion::V311, 1) => "unacceptable protocol version",
        (MqttVersion::V311, 2) => "identifier rejected",
        (MqttVersion::V311, 3) => "server unavailable",
        (MqttVersion::V311, 4) => "bad user name or password",
        (MqttVersion::V311, 5) => "not authorized",
        (MqttVersion::V5, 0x04) => "disconnect with will message",
        (MqttVersion::V5, 0x80) => "unspecified error",
        (MqttVersion::V5, 0x81) => "malformed packet",
        (MqttVersion::V5, 0x82) => "protocol error",
        (MqttVersion::V5, 0x83) => "implementation specific error",
        (MqttVersion::V5, 0x84) => "unsupported protocol version",
        (MqttVersion::V5, 0x85) => "client identifier not valid",
        (MqttVersion::V5, 0x86) => "bad user name or password",
        (MqttVersion::V5, 0x87) => "not authorized",
        (MqttVersion::V5, 0x88) => "server unavailable",
        (MqttVersion::V5, 0x89) => "server busy",
        (MqttVersion::V5, 0x8A) => "banned",
        (MqttVersion::V5, 0x8B) => "server shutting down",
        (MqttVersion::V5, 0x8C) => "bad authentication method",
        (MqttVersion::V5, 0x8D) => "keep alive timeout",
        (MqttVersion::V5, 0x8E) => "session taken over",
        (MqttVersion::V5, 0x93) => "receive maximum exceeded",
        (MqttVersion::V5, 0x95) => "packet too large",
        (MqttVersion::V5, 0x97) => "quota exceeded",
        (MqttVersion::V5, 0x98) => "administrative action",
        (MqttVersion::V5, 0x9C) => "use another server",
        (MqttVersion::V5, 0x9D) => "server moved",
        (MqttVersion::V5, 0x9F) => "connection rate exceeded",
        _ => "unknown reason",
    }
}

/// One packet as read: its type, flags and, for control packets up to
/// `MAX_KEPT`, its body (empty otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub kind: u8,
    pub flags: u8,
    pub body: Vec<u8>,
}

/// Reads packets from a byte stream in any chunking.
#[derive(Debug, Default)]
pub struct PacketReader {
    /// The fixed header so far (type byte and remaining length).
    header: Vec<u8>,
    /// Body bytes of the current packet still to come.
    left: usize,
    current: Option<(u8, u8)>,
    keep: bool,
    body: Vec<u8>,
}

impl PacketReader {
    /// Feeds `bytes`, calling `on_packet` for each whole packet; an error
    /// names a malformed fixed header.
    pub fn feed(&mut self, mut bytes: &[u8], mut on_packet: impl FnMut(Packet)) -> Result<(), String> {
        while !bytes.is_empty() {
            if self.current.is_none() {
                self.header.push(bytes[0]);
                bytes = &bytes[1..];
                let Some(len) = self.remaining_length()? else {
                    continue;
                };
                let first = self.header[0];
                self.header.clear();
                let kind = first >> 4;
                self.current = Some((kind, first & 0x0f));
                self.left = len;
                self.keep = kind != PUBLISH && len <= MAX_KEPT;
                self.body.clear();
            }
            let n = self.left.min(bytes.len());
            if self.keep {
                self.body.extend_from_slice(&bytes[..n]);
            }
            self.left -= n;
            bytes = &bytes[n..];
            if self.left == 0 {
                if let Some((kind, flags)) = self.current.take() {
                    on_packet(Packet {
                        kind,
                        flags,
                        body: std::mem::take(&mut self.body),
                    });
                }
            }
        }
        Ok(())
    }

    /// The remaining length once the header holds it whole.
    fn remaining_length(&self) -> Result<Option<usize>, String> {
        let mut value = 0usize;
        for (i, byte) in self.header.iter().skip(1).enumerate() {
            value |= usize::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(Some(value));
            }
            if i == 3 {
                return Err("malformed MQTT remaining length".into());
            }
        }
        Ok(None)
    }
}

pub struct Mqtt {
    options: MqttOptions,
    connected: bool,
    reader: PacketReader,
    pings: ProbeSchedule,
}

impl Mqtt {
    pub fn new(o: &MqttOptions) -> Mqtt {
        Mqtt {
            options: o.clone(),
            connected: false,
            reader: PacketReader::default(),
            pings: ProbeSchedule::default(),
        }
    }

    fn on_packet(&mut self, p: &Packet, ctx: &mut Ctx<'_>) -> Report {
        let version = self.options.version;
        match p.kind {
            CONNACK if !self.connected => {
                let code = p.body.get(1).copied().unwrap_or(0xff);
                if code != 0 {
                    return failed(
                        DisconnectReason::AppError,
                        format!("MQTT CONNACK refused: {code:#04x} {}", reason_name(version, code)),
                        None,
                    );
                }
                self.connected = true;
                if let Some(topic) = &self.options.topic {
                    ctx.io.send_binary(&subscribe_packet(version, topic));
                }
                self.pings = ProbeSchedule::starting(ctx.now, ctx.spec.timing.ping_interval);
                Report::Ready
            }
            PINGRESP => answer_in_flight(&mut self.pings, ctx.now, ProbeKind::App),
            PUBLISH => {
                ctx.data = true;
                Report::Quiet
            }
            SUBACK => match p.body.last() {
                Some(code) if *code >= 0x80 => failed(
                    DisconnectReason::AppError,
                    format!("MQTT subscription refused: {code:#04x}"),
                    None,
                ),
                _ => Report::Quiet,
            },
            DISCONNECT => {
                let code = p.body.first().copied().unwrap_or(0);
                failed(
                    DisconnectReason::AppError,
                    format!(
                        "MQTT DISCONNECT from the broker: {code:#04x} {}",
                        reason_name(version, code)
                    ),
                    None,
                )
            }
            _ => Report::Quiet,
        }
    }
}

impl Protocol for Mqtt {
    fn on_open(&mut self, ctx: &mut Ctx<'_>) -> Report {
        let mut options = self.options.clone();
        options.username = options.username.map(|u| ctx.secrets.expand(&u));
        options.password = options.password.map(|p| ctx.secrets.expand(&p));
        if options.client_id.is_empty() {
            options.client_id = format!("sockpulse-{:016x}", ctx.rng.next_u64());
        }
        let connect = connect_packet(&options, keep_alive(ctx.spec.timing.ping_interval));
        ctx.io.send_binary(&connect);
        Report::Quiet
    }

    fn on_message(&mut self, input: Input<'_>, ctx: &mut Ctx<'_>) -> Report {
        // MQTT rides binary messages; their bytes are one stream of packets.
        let (Input::Chunk(bytes) | Input::Binary(bytes)) = input else {
            return Report::Quiet;
        };
        let mut packets = Vec::new();
        if let Err(e) = self.reader.feed(bytes, |p| packets.push(p)) {
            return failed(DisconnectReason::ProtocolError, e, None);
        }
        most_telling(packets.iter().map(|p| self.on_packet(p, ctx)))
    }

    fn keeps(&self) -> Keep {
        Keep::Stream
    }

    fn on_timeout(&mut self, ctx: &mut Ctx<'_>) -> Report {
        if !self.connected {
            return Report::Quiet;
        }
        let timing = &ctx.spec.timing;
        run_probe(&mut self.pings, timing, ProbeKind::App, ctx, |_, io| {
            io.send_binary(&PINGREQ)
        })
    }

    fn poll_timeout(&self, spec: &TargetSpec) -> Option<Instant> {
        self.pings.poll_timeout(spec.timing.pong_timeout)
    }

    fn awaiting(&self) -> Option<&'static str> {
        (!self.connected).then_some("CONNACK")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(version: MqttVersion) -> MqttOptions {
        MqttOptions {
            version,
            client_id: "probe-1".into(),
            username: Some("u".into()),
            password: Some("p".into()),
            clean_session: true,
            topic: None,
        }
    }

    #[test]
    fn connect_packets_are_well_formed_in_both_versions() {
        let v3 = connect_packet(&options(MqttVersion::V311), 20);
        assert_eq!(
            v3,
            [
                &[0x10, 25, 0, 4][..],
                b"MQTT",
                &[4, 0xC2, 0, 20, 0, 7],
                b"probe-1",
                &[0, 1, b'u', 0, 1, b'p'],
            ]
            .concat()
        );
        let v5 = connect_packet(&options(MqttVersion::V5), 20);
        assert_eq!((v5[1], v5[8], v5[12]), (26, 5, 0), "level 5 and an empty property list");
        assert_eq!(keep_alive(Some(Duration::from_millis(500))), 1);
        assert_eq!(keep_alive(Some(Duration::from_secs(10))), 20);
        assert_eq!(keep_alive(None), 0);
    }

    #[test]
    fn packets_are_read_across_and_within_messages_and_publish_bodies_are_not_kept() {
        let mut big = vec![0x30, 0x80, 0x01]; // PUBLISH of 128 bytes
        big.extend([7u8; 128]);
        let stream: Vec<u8> = [&[0x20, 2, 0, 0][..], &big, &[0xD0, 0]].concat();
        for split in 1..stream.len() {
            let mut r = PacketReader::default();
            let mut seen = Vec::new();
            r.feed(&stream[..split], |p| seen.push(p)).expect("well formed");
            r.feed(&stream[split..], |p| seen.push(p)).expect("well formed");
            let kinds: Vec<(u8, usize)> = seen.iter().map(|p| (p.kind, p.body.len())).collect();
            assert_eq!(kinds, [(CONNACK, 2), (PUBLISH, 0), (PINGRESP, 0)], "split at {split}");
        }
        let mut r = PacketReader::default();
        assert!(r.feed(&[0x30, 0xff, 0xff, 0xff, 0xff, 0x01], |_| {}).is_err());
    }

    #[test]
    fn codes_have_names() {
        assert_eq!(reason_name(MqttVersion::V311, 5), "not authorized");
        assert_eq!(reason_name(MqttVersion::V5, 0x86), "bad user name or password");
        assert_eq!(reason_name(MqttVersion::V5, 0x8E), "session taken over");
    }
}
