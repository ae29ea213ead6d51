#!/usr/bin/env python3
"""litefs-rs replication lag benchmark: one primary and two replicas
(static lease) on 127.0.0.1, each `litefs mount` in its own temp dir.

    python3 bench/lag.py --litefs target/release/litefs [--seconds 10] [--smoke] [--out DIR]

(build the binary first: `cargo build --release -p litefs`.) Measures:

1. Commit-to-visible latency at paced rates (default 100 and 1,000 tx/s):
   a writer process on the primary (Python sqlite3, WAL,
   synchronous=NORMAL, one INSERT per transaction of a row carrying its
   sequence number and wall-clock time) commits on an absolute schedule;
   one poller process per replica watches it, in two separate runs:
   "sql" reads max(seq) in a loop on one SQLite connection, "pos"
   re-reads `<db>-pos` (one TXID per transaction). Latency of row N = the
   wall-clock time the read that first showed N returned, minus the time
   stored in row N (taken just before the INSERT that commits it).
   p50 / p99 / max per replica.
2. Apply throughput: the same writer unpaced for the same time; every
   node's `<db>-pos` TXID sampled every 50 ms: the primary's commits/s
   and LTX files (a file spans the TXIDs of every commit one capture
   pass found), each replica's applied TXIDs/s, and its catch-up time
   after the writer stops (until its -pos equals the primary's). The
   same writer on a plain file outside any mount, on the same disk,
   before and after, gives the ratio.

Prints a Markdown table and writes DIR/lag.json (and lag.md). All nodes
share this machine's CPUs and disk: the figures include that contention
(the pollers and the writer compete with three daemons). It asserts
nothing about speed; it exits 1 if replication does not converge (a
replica's -pos never reaches the primary's, or its rows differ) within
--timeout, or if a phase outlives its deadline (a daemon that stopped
answering: its threads are printed and the FUSE connections aborted),
and non-zero on any other failure. Daemons are SIGTERMed and their
mounts lazily unmounted on every exit path.
"""
import argparse, ctypes, json, math, multiprocessing as mp, os, platform, shutil, signal, socket, sqlite3
import subprocess, sys, tempfile, threading, time

PAD = b"x" * 100  # the payload of every row (bench.py's row size)
SAMPLE_EVERY = 0.05  # -pos sampling period during the throughput run


class ReplicationFailed(Exception):
    """Replication did not converge, or a replica's data differs."""


