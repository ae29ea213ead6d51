#!/usr/bin/env python3
"""Fail-over benchmark: how long a Consul-lease cluster of three candidate
nodes takes to accept writes again after its primary is SIGKILLed, for our
`litefs` or the real LiteFS v0.5.14.

    python3 bench/failover.py --impl ours|litefs [--runs 5] [--out DIR]

(build ours first: `cargo build --release --bin litefs`.) One real
`consul agent -dev` (`$CONSUL_BIN`, else `.deps/bin/consul`) on free
loopback ports serves every run. Each run makes a fresh cluster of three
nodes of ONE implementation (`--impl ours`: target/release/litefs;
`--impl litefs`: ../shared/peers/litefs-0.5.14), each `mount` process with
its own temp data dir, mount dir and API port, and a lease section of
LiteFS's own keys only (its YAML is strict): `type: consul`, `candidate:
true`, `hostname`, `advertise-url`, `consul: {url, key, ttl: 10s,
lock-delay: 1s}`, default `reconnect-delay` (1s); a new Consul key per run,
so no run inherits another's session or lock-delay. Then:

1. wait until exactly one node says `isPrimary` (GET /info) and the two
   others follow it (`.primary` names it);
2. on the primary: a WAL database, a table and five rows; wait until both
   replicas' `<db>-pos` equal the primary's;
3. wait --settle s (6: the primary renews its session every TTL/2 = 5 s,
   so it has renewed at least once), then a random 0-5 s (so the kill
   falls anywhere in its renewal cycle), then SIGKILL the primary;
4. from that instant, a client per survivor (a child process, so that a
   client killed by its mount, e.g. a SIGBUS on a mapped `-shm`, is
   recorded and restarted instead of ending the benchmark) opens a fresh
   SQLite connection on the mount (busy timeout 0) and tries one INSERT,
   every 50 ms; failures are expected until a new primary exists.
   Fail-over time = SIGKILL to the return of the first successful INSERT.
   Meanwhile the Consul key is watched (blocking queries, which answer
   within milliseconds of a change): when the dead primary's session was
   invalidated (the key deleted: `Behavior: delete`) and when a
   survivor's session acquired it split the time into Consul's share
   (2 x TTL after the last renewal, then lock-delay) and the
   implementation's.
5. check: the node whose INSERT succeeded says `isPrimary`, the other
   survivor does not, and the new primary holds the five rows plus its
   own; then stop the cluster.

A run with no successful INSERT within --limit (90 s) is a failure: the
script still finishes the other runs, then exits 1 (and non-zero on any
other error). Prints a Markdown table and writes DIR/failover-IMPL.json
(every run, every attempt's error messages, wall-clock times to line up
with the node logs, which log with timestamps) and DIR/failover-IMPL.md.
Every process (nodes, Consul) is stopped and every mount lazily unmounted
on every exit path (finally, atexit, SIGTERM/SIGHUP/SIGINT); a watchdog
aborts the FUSE connections of a daemon that stops answering, so no call
stays blocked on a mount.
"""
import argparse, atexit, base64, datetime, json, os, platform, random, re, shutil, signal, sqlite3, statistics
import subprocess, sys, tempfile, threading, time, urllib.error, urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lag  # noqa: E402  (Node, Watchdog, fuse_mounted, free_port, read_small, loadavg)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DB = "failover.db"
TRY_EVERY = 0.05  # between a survivor's INSERT attempts, s
PRE_ROWS = 5


def utc(t=None):
    """Wall-clock time as the nodes log it (UTC, ms)."""
    return datetime.datetime.fromtimestamp(time.time() if t is None else t, datetime.timezone.utc) \
        .strftime("%H:%M:%S.%f")[:-3] + "Z"


def http(method, url, body=None, timeout=2.0, headers=None):
    """(status, body text), or (None, error text) when there is no answer;
    with `headers` (a dict), the response's headers are put in it."""
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            if headers is not None:
                headers.update(r.headers)
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        if headers is not None:
            headers.update(e.headers)
        return e.code, e.read().decode(errors="replace")
    except (OSError, ValueError) as e:
        return None, f"{type(e).__name__}: {e}"


