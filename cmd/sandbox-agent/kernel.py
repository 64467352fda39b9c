"""The sandboxd Python worker ("kernel"): one persistent interpreter that runs
the cells of a sandbox's Python Execs in a shared namespace, like a notebook.

The agent (worker.go) starts python3 with a one-line -c that compiles this
source from a pipe on fd 4 (so that ps shows one short line), with stdin,
stdout and stderr on /dev/null and fd 3 one end of a unix stream socket.
Frames on the socket are a 4-byte big-endian length and that much JSON:

  kernel -> agent, once at start:  {"ready": true}
  agent -> kernel, per cell:       {"code": str, "env": {str: str}, "workdir": str}
                                    with the cell's stdout and stderr pipes
                                    attached (SCM_RIGHTS) to the header, and
                                    before them its stdin pipe if it has
                                    stdin (3 fds; with 2 its stdin is
                                    /dev/null, where fd 0 stays between cells)
  kernel -> agent, per cell:       {"exit_code": int, "value": str, "error_name": str,
                                    "run_ns": int (how long the code ran),
                                    "images": [base64 PNG], "images_truncated": bool}

Figures: after a cell, every matplotlib figure still open (drawn and left
open, or shown: plt.show() does nothing under the Agg backend without a
display) is rendered to PNG and returned, then all are closed, like a
notebook's inline backend. Only when the cell imported matplotlib.pyplot,
so cells that never plot pay one dict lookup.

The kernel puts the pipes on fds 0/1/2 for the cell (so print(), os.write(1),
subprocesses and C code all reach them), and back on /dev/null before it
answers, which closes the pipes unless the cell's children still hold them.
In gVisor every syscall is dear (150-300 us here), so a cell costs as few
as the kernel can make it: one recvmsg for the request, the text streams on
fds 0/1/2 made once, no fds moved for a cell without stdin.
SIGINT interrupts a running cell with KeyboardInterrupt (each one, until
the cell ends) and is ignored between cells. If the socket is lost (a cell closed it) the kernel exits.
"""

import ast
import base64
import builtins
import fcntl
import io
import json
import linecache
import os
import resource
import signal
import socket
import struct
import sys
import time
import traceback
import types

try:
    import ctypes

    _libc = ctypes.CDLL(None)
except (ImportError, OSError):
    _libc = None

# The socket moves to the lowest free fd from here, out of the way of the
# small fds that cells open, close and dup2 onto.
HIGH_FD = 1000
# A cell's value is returned up to this many UTF-8 bytes (the full repr is
# printed); it travels in one gRPC message with everything else.
VALUE_LIMIT = 64 * 1024
# Exit status when the socket is gone: the agent reports it as a lost state.
LOST_SOCKET_EXIT = 70
# Figures rendered after one cell at most, in count and PNG bytes: the
# policy's largest limits.images (policy.MaxImages, MaxImageBytes); the
# daemon trims to the sandbox's own limits.
IMAGES_MAX = 64
IMAGE_BYTES_MAX = 16 << 20

_KERNEL_GLOBALS = globals()
_forked = False  # set in a child forked by a cell (no getpid per cell)


def _mark_forked():
    global _forked
    _forked = True


os.register_at_fork(after_in_child=_mark_forked)
_in_cell = False
_cells = 0

# The cells' namespace, installed as __main__ so pickle and multiprocessing
# find what cells define; the kernel's own globals stay out of its reach,
# in the original __main__, which _kernel_module keeps alive.
_kernel_module = sys.modules["__main__"]
_user = types.ModuleType("__main__")
_user.__dict__["__builtins__"] = builtins


_interrupted = False  # an interrupt reached the running cell


def _on_sigint(signum, frame):
    """Turn the agent's SIGINT into KeyboardInterrupt inside a cell. Every
    SIGINT raises again: an interrupt can land in a handler that swallows
    it (os.fork's at-fork hooks print "Exception ignored"), so the agent
    repeats it until the cell ends or its grace runs out."""
    global _interrupted
    if _in_cell:
        _interrupted = True
        raise KeyboardInterrupt


def _on_audit(event, args):
    """Refuse every fork of an interrupted cell. A fork loop spends most of
    its time inside os.fork, whose at-fork hooks swallow the interrupts
    that land there; on a loaded host that can be all of them until the
    agent gives up and kills the interpreter. An audit hook's exception
    reaches the caller of os.fork instead, so the loop ends."""
    if event == "os.fork" and _interrupted and _in_cell:
        raise KeyboardInterrupt


