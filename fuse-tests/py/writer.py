"""Inserts one row per transaction until killed or told to stop.

Usage: writer.py DB JOURNAL_MODE START COUNT
Prints each id after its COMMIT returned, so the parent knows exactly
which transactions the client saw committed. Exits quietly on I/O errors
(the filesystem went away).
"""
import sqlite3
import sys

db, mode, start, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
try:
    con = sqlite3.connect(db, timeout=30, isolation_level=None)
    con.execute(f"PRAGMA journal_mode={mode}")
    con.execute("CREATE TABLE IF NOT EXISTS w(id INTEGER PRIMARY KEY, pad BLOB)")
    for i in range(start, start + count):
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO w VALUES (?, randomblob(200))", (i,))
        con.execute("COMMIT")
        print(i, flush=True)
except (sqlite3.Error, OSError) as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
