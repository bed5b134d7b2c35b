//! virtio-blk over a raw image file: read, write, flush, discard, get-id; read-only images refuse writes.
//!
//! Every request is validated before any I/O: the header must be readable and 16 bytes, the status byte the last,
//! writable descriptor; data descriptors must have the direction the request type needs, lie inside guest memory,
//! sum to whole sectors and stay inside the image. Violations answer `VIRTIO_BLK_S_IOERR` (or `UNSUPP`); a chain with
//! no place for a status byte is returned with length 0.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use virtio_queue::desc::split::Descriptor;
use virtio_queue::{DescriptorChain, Queue};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory as _, Permissions};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use super::{
    ActivateContext, BackendFd, DeviceError, Interrupt, VirtioDevice, complete, device_type,
    next_chain, notify_driver,
};
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
pub fn handle_chain(mem: &GuestMemory, chain: DescriptorChain<&GuestMemory>, disk: &Disk) -> u32 {
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
    // A chain cut short (a loop, a next index past the table, more than 4 GiB) is returned unused.
    if last.has_next() {
        return Err(Reject::NoStatus);
    }
    if !last.is_write_only()
        || last.len() < 1
        || !mem.check_range(last.addr(), 1, Permissions::Write)
    {
        return Err(Reject::NoStatus);
    }
    let status_addr = last.addr();
    let err = |st| Reject::Status(st, status_addr);
    let (header, data) = rest.split_first().ok_or(err(status::IOERR))?;
    if header.is_write_only() || header.len() < 16 {
        return Err(err(status::IOERR));
    }
    let kind: u32 = mem
        .read_obj(header.addr())
        .map_err(|_| err(status::IOERR))?;
    let sector_addr = header.addr().checked_add(8).ok_or(err(status::IOERR))?;
    let sector: u64 = mem.read_obj(sector_addr).map_err(|_| err(status::IOERR))?;
    if data.len() > SEG_MAX as usize {
        return Err(err(status::IOERR));
    }
    for d in data {
        let access = if d.is_write_only() {
            Permissions::Write
        } else {
            Permissions::Read
        };
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
    (len.is_multiple_of(SECTOR_SIZE) && end <= disk.sectors * SECTOR_SIZE).then_some(offset)
}

fn execute(mem: &GuestMemory, req: &Request, disk: &Disk) -> (u8, u32) {
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
                Some(offset) if write_from_guest(mem, &req.data, disk, offset).is_ok() => {
                    (status::OK, 0)
                }
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

fn read_into_guest(
    mem: &GuestMemory,
    data: &[Descriptor],
    disk: &Disk,
    mut offset: u64,
) -> Result<(), ()> {
    let mut buf = vec![0u8; BOUNCE];
    for d in data {
        let mut done = 0u64;
        while done < u64::from(d.len()) {
            let n = (u64::from(d.len()) - done).min(BOUNCE as u64) as usize;
            disk.file
                .read_exact_at(&mut buf[..n], offset)
                .map_err(|_| ())?;
            let addr = d.addr().checked_add(done).ok_or(())?;
            mem.write_slice(&buf[..n], addr).map_err(|_| ())?;
            done += n as u64;
            offset += n as u64;
        }
    }
    Ok(())
}

fn write_from_guest(
    mem: &GuestMemory,
    data: &[Descriptor],
    disk: &Disk,
    mut offset: u64,
) -> Result<(), ()> {
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
            fallocate(
                &disk.file,
                FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
                offset,
                len,
            )
            .map_err(|_| ())?;
        }
    }
    Ok(())
}

/// Serves every available request of `queue` and raises the interrupt if it used any: what the device's worker
/// thread runs on each notification (public so that fuzz targets drive the same code without a thread).
pub fn serve_queue(
    mem: &GuestMemory,
    queue: &mut Queue,
    disk: &Disk,
    interrupt: &Interrupt,
) -> Result<(), DeviceError> {
    let mut used = false;
    while let Some(chain) = next_chain(queue, mem, 0)? {
        let head = chain.head_index();
        let len = handle_chain(mem, chain, disk);
        complete(queue, mem, 0, head, len)?;
        used = true;
    }
    if used {
        notify_driver(queue, mem, interrupt);
    }
    Ok(())
}

