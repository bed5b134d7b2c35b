//! Running a VM: device assembly, the event loop (event-manager, ioeventfd/irqfd), one thread per vCPU, and clean
//! shutdown with an exit reason.

use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use event_manager::{EventManager, EventOps, Events, MutEventSubscriber, SubscriberOps};
use kvm_ioctls::{IoEventAddress, VmFd};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};
use vmm_sys_util::signal::Killable;

use crate::arch::layout;
use crate::arch::x86_64::boot::GuestImage;
use crate::builder::{SerialOutput, VmConfig};
use crate::control::{Control, process_cpu_time};
use crate::devices::boot_timer::BootTimer;
use crate::devices::i8042::I8042;
use crate::devices::serial::SerialConsole;
use crate::devices::virtio::blk::{Block, Disk};
use crate::devices::virtio::fs::VirtioFs;
use crate::devices::virtio::mmio::{MmioTransport, reg};
use crate::devices::virtio::rng::Rng;
use crate::devices::virtio::vsock::Vsock;
use crate::devices::virtio::{BackendFd, VirtioDevice};
use crate::devices::{Bus, BusDevice};
use crate::error::{RunError, StartError};
use crate::sys::signals;
use crate::vstate::memory::{self, GuestMemory};

/// How a VM ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExitReason {
    /// The guest reset the machine (i8042 reset, `reboot=k`, or a KVM reset event): the normal way a microVM guest
    /// ends, since it has no ACPI power-off.
    GuestReset,
    /// The guest powered off (KVM system event).
    GuestPowerOff,
    /// The guest triple-faulted or crashed (KVM shutdown or crash event).
    GuestCrash,
    /// SIGTERM or SIGINT reached the VMM.
    Signal(i32),
    /// The embedding program asked the VM to stop ([`VmHandle::stop`]).
    Requested,
    /// A vCPU could not continue (KVM error, emulation failure, unexpected exit).
    VcpuFailed {
        /// The vCPU index.
        vcpu: u8,
        /// What happened.
        reason: String,
    },
    /// The VMM's event loop failed.
    VmmFailed(String),
}

impl ExitReason {
    /// A process exit status: 0 for a guest reset, power-off or a requested stop; 128+N for signal N; 2 for a guest
    /// crash; 1 for VMM or vCPU failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::GuestReset | Self::GuestPowerOff | Self::Requested => 0,
            Self::Signal(n) => 128 + n,
            Self::GuestCrash => 2,
            Self::VcpuFailed { .. } | Self::VmmFailed(_) => 1,
        }
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::GuestReset => write!(f, "guest reset the machine (reboot)"),
            Self::GuestPowerOff => write!(f, "guest powered off"),
            Self::GuestCrash => write!(f, "guest crashed (triple fault or KVM shutdown)"),
            Self::Signal(n) => write!(f, "stopped by signal {n}"),
            Self::Requested => write!(f, "stopped on request"),
            Self::VcpuFailed { vcpu, reason } => write!(f, "vCPU {vcpu} failed: {reason}"),
            Self::VmmFailed(reason) => write!(f, "VMM failed: {reason}"),
        }
    }
}

/// Start-up timings of a VM.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartupReport {
    /// Wall time from [`Vm::start`] to the first `KVM_RUN`.
    pub to_first_kvm_run: Option<Duration>,
    /// Process CPU time spent from [`Vm::start`] to the first `KVM_RUN`.
    pub cpu_to_first_kvm_run: Option<Duration>,
    /// Process CPU time (since exec, all threads) when the first `KVM_RUN` was entered: the VMM start-up cost as
    /// Firecracker measures it.
    pub process_cpu_at_first_kvm_run: Option<Duration>,
    /// Wall time from [`Vm::start`] to the guest's boot-timer write.
    pub to_boot_ready: Option<Duration>,
}

/// A cloneable handle to stop a running VM from any thread.
#[derive(Debug, Clone)]
pub struct VmHandle {
    control: Arc<Control>,
}

impl VmHandle {
    /// Asks the VM to stop; [`Vm::wait`] then returns [`ExitReason::Requested`] (unless the guest ended first).
    pub fn stop(&self) {
        self.control.request_exit(ExitReason::Requested);
    }
    /// Whether the VM is still running.
    pub fn is_running(&self) -> bool {
        !self.control.stopping()
    }
    /// Start-up timings so far.
    pub fn startup_report(&self) -> StartupReport {
        report(&self.control)
    }
}

