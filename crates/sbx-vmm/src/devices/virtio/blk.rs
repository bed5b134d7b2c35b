//! virtio-blk over a raw image file: read, write, flush, discard, get-id; read-only images refuse writes.
//!
//! Every request is validated before any I/O: the header must be readable and 16 bytes, the status byte the last,
//! writable descriptor; data descriptors must have the direction the request type needs, lie inside guest memory,
//! sum to whole sectors and stay inside the image. Violations answer `VIRTIO_BLK_S_IOERR` (or `UNSUPP`); a chain with
//! no place for a status byte is returned with length 0.

use std::fs::File;
use std::os::unix::fs::FileExt;

use virtio_queue::desc::split::Descriptor;
use virtio_queue::{DescriptorChain, Queue};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory as _, Permissions};

use super::{ActivateContext, DeviceError, Interrupt, VirtioDevice, complete, device_type, next_chain, notify_driver};
use crate::vstate::memory::GuestMemory;

/// Sector size.
pub const SECTOR_SIZE: u64 = 512;
const QUEUE_SIZES: [u16; 1] = [256];
/// Feature bits.
pub mod features {
    #![allow(missing_docs)]
    pub const SEG_MAX: u64 = 1 << 2;
    pub const RO: u64 = 1 << 5;
    pub const FLUSH: u64 = 1 << 9;
    pub const DISCARD: u64 = 1 << 13;
}
/// Request types.
pub mod request {
    #![allow(missing_docs)]
    pub const IN: u32 = 0;
    pub const OUT: u32 = 1;
    pub const FLUSH: u32 = 4;
    pub const GET_ID: u32 = 8;
    pub const DISCARD: u32 = 11;
}
/// Status values.
pub mod status {
    #![allow(missing_docs)]
    pub const OK: u8 = 0;
    pub const IOERR: u8 = 1;
    pub const UNSUPP: u8 = 2;
}
/// Largest number of data segments per request (advertised as `seg_max`).
pub const SEG_MAX: u32 = 126;
/// Length of the GET_ID answer.
pub const ID_BYTES: usize = 20;
const MAX_DISCARD_SECTORS: u32 = u32::MAX / 512;
const BOUNCE: usize = 64 * 1024;

/// The host side of a disk.
#[derive(Debug)]
pub struct Disk {
    file: File,
    sectors: u64,
    read_only: bool,
    id: [u8; ID_BYTES],
}

impl Disk {
    /// Wraps an open image; `id` is what GET_ID returns (truncated to 20 bytes).
    pub fn new(file: File, read_only: bool, id: &str) -> std::io::Result<Self> {
        let sectors = file.metadata()?.len() / SECTOR_SIZE;
        let mut id_bytes = [0u8; ID_BYTES];
        let n = id.len().min(ID_BYTES);
        id_bytes[..n].copy_from_slice(&id.as_bytes()[..n]);
        Ok(Self {
            file,
            sectors,
            read_only,
            id: id_bytes,
        })
    }

    /// Capacity in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }
}

/// A request that passed validation.
struct Request {
    kind: u32,
    sector: u64,
    data: Vec<Descriptor>,
    status_addr: GuestAddress,
}

/// Why a request is answered with an error status.
enum Reject {
    /// No usable status descriptor: return the chain with length 0.
    NoStatus,
    /// Answer with this status.
    Status(u8, GuestAddress),
}

/// Handles one chain; returns the used length to report (bytes written into the chain).
pub fn handle_chain(mem: &GuestMemory, chain: DescriptorChain<&GuestMemory>, disk: &mut Disk) -> u32 {
    match parse(mem, chain) {
        Ok(req) => {
            let (st, written) = execute(mem, &req, disk);
            finish(mem, req.status_addr, st, written)
        }
        Err(Reject::NoStatus) => 0,
        Err(Reject::Status(st, addr)) => finish(mem, addr, st, 0),
    }
}

fn finish(mem: &GuestMemory, status_addr: GuestAddress, st: u8, written: u32) -> u32 {
    match mem.write_obj(st, status_addr) {
        Ok(()) => written.saturating_add(1),
        Err(_) => 0,
    }
}

