#!/usr/bin/env python3
"""litefs-rs large-database benchmark: what a full read of the database
(an export, a replica's first snapshot) costs the primary's writers.

    python3 bench/stall.py --litefs target/release/litefs [--mb 1024] [--out DIR]

(build the binary first: `cargo build --release -p litefs`.) One primary
(static lease) on 127.0.0.1 gets a WAL database of --mb MiB of random
blobs; a writer thread then commits one small INSERT after another
(synchronous=NORMAL) and records each commit's latency while

1. a replica starts empty and bootstraps from a snapshot of the whole
   database (writers are held off while the snapshot is read), until its
   copy has the primary's position, and
2. `GET /export` reads the whole database (held off the same way).

Prints, for each, its duration, the writer's worst commit latency
meanwhile (against its median before) and the primary's peak anonymous
memory (heap; a mapped snapshot file is page cache), and writes
DIR/stall.json. It
asserts nothing about speed; it exits 1 if the replica does not reach the
primary's position within --timeout. Daemons are stopped and mounts
lazily unmounted on every exit path.
"""
import argparse, json, os, shutil, sqlite3, statistics, sys, tempfile, threading, time, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lag  # noqa: E402  (Node, read_pos)


class RssPeak(threading.Thread):
    """The peak anonymous resident memory (MiB: heap, not the page cache a
    mapped file uses) of process `pid`, sampled every 20 ms while in a
    `with` block."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, False

    def run(self):
        while not self.done:
            try:
                with open(f"/proc/{self.pid}/status") as f:
                    for line in f:
                        if line.startswith("RssAnon:"):
                            self.peak = max(self.peak, int(line.split()[1]) // 1024)
            except OSError:
                return
            time.sleep(0.02)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.done = True
        self.join()


class Writer:
    """Small commits in a loop on their own connection, each one timed."""

    def __init__(self, path):
        self.path, self.lat, self.stop, self.error = path, [], False, None
        self.thread = threading.Thread(target=self.run)

    def run(self):
        try:
            c = sqlite3.connect(self.path, isolation_level=None, timeout=120)
            c.execute("PRAGMA synchronous=NORMAL")
            while not self.stop:
                t = time.monotonic()
                c.execute("INSERT INTO t VALUES (1)")
                self.lat.append((t, time.monotonic() - t))
            c.close()
        except Exception as e:  # reported by the main thread
            self.error = e

    def __enter__(self):
        self.thread.start()
        time.sleep(1)
        return self

    def __exit__(self, *exc):
        self.stop = True
        self.thread.join()
        if self.error:
            raise self.error

    def worst(self, t0, t1):
        """Worst commit latency (ms) of commits started in [t0, t1], and the
        median (ms) of those before t0."""
        during = [l for t, l in self.lat if t0 <= t <= t1] or [0.0]
        before = [l for t, l in self.lat if t < t0] or [0.0]
        return max(during) * 1000, statistics.median(before) * 1000


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--litefs", default="target/release/litefs")
    ap.add_argument("--mb", type=int, default=1024)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    litefs = os.path.abspath(a.litefs)
    base = tempfile.mkdtemp(prefix="litefs-stall-")
    nodes = []
    try:
        p = lag.Node(litefs, base, "primary", "", True)
        with open(p.cfg, "a") as f:
            f.write(f"lease:\n  type: static\n  candidate: true\n  hostname: primary\n"
                    f"  advertise-url: \"{p.url}\"\n")
        nodes.append(p)
        p.start()
        db = os.path.join(p.mnt, "app.db")
        c = sqlite3.connect(db, isolation_level=None)
        c.execute("PRAGMA journal_mode=WAL")
        c.execute("CREATE TABLE big(x BLOB)")
        c.execute("CREATE TABLE t(x)")
        c.execute("BEGIN")
        for _ in range(a.mb):
            c.execute("INSERT INTO big VALUES (randomblob(1048576))")
        c.execute("COMMIT")
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        c.close()
        size_mb = os.path.getsize(db) / 2**20
        out = {"db_mb": round(size_mb)}

        with Writer(db) as w, RssPeak(p.proc.pid) as rss:
            r = lag.Node(litefs, base, "replica", "", True)
            with open(r.cfg, "a") as f:
                f.write(f"lease:\n  type: static\n  candidate: false\n  hostname: replica\n"
                        f"  advertise-url: \"{p.url}\"\n")
            nodes.append(r)
            t0 = time.monotonic()
            r.start()
            # The snapshot is whole once the replica's TXID passes the one
            # the writer had before it started.
            want = lag.read_pos(os.path.join(p.mnt, "app.db-pos"))[0]
            deadline = t0 + a.timeout
            while True:
                try:
                    if lag.read_pos(os.path.join(r.mnt, "app.db-pos"))[0] >= want:
                        break
                except (OSError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    print(r.fail("never reached the primary's position"), file=sys.stderr)
                    return 1
                time.sleep(0.01)
            t1 = time.monotonic()
            time.sleep(0.5)
        worst, median = w.worst(t0, t1)
        out["bootstrap"] = {"seconds": round(t1 - t0, 2), "worst_commit_ms": round(worst),
                            "median_commit_ms": round(median, 3), "primary_peak_anon_mib": rss.peak}

        with Writer(db) as w, RssPeak(p.proc.pid) as rss:
            t0 = time.monotonic()
            body = urllib.request.urlopen(f"{p.url}/export?name=app.db", timeout=a.timeout).read()
            t1 = time.monotonic()
            time.sleep(0.5)
        worst, median = w.worst(t0, t1)
        out["export"] = {"mb": round(len(body) / 2**20), "seconds": round(t1 - t0, 2),
                         "worst_commit_ms": round(worst), "median_commit_ms": round(median, 3),
                         "primary_peak_anon_mib": rss.peak}
        del body

        print(f"| {out['db_mb']} MB database | duration | worst commit meanwhile | median commit before | primary peak heap |")
        print("|---|---|---|---|---|")
        for what, k in (("GET /export", "export"), ("replica bootstrap", "bootstrap")):
            e = out[k]
            print(f"| {what} | {e['seconds']} s | {e['worst_commit_ms']} ms | {e['median_commit_ms']} ms"
                  f" | {e['primary_peak_anon_mib']} MiB |")
        if a.out:
            os.makedirs(a.out, exist_ok=True)
            with open(os.path.join(a.out, "stall.json"), "w") as f:
                json.dump(out, f, indent=2)
        return 0
    finally:
        for n in reversed(nodes):
            try:
                n.stop()
            except Exception as e:
                print(f"{n.name}: stop: {e}", file=sys.stderr)
        if not any(lag.fuse_mounted(n.mnt) for n in nodes):
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
