//! Prints the wire bytes of a few frames and decodes them again.

use sbx_proto::{ExecRequest, ExitStatus, Frame, Message, WindowSize, decode, encode_to_vec};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let frames = [
        Frame::session(
            1,
            Message::Exec(ExecRequest {
                argv: vec!["bash".into(), "-l".into()],
                tty: Some(WindowSize { rows: 24, cols: 80 }),
                ..Default::default()
            }),
        ),
        Frame::session(1, Message::Stdout(b"$ ".to_vec())),
        Frame::session(1, Message::Exit(ExitStatus::Code(0))),
    ];
    for frame in &frames {
        let bytes = encode_to_vec(frame)?;
        let (back, _) = decode(&bytes)?.ok_or("incomplete frame")?;
        println!(
            "{:>3} bytes  {:02x?}…  -> {:?}",
            bytes.len(),
            &bytes[..bytes.len().min(12)],
            back.message
        );
    }
    Ok(())
}