/// The block device. Disk I/O (including `fdatasync` for flush and hole punching for discard) runs on a worker
/// thread per device, so a slow disk never stalls the event loop that also serves the console, vsock and other
/// devices: the event loop only kicks the worker, which completes requests straight into the used ring and raises
/// the interrupt through the irqfd. A malformed queue stops the worker; it reports the fault through an eventfd the
/// event loop watches, and the transport marks the device `DEVICE_NEEDS_RESET`.
#[derive(Debug)]
pub struct Block {
    disk: Arc<Disk>,
    worker: Option<Worker>,
}

/// Token of the worker's failure eventfd in [`VirtioDevice::backend_fds`].
const FAILURE_TOKEN: u32 = 0;

#[derive(Debug)]
struct Worker {
    /// Event loop → worker: the queue was notified (or `stop` was set).
    kick: Arc<EventFd>,
    /// Worker → event loop: the queue broke; the error is in `error`.
    failed: Arc<EventFd>,
    error: Arc<Mutex<Option<DeviceError>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    fn spawn(
        disk: Arc<Disk>,
        mem: GuestMemory,
        mut queue: Queue,
        interrupt: Interrupt,
    ) -> std::io::Result<Self> {
        let kick = Arc::new(EventFd::new(0)?);
        let failed = Arc::new(EventFd::new(EFD_NONBLOCK)?);
        let error = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (k, f, e, st) = (kick.clone(), failed.clone(), error.clone(), stop.clone());
        let name: String = format!("sbx-blk-{}", String::from_utf8_lossy(&disk.id))
            .chars()
            .filter(|c| *c != '\0')
            .take(15)
            .collect();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            // A failed read means the eventfd is gone: nothing can kick us any more.
            while k.read().is_ok() && !st.load(Ordering::Acquire) {
                if let Err(err) = serve_queue(&mem, &mut queue, &disk, &interrupt) {
                    if let Ok(mut slot) = e.lock() {
                        *slot = Some(err);
                    }
                    let _ = f.write(1);
                    return;
                }
            }
        })?;
        Ok(Self {
            kick,
            failed,
            error,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the thread after the request in progress and waits for it.
    fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.kick.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Block {
    /// A device serving `disk`.
    pub fn new(disk: Disk) -> Self {
        Self {
            disk: Arc::new(disk),
            worker: None,
        }
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
        let Ok(start) = usize::try_from(offset) else {
            return;
        };
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
        self.worker = None;
        let worker = Worker::spawn(self.disk.clone(), ctx.mem, queue, ctx.interrupt)
            .map_err(|e| DeviceError::Activate(format!("starting the I/O thread: {e}")))?;
        self.worker = Some(worker);
        Ok(())
    }
    fn queue_notify(&mut self, _queue: usize) -> Result<(), DeviceError> {
        let Some(worker) = &self.worker else {
            return Ok(());
        };
        worker
            .kick
            .write(1)
            .map_err(|e| DeviceError::Backend(format!("kicking the I/O thread: {e}")))
    }
    fn backend_fds(&self) -> Vec<BackendFd> {
        self.worker
            .iter()
            .map(|w| BackendFd {
                fd: w.failed.as_raw_fd(),
                token: FAILURE_TOKEN,
                readable: true,
                writable: false,
            })
            .collect()
    }
    fn backend_event(
        &mut self,
        _token: u32,
        _readable: bool,
        _writable: bool,
    ) -> Result<(), DeviceError> {
        let Some(worker) = &self.worker else {
            return Ok(());
        };
        if worker.failed.read().is_err() {
            return Ok(()); // Spurious wake-up: nothing was reported.
        }
        let error = worker.error.lock().ok().and_then(|mut e| e.take());
        Err(error.unwrap_or_else(|| DeviceError::Backend("the I/O thread stopped".into())))
    }
    fn reset(&mut self) {
        self.worker = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::test_utils::*;
    use virtio_queue::desc::RawDescriptor;

    const HDR: u64 = 0x10000;
    const DATA: u64 = 0x11000;
    const STATUS: u64 = 0x12000;

    struct Harness {
        dir: tempfile::TempDir,
        mem: GuestMemory,
    }

    impl Harness {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
                mem: memory(),
            }
        }
        fn image(&self, sectors: u64) -> std::path::PathBuf {
            let path = self.dir.path().join("disk.img");
            let f = File::create(&path).unwrap();
            f.set_len(sectors * SECTOR_SIZE).unwrap();
            path
        }
        fn header(&self, kind: u32, sector: u64) {
            self.mem.write_obj(kind, GuestAddress(HDR)).unwrap();
            self.mem.write_obj(0u32, GuestAddress(HDR + 4)).unwrap();
            self.mem.write_obj(sector, GuestAddress(HDR + 8)).unwrap();
            self.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        }
        /// Serves `descs` (one or more chains) with the worker's queue routine; returns its result, the used
        /// elements and the used index.
        fn run(
            &self,
            path: &std::path::Path,
            ro: bool,
            descs: &[RawDescriptor],
        ) -> (Result<(), DeviceError>, Vec<(u32, u32)>, u16) {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(!ro)
                .open(path)
                .unwrap();
            let disk = Disk::new(file, ro, "test").unwrap();
            let (mocks, ctx) = activate_ctx(&self.mem, 1);
            mocks[0].add_desc_chains(descs, 0).unwrap();
            let mut queue = ctx.queues.into_iter().next().unwrap();
            let result = serve_queue(&self.mem, &mut queue, &disk, &ctx.interrupt);
            let n = used_idx(&mocks[0]);
            let elems = (0..usize::from(n)).map(|i| used(&mocks[0], i)).collect();
            (result, elems, n)
        }
    }

    fn request(data_flags: u16, data_len: u32) -> Vec<RawDescriptor> {
        vec![
            raw(HDR, 16, NEXT, 1),
            raw(DATA, data_len, NEXT | data_flags, 2),
            raw(STATUS, 1, WRITE, 0),
        ]
    }

    #[test]
    fn write_then_read_round_trip() {
        let h = Harness::new();
        let img = h.image(8);
        h.header(request::OUT, 3);
        h.mem
            .write_slice(&[0xab; 1024], GuestAddress(DATA))
            .unwrap();
        let (res, used, _) = h.run(&img, false, &request(0, 1024));
        res.unwrap();
        assert_eq!(used, vec![(0, 1)]);
        assert_eq!(byte_at(&h.mem, STATUS), status::OK);
        let disk = std::fs::read(&img).unwrap();
        assert_eq!(&disk[3 * 512..5 * 512], &[0xab; 1024][..]);

        h.header(request::IN, 3);
        h.mem.write_slice(&[0; 1024], GuestAddress(DATA)).unwrap();
        let (res, used, _) = h.run(&img, true, &request(WRITE, 1024));
        res.unwrap();
        assert_eq!(used, vec![(0, 1025)]);
        assert_eq!(byte_at(&h.mem, STATUS), status::OK);
        assert_eq!(byte_at(&h.mem, DATA + 1023), 0xab);
    }

    #[test]
    fn flush_get_id_and_unsupported() {
        let h = Harness::new();
        let img = h.image(8);
        h.header(request::FLUSH, 0);
        let (res, _, _) = h.run(
            &img,
            false,
            &[raw(HDR, 16, NEXT, 1), raw(STATUS, 1, WRITE, 0)],
        );
        res.unwrap();
        assert_eq!(byte_at(&h.mem, STATUS), status::OK);
        h.header(request::GET_ID, 0);
        let (_, used, _) = h.run(&img, false, &request(WRITE, 20));
        assert_eq!(used[0].1, 21, "20 id bytes and the status byte");
        assert_eq!(
            h.mem.read_obj::<[u8; 4]>(GuestAddress(DATA)).unwrap(),
            *b"test"
        );
        h.header(0x1234, 0);
        let _ = h.run(&img, false, &request(0, 512));
        assert_eq!(byte_at(&h.mem, STATUS), status::UNSUPP);
    }

    #[test]
    fn hostile_requests_get_ioerr() {
        let h = Harness::new();
        let img = h.image(8);
        let cases: Vec<(&str, u32, u64, Vec<RawDescriptor>)> = vec![
            (
                "data outside guest memory",
                request::IN,
                0,
                vec![
                    raw(HDR, 16, NEXT, 1),
                    raw(0xffff_ffff_0000, 512, NEXT | WRITE, 2),
                    raw(STATUS, 1, WRITE, 0),
                ],
            ),
            (
                "huge data length",
                request::IN,
                0,
                vec![
                    raw(HDR, 16, NEXT, 1),
                    raw(DATA, 0x10_0000, NEXT | WRITE, 2),
                    raw(STATUS, 1, WRITE, 0),
                ],
            ),
            (
                "write-only header",
                request::IN,
                0,
                vec![
                    raw(HDR, 16, NEXT | WRITE, 1),
                    raw(DATA, 512, NEXT | WRITE, 2),
                    raw(STATUS, 1, WRITE, 0),
                ],
            ),
            (
                "short header",
                request::IN,
                0,
                vec![
                    raw(HDR, 8, NEXT, 1),
                    raw(DATA, 512, NEXT | WRITE, 2),
                    raw(STATUS, 1, WRITE, 0),
                ],
            ),
            (
                "zero-length header",
                request::IN,
                0,
                vec![
                    raw(HDR, 0, NEXT, 1),
                    raw(DATA, 512, NEXT | WRITE, 2),
                    raw(STATUS, 1, WRITE, 0),
                ],
            ),
            (
                "readable buffer for a read",
                request::IN,
                0,
                request(0, 512),
            ),
            (
                "writable buffer for a write",
                request::OUT,
                0,
                request(WRITE, 512),
            ),
            ("partial sector", request::IN, 0, request(WRITE, 100)),
            ("past the end", request::IN, 8, request(WRITE, 512)),
            (
                "sector overflow",
                request::IN,
                u64::MAX,
                request(WRITE, 512),
            ),
            (
                "no header at all",
                request::IN,
                0,
                vec![raw(STATUS, 1, WRITE, 0)],
            ),
        ];
        for (name, kind, sector, descs) in cases {
            h.header(kind, sector);
            let (res, used, _) = h.run(&img, false, &descs);
            res.unwrap();
            assert_eq!(used.len(), 1, "{name}");
            assert_eq!(byte_at(&h.mem, STATUS), status::IOERR, "{name}");
        }
        assert!(
            std::fs::read(&img).unwrap().iter().all(|b| *b == 0),
            "nothing was written"
        );
    }

    #[test]
    fn chain_longer_than_4_gib_is_cut_short_safely() {
        let h = Harness::new();
        let img = h.image(8);
        h.header(request::IN, 0);
        // virtio-queue stops a chain whose lengths overflow u32; what remains has no valid layout or only the
        // device's own writable buffer as status. Either way: one used entry, nothing written to disk, no panic.
        let descs = vec![
            raw(HDR, 16, NEXT, 1),
            raw(DATA, u32::MAX, NEXT | WRITE, 2),
            raw(STATUS, 1, WRITE, 0),
        ];
        let (res, used, _) = h.run(&img, false, &descs);
        res.unwrap();
        assert_eq!(used.len(), 1);
        assert!(used[0].1 <= 1);
        assert!(std::fs::read(&img).unwrap().iter().all(|b| *b == 0));
    }

    #[test]
    fn read_only_disk_refuses_writes_and_discards() {
        let h = Harness::new();
        let img = h.image(8);
        h.header(request::OUT, 0);
        h.mem.write_slice(&[0xcd; 512], GuestAddress(DATA)).unwrap();
        let _ = h.run(&img, true, &request(0, 512));
        assert_eq!(byte_at(&h.mem, STATUS), status::IOERR);
        h.header(request::DISCARD, 0);
        let _ = h.run(&img, true, &request(0, 16));
        assert_eq!(byte_at(&h.mem, STATUS), status::UNSUPP);
        assert!(std::fs::read(&img).unwrap().iter().all(|b| *b == 0));
    }

    #[test]
    fn discard_punches_holes_within_the_disk_only() {
        let h = Harness::new();
        let img = h.image(16);
        std::fs::write(&img, vec![0x11u8; 16 * 512]).unwrap();
        h.header(request::DISCARD, 0);
        h.mem.write_obj(2u64, GuestAddress(DATA)).unwrap();
        h.mem.write_obj(4u32, GuestAddress(DATA + 8)).unwrap();
        h.mem.write_obj(0u32, GuestAddress(DATA + 12)).unwrap();
        h.run(&img, false, &request(0, 16)).0.unwrap();
        assert_eq!(byte_at(&h.mem, STATUS), status::OK);
        let disk = std::fs::read(&img).unwrap();
        assert!(disk[2 * 512..6 * 512].iter().all(|b| *b == 0));
        assert_eq!(disk[6 * 512], 0x11);
        // A segment beyond the end fails the whole request and punches nothing.
        h.header(request::DISCARD, 0);
        h.mem.write_obj(15u64, GuestAddress(DATA)).unwrap();
        h.mem.write_obj(4u32, GuestAddress(DATA + 8)).unwrap();
        h.run(&img, false, &request(0, 16)).0.unwrap();
        assert_eq!(byte_at(&h.mem, STATUS), status::IOERR);
        assert_eq!(std::fs::read(&img).unwrap()[15 * 512], 0x11);
    }

    #[test]
    fn discard_frees_the_blocks() {
        use std::os::unix::fs::MetadataExt;
        let h = Harness::new();
        let img = h.image(128);
        std::fs::write(&img, vec![0x22u8; 128 * 512]).unwrap();
        File::open(&img).unwrap().sync_all().unwrap();
        let before = std::fs::metadata(&img).unwrap().blocks();
        h.header(request::DISCARD, 0);
        h.mem.write_obj(16u64, GuestAddress(DATA)).unwrap();
        h.mem.write_obj(96u32, GuestAddress(DATA + 8)).unwrap();
        h.mem.write_obj(0u32, GuestAddress(DATA + 12)).unwrap();
        h.run(&img, false, &request(0, 16)).0.unwrap();
        assert_eq!(byte_at(&h.mem, STATUS), status::OK);
        let after = std::fs::metadata(&img).unwrap();
        assert_eq!(after.len(), 128 * 512, "the size is kept");
        assert!(
            after.blocks() < before,
            "a hole was punched: {before} -> {} blocks",
            after.blocks()
        );
    }

    #[test]
    fn chains_without_a_status_byte_are_returned_empty() {
        let h = Harness::new();
        let img = h.image(8);
        h.header(request::IN, 0);
        for descs in [
            // Last descriptor readable.
            vec![raw(HDR, 16, NEXT, 1), raw(DATA, 512, 0, 0)],
            // Status outside guest memory.
            vec![
                raw(HDR, 16, NEXT, 1),
                raw(0xffff_ffff_ffff_fff0, 1, WRITE, 0),
            ],
            // Zero-length status.
            vec![raw(HDR, 16, NEXT, 1), raw(STATUS, 0, WRITE, 0)],
        ] {
            let (res, used, _) = h.run(&img, false, &descs);
            res.unwrap();
            assert_eq!(used, vec![(0, 0)]);
            assert_eq!(byte_at(&h.mem, STATUS), 0xff, "status untouched");
        }
    }

    #[test]
    fn descriptor_loops_terminate() {
        let h = Harness::new();
        let img = h.image(8);
        h.header(request::IN, 0);
        // 0 -> 1 -> 0 -> ...: the chain iterator stops after the queue size.
        let (res, used, _) = h.run(
            &img,
            false,
            &[raw(HDR, 16, NEXT, 1), raw(STATUS, 1, WRITE | NEXT, 0)],
        );
        res.unwrap();
        assert_eq!(used, vec![(0, 0)], "returned unused");
        assert_eq!(byte_at(&h.mem, STATUS), 0xff, "status untouched");
        // A self-loop on the head, and a next index beyond the table.
        let (res, _, _) = h.run(&img, false, &[raw(HDR, 16, NEXT, 0)]);
        res.unwrap();
        let (res, _, _) = h.run(&img, false, &[raw(HDR, 16, NEXT, 500)]);
        res.unwrap();
    }

    #[test]
    fn indirect_tables_outside_memory_are_harmless() {
        let h = Harness::new();
        let img = h.image(8);
        h.header(request::IN, 0);
        let (res, used, _) = h.run(&img, false, &[raw(0xffff_ffff_0000, 16 * 4, INDIRECT, 0)]);
        res.unwrap();
        assert_eq!(used.len(), 1);
        // An indirect table of absurd length.
        let (res, _, _) = h.run(&img, false, &[raw(DATA, 0xffff_fff0, INDIRECT, 0)]);
        res.unwrap();
    }

    /// Waits (bounded) until `fd` is readable.
    fn wait_readable(fd: std::os::fd::RawFd) -> bool {
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: `pfd` is a valid pollfd for the duration of the call; `fd` is an open eventfd.
        #[allow(unsafe_code)]
        let n = unsafe { libc::poll(&mut pfd, 1, 10_000) };
        n == 1
    }

    fn worker_device(img: &std::path::Path) -> Block {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(img)
            .unwrap();
        Block::new(Disk::new(file, false, "t").unwrap())
    }

    #[test]
    fn worker_thread_serves_requests_and_interrupts() {
        let h = Harness::new();
        let img = h.image(8);
        let mut dev = worker_device(&img);
        let (mocks, mut ctx) = activate_ctx(&h.mem, 1);
        let irq = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
        ctx.interrupt = Interrupt::new(Arc::new(std::sync::atomic::AtomicU32::new(0)), irq.clone());
        dev.activate(ctx).unwrap();
        assert_eq!(dev.backend_fds().len(), 1, "the failure eventfd is watched");
        h.header(request::OUT, 1);
        h.mem.write_slice(&[0x5a; 512], GuestAddress(DATA)).unwrap();
        mocks[0].add_desc_chains(&request(0, 512), 0).unwrap();
        dev.queue_notify(0).unwrap();
        assert!(
            wait_readable(irq.as_raw_fd()),
            "the worker raised the interrupt"
        );
        assert_eq!(used_idx(&mocks[0]), 1);
        assert_eq!(byte_at(&h.mem, STATUS), status::OK);
        assert_eq!(std::fs::read(&img).unwrap()[512..1024], [0x5a; 512]);
        // Reset joins the worker; later notifications are ignored.
        dev.reset();
        assert!(dev.backend_fds().is_empty());
        dev.queue_notify(0).unwrap();
    }

    #[test]
    fn corrupt_available_index_fails_the_device() {
        let h = Harness::new();
        let img = h.image(8);
        let mut dev = worker_device(&img);
        let (mocks, ctx) = activate_ctx(&h.mem, 1);
        dev.activate(ctx).unwrap();
        // The driver claims 1000 new entries in a 16-entry queue.
        mocks[0].avail().idx().store(1000);
        dev.queue_notify(0).unwrap();
        let failed = dev.backend_fds()[0];
        assert!(wait_readable(failed.fd), "the worker reported the fault");
        assert!(matches!(
            dev.backend_event(failed.token, true, false),
            Err(DeviceError::Queue { .. })
        ));
    }

    #[test]
    fn flush_reaches_the_kernel_and_reports_its_failure() {
        // fdatasync on a character device fails with EINVAL: a flush that really syncs reports that as IOERR.
        let h = Harness::new();
        h.header(request::FLUSH, 0);
        let disk = Disk::new(File::open("/dev/null").unwrap(), true, "null").unwrap();
        let (mocks, ctx) = activate_ctx(&h.mem, 1);
        mocks[0]
            .add_desc_chains(&[raw(HDR, 16, NEXT, 1), raw(STATUS, 1, WRITE, 0)], 0)
            .unwrap();
        let mut queue = ctx.queues.into_iter().next().unwrap();
        serve_queue(&h.mem, &mut queue, &disk, &ctx.interrupt).unwrap();
        assert_eq!(byte_at(&h.mem, STATUS), status::IOERR);
    }

    #[test]
    fn config_space_reports_capacity() {
        let h = Harness::new();
        let img = h.image(32);
        let dev = Block::new(Disk::new(File::open(&img).unwrap(), true, "x").unwrap());
        let mut b = [0u8; 8];
        dev.read_config(0, &mut b);
        assert_eq!(u64::from_le_bytes(b), 32);
        assert_ne!(dev.features() & features::RO, 0);
        let mut far = [0xffu8; 4];
        dev.read_config(u64::MAX, &mut far);
        assert_eq!(far, [0; 4]);
    }
}