fn report(control: &Control) -> StartupReport {
    StartupReport {
        to_first_kvm_run: control.first_run.get().map(|t| t.0),
        cpu_to_first_kvm_run: control.first_run.get().map(|t| t.1),
        process_cpu_at_first_kvm_run: control.first_run.get().map(|t| t.2),
        to_boot_ready: control.boot_ready.get().copied(),
    }
}

/// A running microVM.
#[derive(Debug)]
pub struct Vm {
    control: Arc<Control>,
    vcpu_threads: Vec<JoinHandle<()>>,
    event_thread: Option<JoinHandle<()>>,
    // Fields drop in order: the VM fd (whose memory slots point into `mem`) goes before the memory it maps. vCPU
    // fds live in their threads, which have been joined by then.
    _vm_fd: VmFd,
    mem: GuestMemory,
}

impl Vm {
    /// Builds the machine described by `config` and starts its vCPUs.
    pub fn start(mut config: VmConfig) -> Result<Vm, StartError> {
        let started = Instant::now();
        let started_cpu = process_cpu_time();
        let os = |what| move |source| StartError::Os { what, source };
        let control =
            Arc::new(Control::new(started, started_cpu).map_err(os("creating the stop eventfd"))?);
        let mem = memory::create(config.memory_mib)?;
        let vm_fd = crate::vstate::vm::create(&config.kvm, &mem)?;

        let mut pio = Bus::new();
        let mut mmio = Bus::new();
        let serial_irq = EventFd::new(EFD_NONBLOCK).map_err(os("creating the serial irqfd"))?;
        register_irqfd(&vm_fd, &serial_irq, layout::COM1_IRQ)?;
        let serial = Arc::new(Mutex::new(SerialConsole::new(
            serial_irq,
            serial_writer(&config.serial)?,
        )));
        if let Some(input) = config.serial_input.take() {
            spawn_serial_input(input, Arc::downgrade(&serial), control.clone())
                .map_err(os("spawning the serial input thread"))?;
        }
        insert(&mut pio, serial, u64::from(layout::COM1_PORT), 8, "serial")?;
        insert(
            &mut pio,
            Arc::new(Mutex::new(I8042::new(control.clone()))),
            u64::from(layout::I8042_PORT),
            5,
            "i8042",
        )?;
        insert(
            &mut mmio,
            Arc::new(Mutex::new(BootTimer::new(control.clone()))),
            layout::BOOT_TIMER_START,
            0x1000,
            "boot timer",
        )?;

        let mut cmdline = config.cmdline.clone();
        let mut subscribers: Vec<Box<dyn MutEventSubscriber + Send>> = Vec::new();
        for (index, (name, device)) in virtio_devices(&mut config)?.into_iter().enumerate() {
            let (base, gsi) = layout::virtio_slot(index);
            let sub = attach_virtio(&vm_fd, &mut mmio, &mem, device, base, gsi, &name)?;
            subscribers.push(Box::new(sub));
            cmdline.push_str(&format!(" virtio_mmio.device=4K@{base:#x}:{gsi}"));
        }

        let boot = crate::arch::load_guest(
            &mem,
            GuestImage {
                kernel: (&config.kernel_path, &config.kernel),
                elf: config.kernel_elf.as_ref(),
                initrd: config.initrd.as_ref().map(|(p, f)| (p.as_path(), f)),
                cmdline: &cmdline,
                vcpus: config.vcpus,
                protocol: config.boot_protocol,
            },
        )?;
        let mut vcpus = Vec::with_capacity(usize::from(config.vcpus));
        for id in 0..config.vcpus {
            let vcpu = vm_fd
                .create_vcpu(u64::from(id))
                .map_err(|source| StartError::Kvm {
                    step: "KVM_CREATE_VCPU",
                    source,
                })?;
            crate::arch::configure_vcpu(&config.kvm, &vcpu, id, config.vcpus, &boot)?;
            vcpus.push(vcpu);
        }

        signals::install_kick_handler().map_err(os("installing the vCPU kick handler"))?;
        let shutdown_evt = if config.handle_signals {
            Some(
                signals::install_shutdown_handlers()
                    .map_err(os("installing SIGTERM/SIGINT handlers"))?,
            )
        } else {
            None
        };
        subscribers.push(Box::new(StopSubscriber {
            control: control.clone(),
            shutdown_evt,
        }));
        let event_thread = {
            let control = control.clone();
            std::thread::Builder::new()
                .name("sbx-vmm-events".into())
                .spawn(move || event_loop(control, subscribers))
                .map_err(os("spawning the event loop thread"))?
        };
        let pio = Arc::new(pio);
        let mmio = Arc::new(mmio);
        let mut vcpu_threads = Vec::new();
        for (id, vcpu) in vcpus.into_iter().enumerate() {
            let (vcpu_control, pio, mmio) = (control.clone(), pio.clone(), mmio.clone());
            let thread = std::thread::Builder::new()
                .name(format!("sbx-vcpu-{id}"))
                .spawn(move || crate::vstate::vcpu::run(vcpu, id as u8, &pio, &mmio, &vcpu_control))
                .map_err(os("spawning a vCPU thread"));
            match thread {
                Ok(t) => vcpu_threads.push(t),
                Err(e) => {
                    control.request_exit(ExitReason::VmmFailed(e.to_string()));
                    return Err(e);
                }
            }
        }
        Ok(Vm {
            control,
            vcpu_threads,
            event_thread: Some(event_thread),
            _vm_fd: vm_fd,
            mem,
        })
    }

