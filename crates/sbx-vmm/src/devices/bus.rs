//! Address-range dispatch for port I/O and MMIO exits.

use std::sync::{Arc, Mutex};

/// A device on a bus. Offsets are relative to the start of the device's range.
pub trait BusDevice: Send {
    /// A guest read of `data.len()` bytes at `offset`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// A guest write at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// A shared device on a bus.
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Non-overlapping ranges, each served by one device.
#[derive(Default)]
pub struct Bus {
    ranges: Vec<(u64, u64, SharedDevice)>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ranges: Vec<(u64, u64)> = self.ranges.iter().map(|(b, l, _)| (*b, *l)).collect();
        f.debug_struct("Bus").field("ranges", &ranges).finish()
    }
}

/// A range overlaps one already on the bus.
#[derive(Debug, thiserror::Error)]
#[error("bus range {base:#x}+{len:#x} overlaps an existing device")]
pub struct OverlapError {
    /// Start of the rejected range.
    pub base: u64,
    /// Its length.
    pub len: u64,
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `device` at `base..base+len`.
    pub fn insert(
        &mut self,
        device: SharedDevice,
        base: u64,
        len: u64,
    ) -> Result<(), OverlapError> {
        let end = base.checked_add(len).ok_or(OverlapError { base, len })?;
        if len == 0 || self.ranges.iter().any(|(b, l, _)| base < b + l && *b < end) {
            return Err(OverlapError { base, len });
        }
        self.ranges.push((base, len, device));
        self.ranges.sort_by_key(|(b, _, _)| *b);
        Ok(())
    }

    fn find(&self, addr: u64, size: usize) -> Option<(&SharedDevice, u64)> {
        let idx = self
            .ranges
            .partition_point(|(b, _, _)| *b <= addr)
            .checked_sub(1)?;
        let (base, len, dev) = &self.ranges[idx];
        let offset = addr - base;
        (offset.checked_add(size as u64)? <= *len).then_some((dev, offset))
    }

    /// Dispatches a read; unclaimed addresses read as all ones, like an empty ISA bus. Returns whether a device
    /// claimed it.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((dev, offset)) => {
                if let Ok(mut dev) = dev.lock() {
                    dev.read(offset, data);
                }
                true
            }
            None => {
                data.fill(0xff);
                false
            }
        }
    }

    /// Dispatches a write; unclaimed writes are dropped. Returns whether a device claimed it.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.find(addr, data.len()) {
            Some((dev, offset)) => {
                if let Ok(mut dev) = dev.lock() {
                    dev.write(offset, data);
                }
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(Vec<u8>);
    impl BusDevice for Echo {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, _offset: u64, data: &[u8]) {
            self.0.extend_from_slice(data);
        }
    }

    #[test]
    fn dispatch_and_bounds() {
        let mut bus = Bus::new();
        let dev = Arc::new(Mutex::new(Echo(Vec::new())));
        bus.insert(dev.clone(), 0x100, 0x10).unwrap();
        assert!(bus.insert(dev.clone(), 0x108, 0x10).is_err());
        assert!(bus.insert(dev.clone(), u64::MAX, 2).is_err());
        let mut buf = [0u8; 2];
        assert!(bus.read(0x104, &mut buf));
        assert_eq!(buf, [4, 4]);
        // Straddling the end of the range is not claimed.
        assert!(!bus.read(0x10f, &mut buf));
        assert_eq!(buf, [0xff, 0xff]);
        assert!(!bus.read(0xff, &mut buf));
        assert!(bus.write(0x100, &[7]));
        assert!(!bus.write(0x200, &[7]));
        assert_eq!(dev.lock().unwrap().0, vec![7]);
    }
}
