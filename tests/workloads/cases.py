"""Workloads for the root tests, one function per case.

Run as `cases.py CASE [ARGS...]` with argv[0] set to the role title by the
test. Each case waits for a line on stdin (the tracer has seen the root by
then), does its work, and prints one JSON line with the pids it created.
"""

import ctypes
import json
import os
import resource
import subprocess
import sys
import threading
import time

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

TRUE = "/bin/true"


def spawn_true():
    pid = os.posix_spawn(TRUE, [TRUE], {})
    os.waitpid(pid, 0)
    return pid


def case_getppid(count):
    for _ in range(int(count)):
        os.getppid()
    return {}


def case_threads(count):
    threads = [threading.Thread(target=lambda: None) for _ in range(int(count))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"threads": [t.native_id for t in threads]}


def case_idle():
    return {}


def case_fork_kinds():
    """3 threads, 2 os.fork, a fork from a 4th thread, posix_spawn, subprocess.run."""
    pids = {}
    case_threads(3)

    forked = []
    for _ in range(2):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        forked.append(pid)
    pids["forks"] = forked

    def fork_from_thread():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        pids["thread_fork"] = pid
        pids["thread_tid"] = threading.get_native_id()

    worker = threading.Thread(target=fork_from_thread)
    worker.start()
    worker.join()

    pids["posix_spawn"] = spawn_true()
    subprocess.run([TRUE], check=True)
    return pids


def case_shell_loop():
    subprocess.run(["sh", "-c", "for i in 1 2 3 4 5; do /bin/true; done"], check=True)
    return {}


def case_thread_exec():
    """4 threads call getpid 50 times, main 100 times; a 5th thread execs a shell."""
    def getpids():
        for _ in range(50):
            os.getpid()

    threads = [threading.Thread(target=getpids) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for _ in range(100):
        os.getpid()

    def exec_shell():
        time.sleep(0.3)
        os.execv("/bin/sh", ["sh", "-c", "/bin/true; /bin/true; /bin/true"])

    threading.Thread(target=exec_shell).start()
    time.sleep(5)
    return {"error": "exec did not happen"}


def case_main_thread_exit(seconds):
    """The main thread ends with pthread_exit while a worker thread goes on."""
    def worker():
        time.sleep(float(seconds))
        os.getppid()

    threading.Thread(target=worker).start()
    print(json.dumps({"tid": threading.get_native_id()}), flush=True)
    libc.pthread_exit(None)


def case_exec_kinds(script):
    """Four children: PATH search, execveat of an fd, missing file, text file without #!."""
    children = {}

    pid = os.fork()
    if pid == 0:
        os.execvpe("true", ["true"], {"PATH": "/nonexistent1:/nonexistent2:/usr/bin"})
    children["path_search"] = pid

    fd = os.open("/usr/bin/true", os.O_RDONLY)
    pid = os.fork()
    if pid == 0:
        os.execve(fd, ["true"], {})
    children["execveat"] = pid
    children["fd"] = fd
    os.close(fd)

    pid = os.fork()
    if pid == 0:
        try:
            os.execv("/nonexistent/prog", ["prog"])
        finally:
            os._exit(127)
    children["missing"] = pid

    pid = os.fork()
    if pid == 0:
        try:
            os.execv(script, [script])
        finally:
            os._exit(126)
    children["noexec"] = pid

    for pid in (children["path_search"], children["execveat"], children["missing"], children["noexec"]):
        os.waitpid(pid, 0)
    return children


def case_unknown_syscalls():
    for _ in range(10):
        libc.syscall(ctypes.c_long(-1))
        libc.syscall(ctypes.c_long(1000))
        libc.syscall(ctypes.c_long(0x40000000 + 39))
    case_threads(3)
    return {}


def case_retitle(child_title, spawns):
    """Fork a child that sleeps, takes a new role title, then spawns /bin/true."""
    sys.path.insert(0, os.environ.get("PYTHONPATH", ""))
    from tracer.emulator.titles import set_title

    pid = os.fork()
    if pid == 0:
        time.sleep(0.5)
        set_title(child_title)
        for _ in range(int(spawns)):
            spawn_true()
        os._exit(0)
    os.waitpid(pid, 0)
    return {"child": pid}


def case_spawn(count):
    for _ in range(int(count)):
        spawn_true()
    return {}


def case_storm(workers, rounds):
    """W forked workers each spawn /bin/true `rounds` times."""
    pids = []
    for _ in range(int(workers)):
        pid = os.fork()
        if pid == 0:
            for _ in range(int(rounds)):
                spawn_true()
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    return {"workers": pids}


def case_busy_child(milliseconds, policy="normal"):
    """A child burns CPU for N ms; returns its CPU time and this process's own since the gate.

    With policy "fifo" the child runs under SCHED_FIFO, so no ordinary task
    preempts it: its whole run is one slice that ends only when it exits.
    The result line comes before this process waits for a last line on
    stdin, and again at its end.
    """
    start = resource.getrusage(resource.RUSAGE_SELF)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        if policy == "fifo":
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        end = time.thread_time() + float(milliseconds) / 1000
        while time.thread_time() < end:
            pass
        os._exit(0)
    os.close(write)
    _, status, usage = os.wait4(pid, 0)
    end = resource.getrusage(resource.RUSAGE_SELF)
    own = (end.ru_utime - start.ru_utime) + (end.ru_stime - start.ru_stime)
    result = {"child": pid, "cpu_seconds": usage.ru_utime + usage.ru_stime, "parent_cpu_seconds": own}

    # Wait for the test to read the buckets, so that the interpreter's exit
    # (slow under emulation) is not in them.
    print(json.dumps(result), flush=True)
    sys.stdin.readline()
    return result


def main():
    case = globals()["case_" + sys.argv[1]]
    sys.stdin.readline()
    result = case(*sys.argv[2:])
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