# -------------------------------------------------------------- Consul


class Consul:
    """`consul agent -dev` on 127.0.0.1: HTTP and serf/server on free
    ports, DNS and gRPC off (the flags of fuse-tests/src/consul.rs)."""

    def __init__(self, bin_, base):
        self.bin, self.log = bin_, os.path.join(base, "consul.log")
        self.proc, self.url = None, None

    def start(self, attempts=5):
        for attempt in range(1, attempts + 1):
            ports = set()
            while len(ports) < 4:
                ports.add(lag.free_port())
            http_port, lan, wan, server = ports
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    [self.bin, "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
                     "-http-port", str(http_port), "-dns-port", "-1", "-grpc-port", "-1",
                     "-serf-lan-port", str(lan), "-serf-wan-port", str(wan), "-server-port", str(server)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
            self.url = f"http://127.0.0.1:{http_port}"
            if self.wait_ready(30):
                return
            self.stop()
            print(f"consul agent attempt {attempt} did not come up (port clash?)", file=sys.stderr)
        raise RuntimeError(f"consul agent did not start in {attempts} attempts; see {self.log}")

    def wait_ready(self, timeout):
        """A leader, a KV write and a session on its own node (a fresh agent
        answers 500 "Missing node registration" until it has registered)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            st, leader = http("GET", self.url + "/v1/status/leader")
            if st == 200 and leader.strip() not in ("", '""'):
                st, sess = http("PUT", self.url + "/v1/session/create", b'{"Name":"failover-ready","TTL":"10s"}')
                if st == 200:
                    sid = json.loads(sess)["ID"]
                    http("PUT", f"{self.url}/v1/session/destroy/{sid}")
                    st, ok = http("PUT", self.url + "/v1/kv/failover-ready", b"1")
                    if st == 200 and ok.strip() == "true":
                        return True
            time.sleep(0.1)
        return False

    def key(self, key, index=None, wait="1s"):
        """(the KV entry of `key` ({Session, Value...}), None if there is
        none, or the string "error" when Consul does not answer; Consul's
        index). With `index`, a blocking query: it answers when the key
        changes past that index, or after `wait`."""
        q = f"?index={index}&wait={wait}" if index else ""
        hdr = {}
        st, body = http("GET", f"{self.url}/v1/kv/{key}{q}", timeout=10, headers=hdr)
        try:
            idx = int(hdr.get("X-Consul-Index", "0"))
        except ValueError:
            idx = 0
        if st == 404:
            return None, idx
        if st != 200:
            return "error", idx
        try:
            return json.loads(body)[0], idx
        except (ValueError, IndexError, KeyError):
            return "error", idx

    def stop(self):
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.kill()  # -dev keeps nothing worth a clean stop
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                print(f"consul pid {p.pid} not gone 15 s after SIGKILL", file=sys.stderr)


# --------------------------------------------------------------- nodes


class Node(lag.Node):
    """One `mount` process of either implementation under a Consul lease.
    lag.Node's stop/abort/log helpers; its own config (no `passthrough`
    key for LiteFS) and start (no FUSE I/O path line from LiteFS)."""

    def __init__(self, binary, ours, base, name, consul_url, key):
        self.name = name
        self.root = os.path.join(base, name)
        self.mnt = os.path.join(self.root, "mnt")
        self.data = os.path.join(self.root, "data")
        self.log = os.path.join(self.root, "litefs.log")
        self.cfg = os.path.join(self.root, "litefs.yml")
        self.port = lag.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.litefs = binary
        self.proc = None
        self.conn = None
        os.makedirs(self.mnt, exist_ok=True)
        passthrough = "  passthrough: true\n" if ours else ""  # LiteFS rejects keys it does not know
        with open(self.cfg, "w") as f:
            f.write(f"fuse:\n  dir: {self.mnt}\n{passthrough}"
                    f"data:\n  dir: {self.data}\n"
                    f"http:\n  addr: \"127.0.0.1:{self.port}\"\n"
                    f"log:\n  timestamp: true\n"
                    f"lease:\n  type: consul\n  candidate: true\n  hostname: {name}\n"
                    f"  advertise-url: {self.url}\n"
                    f"  consul:\n    url: {consul_url}\n    key: {key}\n    ttl: 10s\n    lock-delay: 1s\n")

    def start(self, timeout=60):
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.litefs, "mount", "-config", self.cfg], stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not lag.fuse_mounted(self.mnt):
            if self.proc.poll() is not None:
                raise self.fail(f"exited with status {self.proc.returncode} before mounting")
            if time.monotonic() > deadline:
                raise self.fail(f"did not mount in {timeout} s")
            time.sleep(0.02)
        self.conn = os.minor(os.stat(self.mnt).st_dev)

    def info(self):
        """GET /info as a dict, or None."""
        st, body = http("GET", self.url + "/info", timeout=2)
        if st != 200:
            return None
        try:
            return json.loads(body)
        except ValueError:
            return None

    def primary_name(self):
        """What `.primary` says ("" on the primary or with none known)."""
        try:
            return lag.read_small(os.path.join(self.mnt, ".primary")).strip()
        except OSError:
            return ""

    def kill(self):
        """SIGKILL, reap, then lazily unmount the dead mount."""
        p = self.proc
        if p is not None and p.poll() is None:
            p.kill()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                print(f"{self.name}: pid {p.pid} not gone 15 s after SIGKILL", file=sys.stderr)
        self.proc = None
        if lag.fuse_mounted(self.mnt):
            subprocess.run(["fusermount3", "-u", "-z", self.mnt], check=False, timeout=30,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ----------------------------------------------------------- one run


class RunFailed(Exception):
    """A run did not fail over within the limit, or its checks failed."""


def wait_for(what, timeout, cond, nodes, every=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        for n in nodes:
            if n.proc is not None and n.proc.poll() is not None:
                raise n.fail(f"exited with status {n.proc.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise RunFailed(f"{what}: not within {timeout} s")
        time.sleep(every)


def one_primary(nodes):
    """The node every node agrees is the only primary, or None."""
    infos = [n.info() for n in nodes]
    if any(i is None for i in infos):
        return None
    prim = [n for n, i in zip(nodes, infos) if i.get("isPrimary") is True]
    if len(prim) != 1:
        return None
    others = [n for n in nodes if n is not prim[0]]
    if all(n.primary_name() == prim[0].name for n in others):
        return prim[0]
    return None


def try_worker(path, name, t0):
    """Child process (`--worker try`): from monotonic time t0, every
    TRY_EVERY s a fresh connection to `path` (busy timeout 0: a replica's
    write lock, or a refused write, fails at once) and one INSERT, until
    one succeeds. One JSON line per attempt on stdout. SQLite runs in a
    child because a mount may take away a file SQLite has mapped (the
    `-shm`): the SIGBUS that follows ends the child, not the benchmark."""
    nxt = max(t0, time.monotonic())
    while True:
        pause = nxt - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        else:
            nxt = time.monotonic()
        nxt += TRY_EVERY
        a = time.monotonic()
        c, err = None, None
        try:
            c = sqlite3.connect(path, timeout=0, isolation_level=None)
            c.execute("INSERT INTO t(node, t) VALUES (?, ?)", (name, time.time()))
        except Exception as e:  # expected until this node is primary
            err = f"{type(e).__name__}: {e}"
        finally:
            if c is not None:
                try:
                    c.close()
                except Exception:
                    pass
        print(json.dumps({"a": a, "b": time.monotonic(), "err": err}), flush=True)
        if err is None:
            return


def sql_worker(path, statements):
    """Child process (`--worker sql`): runs `statements` (the first may be a
    PRAGMA) on one connection and prints the last one's rows as JSON."""
    c = sqlite3.connect(path, timeout=30, isolation_level=None)
    rows = []
    for st in statements:
        rows = c.execute(st).fetchall()
    c.close()
    print(json.dumps(rows), flush=True)


