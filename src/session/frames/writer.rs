//! Client frames (RFC 6455 section 5.2): always final, always masked with
//! a key the caller draws from a CSPRNG (section 5.3).

/// Opcodes a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xa,
}

/// Appends one whole frame carrying `payload` to `out`.
pub fn encode(out: &mut impl Extend<u8>, opcode: OpCode, payload: &[u8], mask: [u8; 4]) {
    out.extend([0x80 | opcode as u8]);
    match payload.len() {
        n @ 0..=125 => out.extend([0x80 | n as u8]),
        n @ 126..=0xffff => {
            out.extend([0x80 | 126]);
            out.extend((n as u16).to_be_bytes());
        }
        n => {
            out.extend([0x80 | 127]);
            out.extend((n as u64).to_be_bytes());
        }
    }
    out.extend(mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Read, Write};
    use tungstenite::protocol::Role;
    use tungstenite::{Message, WebSocket};

    /// A duplex in-memory stream for tungstenite playing the server.
    struct Loop(Cursor<Vec<u8>>);

    impl Read for Loop {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl Write for Loop {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// tungstenite, as a server, reads what we encode: an independent
    /// decoder checks every length form, the masking and the opcodes.
    #[test]
    fn tungstenite_as_a_server_reads_every_length_form() {
        for len in [0usize, 1, 125, 126, 127, 0xffff, 0x10000, 200_000] {
            let text: String = "ab€".chars().cycle().take(len).collect();
            let binary: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut wire = Vec::new();
            encode(&mut wire, OpCode::Text, text.as_bytes(), [0x12, 0x34, 0x56, 0x78]);
            encode(&mut wire, OpCode::Binary, &binary, [0xde, 0xad, 0xbe, 0xef]);
            encode(&mut wire, OpCode::Ping, &binary[..len.min(125)], [1, 2, 3, 4]);
            let mut server = WebSocket::from_raw_socket(Loop(Cursor::new(wire)), Role::Server, None);
            match server.read() {
                Ok(Message::Text(t)) => assert_eq!(t.as_str(), text, "len {len}"),
                other => panic!("len {len}: not the text: {other:?}"),
            }
            match server.read() {
                Ok(Message::Binary(b)) => assert_eq!(&b[..], &binary[..], "len {len}"),
                other => panic!("len {len}: not the binary: {other:?}"),
            }
            match server.read() {
                Ok(Message::Ping(p)) => assert_eq!(&p[..], &binary[..len.min(125)]),
                other => panic!("len {len}: not the ping: {other:?}"),
            }
        }
    }

    #[test]
    fn the_payload_is_masked_on_the_wire() {
        let mut wire = Vec::new();
        encode(&mut wire, OpCode::Close, &[0x03, 0xe8], [1, 2, 3, 4]);
        assert_eq!(wire, [0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2]);
    }
}
