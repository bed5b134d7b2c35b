//! A minimal i8042 keyboard controller: enough for Linux to probe it, and the CPU-reset command (0xfe) that guests
//! use to reboot (`reboot=k`), which ends the VM cleanly.

use std::sync::Arc;

use super::BusDevice;
use crate::control::Control;
use crate::runtime::ExitReason;

const OFFSET_DATA: u64 = 0;
const OFFSET_COMMAND: u64 = 4;
const CMD_READ_CONFIG: u8 = 0x20;
const CMD_WRITE_CONFIG: u8 = 0x60;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_RESET_CPU: u8 = 0xfe;
const STATUS_OUTPUT_FULL: u8 = 0x01;
const STATUS_SYSTEM_FLAG: u8 = 0x04;
const SELF_TEST_OK: u8 = 0x55;

/// The controller at ports 0x60 (data) and 0x64 (status/command).
#[derive(Debug)]
pub struct I8042 {
    control: Arc<Control>,
    config: u8,
    output: Option<u8>,
    expecting_config: bool,
}

impl I8042 {
    pub(crate) fn new(control: Arc<Control>) -> Self {
        Self {
            control,
            config: 0,
            output: None,
            expecting_config: false,
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match offset {
            OFFSET_DATA => self.output.take().unwrap_or(0),
            OFFSET_COMMAND => {
                STATUS_SYSTEM_FLAG
                    | if self.output.is_some() {
                        STATUS_OUTPUT_FULL
                    } else {
                        0
                    }
            }
            _ => 0xff,
        };
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = value;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        match offset {
            OFFSET_COMMAND => match value {
                CMD_RESET_CPU => self.control.request_exit(ExitReason::GuestReset),
                CMD_READ_CONFIG => self.output = Some(self.config),
                CMD_WRITE_CONFIG => self.expecting_config = true,
                CMD_SELF_TEST => self.output = Some(SELF_TEST_OK),
                _ => {}
            },
            OFFSET_DATA if self.expecting_config => {
                self.config = value;
                self.expecting_config = false;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn reset_command_requests_guest_reset() {
        let control = Arc::new(Control::new(Instant::now(), Duration::ZERO).unwrap());
        let mut dev = I8042::new(control.clone());
        dev.write(OFFSET_COMMAND, &[CMD_SELF_TEST]);
        let mut b = [0u8];
        dev.read(OFFSET_COMMAND, &mut b);
        assert_eq!(b[0] & STATUS_OUTPUT_FULL, STATUS_OUTPUT_FULL);
        dev.read(OFFSET_DATA, &mut b);
        assert_eq!(b[0], SELF_TEST_OK);
        assert!(!control.stopping());
        dev.write(OFFSET_COMMAND, &[CMD_RESET_CPU]);
        assert!(control.stopping());
        assert_eq!(control.reason(), Some(ExitReason::GuestReset));
    }
}
