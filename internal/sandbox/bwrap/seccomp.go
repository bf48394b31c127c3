package bwrap

import (
	bin "encoding/binary"
	"runtime"

	"golang.org/x/sys/unix"
)

// The seccomp filter every sandbox runs under keeps setuid and setgid
// bits out of the files it makes: a sandbox's files are the host user's
// (root's, for root) outside, so a setuid file left on a volume would be
// a setuid program on the host. Mounts are nosuid inside (bubblewrap binds
// with MS_NOSUID, and no_new_privs is set), but that does not stop the
// file from existing. The filter refuses, with EPERM, every call that
// sets a mode with S_ISUID or S_ISGID: chmod, fchmod, fchmodat,
// fchmodat2, and the calls that create with a mode: open, openat, creat,
// mknod, mknodat, mkdir, mkdirat. Calls whose mode it cannot see (openat2
// takes it in a struct) or that bypass system calls (io_uring) fail with
// ENOSYS, so programs fall back to the plain calls. Both the native and
// the 32-bit compat ABI are covered (and x32 on x86-64).

// modeCall is a system call that takes a mode in argument Arg.
type modeCall struct {
	NR  uint32
	Arg int
}

// seccompABI is the system calls of one audit architecture.
type seccompABI struct {
	Arch   uint32
	Mode   []modeCall
	NoSys  []uint32 // refused outright with ENOSYS
	NRMask uint32   // ANDed with the call number first (x32's bit); 0 = none
}

// Shared across ABIs: openat2, io_uring_setup, io_uring_enter,
// io_uring_register and fchmodat2 have one number everywhere.
var noSys = []uint32{437, 425, 426, 427}

const nrFchmodat2 = 452

var (
	abiX86_64 = seccompABI{Arch: unix.AUDIT_ARCH_X86_64, NRMask: ^uint32(0x40000000), NoSys: noSys, Mode: []modeCall{
		{90, 1}, {91, 1}, {268, 2}, {nrFchmodat2, 2}, // chmod, fchmod, fchmodat, fchmodat2
		{2, 2}, {257, 3}, {85, 1}, // open, openat, creat
		{133, 1}, {259, 2}, {83, 1}, {258, 2}, // mknod, mknodat, mkdir, mkdirat
	}}
	abiI386 = seccompABI{Arch: unix.AUDIT_ARCH_I386, NoSys: noSys, Mode: []modeCall{
		{15, 1}, {94, 1}, {306, 2}, {nrFchmodat2, 2},
		{5, 2}, {295, 3}, {8, 1},
		{14, 1}, {297, 2}, {39, 1}, {296, 2},
	}}
	abiAarch64 = seccompABI{Arch: unix.AUDIT_ARCH_AARCH64, NoSys: noSys, Mode: []modeCall{
		{52, 1}, {53, 2}, {nrFchmodat2, 2}, // fchmod, fchmodat, fchmodat2
		{56, 3},          // openat
		{33, 2}, {34, 2}, // mknodat, mkdirat
	}}
	abiARM = seccompABI{Arch: unix.AUDIT_ARCH_ARM, NoSys: noSys, Mode: []modeCall{
		{15, 1}, {94, 1}, {333, 2}, {nrFchmodat2, 2},
		{5, 2}, {322, 3}, {8, 1},
		{14, 1}, {324, 2}, {39, 1}, {323, 2},
	}}
)

// hostABIs are the ABIs a process on this machine can call the kernel in.
func hostABIs() []seccompABI {
	switch runtime.GOARCH {
	case "amd64":
		return []seccompABI{abiX86_64, abiI386}
	case "arm64":
		return []seccompABI{abiAarch64, abiARM}
	}
	return nil
}

// setIDBits are S_ISUID and S_ISGID.
const setIDBits = unix.S_ISUID | unix.S_ISGID

// seccomp_data offsets.
const (
	offNR   = 0
	offArch = 4
	offArg0 = 16 // then 8 bytes an argument; the low half first (little endian)
)

// sockFilter is struct sock_filter.
type sockFilter struct {
	Code   uint16
	Jt, Jf uint8
	K      uint32
}

// seccompFilter compiles the filter for abis into classic BPF, as
// bubblewrap's --seccomp takes it: struct sock_filter, in host byte order
// (little endian on every architecture built for here). Nil when there is
// no ABI to cover.
func seccompFilter(abis []seccompABI) []byte {
	if len(abis) == 0 {
		return nil
	}
	var p prog
	p.ld(offArch)
	for i, a := range abis {
		p.jeqTo(a.Arch, "abi"+string(rune('0'+i)))
	}
	// An architecture that cannot occur here: refuse the call.
	p.ret(unix.SECCOMP_RET_KILL_PROCESS)
	args := map[int]bool{}
	for i, a := range abis {
		p.label("abi" + string(rune('0'+i)))
		p.ld(offNR)
		if a.NRMask != 0 {
			p.and(a.NRMask)
		}
		for _, nr := range a.NoSys {
			p.jeqTo(nr, "nosys")
		}
		for _, c := range a.Mode {
			p.jeqTo(c.NR, "arg"+string(rune('0'+c.Arg)))
			args[c.Arg] = true
		}
		p.ret(unix.SECCOMP_RET_ALLOW)
	}
	for arg := 0; arg < 6; arg++ {
		if !args[arg] {
			continue
		}
		p.label("arg" + string(rune('0'+arg)))
		p.ld(uint32(offArg0 + 8*arg))
		p.jsetTo(setIDBits, "eperm")
		p.ret(unix.SECCOMP_RET_ALLOW)
	}
	p.label("eperm")
	p.ret(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
	p.label("nosys")
	p.ret(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS))
	return p.bytes()
}

// prog assembles forward jumps to labels.
type prog struct {
	ins    []sockFilter
	jumps  map[int]string // instruction → label its true branch goes to
	labels map[string]int
}

func (p *prog) emit(f sockFilter) { p.ins = append(p.ins, f) }
func (p *prog) ld(off uint32) {
	p.emit(sockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off})
}
func (p *prog) and(k uint32) {
	p.emit(sockFilter{Code: unix.BPF_ALU | unix.BPF_AND | unix.BPF_K, K: k})
}
func (p *prog) ret(k uint32) { p.emit(sockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k}) }
func (p *prog) jeqTo(k uint32, label string) {
	p.jump(sockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: k}, label)
}
func (p *prog) jsetTo(k uint32, label string) {
	p.jump(sockFilter{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, K: k}, label)
}

func (p *prog) jump(f sockFilter, label string) {
	if p.jumps == nil {
		p.jumps = map[int]string{}
	}
	p.jumps[len(p.ins)] = label
	p.emit(f)
}

func (p *prog) label(name string) {
	if p.labels == nil {
		p.labels = map[string]int{}
	}
	p.labels[name] = len(p.ins)
}

// bytes resolves the jumps (true branch to the label, false to the next
// instruction) and encodes the program. Jumps are relative and at most
// 255 instructions: the program is far shorter.
func (p *prog) bytes() []byte {
	for at, label := range p.jumps {
		to, ok := p.labels[label]
		if !ok || to <= at || to-at-1 > 255 {
			panic("seccomp: bad jump to " + label)
		}
		p.ins[at].Jt = uint8(to - at - 1)
	}
	b := make([]byte, 0, 8*len(p.ins))
	for _, f := range p.ins {
		b = bin.LittleEndian.AppendUint16(b, f.Code)
		b = append(b, f.Jt, f.Jf)
		b = bin.LittleEndian.AppendUint32(b, f.K)
	}
	return b
}