def child_cmd(*args):
    return [sys.executable, os.path.abspath(__file__), "--worker", *map(str, args)]


def sql(path, *statements, timeout=60):
    """Rows of the last of `statements` run on `path` in a child process;
    raises RunFailed with its output when it fails or dies."""
    try:
        r = subprocess.run(child_cmd("sql", path, *statements), capture_output=True, text=True, timeout=timeout,
                           start_new_session=True)
    except subprocess.TimeoutExpired:
        raise RunFailed(f"SQL on {path} took over {timeout} s: {statements}")
    if r.returncode != 0:
        how = f"signal {signal.Signals(-r.returncode).name}" if r.returncode < 0 else f"status {r.returncode}"
        raise RunFailed(f"SQL on {path} ended with {how}: {statements}: {r.stderr.strip()[-500:]}")
    return json.loads(r.stdout)


class Trier(threading.Thread):
    """Runs a survivor's `try_worker` child and reads its attempts, until
    one succeeds or `stop` is set; a child that dies (a signal) is
    recorded and replaced, as an application would be restarted."""

    def __init__(self, node, t0, stop):
        super().__init__(daemon=True)
        self.node, self.t0, self.stop = node, t0, stop
        self.path = os.path.join(node.mnt, DB)
        self.ok_at = None  # (monotonic start, monotonic end) of the successful attempt
        self.errors = {}  # message -> count
        self.deaths = []  # (s after t0, how) of each child that died
        self.attempts, self.slowest, self.span, self.starts = 0, 0.0, None, 0
        self.proc, self.lock = None, threading.Lock()

    def run(self):
        while not self.stop.is_set() and self.ok_at is None:
            with self.lock:
                if self.stop.is_set():
                    return
                self.starts += 1
                self.proc = subprocess.Popen(child_cmd("try", self.path, self.node.name, self.t0),
                                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                             stderr=subprocess.DEVNULL, text=True, start_new_session=True)
            for line in self.proc.stdout:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                self.attempts += 1
                self.slowest = max(self.slowest, r["b"] - r["a"])
                self.span = (self.span[0] if self.span else r["a"] - self.t0, r["b"] - self.t0)
                if r["err"] is None:
                    self.ok_at = (r["a"], r["b"])
                    self.stop.set()
                else:
                    self.errors[r["err"]] = self.errors.get(r["err"], 0) + 1
            rc = self.proc.wait()
            if rc != 0 and not self.stop.is_set():
                how = f"signal {signal.Signals(-rc).name}" if rc < 0 else f"status {rc}"
                self.deaths.append((round(time.monotonic() - self.t0, 3), how))
                print(f"  {self.node.name}: the SQLite client died ({how}); starting another",
                      file=sys.stderr, flush=True)

    def end(self):
        """Stops the child (call after `stop` is set), then the thread."""
        with self.lock:
            p = self.proc
        if p is not None and p.poll() is None:
            p.kill()
        self.join(30)