def read_small(path):
    """A small file of a mount, with plain syscalls (Python's open() would
    also ask the mount whether the file is a terminal: an ioctl the daemon
    logs a warning for)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096).decode()
    finally:
        os.close(fd)


def read_pos(path):
    """(TXID, checksum) from a `-pos` file."""
    txid, _, ck = read_small(path).strip().partition("/")
    return int(txid, 16), ck


# ---------------------------------------------------------------- nodes


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fuse_mounted(d):
    real = os.path.realpath(d)
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 4 and parts[4] == real and "fuse" in line:
                    return True
    except OSError:
        pass
    return False


class Node:
    """One `litefs mount` process with its own config, data and mount dirs."""

    def __init__(self, litefs, base, name, lease, passthrough):
        self.name = name
        self.root = os.path.join(base, name)
        self.mnt = os.path.join(self.root, "mnt")
        self.data = os.path.join(self.root, "data")
        self.log = os.path.join(self.root, "litefs.log")
        self.cfg = os.path.join(self.root, "litefs.yml")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.litefs = litefs
        self.proc = None
        self.conn = None  # the FUSE connection (device minor) of the live mount
        os.makedirs(self.mnt, exist_ok=True)
        with open(self.cfg, "w") as f:
            f.write(f"fuse:\n  dir: {self.mnt}\n  passthrough: {str(passthrough).lower()}\n"
                    f"data:\n  dir: {self.data}\n"
                    f"http:\n  addr: \"127.0.0.1:{self.port}\"\n" + lease)

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def fail(self, what):
        tail = "\n".join(self.log_text().splitlines()[-60:])
        return RuntimeError(f"{self.name}: {what}; its log ({self.log}):\n{tail}")

    def start(self, timeout=30):
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.litefs, "mount", "-config", self.cfg], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not fuse_mounted(self.mnt):
            if self.proc.poll() is not None:
                raise self.fail(f"exited with status {self.proc.returncode} before mounting")
            if time.monotonic() > deadline:
                raise self.fail(f"did not mount in {timeout} s")
            time.sleep(0.01)
        self.conn = os.minor(os.stat(self.mnt).st_dev)
        # Which FUSE I/O path it took (logged right after mounting).
        while self.io_path() is None:
            if self.proc.poll() is not None:
                raise self.fail(f"exited with status {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise self.fail("never logged its FUSE I/O path")
            time.sleep(0.01)

    def io_path(self):
        text = self.log_text()
        if "FUSE passthrough on" in text:
            return "passthrough"
        if "using classic FUSE I/O" in text:
            return "classic"
        return None

    def wait_connected(self, timeout=30):
        """A replica is connected once `.primary` names its primary."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if read_small(os.path.join(self.mnt, ".primary")).strip():
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise self.fail(f"exited with status {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise self.fail(f"not connected to the primary after {timeout} s (no .primary)")
            time.sleep(0.02)

    def pos(self, db):
        """(TXID, checksum) from `<db>-pos`, or None if there is none yet."""
        try:
            return read_pos(os.path.join(self.mnt, db + "-pos"))
        except (OSError, ValueError):
            return None

    def threads(self):
        """Each daemon thread's name, state and kernel wait channel."""
        out = []
        try:
            for t in sorted(os.listdir(f"/proc/{self.proc.pid}/task"), key=int):
                try:
                    with open(f"/proc/{self.proc.pid}/task/{t}/stat") as f:
                        st = f.read()
                    with open(f"/proc/{self.proc.pid}/task/{t}/wchan") as f:
                        wchan = f.read().strip()
                    comm = st[st.index("(") + 1:st.rindex(")")]
                    out.append(f"{t} {comm} {st[st.rindex(')') + 2]} {wchan}")
                except OSError:
                    pass
        except (OSError, AttributeError):
            pass
        return out

    def abort_fuse(self):
        """Aborts the mount's FUSE connection: every request waiting on it
        fails (ENOTCONN), so nothing stays stuck on a daemon that stopped
        answering. fusectl if mounted, else umount2(MNT_FORCE)."""
        if self.conn is None:
            return
        ctl = f"/sys/fs/fuse/connections/{self.conn}/abort"
        try:
            with open(ctl, "w") as f:
                f.write("1")
            return
        except OSError:
            pass
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.umount2(os.fsencode(self.mnt), 1)  # MNT_FORCE: FUSE aborts the connection
        except (OSError, AttributeError):
            pass

    def cpu_s(self):
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None

    def peak_rss_mib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM"):
                        return round(int(line.split()[1]) / 1024, 1)
        except OSError:
            pass
        return None

    def stop(self):
        """SIGTERM, bounded wait (then SIGKILL), then a lazy unmount if the
        mount is still there. Never raises."""
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(30)
            except subprocess.TimeoutExpired:
                print(f"{self.name}: no exit 30 s after SIGTERM; killing pid {p.pid}", file=sys.stderr)
                p.kill()
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    print(f"{self.name}: pid {p.pid} still not gone", file=sys.stderr)
            except OSError:
                pass
        if fuse_mounted(self.mnt):
            try:
                subprocess.run(["fusermount3", "-u", "-z", self.mnt], check=False, timeout=30)
            except (OSError, subprocess.TimeoutExpired) as e:
                print(f"{self.name}: fusermount3 -u -z {self.mnt}: {e}", file=sys.stderr)


class Watchdog(threading.Thread):
    """Bounds every phase, even one blocked in a system call on a mount
    whose daemon stopped answering (no timeout in this process can end
    that): past the phase's deadline it prints each daemon's threads and
    aborts every node's FUSE connection, which fails the stuck calls."""

    def __init__(self, nodes):
        super().__init__(daemon=True)
        self.nodes, self.lock = nodes, threading.Lock()
        self.deadline, self.what, self.fired = None, None, None

    def arm(self, seconds, what):
        with self.lock:
            self.deadline, self.what = time.monotonic() + seconds, what

    def run(self):
        while True:
            time.sleep(0.5)
            with self.lock:
                late = self.deadline is not None and time.monotonic() > self.deadline
                what = self.what
                if late:
                    self.deadline = None
            if late:
                self.fired = what
                print(f"STUCK: {what} passed its deadline; daemon threads (tid name state wait):",
                      file=sys.stderr)
                for n in self.nodes:
                    if n.proc is not None:
                        print(f"  {n.name} (pid {n.proc.pid}):\n    " + "\n    ".join(n.threads()),
                              file=sys.stderr)
                for n in self.nodes:
                    n.abort_fuse()
                print("STUCK: aborted the nodes' FUSE connections", file=sys.stderr)


# ------------------------------------------------------- worker processes


def _child():
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def open_writer(path):
    c = sqlite3.connect(path, timeout=30, isolation_level=None)
    c.execute("PRAGMA journal_mode=wal")
    c.execute("PRAGMA synchronous=normal")
    return c


def create_db(path):
    c = open_writer(path)
    c.execute("CREATE TABLE IF NOT EXISTS t(seq INTEGER PRIMARY KEY, t REAL NOT NULL, v BLOB)")
    c.close()


def writer(path, rate, secs, q):
    """One INSERT per transaction: paced on an absolute schedule (commit i
    due at start + i/rate; a late commit does not shift the ones after
    it), or as fast as possible when rate is None. Puts a dict on q."""
    _child()
    try:
        c = open_writer(path)
        seq = (c.execute("SELECT max(seq) FROM t").fetchone()[0] or 0) + 1
        first = seq
        begun, done = [], []  # wall-clock time each commit began (the row's t) and returned (paced runs)
        late_max = late_n = 0.0
        ins = "INSERT INTO t(seq, t, v) VALUES (?, ?, ?)"
        t_start = time.time()
        p0 = time.perf_counter()
        if rate:
            n = int(round(rate * secs))
            for i in range(n):
                due = p0 + i / rate
                now = time.perf_counter()
                if due > now:
                    time.sleep(due - now)
                else:
                    late = now - due
                    late_max = max(late_max, late)
                    late_n += late > 0.001
                t = time.time()
                c.execute(ins, (seq, t, PAD))
                done.append(time.time())
                begun.append(t)
                seq += 1
        else:
            end = p0 + secs
            while time.perf_counter() < end:
                for _ in range(50):
                    c.execute(ins, (seq, time.time(), PAD))
                    seq += 1
        t_end = time.time()
        c.close()
        q.put({"ok": True, "cpu_s": time.process_time(), "first": first, "last": seq - 1, "n": seq - first,
               "t_start": t_start,
               "t_end": t_end, "begun": begun, "done": done, "late_max_s": late_max, "late_over_1ms": int(late_n)})
    except Exception as e:  # reported by the parent
        q.put({"ok": False, "error": f"{type(e).__name__}: {e}"})


def poller(mode, path, stop_at, deadline, interval, ready, q):
    """Watches a replica until what it sees reaches stop_at (once the
    writer has set it) or the deadline. mode "sql": max(seq) on one SQLite
    connection to the database; mode "pos": the TXID in `<db>-pos` (opened
    and read afresh each time). Puts (wall time the read that first showed
    a new value returned, that value) pairs on q."""
    _child()
    events, errors, polls = [], [], 0
    try:
        if mode == "sql":
            c = sqlite3.connect(path, timeout=5, isolation_level=None)

            def read():
                return c.execute("SELECT max(seq) FROM t").fetchone()[0] or 0
        else:
            c = None

            def read():
                return read_pos(path + "-pos")[0]
        last = read()
        ready.set()
        while True:
            try:
                m = read()
            except (sqlite3.Error, OSError, ValueError) as e:
                if len(errors) < 20:
                    errors.append(f"{time.time():.6f} {type(e).__name__}: {e}")
                m = last
            t = time.time()
            polls += 1
            if m > last:
                events.append((t, m))
                last = m
            target = stop_at.value
            if target and last >= target:
                break
            if t > deadline.value:
                break
            if interval:
                time.sleep(interval)
        if c is not None:
            c.close()
        q.put({"ok": True, "events": events, "errors": errors, "polls": polls, "last": last,
               "cpu_s": time.process_time()})
    except Exception as e:
        q.put({"ok": False, "error": f"{type(e).__name__}: {e}", "events": events, "errors": errors})


def get_result(q, proc, timeout, what):
    """The dict a worker put on q (read before join: a big queue item
    blocks the child's exit until it is read)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return q.get(timeout=0.2)
        except Exception:
            pass
        if not proc.is_alive():
            try:
                return q.get(timeout=1)
            except Exception:
                raise RuntimeError(f"{what} exited ({proc.exitcode}) without a result")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: no result in {timeout:.0f} s")


# ------------------------------------------------------------- helpers


def pct(xs, p):
    """Nearest-rank percentile of a sorted list."""
    if not xs:
        return None
    return xs[max(0, min(len(xs) - 1, math.ceil(p / 100 * len(xs)) - 1))]


def wait_same_pos(primary, replicas, db, timeout, since=None):
    """Reads the primary's -pos (a barrier: everything committed so far is
    captured), then waits until every replica shows the same position.
    Returns {replica name: seconds from `since` (or from now) until it did}."""
    t0 = time.time()
    want = primary.pos(db)
    if want is None:
        raise ReplicationFailed(f"{db}: the primary has no -pos")
    since = t0 if since is None else since
    out, pending = {}, list(replicas)
    deadline = time.monotonic() + timeout
    while pending:
        for r in list(pending):
            if r.pos(db) == want:
                out[r.name] = time.time() - since
                pending.remove(r)
        if not pending:
            break
        if time.monotonic() > deadline:
            msg = "; ".join(f"{r.name} at {r.pos(db)}" for r in pending)
            logs = "\n".join(f"--- {r.name} log tail:\n" + "\n".join(r.log_text().splitlines()[-30:])
                             for r in pending)
            raise ReplicationFailed(f"{db}: replicas did not reach the primary's position {want} in "
                                    f"{timeout} s: {msg}\n{logs}")
        time.sleep(0.002)
    return out


def check_rows(primary, replicas, db):
    """Same count/max/sum of seq and same -pos on every node."""
    q = "SELECT count(*), max(seq), sum(seq), sum(length(v)) FROM t"

    def rows(n):
        c = sqlite3.connect(os.path.join(n.mnt, db), timeout=10, isolation_level=None)
        try:
            return c.execute(q).fetchone()
        finally:
            c.close()

    want = rows(primary)
    for r in replicas:
        got = rows(r)
        if got != want:
            raise ReplicationFailed(f"{db}: {r.name} has (count, max, sum, bytes) {got}, the primary {want}")
    return want


def machine(nodes):
    info = {"nproc": len(os.sched_getaffinity(0)), "kernel": platform.release(),
            "sqlite": sqlite3.sqlite_version, "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, StopIteration):
        pass
    info["io_path"] = {n.name: n.io_path() for n in nodes}
    info["loadavg_start"] = loadavg()
    return info


def loadavg():
    """The 1-minute load average: other work on this machine shows here."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError):
        return None


