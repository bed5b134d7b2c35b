//! Round trips, limits and hostile input for the frame codec and the handshake.

use std::os::unix::net::UnixStream;
use std::thread;

use proptest::prelude::*;
use sbx_proto::*;

fn sample_messages() -> Vec<Message> {
    vec![
        Message::Hello(Hello {
            min_version: 1,
            max_version: 3,
            peer: "test".into(),
        }),
        Message::HelloAck(HelloAck {
            version: 1,
            peer: "agent".into(),
        }),
        Message::Ready(Ready {
            boot_ms: 12,
            mode: "namespace".into(),
            proxy_listen: "127.0.0.1:3128".into(),
        }),
        Message::Exec(ExecRequest {
            argv: vec!["sh".into(), "-c".into(), "echo ünïcode".into()],
            env: vec![("A".into(), "b=c".into())],
            cwd: Some("/work".into()),
            user: Some("agent".into()),
            tty: Some(WindowSize { rows: 24, cols: 80 }),
            detached: true,
            background: true,
        }),
        Message::Started(Started { pid: 42 }),
        Message::Stdin(vec![0, 1, 2, 255]),
        Message::StdinEof,
        Message::Stdout(b"out".to_vec()),
        Message::Stderr(Vec::new()),
        Message::Resize(WindowSize {
            rows: 50,
            cols: 132,
        }),
        Message::Signal(15),
        Message::Exit(ExitStatus::Code(3)),
        Message::Exit(ExitStatus::Signal(9)),
        Message::Detach,
        Message::Attach,
        Message::Detached,
        Message::Shutdown,
        Message::Sync,
        Message::SyncDone,
        Message::Error(ErrorReport::new("exec-failed", "no such file")),
        Message::Ping(u64::MAX),
        Message::Pong(0),
    ]
}

#[test]
fn every_message_round_trips() {
    for (i, m) in sample_messages().into_iter().enumerate() {
        let frame = Frame::session(i as u32, m);
        let bytes = encode_to_vec(&frame).unwrap();
        let (back, used) = decode(&bytes).unwrap().unwrap();
        assert_eq!(back, frame);
        assert_eq!(used, bytes.len());
    }
}

#[test]
fn partial_frames_ask_for_more() {
    let bytes = encode_to_vec(&Frame::session(1, Message::Stdout(b"hello".to_vec()))).unwrap();
    for cut in 0..bytes.len() {
        assert_eq!(decode(&bytes[..cut]).unwrap(), None, "cut at {cut}");
    }
}

#[test]
fn oversized_length_is_rejected_before_reading_the_body() {
    // Length field claims 4 GiB; the reader must refuse it without allocating or waiting for the body.
    let wire = [0xff, 0xff, 0xff, 0xff, 14, 0, 0, 0, 1];
    let err = FrameReader::new(&wire[..]).read_frame().unwrap_err();
    assert!(
        matches!(err, StreamError::Decode(DecodeError::TooLarge { .. })),
        "{err}"
    );
    assert!(matches!(decode(&wire), Err(DecodeError::TooLarge { .. })));
    let small = FrameReader::with_limit(
        &encode_to_vec(&Frame::session(1, Message::Stdout(vec![0; 100]))).unwrap()[..],
        50,
    )
    .read_frame()
    .unwrap_err();
    assert!(
        small.to_string().contains("exceeds the limit of 50"),
        "{small}"
    );
}

#[test]
fn encoder_refuses_frames_over_the_limit() {
    let err =
        encode_to_vec(&Frame::session(1, Message::Stdout(vec![0; MAX_FRAME_LEN]))).unwrap_err();
    assert!(matches!(err, EncodeError::TooLarge { .. }));
}

