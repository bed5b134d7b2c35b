//! virtio-fs: shares one host directory with the guest through the confined FUSE server of `sbx-virtiofs`.
//!
//! The device has two queues: the high-priority queue (0: FORGET, INTERRUPT) and one request queue (1). Each guest
//! notification hands the notified queue to [`VirtioFsQueueHandler::process_queue`], which validates every descriptor
//! chain before the file server sees it; malformed chains are completed with nothing written, so a hostile driver
//! cannot stop the device or reach outside the share. Only a broken used ring (an address the driver gave that no
//! longer lies in guest memory) is fatal, and then only until the driver resets the device.
//!
//! The config space is the mount tag (36 bytes, NUL-padded) and the number of request queues, so the guest mounts
//! the share with `mount -t virtiofs <tag> <dir>`.

use std::sync::Arc;

use sbx_virtiofs::FileServer;
use sbx_virtiofs::virtio::{
    DEVICE_FEATURES, TAG_LEN, TagError, VirtioFsQueueHandler, config_space,
};
use virtio_queue::{Queue, QueueT};

use super::{ActivateContext, DeviceError, Interrupt, VirtioDevice, device_type};
use crate::vstate::memory::GuestMemory;

/// Index of the high-priority queue.
pub const HIPRIO_QUEUE: usize = sbx_virtiofs::virtio::HIPRIO_QUEUE;
/// Index of the (single) request queue.
pub const REQUEST_QUEUE: usize = 1;
/// Number of request queues announced in the config space.
pub const NUM_REQUEST_QUEUES: u32 = 1;
/// Queue sizes: the high-priority queue carries only FORGETs, the request queue everything else.
const QUEUE_SIZES: [u16; 2] = [128, 1024];

/// The queues and memory the driver gave us at `DRIVER_OK`.
#[derive(Debug)]
struct Active {
    mem: GuestMemory,
    queues: Vec<Queue>,
    interrupt: Interrupt,
}

/// The virtio-fs device for one share.
#[derive(Debug)]
pub struct VirtioFs {
    handler: VirtioFsQueueHandler,
    config: [u8; TAG_LEN + 4],
    active: Option<Active>,
}

impl VirtioFs {
    /// A device serving `server` under the mount tag `tag` (1 to 36 bytes, no NUL).
    pub fn new(server: Arc<FileServer>, tag: &str) -> Result<Self, TagError> {
        Ok(Self {
            handler: VirtioFsQueueHandler::new(server),
            config: config_space(tag, NUM_REQUEST_QUEUES)?,
            active: None,
        })
    }

    /// The file server behind the device.
    pub fn server(&self) -> &Arc<FileServer> {
        self.handler.server()
    }
}

impl VirtioDevice for VirtioFs {
    fn device_type(&self) -> u32 {
        device_type::FS
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }
    fn features(&self) -> u64 {
        DEVICE_FEATURES
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Ok(start) = usize::try_from(offset) else {
            return;
        };
        if let Some(src) = self.config.get(start..) {
            let n = src.len().min(data.len());
            data[..n].copy_from_slice(&src[..n]);
        }
    }
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), DeviceError> {
        if ctx.queues.len() != QUEUE_SIZES.len() {
            return Err(DeviceError::Activate(format!(
                "virtio-fs needs {} queues (hiprio + request), got {}",
                QUEUE_SIZES.len(),
                ctx.queues.len()
            )));
        }
        self.active = Some(Active {
            mem: ctx.mem,
            queues: ctx.queues,
            interrupt: ctx.interrupt,
        });
        Ok(())
    }
    fn queue_notify(&mut self, queue: usize) -> Result<(), DeviceError> {
        let Some(active) = &mut self.active else {
            return Ok(());
        };
        let Some(q) = active.queues.get_mut(queue) else {
            // The transport only notifies queues the device declared; anything else is ignored.
            return Ok(());
        };
        let used_before = q.next_used();
        let notify =
            self.handler
                .process_queue(q, &active.mem)
                .map_err(|e| DeviceError::Queue {
                    queue,
                    reason: e.to_string(),
                })?;
        // The handler asks for an interrupt whenever the driver has not suppressed it; only send one if a buffer was used.
        if notify && q.next_used() != used_before {
            active.interrupt.signal_used_queue();
        }
        Ok(())
    }
    fn reset(&mut self) {
        self.active = None;
    }
}

#[cfg(test)]
mod tests;
