package bwrap

import (
	bin "encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

// runFilter runs a compiled filter on one system call, as the kernel
// would: a classic BPF interpreter for the instructions seccompFilter
// emits (anything else fails the test).
func runFilter(t *testing.T, prog []byte, arch, nr uint32, args [6]uint64) uint32 {
	t.Helper()
	data := make([]byte, 64)
	bin.LittleEndian.PutUint32(data[0:], nr)
	bin.LittleEndian.PutUint32(data[4:], arch)
	for i, a := range args {
		bin.LittleEndian.PutUint64(data[16+8*i:], a)
	}
	var acc uint32
	for pc := 0; pc < len(prog)/8; pc++ {
		ins := prog[8*pc:]
		code, jt, jf, k := bin.LittleEndian.Uint16(ins), ins[2], ins[3], bin.LittleEndian.Uint32(ins[4:])
		switch code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			acc = bin.LittleEndian.Uint32(data[k:])
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			acc &= k
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K:
			if acc == k {
				pc += int(jt)
			} else {
				pc += int(jf)
			}
		case unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			if acc&k != 0 {
				pc += int(jt)
			} else {
				pc += int(jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return k
		default:
			t.Fatalf("instruction %d: unexpected code %#x", pc, code)
		}
	}
	t.Fatal("the program ran off its end")
	return 0
}

func TestSeccompFilter(t *testing.T) {
	prog := seccompFilter([]seccompABI{abiX86_64, abiI386, abiAarch64, abiARM})
	allow := uint32(unix.SECCOMP_RET_ALLOW)
	eperm := uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
	enosys := uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS))
	x64, i386, a64, arm := uint32(unix.AUDIT_ARCH_X86_64), uint32(unix.AUDIT_ARCH_I386), uint32(unix.AUDIT_ARCH_AARCH64), uint32(unix.AUDIT_ARCH_ARM)
	const suid, sgid = 0o4755, 0o2755
	fdcwd := uint64(0xffffff9c) // AT_FDCWD, as the low half of the register
	for _, c := range []struct {
		name     string
		arch, nr uint32
		args     [6]uint64
		want     uint32
	}{
		{"x86_64 chmod 4755", x64, 90, [6]uint64{0, suid}, eperm},
		{"x86_64 chmod 2755", x64, 90, [6]uint64{0, sgid}, eperm},
		{"x86_64 chmod 0755", x64, 90, [6]uint64{0, 0o755}, allow},
		{"x86_64 chmod 1777 (sticky)", x64, 90, [6]uint64{0, 0o1777}, allow},
		{"x86_64 fchmod 4755", x64, 91, [6]uint64{3, suid}, eperm},
		{"x86_64 fchmodat 4755", x64, 268, [6]uint64{fdcwd, 0, suid}, eperm},
		{"x86_64 fchmodat 0644", x64, 268, [6]uint64{fdcwd, 0, 0o644}, allow},
		{"x86_64 fchmodat2 6755", x64, 452, [6]uint64{fdcwd, 0, 0o6755, 0}, eperm},
		{"x86_64 open O_CREAT 4755", x64, 2, [6]uint64{0, unix.O_CREAT, suid}, eperm},
		{"x86_64 openat O_CREAT 4755", x64, 257, [6]uint64{fdcwd, 0, unix.O_CREAT, suid}, eperm},
		{"x86_64 openat 0644", x64, 257, [6]uint64{fdcwd, 0, unix.O_CREAT, 0o644}, allow},
		{"x86_64 creat 4755", x64, 85, [6]uint64{0, suid}, eperm},
		{"x86_64 mknod reg 4755", x64, 133, [6]uint64{0, unix.S_IFREG | suid}, eperm},
		{"x86_64 mknodat reg 4755", x64, 259, [6]uint64{fdcwd, 0, unix.S_IFREG | suid}, eperm},
		{"x86_64 mkdir 2775", x64, 83, [6]uint64{0, 0o2775}, eperm},
		{"x86_64 mkdirat 2775", x64, 258, [6]uint64{fdcwd, 0, 0o2775}, eperm},
		{"x86_64 mode in the high half is not a mode", x64, 90, [6]uint64{0, 0o4755 << 32}, allow},
		{"x86_64 openat2", x64, 437, [6]uint64{}, enosys},
		{"x86_64 io_uring_setup", x64, 425, [6]uint64{}, enosys},
		{"x86_64 write", x64, 1, [6]uint64{1, 0, suid}, allow},
		{"x32 chmod 4755", x64, 0x40000000 | 90, [6]uint64{0, suid}, eperm},
		{"x32 openat2", x64, 0x40000000 | 437, [6]uint64{}, enosys},
		{"i386 chmod 4755", i386, 15, [6]uint64{0, suid}, eperm},
		{"i386 fchmodat 4755", i386, 306, [6]uint64{fdcwd, 0, suid}, eperm},
		{"i386 open 4755", i386, 5, [6]uint64{0, unix.O_CREAT, suid}, eperm},
		{"i386 exit (x86_64 chmod's number)", i386, 90, [6]uint64{0, suid}, allow},
		{"aarch64 fchmodat 4755", a64, 53, [6]uint64{fdcwd, 0, suid}, eperm},
		{"aarch64 openat 4755", a64, 56, [6]uint64{fdcwd, 0, unix.O_CREAT, suid}, eperm},
		{"aarch64 fchmod 0755", a64, 52, [6]uint64{3, 0o755}, allow},
		{"arm chmod 4755", arm, 15, [6]uint64{0, suid}, eperm},
		{"arm fchmodat 4755", arm, 333, [6]uint64{fdcwd, 0, suid}, eperm},
		{"unknown architecture", 0x1234, 90, [6]uint64{}, unix.SECCOMP_RET_KILL_PROCESS},
	} {
		if got := runFilter(t, prog, c.arch, c.nr, c.args); got != c.want {
			t.Errorf("%s: got %#x; want %#x", c.name, got, c.want)
		}
	}
}

func TestHostABIs(t *testing.T) {
	if len(hostABIs()) == 0 {
		t.Skip("no seccomp filter for this architecture")
	}
	if len(seccompFilter(hostABIs()))%8 != 0 {
		t.Errorf("the filter is not whole instructions")
	}
}
