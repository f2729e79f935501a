//! The reader against frames as a server sends them, cut at every place.

use proptest::prelude::*;

use super::*;
// An unmasked frame, as a server sends it.
use crate::session::tests::frame as server_frame;

/// What a reader made of `bytes` fed in pieces cut at `cuts`: messages
/// reassembled from their ranges, control frames as they came.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Seen {
    messages: Vec<(DataKind, Vec<u8>)>,
    controls: Vec<(&'static str, Vec<u8>)>,
}

fn read_in_pieces(bytes: &[u8], cuts: &[usize]) -> Result<Seen, FrameError> {
    let mut reader = FrameReader::default();
    let mut seen = Seen::default();
    let mut partial = Vec::new();
    let mut start = 0;
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let cut = cut.clamp(start, bytes.len());
        let piece = &bytes[start..cut];
        start = cut;
        let mut pos = 0;
        while let Some(frame) = reader.next(piece, &mut pos)? {
            match frame {
                Frame::Data { kind, range, end } => {
                    partial.extend_from_slice(&piece[range]);
                    if end {
                        seen.messages.push((kind, std::mem::take(&mut partial)));
                    }
                }
                Frame::Ping(p) => seen.controls.push(("ping", p.bytes(piece).to_vec())),
                Frame::Pong(p) => seen.controls.push(("pong", p.bytes(piece).to_vec())),
                Frame::Close(p) => seen.controls.push(("close", p.bytes(piece).to_vec())),
            }
        }
        assert_eq!(pos, piece.len(), "every byte is consumed");
    }
    Ok(seen)
}

fn error_of(bytes: &[u8]) -> FrameError {
    read_in_pieces(bytes, &[]).expect_err("a protocol error")
}

#[test]
fn a_fragmented_message_with_a_ping_inside_is_read_at_every_cut() {
    let mut wire = server_frame(false, 0x1, "héllo ".as_bytes());
    wire.extend(server_frame(true, 0x9, b"in-between"));
    wire.extend(server_frame(false, 0x0, b""));
    wire.extend(server_frame(true, 0x0, "wörld".as_bytes()));
    wire.extend(server_frame(true, 0xa, &7u64.to_be_bytes()));
    wire.extend(server_frame(true, 0x2, &[0u8; 300]));
    wire.extend(server_frame(true, 0x1, b""));
    let expected = Seen {
        messages: vec![
            (DataKind::Text, "héllo wörld".as_bytes().to_vec()),
            (DataKind::Binary, vec![0u8; 300]),
            (DataKind::Text, vec![]),
        ],
        controls: vec![("ping", b"in-between".to_vec()), ("pong", 7u64.to_be_bytes().to_vec())],
    };
    for cut in 0..=wire.len() {
        assert_eq!(read_in_pieces(&wire, &[cut]), Ok(expected.clone()), "cut at {cut}");
    }
    let every_byte: Vec<usize> = (0..wire.len()).collect();
    assert_eq!(read_in_pieces(&wire, &every_byte), Ok(expected.clone()));
}

#[test]
fn a_lone_pong_is_recognised_only_whole_and_at_a_frame_boundary() {
    let pong = server_frame(true, 0xa, &7u64.to_be_bytes());
    let reader = FrameReader::default();
    assert_eq!(reader.lone_pong(&pong), Some(&7u64.to_be_bytes()[..]));
    assert_eq!(reader.lone_pong(&pong[..5]), None, "cut short");
    let mut two = pong.clone();
    two.extend_from_slice(&pong);
    assert_eq!(reader.lone_pong(&two), None, "followed by more");
    let mut long = vec![0x8a, 126];
    long.extend([0u8; 126]);
    assert_eq!(reader.lone_pong(&long), None, "126 means an extended length");
    // Inside a binary frame's payload, pong-shaped bytes are data.
    let mut mid = FrameReader::default();
    let mut pos = 0;
    let header = [0x82, pong.len() as u8];
    assert_eq!(mid.next(&header, &mut pos), Ok(None));
    assert_eq!(mid.lone_pong(&pong), None);
    let mut pos = 0;
    assert!(matches!(
        mid.next(&pong, &mut pos),
        Ok(Some(Frame::Data { end: true, .. }))
    ));
}