class KeyWatch(threading.Thread):
    """Watches the lease's Consul key with blocking queries (each answers
    as soon as the key changes): when the dead primary's session lost it,
    and when another session took it (and whose it is)."""

    def __init__(self, consul, key, old_session):
        super().__init__(daemon=True)
        self.consul, self.key, self.old = consul, key, old_session
        self.stop = threading.Event()
        self.released = self.acquired = None
        self.holder = None
        self.errors = 0

    def run(self):
        idx = 0
        while not self.stop.is_set() and self.acquired is None:
            kv, new_idx = self.consul.key(self.key, idx)
            now = time.monotonic()
            # A lower index (a reset) or none: start over with a plain read.
            idx = new_idx if new_idx > idx else 0
            if kv == "error":
                self.errors += 1
                self.stop.wait(TRY_EVERY)
                continue
            sess = (kv or {}).get("Session")
            if sess != self.old and self.released is None:
                self.released = now
            if sess and sess != self.old:
                self.acquired = now
                try:
                    self.holder = json.loads(base64.b64decode(kv.get("Value") or "")).get("hostname")
                except (ValueError, TypeError):
                    self.holder = "?"


def run_once(rec, a, binary, consul, base, nodes, dog):
    """One fresh cluster, one kill, recorded in `rec` (as far as it got);
    raises RunFailed when it does not fail over in time."""
    i = rec["run"]
    rdir = os.path.join(base, f"run-{i}")
    os.makedirs(rdir)
    key = f"litefs-failover-{a.impl}-{os.getpid()}-{i}"
    rec.update(key=key, dir=rdir)
    dog.arm(240, f"run {i}: starting the cluster")
    nodes[:] = [Node(binary, a.impl == "ours", rdir, f"node-{k}", consul.url, key) for k in (1, 2, 3)]
    for n in nodes:
        n.start()
    t_up = time.monotonic()
    primary = wait_for("exactly one primary, followed by the two others", 120, lambda: one_primary(nodes), nodes)
    rec["elected_after_start_s"] = round(time.monotonic() - t_up, 3)
    kv, _ = consul.key(key)
    if not isinstance(kv, dict) or not kv.get("Session"):
        raise RunFailed(f"no session holds the Consul key {key} although {primary.name} is primary")
    old_session = kv["Session"]
    survivors = [n for n in nodes if n is not primary]

    sql(os.path.join(primary.mnt, DB), "PRAGMA journal_mode=wal",
        "CREATE TABLE t(id INTEGER PRIMARY KEY, node TEXT, t REAL)",
        *[f"INSERT INTO t(node, t) VALUES ('{primary.name}', {time.time()})"] * PRE_ROWS)
    want = primary.pos(DB)
    wait_for("both replicas at the primary's position", 60,
             lambda: all(s.pos(DB) == want for s in survivors), nodes)

    delay = random.uniform(0, a.max_delay)
    rec.update(primary=primary.name, kill_delay_s=round(delay, 3), settle_s=a.settle,
               kill_after_data_s=round(a.settle + delay, 3))
    time.sleep(a.settle + delay)
    if one_primary(nodes) is not primary:
        raise RunFailed(f"{primary.name} was no longer the only primary just before the kill")

    dog.arm(a.limit + 60, f"run {i}: fail-over")
    stop = threading.Event()
    t_wall = time.time()
    t0 = time.monotonic()
    primary.proc.kill()  # SIGKILL
    triers = [Trier(s, t0, stop) for s in survivors]
    watch = KeyWatch(consul, key, old_session)
    for t in triers + [watch]:
        t.start()
    try:
        primary.kill()  # reap and unmount
        rec["kill_utc"] = utc(t_wall)
        deadline = t0 + a.limit
        while not stop.is_set() and time.monotonic() < deadline:
            for s in survivors:
                if s.proc.poll() is not None:
                    raise s.fail(f"exited with status {s.proc.returncode} during the fail-over")
            stop.wait(0.1)
        stop.set()
        for t in triers:
            t.end()
        # The key watch may still be waiting for the new session to show.
        watch.join(10)
    finally:
        stop.set()
        watch.stop.set()
        for t in triers:
            t.end()
    watch.join(5)

    def since(t):
        return None if t is None else round(t - t0, 3)

    rec["survivors"] = {t.node.name: {"attempts": t.attempts, "errors": t.errors, "client_deaths": t.deaths,
                                      "clients_started": t.starts,
                                      "attempts_from_to_s": t.span and [round(x, 3) for x in t.span],
                                      "slowest_attempt_s": round(t.slowest, 3)} for t in triers}
    rec["key_released_s"] = since(watch.released)
    rec["key_acquired_s"] = since(watch.acquired)
    rec["key_holder"] = watch.holder
    rec["consul_poll_errors"] = watch.errors
    if watch.released is not None and watch.acquired is not None:
        rec["released_to_acquired_s"] = round(watch.acquired - watch.released, 3)
    if watch.released is not None:
        # Consul invalidates a TTL session 2 x TTL after its last renewal.
        rec["last_renewal_before_kill_s"] = round(2 * a.ttl - (watch.released - t0), 3)
    won = [t for t in triers if t.ok_at is not None]
    if not won:
        rec["failover_s"] = None
        raise RunFailed(f"no survivor accepted an INSERT within {a.limit:g} s of the SIGKILL "
                        f"(key released at {rec['key_released_s']} s, acquired at {rec['key_acquired_s']} s "
                        f"by {watch.holder})")
    first = min(won, key=lambda t: t.ok_at[1])
    rec["failover_s"] = round(first.ok_at[1] - t0, 3)
    rec["first_insert_call_s"] = round(first.ok_at[1] - first.ok_at[0], 3)
    rec["new_primary"] = first.node.name
    rec["first_insert_utc"] = utc(t_wall + first.ok_at[1] - t0)
    if watch.acquired is not None:
        rec["acquired_to_insert_s"] = round(first.ok_at[1] - watch.acquired, 3)

    # Checks: one primary, the winner, holding every row.
    dog.arm(120, f"run {i}: checks")
    new = first.node
    other = [s for s in survivors if s is not new][0]
    wait_for(f"{new.name} to say isPrimary", 20, lambda: (new.info() or {}).get("isPrimary") is True, survivors)
    oi = other.info()
    if oi is None or oi.get("isPrimary") is not False:
        raise RunFailed(f"after the fail-over {other.name} says {oi} (want isPrimary false): two primaries?")
    if watch.holder not in (None, new.name):
        raise RunFailed(f"the Consul key names {watch.holder}, but {new.name}'s INSERT succeeded")
    n_rows, n_mine = sql(os.path.join(new.mnt, DB), f"SELECT count(*), sum(node = '{new.name}') FROM t")[0]
    if n_rows != PRE_ROWS + 1 or n_mine != 1:
        raise RunFailed(f"{new.name} holds {n_rows} rows ({n_mine} its own); want {PRE_ROWS} + 1")
    return rec


