#!/usr/bin/env python3
"""The original Cruddur stack's home feed under load: psycopg 3 and a
psycopg_pool ConnectionPool, with PostgreSQL building the JSON (the
original's query_array_json), one page per request.

Run by examples/bench/main.rs as the Python peer, with the same statement, the
same page size, the same number of client threads and the same duration as
the Rust side. The connection string comes from BENCH_PYTHON_DSN (it may
hold a password, so not argv); the statement from --sql-file, with %s where
the page size goes.

Prints one JSON object: {"transactions", "seconds", "latencies_us"}.
"""

import argparse
import json
import os
import sys
import threading
import time

import psycopg  # noqa: F401  (psycopg_pool needs it; imported for a clear error)
from psycopg_pool import ConnectionPool

WARMUP = 200  # calls per thread before the clock starts, as on the Rust side


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--sql-file", required=True)
    args = parser.parse_args()

    dsn = os.environ["BENCH_PYTHON_DSN"]
    with open(args.sql_file, encoding="utf-8") as f:
        sql = f.read()

    pool = ConnectionPool(
        dsn, min_size=args.clients, max_size=args.clients, open=True
    )
    pool.wait()

    def page() -> str:
        # As the original lib/db.py did: a pooled connection, one statement,
        # the JSON text of the first (only) row.
        with pool.connection() as conn:
            with conn.cursor() as cur:
                cur.execute(sql, (args.limit,))
                return cur.fetchone()[0]

    if not page().startswith("[{"):
        print("the feed is empty", file=sys.stderr)
        return 1

    state = {"start": 0.0}
    warmed = threading.Barrier(args.clients + 1)
    go = threading.Barrier(args.clients + 1)
    results = [None] * args.clients

    def client(i: int) -> None:
        for _ in range(WARMUP):
            page()
        warmed.wait()
        go.wait()
        deadline = state["start"] + args.seconds
        latencies = []
        now = time.perf_counter()
        while now < deadline:
            page()
            done = time.perf_counter()
            latencies.append((done - now) * 1e6)
            now = done
        results[i] = (latencies, now)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    warmed.wait()
    state["start"] = time.perf_counter()
    go.wait()
    for t in threads:
        t.join()
    pool.close()

    latencies = [lat for r in results for lat in r[0]]
    end = max(r[1] for r in results)
    json.dump(
        {
            "transactions": len(latencies),
            "seconds": end - state["start"],
            "latencies_us": latencies,
        },
        sys.stdout,
    )
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