#[test]
fn a_large_frame_comes_out_as_it_arrives_without_being_held() {
    let payload = vec![b'x'; 900 * 1024];
    let wire = server_frame(true, 0x2, &payload);
    let mut reader = FrameReader::default();
    let mut pos = 0;
    // The header and the first KiB: a first range at once.
    let first = &wire[..10 + 1024];
    match reader.next(first, &mut pos) {
        Ok(Some(Frame::Data { range, end: false, .. })) => assert_eq!(range, 10..10 + 1024),
        other => panic!("{other:?}"),
    }
    assert_eq!(reader.next(first, &mut pos), Ok(None));
    let rest = &wire[10 + 1024..];
    let mut pos = 0;
    match reader.next(rest, &mut pos) {
        Ok(Some(Frame::Data { range, end: true, .. })) => assert_eq!(range.len(), payload.len() - 1024),
        other => panic!("{other:?}"),
    }
    assert!(reader.at_frame_boundary());
    assert!(
        std::mem::size_of::<FrameReader>() <= 64,
        "{}",
        std::mem::size_of::<FrameReader>()
    );
}

#[test]
fn every_framing_rule_a_server_can_break_is_an_error_with_its_code() {
    let cases: [(&str, Vec<u8>, u16); 10] = [
        ("masked", vec![0x81, 0x81, 1, 2, 3, 4, b'a' ^ 1], 1002),
        ("rsv1", vec![0xc1, 0x00], 1002),
        ("reserved opcode", vec![0x83, 0x00], 1002),
        ("reserved control opcode", vec![0x8b, 0x00], 1002),
        ("long control", server_frame(true, 0x9, &[0u8; 126]), 1002),
        ("fragmented control", server_frame(false, 0x9, b"p"), 1002),
        ("lone continuation", server_frame(true, 0x0, b"x"), 1002),
        ("2^63 bytes", vec![0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0], 1002),
        ("bad utf-8", server_frame(true, 0x1, &[0xc3, 0x28]), 1007),
        (
            "utf-8 cut at the message end",
            server_frame(true, 0x1, &[b'a', 0xe2, 0x82]),
            1007,
        ),
    ];
    for (what, bytes, code) in cases {
        assert_eq!(error_of(&bytes).close_code(), code, "{what}");
    }
    let mut nested = server_frame(false, 0x1, b"a");
    nested.extend(server_frame(true, 0x2, b"b"));
    assert_eq!(error_of(&nested).close_code(), 1002);
}

#[test]
fn invalid_utf8_fails_in_the_fragment_that_holds_it() {
    let mut wire = server_frame(false, 0x1, &[b'a'; 800]);
    wire.extend(server_frame(false, 0x0, &[0xff]));
    let tail_at = wire.len();
    wire.extend(server_frame(true, 0x0, &[b'b'; 100]));
    let mut reader = FrameReader::default();
    let mut pos = 0;
    let mut result = Ok(None);
    while pos < tail_at {
        result = reader.next(&wire[..tail_at], &mut pos);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(FrameError::InvalidUtf8), "before the final fragment came");
}

proptest! {
    #[test]
    fn any_messages_cut_anywhere_read_back_the_same(
        messages in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..400), 1usize..4), 1..6),
        cuts in proptest::collection::vec(0usize..3000, 0..8),
    ) {
        let mut wire = Vec::new();
        let mut expected = Seen::default();
        for (text, payload, fragments) in &messages {
            let (kind, payload) = if *text {
                (DataKind::Text, String::from_utf8_lossy(payload).into_owned().into_bytes())
            } else {
                (DataKind::Binary, payload.clone())
            };
            let chunk = payload.len().div_ceil(*fragments).max(1);
            let pieces: Vec<&[u8]> = if payload.is_empty() { vec![&[]] } else { payload.chunks(chunk).collect() };
            for (i, piece) in pieces.iter().enumerate() {
                let opcode = if i > 0 { 0x0 } else if *text { 0x1 } else { 0x2 };
                wire.extend(server_frame(i + 1 == pieces.len(), opcode, piece));
                if i == 0 {
                    wire.extend(server_frame(true, 0xa, &[i as u8; 3]));
                    expected.controls.push(("pong", vec![i as u8; 3]));
                }
            }
            expected.messages.push((kind, payload));
        }
        let mut cuts = cuts;
        cuts.sort_unstable();
        prop_assert_eq!(read_in_pieces(&wire, &cuts), Ok(expected));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_always_advance(bytes in proptest::collection::vec(any::<u8>(), 0..600),
                                                        cuts in proptest::collection::vec(0usize..600, 0..6)) {
        let mut cuts = cuts;
        cuts.sort_unstable();
        let _ = read_in_pieces(&bytes, &cuts);
    }
}
