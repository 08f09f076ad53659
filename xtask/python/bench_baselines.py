#!/usr/bin/env python3
"""Baselines for `cargo xtask bench`: NDJSON file -> Parquet (zstd) with DuckDB and pyarrow,
each limited to one thread.

Usage:
    bench_baselines.py FILE OUTDIR [--tools duckdb,pyarrow]

Prints one JSON object on stdout: {"<tool>": {"records", "elapsed_s", "cpu_s", "bytes_out"}
or {"error": "..."}}. elapsed_s is wall time and cpu_s the process CPU time (all threads)
around the conversion only; interpreter start-up and imports are excluded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def timed(fn):
    wall0, cpu0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall0, time.process_time() - cpu0


def bench_duckdb(src: str, out: str) -> dict:
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads=1")
    quoted_src = src.replace("'", "''")
    quoted_out = out.replace("'", "''")
    sql = (
        f"COPY (SELECT * FROM read_json_auto('{quoted_src}', format='newline_delimited')) "
        f"TO '{quoted_out}' (FORMAT parquet, COMPRESSION zstd)"
    )
    elapsed, cpu = timed(lambda: con.execute(sql))
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{quoted_out}')").fetchone()[0]
    return {"records": rows, "elapsed_s": elapsed, "cpu_s": cpu, "bytes_out": os.path.getsize(out)}


def bench_pyarrow(src: str, out: str) -> dict:
    import pyarrow as pa
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    result: dict = {}

    def run() -> None:
        table = pj.read_json(src, read_options=pj.ReadOptions(use_threads=False))
        pq.write_table(table, out, compression="zstd")
        result["records"] = table.num_rows

    elapsed, cpu = timed(run)
    return {**result, "elapsed_s": elapsed, "cpu_s": cpu, "bytes_out": os.path.getsize(out)}


TOOLS = {"duckdb": bench_duckdb, "pyarrow": bench_pyarrow}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", help="NDJSON input")
    ap.add_argument("outdir", help="directory for the Parquet outputs")
    ap.add_argument("--tools", default="duckdb,pyarrow", help="comma-separated: duckdb,pyarrow")
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    results = {}
    for name in [t.strip() for t in args.tools.split(",") if t.strip()]:
        if name not in TOOLS:
            print(f"bench_baselines: unknown tool {name!r}", file=sys.stderr)
            return 2
        out = os.path.join(args.outdir, f"{name}.parquet")
        print(f"bench_baselines: {name} ...", file=sys.stderr, flush=True)
        try:
            results[name] = TOOLS[name](args.file, out)
        except Exception as e:  # noqa: BLE001 - a failing baseline is reported, not fatal
            results[name] = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
