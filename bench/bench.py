#!/usr/bin/env python3
"""litefs-rs end-to-end benchmark: the same SQLite workloads in a plain
directory, in a litefs mount and on a trivial passthrough FUSE filesystem
(the floor: what any FUSE filesystem costs here), interleaved in one run,
on the same disk.

    bash bench/run.sh [--rounds 3] [--seconds 2] [--mode passthrough|classic|both] [--quick]

(`bench/run.sh` builds the release binary and the floor filesystem, then
runs this script.) Prints a Markdown table (medians over the rounds, ratio
target/plain, the issue's target for the mount, LiteFS v0.5.14's measured
ratio for reference) and writes bench.md and bench.json to --out (default
target/bench). It also reports the daemon's peak RSS per phase, its CPU
seconds, and the start-up time of a mount holding a 1 GB database, warm
and cold (page cache dropped, when permitted). It is a benchmark: it
asserts nothing about speed and fails only if something breaks.
"""
import argparse, json, multiprocessing as mp, os, platform, random, shutil, signal, sqlite3
import statistics, subprocess, sys, tempfile, time

ROW = b"x" * 100

# LiteFS v0.5.14 / plain SQLite, measured on this machine kind (issue 4).
LITEFS_REF = {
    "WAL, synchronous=NORMAL, 1 insert/tx": 445 / 57000,
    "WAL, synchronous=FULL, 1 insert/tx": 410 / 5600,
    "DELETE journal, synchronous=FULL, 1 insert/tx": 153 / 1300,
    "one tx inserting 200k rows": 69000 / 590000,
    "point reads, WAL, 10 MB": 6100 / 229000,
}
# The targets for mount/plain.
TARGETS = {
    "WAL, synchronous=NORMAL, 1 insert/tx": 0.5,
    "WAL, synchronous=FULL, 1 insert/tx": 0.8,
    "DELETE journal, synchronous=FULL, 1 insert/tx": 0.8,
    "one tx inserting 200k rows": 0.7,
    "4 readers + 1 writer: reads": 0.7,
    "4 readers + 1 writer: writes": 0.7,
}
for _size in ("10 MB", "100 MB", "1 GB"):
    TARGETS[f"point reads, WAL, {_size}"] = 0.9
    TARGETS[f"full scan (warm cache), {_size}"] = 0.9


def fresh(path):
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            os.remove(path + suffix)
        except FileNotFoundError:
            pass


def single_inserts(path, mode, sync, secs, create=True):
    if create:
        fresh(path)
    c = sqlite3.connect(path, isolation_level=None)
    c.execute(f"PRAGMA journal_mode={mode}")
    c.execute(f"PRAGMA synchronous={sync}")
    c.execute("CREATE TABLE IF NOT EXISTS w(id INTEGER PRIMARY KEY, v BLOB)")
    n, end = 0, time.perf_counter() + secs
    while time.perf_counter() < end:
        c.execute("INSERT INTO w(v) VALUES (?)", (ROW,))
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


def populate(path, mb, row_bytes):
    """A table of random rows filling about `mb` MB, in 50 MB transactions
    (WAL), checkpointed into the database file. Returns the row count."""
    fresh(path)
    rows = mb * 1_000_000 // (row_bytes + 30)
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=wal")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    chunk = max(1, 50_000_000 // (row_bytes + 30))
    rnd = random.Random(7)
    for start in range(0, rows, chunk):
        c.execute("BEGIN")
        c.executemany("INSERT INTO t(v) VALUES (?)",
                      ((rnd.randbytes(row_bytes),) for _ in range(min(chunk, rows - start))))
        c.execute("COMMIT")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()
    return rows


def point_reads(path, rows, secs):
    c = sqlite3.connect(path, isolation_level=None)
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
    c.execute("SELECT sum(length(v)) FROM t").fetchone()  # warm the cache
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


def mounted(d):
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == os.path.realpath(d) for line in f)


def proc_stats(pid):
    """(peak RSS MiB, current RSS MiB, CPU seconds) of a process."""
    with open(f"/proc/{pid}/status") as f:
        st = {l.split(":")[0]: l.split()[1] for l in f if l.startswith(("VmHWM", "VmRSS"))}
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return int(st["VmHWM"]) / 1024, int(st["VmRSS"]) / 1024, cpu


