"""Concurrent readers or writers in WAL mode for a fixed time.

Usage: rw.py DB (reader|writer) ID SECONDS
Writers insert rows tagged with their ID and count commits; readers check
that every snapshot they read is internally consistent (the running total
in table meta equals the sum of rows). Any error other than SQLITE_BUSY
(handled by the busy timeout) fails the process.
"""
import sqlite3
import sys
import time

db, role, ident, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
con = sqlite3.connect(db, timeout=30, isolation_level=None)
deadline = time.time() + secs
n = 0
while time.time() < deadline:
    if role == "writer":
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO r(writer, v) VALUES (?, ?)", (ident, n))
        con.execute("UPDATE meta SET total = total + ? WHERE id = 1", (n,))
        con.execute("COMMIT")
    else:
        con.execute("BEGIN")
        total = con.execute("SELECT total FROM meta WHERE id = 1").fetchone()[0]
        s = con.execute("SELECT coalesce(sum(v), 0) FROM r").fetchone()[0]
        con.execute("COMMIT")
        if total != s:
            print(f"inconsistent snapshot: total {total} != sum {s}", file=sys.stderr)
            sys.exit(1)
    n += 1
print(n)
