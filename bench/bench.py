#!/usr/bin/env python3
"""litefs-rs end-to-end benchmark: the same SQLite workloads in a plain
directory and in a litefs mount, interleaved in one run, on the same disk.

    cargo build --release -p litefs && python3 bench/bench.py [--rounds 3] [--seconds 2] [--out DIR]

Prints a Markdown table (medians, ratio mount/plain) and writes bench.md
and bench.json to --out (default target/bench). Also reports the daemon's
peak RSS and CPU seconds. It is a benchmark: it asserts nothing about speed
and fails only if something breaks.
"""
import argparse, json, multiprocessing as mp, os, platform, shutil, signal, sqlite3, statistics
import subprocess, sys, tempfile, time

ROW = b"x" * 100


def fresh(path):
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass


def single_inserts(path, mode, sync, secs):
    fresh(path)
    c = sqlite3.connect(path, isolation_level=None)
    c.execute(f"PRAGMA journal_mode={mode}")
    c.execute(f"PRAGMA synchronous={sync}")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    n, end = 0, time.perf_counter() + secs
    while time.perf_counter() < end:
        c.execute("INSERT INTO t(v) VALUES (?)", (ROW,))
        n += 1
    c.close()
    return n / secs


def bulk_insert(path, rows=200_000):
    fresh(path)
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=wal")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    t = time.perf_counter()
    c.execute("BEGIN")
    c.executemany("INSERT INTO t(v) VALUES (?)", ((ROW,) for _ in range(rows)))
    c.execute("COMMIT")
    dt = time.perf_counter() - t
    c.close()
    return rows / dt


def populate(path, rows):
    fresh(path)
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=wal")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    c.execute("BEGIN")
    c.executemany("INSERT INTO t(v) VALUES (?)", ((os.urandom(100),) for _ in range(rows)))
    c.execute("COMMIT")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()


def point_reads(path, rows, secs):
    c = sqlite3.connect(path, isolation_level=None)
    import random
    rnd = random.Random(1)
    n, end = 0, time.perf_counter() + secs
    while time.perf_counter() < end:
        for _ in range(100):
            c.execute("SELECT v FROM t WHERE id = ?", (rnd.randint(1, rows),)).fetchone()
        n += 100
    c.close()
    return n / secs


def scan(path):
    c = sqlite3.connect(path, isolation_level=None)
    size = os.path.getsize(path)
    t = time.perf_counter()
    c.execute("SELECT sum(length(v)) FROM t").fetchone()
    dt = time.perf_counter() - t
    c.close()
    return size / dt / 1e6


def _reader(path, secs, rows, q):
    q.put(point_reads(path, rows, secs))


def _writer(path, secs, q):
    c = sqlite3.connect(path, timeout=30, isolation_level=None)
    n, end = 0, time.perf_counter() + secs
    while time.perf_counter() < end:
        c.execute("INSERT INTO w(v) VALUES (?)", (ROW,))
        n += 1
    c.close()
    q.put(n / secs)


def readers_writer(path, rows, secs):
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("CREATE TABLE IF NOT EXISTS w(id INTEGER PRIMARY KEY, v BLOB)")
    c.close()
    rq, wq = mp.Queue(), mp.Queue()
    procs = [mp.Process(target=_reader, args=(path, secs, rows, rq)) for _ in range(4)]
    procs.append(mp.Process(target=_writer, args=(path, secs, wq)))
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError("reader/writer process failed")
    return sum(rq.get() for _ in range(4)), wq.get()