    /// A handle to stop the VM from elsewhere.
    pub fn handle(&self) -> VmHandle {
        VmHandle {
            control: self.control.clone(),
        }
    }

    /// Start-up timings so far.
    pub fn startup_report(&self) -> StartupReport {
        report(&self.control)
    }

    /// The guest's memory (for embedders and tests that inspect it).
    pub fn guest_memory(&self) -> &GuestMemory {
        &self.mem
    }

    /// Waits until the VM stops and says why.
    pub fn wait(mut self) -> Result<ExitReason, RunError> {
        self.join()?;
        Ok(self
            .control
            .reason()
            .unwrap_or_else(|| ExitReason::VmmFailed("stopped without a reason".into())))
    }

    fn join(&mut self) -> Result<(), RunError> {
        let mut panicked = None;
        if let Some(t) = self.event_thread.take()
            && t.join().is_err()
        {
            panicked = Some("sbx-vmm-events".to_string());
            self.control
                .request_exit(ExitReason::VmmFailed("event loop panicked".into()));
        }
        // vCPUs halted in the guest stay in KVM_RUN until kicked; kick until every thread has seen the stop flag.
        while self.vcpu_threads.iter().any(|t| !t.is_finished()) {
            for t in self.vcpu_threads.iter().filter(|t| !t.is_finished()) {
                let _ = t.kill(signals::kick_signal());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        for (i, t) in self.vcpu_threads.drain(..).enumerate() {
            if t.join().is_err() {
                panicked = Some(format!("sbx-vcpu-{i}"));
            }
        }
        match panicked {
            Some(thread) => Err(RunError::ThreadPanicked { thread }),
            None => Ok(()),
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if self.event_thread.is_some() || !self.vcpu_threads.is_empty() {
            self.control.request_exit(ExitReason::Requested);
            let _ = self.join();
        }
    }
}

fn insert(
    bus: &mut Bus,
    dev: Arc<Mutex<dyn BusDevice>>,
    base: u64,
    len: u64,
    name: &str,
) -> Result<(), StartError> {
    bus.insert(dev, base, len).map_err(|e| StartError::Device {
        device: name.to_string(),
        reason: e.to_string(),
    })
}

fn register_irqfd(vm: &VmFd, evt: &EventFd, gsi: u32) -> Result<(), StartError> {
    vm.register_irqfd(evt, gsi)
        .map_err(|source| StartError::Kvm {
            step: "KVM_IRQFD",
            source,
        })
}

/// Copies console input into the UART until end of input or until the VM is gone. The thread is detached: a read
/// from a terminal cannot be interrupted, and it ends on its own once the VM's serial device is dropped.
fn spawn_serial_input(
    input: crate::builder::SerialInput,
    serial: std::sync::Weak<Mutex<SerialConsole<Box<dyn Write + Send>>>>,
    control: Arc<Control>,
) -> std::io::Result<()> {
    let mut reader = input.0;
    std::thread::Builder::new()
        .name("sbx-serial-in".into())
        .spawn(move || {
            let mut buf = [0u8; 64];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let mut pending = &buf[..n];
                while !pending.is_empty() {
                    let Some(serial) = serial.upgrade() else {
                        return;
                    };
                    let taken = serial.lock().map_or(0, |mut s| s.enqueue_input(pending));
                    drop(serial);
                    pending = &pending[taken..];
                    if control.stopping() {
                        return;
                    }
                    if taken == 0 {
                        // FIFO full: the guest is not reading yet.
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        })
        .map(|_| ())
}

/// Forwards to a writer shared with the embedder.
struct SharedStream(crate::builder::SharedWriter);

impl Write for SharedStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("console writer lock poisoned"))?
            .write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("console writer lock poisoned"))?
            .flush()
    }
}

/// A writer appending to a shared buffer.
struct BufferWriter(Arc<Mutex<Vec<u8>>>);

impl Write for BufferWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("console buffer lock poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn serial_writer(output: &SerialOutput) -> Result<Box<dyn Write + Send>, StartError> {
    Ok(match output {
        SerialOutput::Sink => Box::new(std::io::sink()),
        SerialOutput::Stdout => Box::new(std::io::stdout()),
        SerialOutput::Buffer(buf) => Box::new(BufferWriter(buf.clone())),
        SerialOutput::Writer(w) => Box::new(SharedStream(w.clone())),
        SerialOutput::File(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| StartError::Device {
                    device: format!("serial console file {}", path.display()),
                    reason: e.to_string(),
                })?,
        ),
    })
}