#[test]
fn malformed_payloads_are_errors_naming_the_tag() {
    let mut bad = Vec::new();
    let body = [&[10u8][..], &1u32.to_be_bytes(), b"{not json"].concat();
    bad.extend_from_slice(&(body.len() as u32).to_be_bytes());
    bad.extend_from_slice(&body);
    let err = decode(&bad).unwrap_err();
    assert!(
        matches!(err, DecodeError::BadPayload { tag: 10, .. }),
        "{err}"
    );
    let unknown = [0, 0, 0, 5, 200, 0, 0, 0, 0];
    assert_eq!(
        decode(&unknown).unwrap_err(),
        DecodeError::UnknownTag { tag: 200 }
    );
    let short = [0, 0, 0, 2, 1, 0];
    assert_eq!(
        decode(&short).unwrap_err(),
        DecodeError::TooShort { len: 2 }
    );
    let signal_wrong_size = [0, 0, 0, 7, 17, 0, 0, 0, 1, 0, 9];
    assert!(matches!(
        decode(&signal_wrong_size),
        Err(DecodeError::BadPayload { tag: 17, .. })
    ));
}

#[test]
fn truncated_stream_is_reported() {
    let bytes = encode_to_vec(&Frame::session(1, Message::Stdout(b"hello".to_vec()))).unwrap();
    let err = FrameReader::new(&bytes[..bytes.len() - 1])
        .read_frame()
        .unwrap_err();
    assert!(matches!(err, StreamError::Truncated));
    assert!(FrameReader::new(&[][..]).read_frame().unwrap().is_none());
}

#[test]
fn handshake_agrees_on_a_version_over_a_socket() {
    let (a, b) = UnixStream::pair().unwrap();
    let agent = thread::spawn(move || {
        let mut r = FrameReader::new(b.try_clone().unwrap());
        let mut w = FrameWriter::new(b);
        server_handshake(&mut r, &mut w, "agent").unwrap()
    });
    let mut r = FrameReader::new(a.try_clone().unwrap());
    let mut w = FrameWriter::new(a);
    let ack = client_handshake(&mut r, &mut w, "host").unwrap();
    assert_eq!(ack.version, PROTOCOL_VERSION);
    assert_eq!(ack.peer, "agent");
    assert_eq!(agent.join().unwrap(), PROTOCOL_VERSION);
}

#[test]
fn handshake_rejects_a_peer_without_common_version() {
    let (a, b) = UnixStream::pair().unwrap();
    let agent = thread::spawn(move || {
        let mut r = FrameReader::new(b.try_clone().unwrap());
        let mut w = FrameWriter::new(b);
        server_handshake(&mut r, &mut w, "agent")
    });
    let mut r = FrameReader::new(a.try_clone().unwrap());
    let mut w = FrameWriter::new(a);
    w.write_raw(&PREFACE).unwrap();
    w.write_frame(&Frame::control(Message::Hello(Hello {
        min_version: 90,
        max_version: 99,
        peer: "future".into(),
    })))
    .unwrap();
    let mut preface = [0; 4];
    r.read_raw(&mut preface).unwrap();
    let reply = r.read_frame().unwrap().unwrap();
    assert!(
        matches!(reply.message, Message::Error(ref e) if e.kind == "version-mismatch"),
        "{reply:?}"
    );
    let err = agent.join().unwrap().unwrap_err();
    assert!(err.to_string().contains("peer speaks 90..=99"), "{err}");
}

#[test]
fn handshake_rejects_a_foreign_peer() {
    let (a, b) = UnixStream::pair().unwrap();
    let mut w = FrameWriter::new(a.try_clone().unwrap());
    w.write_raw(b"GET / HTTP/1.1\r\n").unwrap();
    let mut r = FrameReader::new(b.try_clone().unwrap());
    let mut bw = FrameWriter::new(b);
    let err = server_handshake(&mut r, &mut bw, "agent").unwrap_err();
    assert!(matches!(err, HandshakeError::BadPreface { .. }), "{err}");
}

#[test]
fn version_negotiation_picks_the_newest_common() {
    assert_eq!(negotiate((1, 3), (2, 5)), Some(3));
    assert_eq!(negotiate((1, 1), (2, 5)), None);
    assert_eq!(negotiate((4, 6), (1, 4)), Some(4));
}

proptest! {
    #[test]
    fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode(&bytes);
        let _ = FrameReader::new(&bytes[..]).read_frame();
    }

    #[test]
    fn data_frames_round_trip(session in any::<u32>(), data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let frame = Frame::session(session, Message::Stdin(data));
        let bytes = encode_to_vec(&frame).unwrap();
        prop_assert_eq!(decode(&bytes).unwrap().unwrap().0, frame);
    }
}
