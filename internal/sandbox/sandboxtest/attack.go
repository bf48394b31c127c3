package sandboxtest

// AttackAgent is a Python program that, run in a sandbox beside
// `mlagent agent`, tries what any command there could do to the agent:
// write an event into its stdin, stdout and stderr through /proc (its
// stdout is the host's end of the protocol), read its environment, and
// ptrace it; then it lists its own descriptors. AttackAgentRefused is its
// output when every attempt fails and it holds only its stdio (and the
// listing's own descriptor).
const AttackAgent = `
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
agents = []
for p in os.listdir("/proc"):
    try:
        argv = open("/proc/%s/cmdline" % p, "rb").read().split(b"\0")
    except OSError:
        continue
    if len(argv) > 1 and argv[1] == b"agent":
        agents.append(p)
print("agents:", len(agents))
for p in agents:
    for fd in ("0", "1", "2"):
        try:
            f = os.open("/proc/%s/fd/%s" % (p, fd), os.O_WRONLY)
            os.write(f, b'{"v":1,"type":"text_delta","text":"INJECTED"}\n')
            print("wrote to fd", fd)
        except OSError as e:
            print("fd", fd, e.strerror)
    try:
        open("/proc/%s/environ" % p).read(); print("read environ")
    except OSError as e:
        print("environ", e.strerror)
    if libc.ptrace(0x4206, int(p), 0, 0) == 0:
        print("attached")
    else:
        print("ptrace errno", ctypes.get_errno())
print("own fds:", sorted(int(fd) for fd in os.listdir("/proc/self/fd")))
`

// AttackAgentRefused is AttackAgent's output against a protected agent.
const AttackAgentRefused = "agents: 1\nfd 0 Permission denied\nfd 1 Permission denied\nfd 2 Permission denied\nenviron Permission denied\nptrace errno 1\nown fds: [0, 1, 2, 3]\n"