/// A virtio device with the name used in error messages.
type NamedVirtio = (String, Box<dyn VirtioDevice>);

fn virtio_devices(config: &mut VmConfig) -> Result<Vec<NamedVirtio>, StartError> {
    let mut devices: Vec<NamedVirtio> = Vec::new();
    for (i, (disk, file)) in config.disks.iter().enumerate() {
        let name = format!("virtio-blk {}", disk.path.display());
        let err = |e: std::io::Error| StartError::Device {
            device: name.clone(),
            reason: e.to_string(),
        };
        let file = file.try_clone().map_err(err)?;
        let disk = Disk::new(file, disk.read_only, &format!("sbx-disk{i}")).map_err(err)?;
        devices.push((name, Box::new(Block::new(disk))));
    }
    if let Some(vsock) = &config.vsock {
        let name = format!("virtio-vsock {}", vsock.uds_path.display());
        let dev = Vsock::new(vsock.guest_cid, &vsock.uds_path).map_err(|e| StartError::Device {
            device: name.clone(),
            reason: e.to_string(),
        })?;
        devices.push((name, Box::new(dev)));
    }
    for (share, server) in &config.shared_dirs {
        let name = format!(
            "virtio-fs {} (tag {})",
            share.share.root.display(),
            share.tag
        );
        let dev = VirtioFs::new(server.clone(), &share.tag).map_err(|e| StartError::Device {
            device: name.clone(),
            reason: e.to_string(),
        })?;
        devices.push((name, Box::new(dev)));
    }
    if config.rng {
        let dev = Rng::new().map_err(|e| StartError::Device {
            device: "virtio-rng".into(),
            reason: e.to_string(),
        })?;
        devices.push(("virtio-rng".into(), Box::new(dev)));
    }
    devices.extend(config.extra_devices.drain(..).map(|d| (d.name, d.device)));
    Ok(devices)
}

fn attach_virtio(
    vm: &VmFd,
    mmio: &mut Bus,
    mem: &GuestMemory,
    device: Box<dyn VirtioDevice>,
    base: u64,
    gsi: u32,
    name: &str,
) -> Result<VirtioSubscriber, StartError> {
    let dev_err = |reason: String| StartError::Device {
        device: name.to_string(),
        reason,
    };
    let irq = Arc::new(EventFd::new(EFD_NONBLOCK).map_err(|e| dev_err(e.to_string()))?);
    register_irqfd(vm, &irq, gsi)?;
    let transport =
        MmioTransport::new(device, mem.clone(), irq).map_err(|e| dev_err(e.to_string()))?;
    let queue_evts = transport.queue_evts().to_vec();
    for (index, evt) in queue_evts.iter().enumerate() {
        vm.register_ioevent(
            evt,
            &IoEventAddress::Mmio(base + reg::QUEUE_NOTIFY),
            index as u32,
        )
        .map_err(|source| StartError::Kvm {
            step: "KVM_IOEVENTFD",
            source,
        })?;
    }
    let transport = Arc::new(Mutex::new(transport));
    insert(
        mmio,
        transport.clone(),
        base,
        layout::VIRTIO_MMIO_SIZE,
        name,
    )?;
    Ok(VirtioSubscriber {
        transport,
        queue_evts,
        backend: Epoll::new().map_err(|e| dev_err(e.to_string()))?,
        registered: HashMap::new(),
    })
}

/// Event data marking the backend epoll (queue indices are small).
const BACKEND_EVENT: u32 = u32::MAX;

/// Connects one transport to the event loop: its queue eventfds, and its device's backend fds through a private
/// epoll (so fds the device closes and reuses never confuse the shared event manager).
struct VirtioSubscriber {
    transport: Arc<Mutex<MmioTransport>>,
    queue_evts: Vec<Arc<EventFd>>,
    backend: Epoll,
    registered: HashMap<RawFd, BackendFd>,
}