# ------------------------------------------------------------- output


def log_tail(text, n):
    """The last n lines of a node's log without colour codes and without
    the line each refused write on a replica logs (one per attempt)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    keep = [l for l in text.splitlines() if "write refused" not in l and "read only replica" not in l]
    return keep[-n:]


def machine():
    info = {"nproc": len(os.sched_getaffinity(0)), "kernel": platform.release(),
            "sqlite": sqlite3.sqlite_version, "python": platform.python_version(),
            "loadavg_start": lag.loadavg()}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        info["commit"] = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                                        capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info


def summary(xs):
    if not xs:
        return None
    return {"n": len(xs), "median": round(statistics.median(xs), 3), "min": round(min(xs), 3),
            "max": round(max(xs), 3), "mean": round(statistics.fmean(xs), 3)}


def fmt(v, unit=" s"):
    return "–" if v is None else f"{v:.2f}{unit}"


def render(out):
    L = [f"Fail-over after SIGKILL, `--impl {out['impl']}` ({out['binary']}: {out.get('binary_version', '?')}, "
         f"built {out.get('binary_mtime_utc', '?')} UTC), Consul TTL "
         f"{out['ttl_s']:g} s, lock-delay 1 s, reconnect-delay 1 s (default); times from the SIGKILL:", "",
         "| run | kill, s after the data | key released | key acquired | first INSERT | released -> acquired | "
         "acquired -> INSERT | new primary | last renewal before kill (implied) |",
         "|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in out["runs"]:
        L.append(f"| {r['run']} | {fmt(r.get('kill_after_data_s'))} | {fmt(r.get('key_released_s'))} | "
                 f"{fmt(r.get('key_acquired_s'))} | **{fmt(r.get('failover_s'))}** | {fmt(r.get('released_to_acquired_s'))} | "
                 f"{fmt(r.get('acquired_to_insert_s'))} | {r.get('new_primary') or r.get('error', '?')[:60]} | "
                 f"{fmt(r.get('last_renewal_before_kill_s'))} |")
    s = out.get("summary")
    L.append("")
    if s:
        L.append(f"Fail-over: median **{s['median']:.2f} s**, min {s['min']:.2f} s, max {s['max']:.2f} s, "
                 f"mean {s['mean']:.2f} s over {s['n']} successful runs of {len(out['runs'])}.")
    for k, what in (("released", "key released"), ("acquired", "key acquired"),
                    ("released_to_acquired", "released -> acquired"), ("acquired_to_insert", "acquired -> INSERT")):
        v = out.get(f"summary_{k}")
        if v:
            L.append(f"{what}: median {v['median']:.2f} s, {v['min']:.2f}–{v['max']:.2f} s.")
    m = out["machine"]
    L.append("")
    L.append(f"Machine: {m.get('cpu', '?')}, nproc {m['nproc']}, Linux {m['kernel']}, SQLite {m['sqlite']}, "
             f"Python {m['python']}, commit {m.get('commit', '?')}; 1-minute load average "
             f"{m.get('loadavg_start')} at the start, {m.get('loadavg_end', '?')} at the end; Consul "
             f"{out.get('consul_version', '?')}.")
    return "\n".join(L)


# ---------------------------------------------------------------- main


def main():
    if sys.argv[1:2] == ["--worker"]:
        kind, args = sys.argv[2], sys.argv[3:]
        if kind == "try":
            return try_worker(args[0], args[1], float(args[2]))
        return sql_worker(args[0], args[1:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--impl", choices=("ours", "litefs"), required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default="target/failover")
    ap.add_argument("--litefs", default=os.path.join(ROOT, "target/release/litefs"), help="our binary")
    ap.add_argument("--peer", default=os.environ.get("LITEFS_PEER_BIN") or
                    os.path.join(ROOT, "../shared/peers/litefs-0.5.14"), help="the LiteFS v0.5.14 binary")
    ap.add_argument("--consul", default=os.environ.get("CONSUL_BIN") or os.path.join(ROOT, ".deps/bin/consul"))
    ap.add_argument("--limit", type=float, default=90.0, help="a run that has not failed over by then fails, s")
    ap.add_argument("--settle", type=float, default=6.0, help="wait after the data is on every node, s, "
                                                               "before the random delay")
    ap.add_argument("--max-delay", type=float, default=5.0, help="the kill comes --settle + a random 0..this s "
                                                                  "after the data is on every node")
    ap.add_argument("--seed", type=int, default=None, help="seed of the kill delays")
    ap.add_argument("--keep", action="store_true", help="keep every run's directories (configs, logs, data)")
    ap.add_argument("--dir", default=None, help="where the temp dir goes (default /tmp)")
    a = ap.parse_args()
    a.ttl = 10.0
    binary = os.path.abspath(a.litefs if a.impl == "ours" else a.peer)
    for what, p in (("binary", binary), ("consul", a.consul)):
        if not os.access(p, os.X_OK):
            sys.exit(f"{what} {p}: not an executable" +
                     (" (cargo build --release --bin litefs)" if p == binary and a.impl == "ours" else ""))
    random.seed(a.seed)

    base = tempfile.mkdtemp(prefix=f"litefs-failover-{a.impl}-", dir=a.dir)
    consul = Consul(os.path.abspath(a.consul), base)
    nodes = []
    dog = lag.Watchdog(nodes)
    dog.start()
    cleaned = []

    def cleanup():
        if cleaned:
            return
        cleaned.append(True)
        dog.arm(180, "stopping everything")
        for n in nodes:
            n.stop()
        consul.stop()
        dog.arm(1e9, "done")

    atexit.register(cleanup)

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, on_signal)

    out = {"impl": a.impl, "binary": binary, "ttl_s": a.ttl, "limit_s": a.limit, "runs": [],
           "command": " ".join([os.path.basename(sys.executable)] + sys.argv)}
    failures, interrupted = 0, None
    out["machine"] = machine()
    try:
        v = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        v = "?"
    out["binary_version"] = v
    out["binary_mtime_utc"] = datetime.datetime.fromtimestamp(os.path.getmtime(binary), datetime.timezone.utc) \
        .strftime("%Y-%m-%d %H:%M:%S")
    try:
        ver = subprocess.run([a.consul, "version"], capture_output=True, text=True, timeout=30).stdout
        out["consul_version"] = (ver.splitlines() or ["?"])[0].replace("Consul ", "")
        dog.arm(120, "starting consul")
        consul.start()
        for i in range(1, a.runs + 1):
            print(f"run {i}/{a.runs} ({a.impl})", file=sys.stderr, flush=True)
            rec = {"run": i}
            try:
                run_once(rec, a, binary, consul, base, nodes, dog)
                print(f"  fail-over {rec['failover_s']:.2f} s (kill {rec['kill_after_data_s']:.2f} s after the data, key "
                      f"released {rec['key_released_s']} s, acquired {rec['key_acquired_s']} s, "
                      f"{rec['new_primary']} primary)", file=sys.stderr, flush=True)
            except (RunFailed, RuntimeError, sqlite3.Error, OSError) as e:
                failures += 1
                rec["error"] = f"{type(e).__name__}: {e}"
                if dog.fired:
                    rec["error"] = f"stuck during {dog.fired}; " + rec["error"]
                    dog.fired = None
                print(f"  FAILED: {rec['error']}", file=sys.stderr, flush=True)
                for n in nodes:
                    print(f"--- {n.name} log tail ({n.log}), refused writes left out:\n" +
                          "\n".join(log_tail(n.log_text(), 25)), file=sys.stderr)
            except KeyboardInterrupt:
                rec["error"] = "interrupted"
                raise
            finally:
                dog.arm(180, f"run {i}: stopping the cluster")
                for n in nodes:
                    n.stop()
                keep = a.keep or "error" in rec
                if not keep and "dir" in rec:
                    shutil.rmtree(rec["dir"], ignore_errors=True)
                out["runs"].append(rec)
                nodes[:] = []
    except KeyboardInterrupt as e:
        interrupted = str(e) or "SIGINT"
        print(f"interrupted ({interrupted}); stopping everything", file=sys.stderr)
    finally:
        cleanup()
        out["machine"]["loadavg_end"] = lag.loadavg()
    if interrupted:
        out["interrupted"] = interrupted

    ok = [r["failover_s"] for r in out["runs"] if r.get("failover_s") is not None and "error" not in r]
    out["summary"] = summary(ok)
    for k in ("released", "acquired"):
        out[f"summary_{k}"] = summary([r[f"key_{k}_s"] for r in out["runs"] if r.get(f"key_{k}_s") is not None])
    for k in ("released_to_acquired", "acquired_to_insert"):
        out[f"summary_{k}"] = summary([r[f"{k}_s"] for r in out["runs"] if r.get(f"{k}_s") is not None])
    os.makedirs(a.out, exist_ok=True)
    md = render(out)
    print(md)
    with open(os.path.join(a.out, f"failover-{a.impl}.md"), "w") as f:
        f.write(md + "\n")
    with open(os.path.join(a.out, f"failover-{a.impl}.json"), "w") as f:
        json.dump(out, f, indent=2)
    if failures or interrupted or a.keep:
        print(f"run directories (configs, logs, data) kept in {base}", file=sys.stderr)
    else:
        shutil.rmtree(base, ignore_errors=True)
    if interrupted:
        sys.exit(130)
    if failures:
        print(f"FAILED: {failures} of {a.runs} runs did not fail over correctly", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