def fs_type(path):
    try:
        return subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# ----------------------------------------------------------- workloads


def ltx_files(node, db):
    """How many LTX files `db` has in the node's data directory (all of a
    run's: retention keeps them 10 minutes)."""
    try:
        return sum(1 for n in os.listdir(os.path.join(node.data, "dbs", db, "ltx")) if n.endswith(".ltx"))
    except OSError:
        return None


def summary_ms(xs):
    xs = sorted(xs)
    return {"n": len(xs), "p50_ms": pct(xs, 50) * 1e3, "p90_ms": pct(xs, 90) * 1e3, "p99_ms": pct(xs, 99) * 1e3,
            "p999_ms": pct(xs, 99.9) * 1e3, "max_ms": xs[-1] * 1e3, "min_ms": xs[0] * 1e3,
            "mean_ms": sum(xs) / len(xs) * 1e3}


def paced_run(primary, replicas, rate, secs, watch, a, procs):
    db = f"lag{rate}-{watch}.db"
    nodes = [primary] + replicas
    create_db(os.path.join(primary.mnt, db))
    wait_same_pos(primary, replicas, db, a.timeout)
    base_txid = primary.pos(db)[0]
    ltx0 = {n.name: ltx_files(n, db) for n in nodes}
    stop_at = mp.Value("q", 0)
    deadline = mp.Value("d", time.time() + secs * 3 + a.timeout + 60)
    pollers = []
    for r in replicas:
        q, ev = mp.Queue(), mp.Event()
        p = mp.Process(target=poller, args=(watch, os.path.join(r.mnt, db), stop_at, deadline,
                                            a.poll_interval, ev, q), daemon=True)
        p.start()
        procs.append(p)
        pollers.append((r, p, q, ev))
    for r, p, q, ev in pollers:
        if not ev.wait(30):
            raise RuntimeError(f"{watch} poller on {r.name} not ready in 30 s")
    cpu0 = {n.name: n.cpu_s() for n in nodes}
    wq = mp.Queue()
    w = mp.Process(target=writer, args=(os.path.join(primary.mnt, db), rate, secs, wq), daemon=True)
    w.start()
    procs.append(w)
    res = get_result(wq, w, secs * 3 + 60, "writer")
    w.join(10)
    if not res["ok"]:
        raise RuntimeError(f"writer on the primary failed: {res['error']}")
    final_txid = primary.pos(db)[0]  # a barrier: the last commit is captured
    if final_txid - base_txid != res["n"]:
        # One TXID per SQLite transaction is what maps TXIDs to rows.
        raise RuntimeError(f"{db}: {res['n']} commits moved the primary from TXID {base_txid} to {final_txid}")
    stop_at.value = res["last"] if watch == "sql" else final_txid
    deadline.value = time.time() + a.timeout
    catchup = wait_same_pos(primary, replicas, db, a.timeout, since=res["t_end"])
    cpu1 = {n.name: n.cpu_s() for n in nodes}
    ltx1 = {n.name: ltx_files(n, db) for n in nodes}
    commit_call = [d - b for b, d in zip(res["begun"], res["done"])]
    out = {"rate": rate, "watch": watch, "seconds": secs, "commits": res["n"], "writer_cpu_s": res["cpu_s"],
           "achieved_tx_s": res["n"] / (res["t_end"] - res["t_start"]),
           "writer_late_max_ms": res["late_max_s"] * 1e3, "writer_late_over_1ms": res["late_over_1ms"],
           "commit_call": summary_ms(commit_call),
           "ltx_files": {k: (ltx1[k] - ltx0[k]) if ltx0[k] is not None and ltx1[k] is not None else None
                         for k in ltx0},
           "daemon_cpu_s": {k: (cpu1[k] - cpu0[k]) if cpu0[k] is not None and cpu1[k] is not None else None
                            for k in cpu0},
           "replicas": {}}
    for r, p, q, ev in pollers:
        pr = get_result(q, p, a.timeout + 30, f"poller on {r.name}")
        p.join(10)
        if not pr["ok"]:
            raise RuntimeError(f"{watch} poller on {r.name} failed: {pr['error']}")
        # Events as row sequence numbers (TXID base+1 is the writer's first row).
        events = [(t, v if watch == "sql" else res["first"] + (v - base_txid - 1)) for t, v in pr["events"]]
        if not events or events[-1][1] < res["last"]:
            seen = events[-1][1] if events else None
            raise ReplicationFailed(f"{db}: {r.name} ({watch}) saw up to row {seen}, the primary committed "
                                    f"{res['last']} ({a.timeout:g} s after the writer stopped)")
        lat = []
        ev_i = 0
        by_second = {}  # second of the run -> worst latency of the commits begun in it
        for k, t_begun in enumerate(res["begun"]):
            s_k = res["first"] + k
            while events[ev_i][1] < s_k:
                ev_i += 1
            lat.append(events[ev_i][0] - t_begun)
            sec = int(t_begun - res["t_start"])
            by_second[sec] = max(by_second.get(sec, 0.0), lat[-1])
        out["replicas"][r.name] = {**summary_ms(lat), "visibility_steps": len(events), "polls": pr["polls"],
                                   "poller_cpu_s": pr["cpu_s"],
                                   "max_ms_by_second": [round(by_second[k] * 1e3, 2) for k in sorted(by_second)],
                                   "poll_errors": pr["errors"],
                                   "pos_catchup_after_stop_ms": catchup[r.name] * 1e3}
    out["check"] = check_rows(primary, replicas, db)
    return out