fn parse(mem: &GuestMemory, chain: DescriptorChain<&GuestMemory>) -> Result<Request, Reject> {
    // The iterator stops after `queue size` descriptors, so loops end; collecting is bounded the same way.
    let descs: Vec<Descriptor> = chain.collect();
    let (last, rest) = descs.split_last().ok_or(Reject::NoStatus)?;
    if !last.is_write_only() || last.len() < 1 || !mem.check_range(last.addr(), 1, Permissions::Write) {
        return Err(Reject::NoStatus);
    }
    let status_addr = last.addr();
    let err = |st| Reject::Status(st, status_addr);
    let (header, data) = rest.split_first().ok_or(err(status::IOERR))?;
    if header.is_write_only() || header.len() < 16 {
        return Err(err(status::IOERR));
    }
    let kind: u32 = mem.read_obj(header.addr()).map_err(|_| err(status::IOERR))?;
    let sector_addr = header.addr().checked_add(8).ok_or(err(status::IOERR))?;
    let sector: u64 = mem.read_obj(sector_addr).map_err(|_| err(status::IOERR))?;
    if data.len() > SEG_MAX as usize {
        return Err(err(status::IOERR));
    }
    for d in data {
        let access = if d.is_write_only() { Permissions::Write } else { Permissions::Read };
        if !mem.check_range(d.addr(), d.len() as usize, access) {
            return Err(err(status::IOERR));
        }
    }
    Ok(Request {
        kind,
        sector,
        data: data.to_vec(),
        status_addr,
    })
}

/// Total length of `data`, requiring every descriptor to have direction `writable`.
fn data_len(data: &[Descriptor], writable: bool) -> Option<u64> {
    data.iter().try_fold(0u64, |sum, d| {
        (d.is_write_only() == writable).then(|| sum + u64::from(d.len()))
    })
}

/// The byte offset of `sector` if `len` bytes from it stay inside the disk.
fn disk_range(disk: &Disk, sector: u64, len: u64) -> Option<u64> {
    let offset = sector.checked_mul(SECTOR_SIZE)?;
    let end = offset.checked_add(len)?;
    (len % SECTOR_SIZE == 0 && end <= disk.sectors * SECTOR_SIZE).then_some(offset)
}

fn execute(mem: &GuestMemory, req: &Request, disk: &mut Disk) -> (u8, u32) {
    match req.kind {
        request::IN => {
            let Some(len) = data_len(&req.data, true) else {
                return (status::IOERR, 0);
            };
            match disk_range(disk, req.sector, len) {
                Some(offset) => match read_into_guest(mem, &req.data, disk, offset) {
                    Ok(()) => (status::OK, len as u32),
                    Err(()) => (status::IOERR, 0),
                },
                None => (status::IOERR, 0),
            }
        }
        request::OUT => {
            if disk.read_only {
                return (status::IOERR, 0);
            }
            let Some(len) = data_len(&req.data, false) else {
                return (status::IOERR, 0);
            };
            match disk_range(disk, req.sector, len) {
                Some(offset) if write_from_guest(mem, &req.data, disk, offset).is_ok() => (status::OK, 0),
                _ => (status::IOERR, 0),
            }
        }
        request::FLUSH => match disk.file.sync_data() {
            Ok(()) => (status::OK, 0),
            Err(_) => (status::IOERR, 0),
        },
        request::GET_ID => {
            let Some(desc) = req.data.first().filter(|d| d.is_write_only()) else {
                return (status::IOERR, 0);
            };
            let n = (desc.len() as usize).min(ID_BYTES);
            match mem.write_slice(&disk.id[..n], desc.addr()) {
                Ok(()) => (status::OK, n as u32),
                Err(_) => (status::IOERR, 0),
            }
        }
        request::DISCARD if !disk.read_only => match discard(mem, &req.data, disk) {
            Ok(()) => (status::OK, 0),
            Err(()) => (status::IOERR, 0),
        },
        _ => (status::UNSUPP, 0),
    }
}

fn read_into_guest(mem: &GuestMemory, data: &[Descriptor], disk: &Disk, mut offset: u64) -> Result<(), ()> {
    let mut buf = vec![0u8; BOUNCE];
    for d in data {
        let mut done = 0u64;
        while done < u64::from(d.len()) {
            let n = (u64::from(d.len()) - done).min(BOUNCE as u64) as usize;
            disk.file.read_exact_at(&mut buf[..n], offset).map_err(|_| ())?;
            let addr = d.addr().checked_add(done).ok_or(())?;
            mem.write_slice(&buf[..n], addr).map_err(|_| ())?;
            done += n as u64;
            offset += n as u64;
        }
    }
    Ok(())
}