def _ensure_sigint():
    """Install the kernel's SIGINT handler unless it is in place (a cell
    may have replaced it); getsignal costs no syscall."""
    if signal.getsignal(signal.SIGINT) is not _on_sigint:
        signal.signal(signal.SIGINT, _on_sigint)


def _open_socket():
    """Move the agent's socket from fd 3 to a high close-on-exec fd."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest = HIGH_FD
    if soft != resource.RLIM_INFINITY:
        lowest = max(3, min(HIGH_FD, soft - 1))
    try:
        fd = fcntl.fcntl(3, fcntl.F_DUPFD_CLOEXEC, lowest)
    except OSError:
        fd = fcntl.fcntl(3, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(3)
    return socket.socket(fileno=fd)


def _identity(sock):
    st = os.fstat(sock.fileno())
    return st.st_dev, st.st_ino


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("agent closed the socket")
        buf += chunk
    return bytes(buf)


# Bytes asked of the first recvmsg of a request: a usual cell's frame
# arrives whole in it (longer code follows with recv).
RECV_FIRST = 64 * 1024


def _recv_request(sock):
    data, fds, _, _ = socket.recv_fds(sock, RECV_FIRST, 3)
    if not data:
        raise EOFError("agent closed the socket")
    if len(data) < 4:
        data += _recv_exact(sock, 4 - len(data))
    if len(fds) not in (2, 3):
        for fd in fds:
            os.close(fd)
        raise ValueError("request without its pipes")
    (size,) = struct.unpack(">I", data[:4])
    body = data[4:]
    if len(body) < size:
        body += _recv_exact(sock, size - len(body))
    return json.loads(body), fds


def _send(sock, obj):
    body = json.dumps(obj).encode()
    sock.sendall(struct.pack(">I", len(body)) + body)


def _writer(fd):
    # Unbuffered, like python3 -u, so the cell's writes reach the pipe in
    # the order they were made, interleaved right with os.write and children.
    return io.TextIOWrapper(
        io.FileIO(fd, "w", closefd=False),
        encoding="utf-8",
        errors="backslashreplace",
        write_through=True,
    )


def _reader(fd):
    return io.TextIOWrapper(
        io.BufferedReader(io.FileIO(fd, "r", closefd=False)),
        encoding="utf-8",
        errors="surrogateescape",
    )


# The kernel's text streams on fds 0 (/dev/null), 1 and 2, made once: a
# FileIO and its buffer cost an fstat and an lseek each. The fds stay the
# same, only what they point to changes from cell to cell. A stream a cell
# closed is made again.
_streams = {}


def _stream(fd):
    s = _streams.get(fd)
    if s is None or s.closed:
        s = _reader(fd) if fd == 0 else _writer(fd)
        _streams[fd] = s
    return s


def _attach(fds):
    """Put the cell's pipes on fds 0/1/2 (or 1/2, stdin staying on
    /dev/null) and the sys streams on them."""
    first = 3 - len(fds)
    for target, fd in enumerate(fds, first):
        if fd != target:
            os.dup2(fd, target)
            os.close(fd)
    # A cell's own stdin pipe gets a fresh reader: nothing buffered from
    # before may reach it.
    sys.stdin = _reader(0) if first == 0 else _stream(0)
    sys.stdout = _stream(1)
    sys.stderr = _stream(2)


def _flush():
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass
    if _libc is not None:
        _libc.fflush(None)  # C extensions' stdio buffers


def _null_fd():
    """/dev/null on a high close-on-exec fd, opened once: every cell's
    detach dups it onto 0/1/2 (in gVisor each syscall saved counts)."""
    tmp = os.open(os.devnull, os.O_RDWR)
    null = fcntl.fcntl(tmp, fcntl.F_DUPFD_CLOEXEC, 3)
    os.close(tmp)
    return null


_NULL = None


def _detach():
    """Flush the cell's output and put /dev/null back on fds 0/1/2."""
    global _NULL
    _flush()
    try:
        for fd in (0, 1, 2):
            os.dup2(_NULL, fd)
    except (OSError, TypeError):
        _NULL = _null_fd()  # the first cell, or a cell closed it
        for fd in (0, 1, 2):
            os.dup2(_NULL, fd)


