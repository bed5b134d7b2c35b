//! A tiny x86-64 assembler: exactly the instructions the test guests use, encoded by hand.

/// A position to jump to, bound later.
#[derive(Clone, Copy, Debug)]
pub struct Label(usize);

#[derive(Default)]
pub struct Asm {
    code: Vec<u8>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

pub const COM1: u16 = 0x3f8;

impl Asm {
    pub fn new() -> Self {
        Self::default()
    }
    fn emit(&mut self, bytes: &[u8]) -> &mut Self {
        self.code.extend_from_slice(bytes);
        self
    }
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    pub fn bind(&mut self, l: Label) -> &mut Self {
        self.labels[l.0] = Some(self.code.len());
        self
    }
    fn rel32(&mut self, l: Label) {
        self.fixups.push((self.code.len(), l));
        self.code.extend_from_slice(&[0; 4]);
    }
    /// Arbitrary bytes (for the few 32-bit instructions the PVH test needs).
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.emit(bytes)
    }
    /// `jmp label`
    pub fn jmp(&mut self, l: Label) -> &mut Self {
        self.emit(&[0xe9]);
        self.rel32(l);
        self
    }
    /// `jne label`
    pub fn jne(&mut self, l: Label) -> &mut Self {
        self.emit(&[0x0f, 0x85]);
        self.rel32(l);
        self
    }
    /// `mov rbx, imm64`
    pub fn mov_rbx(&mut self, v: u64) -> &mut Self {
        self.emit(&[0x48, 0xbb]).emit(&v.to_le_bytes())
    }
    /// `mov rdi, imm64`
    pub fn mov_rdi(&mut self, v: u64) -> &mut Self {
        self.emit(&[0x48, 0xbf]).emit(&v.to_le_bytes())
    }
    /// `mov rax, imm64`
    pub fn mov_rax(&mut self, v: u64) -> &mut Self {
        self.emit(&[0x48, 0xb8]).emit(&v.to_le_bytes())
    }
    /// `mov rsi, imm64`
    pub fn mov_rsi(&mut self, v: u64) -> &mut Self {
        self.emit(&[0x48, 0xbe]).emit(&v.to_le_bytes())
    }
    /// `mov rdx, imm64`
    pub fn mov_rdx(&mut self, v: u64) -> &mut Self {
        self.emit(&[0x48, 0xba]).emit(&v.to_le_bytes())
    }
    /// `mov rdi, rax`
    pub fn mov_rdi_rax(&mut self) -> &mut Self {
        self.emit(&[0x48, 0x89, 0xc7])
    }
    /// `syscall`
    pub fn syscall(&mut self) -> &mut Self {
        self.emit(&[0x0f, 0x05])
    }
    /// `mov eax, imm32`
    pub fn mov_eax(&mut self, v: u32) -> &mut Self {
        self.emit(&[0xb8]).emit(&v.to_le_bytes())
    }
    /// `mov ecx, imm32`
    pub fn mov_ecx(&mut self, v: u32) -> &mut Self {
        self.emit(&[0xb9]).emit(&v.to_le_bytes())
    }
    /// `mov dword [rbx], imm32`
    pub fn store32_rbx(&mut self, v: u32) -> &mut Self {
        self.emit(&[0xc7, 0x03]).emit(&v.to_le_bytes())
    }
    /// `mov dword [addr], imm32` through rbx.
    pub fn store32(&mut self, addr: u64, v: u32) -> &mut Self {
        self.mov_rbx(addr).store32_rbx(v)
    }
    /// Two dword stores for a u64.
    pub fn store64(&mut self, addr: u64, v: u64) -> &mut Self {
        self.store32(addr, v as u32)
            .store32(addr + 4, (v >> 32) as u32)
    }
    /// `mov dword [rbx], eax`
    pub fn store_eax_rbx(&mut self) -> &mut Self {
        self.emit(&[0x89, 0x03])
    }
    /// `mov eax, dword [rbx]`
    pub fn load32_rbx(&mut self) -> &mut Self {
        self.emit(&[0x8b, 0x03])
    }
    /// `mov eax, dword [addr]`
    pub fn load32(&mut self, addr: u64) -> &mut Self {
        self.mov_rbx(addr).load32_rbx()
    }
    /// `movzx eax, word [addr]`
    pub fn load16(&mut self, addr: u64) -> &mut Self {
        self.mov_rbx(addr).emit(&[0x0f, 0xb7, 0x03])
    }
    /// `movzx eax, byte [addr]`
    pub fn load8(&mut self, addr: u64) -> &mut Self {
        self.mov_rbx(addr).emit(&[0x0f, 0xb6, 0x03])
    }
    /// `cmp eax, imm32`
    pub fn cmp_eax(&mut self, v: u32) -> &mut Self {
        self.emit(&[0x3d]).emit(&v.to_le_bytes())
    }
    /// `and eax, imm32`
    pub fn and_eax(&mut self, v: u32) -> &mut Self {
        self.emit(&[0x25]).emit(&v.to_le_bytes())
    }
    /// `mov dx, imm16`
    pub fn mov_dx(&mut self, v: u16) -> &mut Self {
        self.emit(&[0x66, 0xba]).emit(&v.to_le_bytes())
    }
    /// `mov al, imm8`
    pub fn mov_al(&mut self, v: u8) -> &mut Self {
        self.emit(&[0xb0, v])
    }
    /// `out dx, al`
    pub fn out_dx_al(&mut self) -> &mut Self {
        self.emit(&[0xee])
    }
    /// `in al, dx`
    pub fn in_al_dx(&mut self) -> &mut Self {
        self.emit(&[0xec])
    }
    /// `rdmsr`
    pub fn rdmsr(&mut self) -> &mut Self {
        self.emit(&[0x0f, 0x32])
    }
    /// `rep stosd`
    pub fn rep_stosd(&mut self) -> &mut Self {
        self.emit(&[0xf3, 0xab])
    }
    /// `lidt [rbx]`
    pub fn lidt_rbx(&mut self) -> &mut Self {
        self.emit(&[0x0f, 0x01, 0x1b])
    }
    /// `sti`
    pub fn sti(&mut self) -> &mut Self {
        self.emit(&[0xfb])
    }
    /// `iretq`
    pub fn iretq(&mut self) -> &mut Self {
        self.emit(&[0x48, 0xcf])
    }
    /// `out imm8, al`
    pub fn out_imm_al(&mut self, port: u8) -> &mut Self {
        self.emit(&[0xe6, port])
    }
    /// Current offset in the code.
    pub fn pos(&self) -> usize {
        self.code.len()
    }
    /// `cli`
    pub fn cli(&mut self) -> &mut Self {
        self.emit(&[0xfa])
    }
    /// `hlt`
    pub fn hlt(&mut self) -> &mut Self {
        self.emit(&[0xf4])
    }
    /// Prints `text` on COM1.
    pub fn print(&mut self, text: &str) -> &mut Self {
        self.mov_dx(COM1);
        for b in text.bytes() {
            self.mov_al(b).out_dx_al();
        }
        self
    }
    /// Prints the low byte of eax on COM1 (clobbers dx).
    pub fn print_al(&mut self) -> &mut Self {
        self.mov_dx(COM1).out_dx_al()
    }
    /// Prints `len` bytes of guest memory at `addr` on COM1.
    pub fn print_mem(&mut self, addr: u64, len: u64) -> &mut Self {
        for i in 0..len {
            self.load8(addr + i).print_al();
        }
        self
    }
    /// Spins until the u16 at `addr` equals `value`.
    pub fn wait_u16(&mut self, addr: u64, value: u16) -> &mut Self {
        let top = self.label();
        self.bind(top)
            .load16(addr)
            .cmp_eax(u32::from(value))
            .jne(top)
    }
    /// Checks the dword at `addr` (after `and mask`) equals `value`; prints `ok` or `fail` and resets on failure.
    pub fn check32(&mut self, addr: u64, mask: u32, value: u32, ok: &str, fail: &str) -> &mut Self {
        let bad = self.label();
        let next = self.label();
        self.load32(addr).and_eax(mask).cmp_eax(value).jne(bad);
        self.print(ok).jmp(next);
        self.bind(bad).print(fail).reset();
        self.bind(next)
    }
    /// CPU reset through the i8042 (`out 0x64, 0xfe`).
    pub fn reset(&mut self) -> &mut Self {
        self.mov_dx(0x64).mov_al(0xfe).out_dx_al();
        // Should the reset not end the VM, stop here.
        let stop = self.label();
        self.bind(stop).cli().hlt().jmp(stop)
    }
    /// The machine code, with jumps resolved.
    pub fn finish(&mut self) -> Vec<u8> {
        for (at, l) in &self.fixups {
            let target = self.labels[l.0].expect("unbound label");
            let rel = target as i64 - (*at as i64 + 4);
            self.code[*at..*at + 4].copy_from_slice(&(rel as i32).to_le_bytes());
        }
        self.code.clone()
    }
}