class Mount:
    def __init__(self, litefs, base):
        self.dir = os.path.join(base, "mnt")
        self.data = os.path.join(base, "data")
        os.makedirs(self.dir)
        cfg = os.path.join(base, "litefs.yml")
        with open(cfg, "w") as f:
            f.write(f"fuse:\n  dir: {self.dir}\ndata:\n  dir: {self.data}\nlease:\n  type: static\n")
        self.proc = subprocess.Popen([litefs, "mount", "-config", cfg], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(base, "litefs.log"), "w"))
        deadline = time.time() + 20
        while not self.mounted():
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("litefs did not mount; see " + os.path.join(base, "litefs.log"))
            time.sleep(0.02)

    def mounted(self):
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == os.path.realpath(self.dir) for line in f)

    def stats(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM"))
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return hwm / 1024, cpu

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--litefs", default="target/release/litefs")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dir", default=None, help="where to run (default: a temp dir under /tmp)")
    ap.add_argument("--out", default="target/bench")
    a = ap.parse_args()
    base = tempfile.mkdtemp(prefix="litefs-bench-", dir=a.dir)
    plain = os.path.join(base, "plain")
    os.makedirs(plain)
    m = Mount(os.path.abspath(a.litefs), base)
    results = {}

    def record(name, unit, fn):
        for where, d in (("plain", plain), ("mount", m.dir)):
            results.setdefault(name, {"unit": unit, "plain": [], "mount": []})
            results[name][where].append(fn(d))

    try:
        for r in range(a.rounds):
            print(f"round {r + 1}/{a.rounds}", file=sys.stderr)
            record("WAL, synchronous=NORMAL, 1 insert/tx", "tx/s",
                   lambda d: single_inserts(os.path.join(d, "s1.db"), "wal", "normal", a.seconds))
            record("WAL, synchronous=FULL, 1 insert/tx", "tx/s",
                   lambda d: single_inserts(os.path.join(d, "s2.db"), "wal", "full", a.seconds))
            record("DELETE journal, synchronous=FULL, 1 insert/tx", "tx/s",
                   lambda d: single_inserts(os.path.join(d, "s3.db"), "delete", "full", a.seconds))
            record("one tx inserting 200k rows", "rows/s", lambda d: bulk_insert(os.path.join(d, "bulk.db")))
            for d in (plain, m.dir):
                populate(os.path.join(d, "reads.db"), a.rows)
            record("primary-key point reads, WAL", "reads/s",
                   lambda d: point_reads(os.path.join(d, "reads.db"), a.rows, a.seconds))
            record("full-table scan (warm cache)", "MB/s", lambda d: scan(os.path.join(d, "reads.db")))
            rw = {}
            for where, d in (("plain", plain), ("mount", m.dir)):
                rw[where] = readers_writer(os.path.join(d, "reads.db"), a.rows, a.seconds)
            for i, name in enumerate(("4 readers + 1 writer: reads", "4 readers + 1 writer: writes")):
                results.setdefault(name, {"unit": "reads/s" if i == 0 else "tx/s", "plain": [], "mount": []})
                results[name]["plain"].append(rw["plain"][i])
                results[name]["mount"].append(rw["mount"][i])
        rss, cpu = m.stats()
    finally:
        m.stop()
        shutil.rmtree(base, ignore_errors=True)

    lines = ["| workload | plain (median) | mount (median) | mount/plain | unit |", "|---|---:|---:|---:|---|"]
    out = {"machine": {"nproc": os.cpu_count(), "kernel": platform.release(), "sqlite": sqlite3.sqlite_version,
                       "python": platform.python_version()}, "rounds": a.rounds, "seconds": a.seconds,
           "daemon_peak_rss_mib": rss, "daemon_cpu_seconds": cpu, "workloads": {}}
    for name, v in results.items():
        p, q = statistics.median(v["plain"]), statistics.median(v["mount"])
        lines.append(f"| {name} | {p:,.0f} | {q:,.0f} | {q / p:.3f} | {v['unit']} |")
        out["workloads"][name] = {**v, "plain_median": p, "mount_median": q, "ratio": q / p}
    lines.append(f"\nDaemon peak RSS {rss:.1f} MiB, CPU {cpu:.1f} s over the run.")
    md = "\n".join(lines)
    print(md)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "bench.md"), "w") as f:
        f.write(md + "\n")
    with open(os.path.join(a.out, "bench.json"), "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