impl VirtioSubscriber {
    fn sync_backend(&mut self, wanted: Vec<BackendFd>) {
        let wanted: HashMap<RawFd, BackendFd> = wanted.into_iter().map(|b| (b.fd, b)).collect();
        let stale: Vec<RawFd> = self
            .registered
            .iter()
            .filter(|(fd, b)| wanted.get(fd) != Some(b))
            .map(|(fd, _)| *fd)
            .collect();
        for fd in stale {
            // Fails harmlessly when the fd was closed (epoll forgot it already).
            let _ = self
                .backend
                .ctl(ControlOperation::Delete, fd, EpollEvent::default());
            self.registered.remove(&fd);
        }
        for (fd, b) in wanted {
            if self.registered.contains_key(&fd) {
                continue;
            }
            let mut set = EventSet::empty();
            if b.readable {
                set |= EventSet::IN;
            }
            if b.writable {
                set |= EventSet::OUT;
            }
            if self
                .backend
                .ctl(
                    ControlOperation::Add,
                    fd,
                    EpollEvent::new(set, u64::from(b.token)),
                )
                .is_ok()
            {
                self.registered.insert(fd, b);
            }
        }
    }
}

impl MutEventSubscriber for VirtioSubscriber {
    fn init(&mut self, ops: &mut EventOps<'_>) {
        for (index, evt) in self.queue_evts.iter().enumerate() {
            let _ = ops.add(Events::with_data(
                evt.as_ref(),
                index as u32,
                event_manager::EventSet::IN,
            ));
        }
        let _ = ops.add(Events::with_data(
            &self.backend,
            BACKEND_EVENT,
            event_manager::EventSet::IN,
        ));
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps<'_>) {
        let Ok(mut transport) = self.transport.lock() else {
            return;
        };
        if events.data() == BACKEND_EVENT {
            let mut ready = [EpollEvent::default(); 32];
            let n = self.backend.wait(0, &mut ready).unwrap_or(0);
            for ev in &ready[..n] {
                let set = ev.event_set();
                // A hang-up or error is reported whatever was asked for: present it as both, so the device's
                // next read or write sees the failure and drops the fd instead of being woken forever.
                let broken = set.intersects(EventSet::HANG_UP | EventSet::ERROR);
                let readable = broken || set.contains(EventSet::IN);
                let writable = broken || set.contains(EventSet::OUT);
                transport.process_backend(ev.data() as u32, readable, writable);
            }
        } else if let Some(evt) = self.queue_evts.get(events.data() as usize) {
            let _ = evt.read();
            transport.process_queue(events.data() as usize);
        }
        let wanted = transport.backend_fds();
        drop(transport);
        self.sync_backend(wanted);
    }
}

/// Wakes the loop on stop requests and turns SIGTERM/SIGINT into an exit reason.
struct StopSubscriber {
    control: Arc<Control>,
    shutdown_evt: Option<Arc<EventFd>>,
}

impl MutEventSubscriber for StopSubscriber {
    fn init(&mut self, ops: &mut EventOps<'_>) {
        let _ = ops.add(Events::with_data(
            &self.control.stop_evt,
            0,
            event_manager::EventSet::IN,
        ));
        if let Some(evt) = &self.shutdown_evt {
            let _ = ops.add(Events::with_data(
                evt.as_ref(),
                1,
                event_manager::EventSet::IN,
            ));
        }
    }

    fn process(&mut self, events: Events, _ops: &mut EventOps<'_>) {
        if events.data() == 1 {
            if let Some(evt) = &self.shutdown_evt {
                let _ = evt.read();
            }
            self.control
                .request_exit(ExitReason::Signal(signals::last_shutdown_signal()));
        } else {
            let _ = self.control.stop_evt.read();
        }
    }
}

fn event_loop(control: Arc<Control>, subscribers: Vec<Box<dyn MutEventSubscriber + Send>>) {
    let mut manager = match EventManager::<Box<dyn MutEventSubscriber + Send>>::new() {
        Ok(m) => m,
        Err(e) => {
            control.request_exit(ExitReason::VmmFailed(format!(
                "creating the event manager: {e:?}"
            )));
            return;
        }
    };
    for sub in subscribers {
        manager.add_subscriber(sub);
    }
    while !control.stopping() {
        if let Err(e) = manager.run_with_timeout(500) {
            control.request_exit(ExitReason::VmmFailed(format!("event loop: {e:?}")));
        }
    }
}