fn write_from_guest(mem: &GuestMemory, data: &[Descriptor], disk: &Disk, mut offset: u64) -> Result<(), ()> {
    let mut buf = vec![0u8; BOUNCE];
    for d in data {
        let mut done = 0u64;
        while done < u64::from(d.len()) {
            let n = (u64::from(d.len()) - done).min(BOUNCE as u64) as usize;
            let addr = d.addr().checked_add(done).ok_or(())?;
            mem.read_slice(&mut buf[..n], addr).map_err(|_| ())?;
            disk.file.write_all_at(&buf[..n], offset).map_err(|_| ())?;
            done += n as u64;
            offset += n as u64;
        }
    }
    Ok(())
}

/// Discard segments (16 bytes each: sector u64, num_sectors u32, flags u32) punch holes in the image.
fn discard(mem: &GuestMemory, data: &[Descriptor], disk: &Disk) -> Result<(), ()> {
    use rustix::fs::{FallocateFlags, fallocate};
    let mut segments = Vec::new();
    for d in data {
        if d.is_write_only() || d.len() % 16 != 0 {
            return Err(());
        }
        for i in 0..u64::from(d.len()) / 16 {
            let at = d.addr().checked_add(i * 16).ok_or(())?;
            let sector: u64 = mem.read_obj(at).map_err(|_| ())?;
            let count: u32 = mem.read_obj(at.checked_add(8).ok_or(())?).map_err(|_| ())?;
            if count > MAX_DISCARD_SECTORS {
                return Err(());
            }
            let len = u64::from(count) * SECTOR_SIZE;
            let offset = disk_range(disk, sector, len).ok_or(())?;
            segments.push((offset, len));
        }
    }
    for (offset, len) in segments {
        if len > 0 {
            fallocate(&disk.file, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, offset, len)
                .map_err(|_| ())?;
        }
    }
    Ok(())
}

/// The block device.
#[derive(Debug)]
pub struct Block {
    disk: Disk,
    active: Option<(GuestMemory, Queue, Interrupt)>,
}

impl Block {
    /// A device serving `disk`.
    pub fn new(disk: Disk) -> Self {
        Self { disk, active: None }
    }

    fn config(&self) -> [u8; 60] {
        let mut cfg = [0u8; 60];
        cfg[0..8].copy_from_slice(&self.disk.sectors.to_le_bytes());
        cfg[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        cfg[36..40].copy_from_slice(&MAX_DISCARD_SECTORS.to_le_bytes());
        cfg[40..44].copy_from_slice(&1u32.to_le_bytes());
        cfg[44..48].copy_from_slice(&1u32.to_le_bytes());
        cfg
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        device_type::BLOCK
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }
    fn features(&self) -> u64 {
        let base = features::FLUSH | features::SEG_MAX;
        if self.disk.read_only {
            base | features::RO
        } else {
            base | features::DISCARD
        }
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let cfg = self.config();
        data.fill(0);
        let Ok(start) = usize::try_from(offset) else { return };
        if let Some(src) = cfg.get(start..) {
            let n = src.len().min(data.len());
            data[..n].copy_from_slice(&src[..n]);
        }
    }
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), DeviceError> {
        let queue = ctx
            .queues
            .into_iter()
            .next()
            .ok_or_else(|| DeviceError::Activate("no request queue".into()))?;
        self.active = Some((ctx.mem, queue, ctx.interrupt));
        Ok(())
    }
    fn queue_notify(&mut self, _queue: usize) -> Result<(), DeviceError> {
        let Some((mem, queue, interrupt)) = &mut self.active else {
            return Ok(());
        };
        let mut used = false;
        while let Some(chain) = next_chain(queue, mem, 0)? {
            let head = chain.head_index();
            let len = handle_chain(mem, chain, &mut self.disk);
            complete(queue, mem, 0, head, len)?;
            used = true;
        }
        if used {
            notify_driver(queue, mem, interrupt);
        }
        Ok(())
    }
    fn reset(&mut self) {
        self.active = None;
    }
}