def unpaced_run(primary, replicas, secs, a, procs):
    db = "thr.db"
    nodes = [primary] + replicas
    create_db(os.path.join(primary.mnt, db))
    wait_same_pos(primary, replicas, db, a.timeout)
    start = {n.name: n.pos(db)[0] for n in nodes}
    ltx0 = {n.name: ltx_files(n, db) for n in nodes}
    cpu0 = {n.name: n.cpu_s() for n in nodes}
    wq = mp.Queue()
    w = mp.Process(target=writer, args=(os.path.join(primary.mnt, db), None, secs, wq), daemon=True)
    w.start()
    procs.append(w)
    samples = []  # (wall time, {node: txid})
    hard = time.monotonic() + secs * 3 + 60
    res = None
    while res is None:
        row = {}
        for n in nodes:
            p = n.pos(db)
            row[n.name] = p[0] if p else None
        samples.append((time.time(), row))
        try:
            res = wq.get(timeout=SAMPLE_EVERY)
        except Exception:
            if not w.is_alive() or time.monotonic() > hard:
                res = get_result(wq, w, 5, "writer")
    w.join(10)
    if not res["ok"]:
        raise RuntimeError(f"writer on the primary failed: {res['error']}")
    t_end = res["t_end"]
    final = primary.pos(db)  # barrier: the last commit is captured
    catchup = wait_same_pos(primary, replicas, db, a.timeout, since=t_end)
    t_conv = time.time()
    cpu1 = {n.name: n.cpu_s() for n in nodes}
    ltx1 = {n.name: ltx_files(n, db) for n in nodes}
    dur = t_end - res["t_start"]
    during = [(t, row) for t, row in samples if res["t_start"] <= t <= t_end]
    if len(during) < 2:
        raise RuntimeError(f"{db}: fewer than two -pos samples while the writer ran")
    (ta, ra), (tb, rb) = during[0], during[-1]
    out = {"seconds": secs, "commits": res["n"], "commits_per_s": res["n"] / dur,
           "primary_txids": final[0] - start[primary.name],
           "primary_txids_per_s": (final[0] - start[primary.name]) / dur,
           "ltx_files": {k: (ltx1[k] - ltx0[k]) if ltx0[k] is not None and ltx1[k] is not None else None
                         for k in ltx0},
           "daemon_cpu_s": {k: (cpu1[k] - cpu0[k]) if cpu0[k] is not None and cpu1[k] is not None else None
                            for k in cpu0},
           "replicas": {}, "samples": [(round(t - res["t_start"], 4), row) for t, row in samples]}
    for r in replicas:
        lag = [row[primary.name] - row[r.name] for t, row in during
               if row.get(r.name) is not None and row.get(primary.name) is not None]
        applied_during = (rb[r.name] - ra[r.name]) / (tb - ta) if tb > ta else None
        out["replicas"][r.name] = {
            "txids_per_s_while_writing": applied_during,
            "txids_per_s_until_caught_up": (final[0] - start[r.name]) / (dur + catchup[r.name]),
            "max_lag_txids_sampled": max(lag) if lag else None,
            "catchup_after_stop_s": catchup[r.name],
        }
    out["converged_s_after_stop"] = t_conv - t_end
    out["check"] = check_rows(primary, replicas, db)
    return out