def drop_caches():
    """Drops the page cache; False when not permitted (not root)."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


class Daemon:
    """A FUSE daemon serving `self.dir` until stop()."""

    def __init__(self, base, name, argv):
        self.base, self.name, self.argv = base, name, argv
        self.dir = os.path.join(base, name, "mnt")
        self.log = os.path.join(base, name, "daemon.log")
        os.makedirs(self.dir, exist_ok=True)
        self.proc = None

    def start(self):
        """Starts the daemon; returns seconds until the mount answers."""
        t = time.perf_counter()
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=open(self.log, "a"))
        deadline = time.time() + 120
        while not mounted(self.dir):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{self.name} did not mount; see {self.log}")
            time.sleep(0.005)
        os.listdir(self.dir)
        return time.perf_counter() - t

    def stats(self):
        return proc_stats(self.proc.pid)

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if mounted(self.dir):
            subprocess.run(["fusermount3", "-u", "-z", self.dir], check=False)
        self.proc = None


def litefs_daemon(litefs, base, name, passthrough):
    root = os.path.join(base, name)
    os.makedirs(root, exist_ok=True)
    cfg = os.path.join(root, "litefs.yml")
    with open(cfg, "w") as f:
        f.write(f"fuse:\n  dir: {root}/mnt\n  passthrough: {str(passthrough).lower()}\n"
                f"data:\n  dir: {root}/data\nhttp:\n  addr: \"127.0.0.1:0\"\nlease:\n  type: static\n")
    return Daemon(base, name, [litefs, "mount", "-config", cfg])


def floor_daemon(floorfs, base, name, passthrough):
    backing = os.path.join(base, name, "backing")
    os.makedirs(backing, exist_ok=True)
    argv = [floorfs] + ([] if passthrough else ["--classic"]) + [backing, os.path.join(base, name, "mnt")]
    return Daemon(base, name, argv)


def machine():
    info = {"nproc": os.cpu_count(), "kernel": platform.release(), "sqlite": sqlite3.sqlite_version,
            "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, StopIteration):
        pass
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--litefs", default="target/release/litefs")
    ap.add_argument("--floorfs", default="target/release/examples/floorfs",
                    help="the floor filesystem; empty to leave it out")
    ap.add_argument("--mode", choices=("passthrough", "classic", "both"), default="passthrough",
                    help="FUSE I/O path of the mount (and the floor)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--baseline", default="",
                    help="another litefs binary (an older build) measured in the same run as 'base (mode)'")
    ap.add_argument("--sizes", default="100,1000", help="large database sizes in MB, comma-separated")
    ap.add_argument("--quick", action="store_true", help="1 round, 1 s, sizes 100 MB only")
    ap.add_argument("--smoke", action="store_true",
                    help="checks that every workload runs (1 round, 0.2 s, 20 MB): the test suite runs this")
    ap.add_argument("--dir", default=None, help="where to run (default: a temp dir under /tmp)")
    ap.add_argument("--out", default="target/bench")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.seconds, a.sizes = 1, 1.0, "100"
    if a.smoke:
        a.rounds, a.seconds, a.sizes = 1, 0.2, "20"
    sizes = [int(s) for s in a.sizes.split(",") if s]
    base = tempfile.mkdtemp(prefix="litefs-bench-", dir=a.dir)
    plain = os.path.join(base, "plain")
    os.makedirs(plain)

    modes = ["passthrough", "classic"] if a.mode == "both" else [a.mode]
    daemons = {}
    for m in modes:
        daemons[f"mount ({m})"] = litefs_daemon(os.path.abspath(a.litefs), base, f"mount-{m}", m == "passthrough")
        if a.baseline:
            daemons[f"mount base ({m})"] = litefs_daemon(os.path.abspath(a.baseline), base, f"base-{m}",
                                                         m == "passthrough")
        if a.floorfs:
            daemons[f"floor ({m})"] = floor_daemon(os.path.abspath(a.floorfs), base, f"floor-{m}",
                                                   m == "passthrough")
    targets = {"plain": plain, **{k: d.dir for k, d in daemons.items()}}
    mounts = [k for k in daemons if k.startswith("mount")]
    results, rss_phases, startup = {}, [], {}

    turn = [0]

    def in_turn():
        """The targets, starting one further along at each call: no target
        always runs right after another one's leftovers (dirty pages,
        warm caches). Dirty data is flushed before each run."""
        names = list(targets)
        k = turn[0] % len(names)
        turn[0] += 1
        return names[k:] + names[:k]

    def record(name, unit, fn):
        v = results.setdefault(name, {"unit": unit, **{t: [] for t in targets}})
        for t in in_turn():
            os.sync()
            v[t].append(fn(targets[t]))

    def rss(phase):
        row = {"phase": phase}
        for k in mounts:
            peak, cur, cpu = daemons[k].stats()
            row[k] = {"peak_mib": round(peak, 1), "rss_mib": round(cur, 1), "cpu_s": round(cpu, 1)}
        rss_phases.append(row)

    try:
        for d in daemons.values():
            d.start()
        rows_small = 100_000
        for r in range(a.rounds):
            print(f"round {r + 1}/{a.rounds}: small databases", file=sys.stderr)
            record("WAL, synchronous=NORMAL, 1 insert/tx", "tx/s",
                   lambda d: single_inserts(os.path.join(d, "s1.db"), "wal", "normal", a.seconds))
            record("WAL, synchronous=FULL, 1 insert/tx", "tx/s",
                   lambda d: single_inserts(os.path.join(d, "s2.db"), "wal", "full", a.seconds))
            record("DELETE journal, synchronous=FULL, 1 insert/tx", "tx/s",
                   lambda d: single_inserts(os.path.join(d, "s3.db"), "delete", "full", a.seconds))
            record("one tx inserting 200k rows", "rows/s", lambda d: bulk_insert(os.path.join(d, "bulk.db")))
            for d in targets.values():
                populate(os.path.join(d, "reads.db"), 13, 100)
            record("point reads, WAL, 10 MB", "reads/s",
                   lambda d: point_reads(os.path.join(d, "reads.db"), rows_small, a.seconds))
            record("full scan (warm cache), 10 MB", "MB/s", lambda d: scan(os.path.join(d, "reads.db")))
            rw = {}
            for t in in_turn():
                os.sync()
                rw[t] = readers_writer(os.path.join(targets[t], "reads.db"), rows_small, a.seconds)
            for i, name in enumerate(("4 readers + 1 writer: reads", "4 readers + 1 writer: writes")):
                v = results.setdefault(name, {"unit": "reads/s" if i == 0 else "tx/s", **{t: [] for t in targets}})
                for t in targets:
                    v[t].append(rw[t][i])
        rss("small databases")

        populate_s = {}
        for mb in sizes:
            label = f"{mb // 1000} GB" if mb >= 1000 else f"{mb} MB"
            row_bytes = 1000
            rows = 0
            for t, d in targets.items():
                print(f"populating {label} in {t}", file=sys.stderr)
                t0 = time.perf_counter()
                rows = populate(os.path.join(d, f"big{mb}.db"), mb, row_bytes)
                populate_s.setdefault(label, {})[t] = round(time.perf_counter() - t0, 2)
            rss(f"after populating {label}")
            for r in range(a.rounds):
                print(f"round {r + 1}/{a.rounds}: {label}", file=sys.stderr)
                record(f"point reads, WAL, {label}", "reads/s",
                       lambda d: point_reads(os.path.join(d, f"big{mb}.db"), rows, a.seconds))
                record(f"full scan (warm cache), {label}", "MB/s", lambda d: scan(os.path.join(d, f"big{mb}.db")))
                record(f"WAL, synchronous=NORMAL, 1 insert/tx, {label}", "tx/s",
                       lambda d: single_inserts(os.path.join(d, f"big{mb}.db"), "wal", "normal",
                                                a.seconds, create=False))
            rss(f"after {label} workloads")

        # Start-up of each mount with everything above in it (the largest
        # database last written): warm, then with the page cache dropped.
        for k in mounts:
            d = daemons[k]
            for kind in ("warm", "cold"):
                d.stop()
                seen = os.path.getsize(d.log)
                if kind == "cold" and not drop_caches():
                    startup.setdefault(k, {})[kind] = None
                    d.start()
                    continue
                startup.setdefault(k, {})[kind] = round(d.start(), 3)
                # Which start-up path each database took (see docs/operations.md).
                time.sleep(0.5)
                with open(d.log, errors="replace") as f:
                    f.seek(seen)
                    text = f.read()
                startup[k][f"{kind}_saved_tables_used"] = text.count("page checksums taken from the clean shutdown")
                startup[k][f"{kind}_rescans"] = text.count("rescanning")
            peak, _, _ = d.stats()
            startup[k]["peak_mib_after_start"] = round(peak, 1)
    finally:
        for d in daemons.values():
            d.stop()
        shutil.rmtree(base, ignore_errors=True)

    cols = list(targets)
    others = [t for t in cols if t != "plain"]
    head = ["workload", "unit", "plain"] + others + [f"{t}/plain" for t in others] + ["target", "LiteFS 0.5.14"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    out = {"machine": machine(), "rounds": a.rounds, "seconds": a.seconds, "modes": modes,
           "workloads": {}, "rss": rss_phases, "startup_s": startup, "populate_s": populate_s}
    met_lines = []
    for name, v in results.items():
        med = {t: statistics.median(v[t]) for t in cols}
        ratio = {t: med[t] / med["plain"] for t in others}
        tgt = TARGETS.get(name)
        ref = LITEFS_REF.get(name)
        cells = [name, v["unit"], f"{med['plain']:,.0f}"] + [f"{med[t]:,.0f}" for t in others]
        cells += [f"{ratio[t]:.2f}" for t in others]
        cells += [f">= {tgt}" if tgt else "", f"{ref:.3f}" if ref else ""]
        lines.append("| " + " | ".join(cells) + " |")
        out["workloads"][name] = {"unit": v["unit"], "samples": {t: v[t] for t in cols}, "median": med,
                                  "ratio": ratio, "target": tgt, "litefs_ratio": ref}
        if tgt:
            for t in mounts:
                met_lines.append(f"{name} [{t}]: {ratio[t]:.2f} vs >= {tgt}: {'met' if ratio[t] >= tgt else 'NOT met'}")
    lines.append("")
    lines.append("Daemon memory and CPU (litefs only), cumulative:")
    lines.append("")
    lines.append("| phase | " + " | ".join(f"{k} peak RSS MiB | {k} RSS MiB | {k} CPU s" for k in mounts) + " |")
    lines.append("|---|" + "---:|" * (3 * len(mounts)))
    for row in rss_phases:
        lines.append(f"| {row['phase']} | " + " | ".join(
            f"{row[k]['peak_mib']} | {row[k]['rss_mib']} | {row[k]['cpu_s']}" for k in mounts) + " |")
    lines.append("")
    for k, s in startup.items():
        cold = f"{s['cold']:.2f} s" if s.get("cold") is not None else "not measured (drop_caches refused)"
        lines.append(f"Start-up of {k} holding {sum(sizes) + 30} MB of databases: warm {s['warm']:.2f} s, "
                     f"cold {cold} (target <= 2 s); peak RSS after start {s['peak_mib_after_start']} MiB; "
                     f"saved checksum tables used {s.get('warm_saved_tables_used')}/{s.get('cold_saved_tables_used')}, "
                     f"rescans {s.get('warm_rescans')}/{s.get('cold_rescans')} (warm/cold).")
    lines.append("")
    lines.append(f"Populating (seconds): {populate_s}")
    lines.append("")
    lines.append("Targets: " + "; ".join(met_lines) if met_lines else "")
    m = out["machine"]
    lines.append("")
    lines.append(f"Machine: {m.get('cpu', '?')}, {m['nproc']} cores, {m.get('mem_gib', '?')} GiB, "
                 f"Linux {m['kernel']}, SQLite {m['sqlite']}, Python {m['python']}; "
                 f"{a.rounds} rounds of {a.seconds} s, medians.")
    md = "\n".join(lines)
    print(md)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "bench.md"), "w") as f:
        f.write(md + "\n")
    with open(os.path.join(a.out, "bench.json"), "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