def _truncate(text, limit):
    data = text.encode("utf-8", "backslashreplace")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def _print_exception(exc):
    """Print exc like the REPL would: from the cell's frame on, without the
    kernel's (and, for a cell that did not compile, without any frames)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_globals is not _user.__dict__:
        tb = tb.tb_next
    last = tb
    while last is not None and last.tb_next is not None:
        if last.tb_next.tb_frame.f_globals is _KERNEL_GLOBALS:
            last.tb_next = None  # _on_sigint, where a timeout's interrupt rose
        else:
            last = last.tb_next
    exc = exc.with_traceback(tb)
    sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, tb
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    os.write(2, text.encode("utf-8", "backslashreplace"))


def _exit_code(exc):
    """The exit status of a SystemExit, printing a message code as Python does."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return max(-(2**31), min(code, 2**31 - 1))
    os.write(2, (str(code) + "\n").encode("utf-8", "backslashreplace"))
    return 1


def _execute(req):
    """Run one cell; return its result frame."""
    global _in_cell, _cells, _interrupted
    _cells += 1
    _interrupted = False
    name = "<cell %d>" % _cells
    source = req["code"]
    linecache.cache[name] = (len(source), None, source.splitlines(True), name)
    result = {"exit_code": 0, "value": "", "error_name": "", "run_ns": 0}
    started = time.perf_counter_ns()
    try:
        try:
            _in_cell = True
            if req.get("workdir"):
                os.chdir(req["workdir"])
            tree = ast.parse(source, name)
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            exec(compile(tree, name, "exec"), _user.__dict__)
            if last is not None:
                value = eval(compile(last, name, "eval"), _user.__dict__)
                if value is not None:
                    builtins._ = value
                    text = repr(value)
                    sys.stdout.write(text + "\n")
                    result["value"] = _truncate(text, VALUE_LIMIT)
        finally:
            _in_cell = False
    except SystemExit as exc:
        result["exit_code"] = _exit_code(exc)
        if result["exit_code"] != 0:
            result["error_name"] = "SystemExit"
    except BaseException as exc:
        _print_exception(exc)
        result["exit_code"] = 1
        result["error_name"] = type(exc).__name__
    result["run_ns"] = time.perf_counter_ns() - started
    if not _interrupted and not _forked:
        result["images"], result["images_truncated"] = _figures()
    return result


def _figures():
    """Render the figures the cell left open as PNG (base64), then close
    them all; report whether some were left out over the limits."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return [], False
    images, size, truncated = [], 0, False
    try:
        figures = [plt.figure(num) for num in plt.get_fignums()]
    except Exception as exc:  # a cell may have broken pyplot itself
        sys.stderr.write("sandboxd: could not list the open figures: %r\n" % (exc,))
        return [], False
    for fig in figures:
        if len(images) == IMAGES_MAX:
            truncated = True
            break
        buf = io.BytesIO()
        try:
            fig.savefig(buf, format="png")
        except Exception as exc:
            sys.stderr.write("sandboxd: could not render figure %s: %r\n" % (fig.number, exc))
            continue
        data = buf.getvalue()
        if size + len(data) > IMAGE_BYTES_MAX:
            truncated = True
            continue
        size += len(data)
        images.append(base64.b64encode(data).decode("ascii"))
    try:
        plt.close("all")
    except Exception:
        pass
    return images, truncated


def _run(sock, ident, req, fds):
    """Run a cell with its pipes, env and workdir, and restore all three."""
    env = req.get("env") or {}
    saved_env = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        saved_cwd = os.getcwd() if req.get("workdir") else None
    except OSError:
        saved_cwd = None
    _attach(fds)
    _ensure_sigint()
    result = _execute(req)
    _ensure_sigint()
    if _forked:
        # A forked child fell out of the cell: it must not answer the agent.
        _flush()
        os._exit(result["exit_code"] & 0xFF)
    try:
        lost = _identity(sock) != ident
    except OSError:
        lost = True
    if lost:
        os.write(2, b"sandboxd: the cell closed the interpreter's control socket; "
                    b"the interpreter exits and its variables are lost\n")
        _flush()
        os._exit(LOST_SOCKET_EXIT)
    _detach()
    for key, value in saved_env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    if saved_cwd is not None:
        try:
            os.chdir(saved_cwd)
        except OSError:
            pass
    return result


def main():
    sock = _open_socket()
    ident = _identity(sock)
    signal.signal(signal.SIGINT, _on_sigint)
    sys.addaudithook(_on_audit)
    sys.argv = [""]
    sys.modules["__main__"] = _user
    try:
        _send(sock, {"ready": True})
        while True:
            req, fds = _recv_request(sock)
            _send(sock, _run(sock, ident, req, fds))
    except (EOFError, OSError, ValueError):
        os._exit(LOST_SOCKET_EXIT)


main()
