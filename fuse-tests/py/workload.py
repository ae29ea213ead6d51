"""Mixed SQLite workload through Python's sqlite3 module.

Usage: workload.py DB JOURNAL_MODE [SEED]
Runs DDL, inserts, updates, deletes, savepoint rollbacks, a spilled
rollback, VACUUM and (in WAL mode) every checkpoint kind; prints the number
of rows in table t at the end.
"""
import random
import sqlite3
import sys

db, mode = sys.argv[1], sys.argv[2]
rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)

con = sqlite3.connect(db, timeout=30, isolation_level=None)
con.execute(f"PRAGMA journal_mode={mode}")
con.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, a TEXT, b BLOB)")
con.execute("CREATE TABLE IF NOT EXISTS kv(k TEXT PRIMARY KEY, v)")

for i in range(200):
    con.execute("INSERT INTO t(a, b) VALUES (?, ?)", (f"row {i}", rng.randbytes(rng.randint(10, 900))))
for i in range(50):
    con.execute("BEGIN")
    con.execute("UPDATE t SET a = a || '+' WHERE id % 13 = ?", (i % 13,))
    con.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (f"k{i % 17}", i))
    con.execute("COMMIT")
con.execute("DELETE FROM t WHERE id % 5 = 0")

# Savepoint rollback inside a committed transaction.
con.execute("BEGIN")
con.execute("INSERT INTO kv VALUES ('sp-keep', 1)")
con.execute("SAVEPOINT s")
con.execute("INSERT INTO kv VALUES ('sp-gone', 2)")
con.execute("ROLLBACK TO s")
con.execute("RELEASE s")
con.execute("COMMIT")

# A large transaction that spills to disk, then rolls back.
con.execute("PRAGMA cache_size=10")
con.execute("BEGIN")
con.execute("UPDATE t SET b = randomblob(1000)")
con.execute("ROLLBACK")
con.execute("PRAGMA cache_size=-2000")

con.execute("CREATE INDEX IF NOT EXISTS t_a ON t(a)")
con.execute("VACUUM")
if mode.lower() == "wal":
    for kind in ("PASSIVE", "FULL", "RESTART", "TRUNCATE"):
        con.execute("INSERT INTO kv VALUES (?, 0)", (f"ckpt-{kind}",))
        con.execute(f"PRAGMA wal_checkpoint({kind})")
    con.execute("INSERT INTO kv VALUES ('after-ckpt', 0)")

assert con.execute("SELECT count(*) FROM kv WHERE k LIKE 'sp-%'").fetchone()[0] == 1
print(con.execute("SELECT count(*) FROM t").fetchone()[0])
con.close()