def plain_run(base, secs):
    d = os.path.join(base, "plain")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "thr.db")
    for x in ("", "-wal", "-shm"):
        try:
            os.remove(path + x)
        except FileNotFoundError:
            pass
    create_db(path)
    q = mp.Queue()
    w = mp.Process(target=writer, args=(path, None, secs, q), daemon=True)
    w.start()
    res = get_result(q, w, secs * 3 + 60, "plain writer")
    w.join(10)
    if not res["ok"]:
        raise RuntimeError(f"plain writer failed: {res['error']}")
    return res["n"] / (res["t_end"] - res["t_start"])


# ----------------------------------------------------------------- main


def render(out):
    m = out["machine"]
    L = []
    L.append("Commit-to-visible latency, ms: from the wall-clock time in the row (taken just before the "
             "INSERT that commits) to the return of the replica read that first showed it "
             "(sql: max(seq) on a SQLite connection; pos: the TXID in <db>-pos):")
    L.append("")
    L.append("| target tx/s | achieved | watch | replica | p50 | p99 | max | commit call p50 / p99 | "
             "commits per LTX file | -pos caught up after stop |")
    L.append("|---:|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for run in out["paced"]:
        cc = run["commit_call"]
        ltx = run["ltx_files"].get("primary")
        per = f"{run['commits'] / ltx:.1f}" if ltx else "?"
        for name, r in run["replicas"].items():
            L.append(f"| {run['rate']:,} | {run['achieved_tx_s']:,.0f} | {run['watch']} | {name} | "
                     f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['max_ms']:.2f} | "
                     f"{cc['p50_ms']:.3f} / {cc['p99_ms']:.3f} | {per} | {r['pos_catchup_after_stop_ms']:.1f} |")
    u, p = out.get("unpaced"), out.get("plain")
    if u and p:
        L.append("")
        L.append(f"Unpaced writer, {u['seconds']:g} s each (1 INSERT/tx of a 100-byte row, WAL, "
                 f"synchronous=NORMAL); one TXID per transaction:")
        L.append("")
        L.append("| what | tx/s | ratio to plain | LTX files | notes |")
        L.append("|---|---:|---:|---:|---|")
        L.append(f"| plain SQLite (same disk, no mount), before / after | {p['before']:,.0f} / {p['after']:,.0f} | "
                 f"1.00 | | mean {p['mean']:,.0f} |")
        ltx = u["ltx_files"]
        L.append(f"| primary, 2 replicas streaming: commits | {u['commits_per_s']:,.0f} | "
                 f"{u['ratio_to_plain']:.2f} | {ltx.get('primary')} | "
                 f"{u['commits'] / ltx['primary'] if ltx.get('primary') else 0:.1f} commits per LTX file |")
        for name, r in u["replicas"].items():
            L.append(f"| {name}: TXIDs applied | {r['txids_per_s_while_writing']:,.0f} while writing; "
                     f"{r['txids_per_s_until_caught_up']:,.0f} until caught up | "
                     f"{r['txids_per_s_while_writing'] / p['mean']:.2f} | {ltx.get(name)} | "
                     f"-pos equal to the primary's {r['catchup_after_stop_s'] * 1e3:,.0f} ms after the writer "
                     f"stopped; max lag {r['max_lag_txids_sampled']:,} TXIDs (sampled every "
                     f"{SAMPLE_EVERY * 1e3:g} ms) |")
    L.append("")
    cpu = out.get("daemons", {})
    if cpu:
        L.append("Daemon CPU over the whole run: " + ", ".join(
            f"{k} {v['cpu_s']:.1f} s (peak RSS {v['peak_rss_mib']} MiB)" for k, v in cpu.items()) + ".")
        L.append("")
    L.append(f"Machine: {m.get('cpu', '?')}, nproc {m['nproc']}, {m.get('mem_gib', '?')} GiB, Linux "
             f"{m['kernel']} ({m['fs']} under {m['base']}), SQLite {m['sqlite']}, Python {m['python']}; "
             f"FUSE I/O: {', '.join(f'{k} {v}' for k, v in m['io_path'].items())}; poll interval "
             f"{out['poll_interval_s'] * 1e3:g} ms; all three nodes, the writer and the pollers on this "
             f"one machine; 1-minute load average {m.get('loadavg_start')} at the start, "
             f"{m.get('loadavg_end', '?')} at the end.")
    return "\n".join(L)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--litefs", default="target/release/litefs", help="the litefs binary")
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    ap.add_argument("--rates", default="100,1000", help="paced rates in tx/s, comma-separated")
    ap.add_argument("--watch", default="sql,pos",
                    help="how pollers watch the replicas: sql (max(seq) on a SQLite connection), pos "
                         "(<db>-pos), comma-separated: each is a separate paced run")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--poll-interval", type=float, default=0.0002,
                    help="pause between a poller's queries, s (0: a tight loop, which takes a whole "
                         "CPU per replica away from the daemons)")
    ap.add_argument("--classic", action="store_true", help="fuse.passthrough: false on every node")
    ap.add_argument("--timeout", type=float, default=60.0,
                    help="how long replicas may take to converge after a writer stops, s")
    ap.add_argument("--smoke", action="store_true", help="1 s per run (the test suite runs this)")
    ap.add_argument("--dir", default=None, help="where to put the nodes (default: a temp dir under /tmp)")
    ap.add_argument("--out", default="target/lag")
    ap.add_argument("--keep", action="store_true", help="keep the nodes' directories (logs)")
    ap.add_argument("--self-check-broken", action="store_true",
                    help="checks the checker: the last replica replicates no database of the run "
                         "(lease.databases), so the run must fail with exit status 1")
    a = ap.parse_args()
    if a.smoke:
        a.seconds = 1.0
    rates = [int(r) for r in a.rates.split(",") if r]
    watches = [w for w in a.watch.split(",") if w]
    if not set(watches) <= {"sql", "pos"}:
        sys.exit(f"--watch {a.watch}: expected sql and/or pos")
    litefs = os.path.abspath(a.litefs)
    if not os.access(litefs, os.X_OK):
        sys.exit(f"--litefs {litefs}: not an executable (cargo build --release -p litefs)")

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    base = tempfile.mkdtemp(prefix="litefs-lag-", dir=a.dir)
    nodes, procs = [], []
    out = {"seconds": a.seconds, "poll_interval_s": a.poll_interval, "smoke": a.smoke, "paced": []}
    failure, ok = None, False
    dog = Watchdog(nodes)
    dog.start()
    per_run = a.seconds * 2 + a.timeout + 60
    try:
        dog.arm(180, "starting the nodes")
        primary = Node(litefs, base, "primary", "lease:\n  type: static\n  candidate: true\n"
                       "  hostname: lag-primary\n", not a.classic)
        nodes.append(primary)
        primary.start()
        replicas = []
        for i in range(a.replicas):
            lease = (f"lease:\n  type: static\n  candidate: false\n  hostname: lag-primary\n"
                     f"  advertise-url: {primary.url}\n  reconnect-delay: 100ms\n")
            if a.self_check_broken and i == a.replicas - 1:
                lease += "  databases: [none.db]\n"
            r = Node(litefs, base, f"replica-{i + 1}", lease, not a.classic)
            nodes.append(r)
            replicas.append(r)
            r.start()
        for r in replicas:
            r.wait_connected()
        out["machine"] = machine(nodes)
        out["machine"]["fs"], out["machine"]["base"] = fs_type(base), os.path.dirname(base)
        for rate in rates:
            for watch in watches:
                print(f"paced writer at {rate} tx/s for {a.seconds:g} s, replicas watched by {watch}",
                      file=sys.stderr)
                dog.arm(per_run, f"the paced run at {rate} tx/s ({watch})")
                out["paced"].append(paced_run(primary, replicas, rate, a.seconds, watch, a, procs))
        # Plain SQLite before and after the mount, so drift shows.
        print(f"unpaced writers for {a.seconds:g} s: plain, primary, plain", file=sys.stderr)
        dog.arm(3 * per_run, "the unpaced runs")
        before = plain_run(base, a.seconds)
        out["unpaced"] = unpaced_run(primary, replicas, a.seconds, a, procs)
        after = plain_run(base, a.seconds)
        out["plain"] = {"before": before, "after": after, "mean": (before + after) / 2}
        out["unpaced"]["ratio_to_plain"] = out["unpaced"]["commits_per_s"] / out["plain"]["mean"]
        out["daemons"] = {n.name: {"cpu_s": n.cpu_s(), "peak_rss_mib": n.peak_rss_mib()} for n in nodes}
        out["machine"]["loadavg_end"] = loadavg()
        for n in nodes:
            if n.proc.poll() is not None:
                raise n.fail(f"exited with status {n.proc.returncode} during the run")
        ok = True
    except ReplicationFailed as e:
        failure = str(e)
    except Exception as e:
        if not dog.fired:
            raise
        failure = f"{type(e).__name__}: {e}"
    finally:
        dog.arm(120, "stopping the nodes")
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
                if p.is_alive():
                    p.kill()
                    p.join(5)
        for n in nodes:
            n.stop()
        if a.keep or not ok:
            print(f"nodes' directories (configs, logs, data) kept in {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
        dog.arm(1e9, "done")
    if dog.fired:
        failure = f"stuck during {dog.fired} (a daemon stopped answering; see above)" + (
            f"; then: {failure}" if failure else "")

    os.makedirs(a.out, exist_ok=True)
    if failure:
        out["failure"] = failure
    if "machine" in out:
        md = render(out)
        if failure:
            md += "\n\nREPLICATION FAILED (the runs above completed): " + failure.split("\n")[0]
        print(md)
        with open(os.path.join(a.out, "lag.md"), "w") as f:
            f.write(md + "\n")
    with open(os.path.join(a.out, "lag.json"), "w") as f:
        json.dump(out, f, indent=2)
    if failure:
        print(f"REPLICATION FAILED: {failure}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
