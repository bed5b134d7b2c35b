//! Fuzzes the sbx-proto frame decoder: whatever a guest or host peer sends, decoding must not panic, and every
//! frame that decodes must survive a re-encode/decode round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((frame, used))) = sbx_proto::decode(rest) {
        let again = sbx_proto::encode_to_vec(&frame).expect("a decoded frame re-encodes");
        let (back, _) = sbx_proto::decode(&again).expect("re-encoded frame decodes").expect("whole frame");
        assert_eq!(back, frame);
        rest = &rest[used..];
    }
    let _ = sbx_proto::FrameReader::new(data).read_frame();
});
