#!/usr/bin/env python3
"""Check sluice's Parquet output with two independent readers, pyarrow and DuckDB.

Usage:
    verify_parquet.py DIR [--expect-rows N] [--expect-rejected N] [--json] [--quiet]

DIR is a sluice output root: Parquet under DIR/logs/tenant=T/dt=YYYY-MM-DD/hour=HH/*.parquet,
rejected records under DIR/dlq/**/*.ndjson.gz (one JSON line per rejected record).

Checks:
  * both pyarrow (pyarrow.dataset, Hive partitioning) and DuckDB (read_parquet with
    hive_partitioning=true) read every file, and agree on the row count;
  * the row count equals --expect-rows, if given;
  * every file has the canonical columns (CANONICAL_COLUMNS below);
  * both read the same number of non-null values in every canonical column;
  * the tenant column of each file matches its tenant=... partition directory;
  * the number of DLQ lines equals --expect-rejected, if given.

Prints rows per tenant (with error counts) and rows per level. With --json, the last line of
stdout is one JSON object: {"ok", "rows", "files", "tenants": {T: rows}, "levels": {L: rows},
"errors": {T: rows}, "dlq_records"}.

Exit status: 0 when every check passes, 1 when a check fails, 2 on bad usage or when pyarrow
or duckdb is not installed. This interface is stable: the e2e tests and `cargo xtask` call it.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import sys
import urllib.parse

CANONICAL_COLUMNS = [
    "ts",
    "received_at",
    "tenant",
    "service",
    "level",
    "message",
    "trace_id",
    "span_id",
    "http_method",
    "http_path",
    "http_status",
    "latency_ms",
    "host",
    "region",
    "event_id",
    "attrs",
]

ERROR_LEVELS = ("error", "fatal")


def fail(msg: str) -> None:
    print(f"verify_parquet: FAIL: {msg}", file=sys.stderr)


def table(header: list[str], rows: list[list[object]]) -> str:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for n, r in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def tenant_from_path(path: str) -> str | None:
    for part in path.replace("\\", "/").split("/"):
        if part.startswith("tenant="):
            return urllib.parse.unquote(part[len("tenant=") :])
    return None


def count_dlq(root: str) -> tuple[int, int]:
    """(files, lines) of DIR/dlq/**/*.ndjson.gz."""
    files = sorted(glob.glob(os.path.join(root, "dlq", "**", "*.ndjson.gz"), recursive=True))
    lines = 0
    for path in files:
        with gzip.open(path, "rb") as f:
            lines += sum(1 for line in f if line.strip())
    return len(files), lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", help="sluice output root (contains logs/ and dlq/)")
    ap.add_argument("--expect-rows", type=int, help="total Parquet rows expected")
    ap.add_argument("--expect-rejected", type=int, help="total DLQ records expected")
    ap.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    ap.add_argument("--quiet", action="store_true", help="print only failures and the JSON summary")
    args = ap.parse_args()

    try:
        import duckdb
        import pyarrow as pa
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq
    except ImportError as e:
        print(
            f"verify_parquet: {e}; run it with the tooling venv's python "
            "(.sluice/venv/bin/python, created by `cargo xtask demo` or `cargo xtask test`)",
            file=sys.stderr,
        )
        return 2

    root = os.path.abspath(args.dir)
    logs = os.path.join(root, "logs")
    files = sorted(glob.glob(os.path.join(logs, "**", "*.parquet"), recursive=True))
    if not files:
        fail(f"no Parquet files under {logs}")
        return 1
    problems: list[str] = []

    def say(*a: object) -> None:
        if not args.quiet:
            print(*a)

    # Reader 1: pyarrow, Hive partitioning (tenant=/dt=/hour= directories). A partition key
    # that is also a column in the files (tenant) is left to the files, so that the two cannot
    # clash on type (the file's may be dictionary-encoded).
    try:
        file_columns = set(pq.read_schema(files[0]).names)
        keys = sorted(
            {
                part.split("=", 1)[0]
                for path in files
                for part in os.path.relpath(os.path.dirname(path), logs).split(os.sep)
                if "=" in part
            }
            - file_columns
        )
        partitioning = ds.partitioning(pa.schema([(k, pa.string()) for k in keys]), flavor="hive")
        dataset = ds.dataset(logs, format="parquet", partitioning=partitioning)
        # Decode everything (not just footers), counting non-null values per column, and
        # check that each file's tenant column matches its tenant=... directory.
        arrow_rows = 0
        arrow_nonnull: dict[str, int] = {}
        for fragment in dataset.get_fragments():
            part = fragment.to_table()
            arrow_rows += part.num_rows
            for name in part.column_names:
                col = part.column(name)
                arrow_nonnull[name] = arrow_nonnull.get(name, 0) + len(col) - col.null_count
            want = tenant_from_path(fragment.path)
            if want is not None and "tenant" in part.column_names:
                found = {str(v) for v in part.column("tenant").unique().to_pylist()}
                if found != {want}:
                    problems.append(
                        f"{os.path.relpath(fragment.path, root)} holds tenants {sorted(found)} "
                        f"under tenant={want}"
                    )
    except Exception as e:  # noqa: BLE001 - report any reader failure as a check failure
        fail(f"pyarrow could not read {logs}: {e}")
        return 1

    # Canonical columns, file by file (footers only).
    for path in files:
        names = set(pq.read_schema(path).names)
        missing = [c for c in CANONICAL_COLUMNS if c not in names]
        if missing:
            problems.append(f"{os.path.relpath(path, root)} lacks columns {missing}")

    # Reader 2: DuckDB.
    con = duckdb.connect()
    pattern = os.path.join(logs, "**", "*.parquet").replace("'", "''")
    src = f"read_parquet('{pattern}', hive_partitioning=true, union_by_name=true)"
    checked = [c for c in CANONICAL_COLUMNS if c in arrow_nonnull]
    try:
        counts = con.execute(
            f"SELECT count(*), {', '.join(f'count({c})' for c in checked)} FROM {src}"
        ).fetchone()
        duck_rows = counts[0]
        duck_nonnull = dict(zip(checked, counts[1:]))
        per_tenant = con.execute(
            f"""SELECT CAST(tenant AS VARCHAR) AS tenant, count(*) AS rows,
                       count(*) FILTER (WHERE lower(CAST(level AS VARCHAR)) IN {ERROR_LEVELS}) AS errors,
                       count(DISTINCT service) AS services
                FROM {src} GROUP BY 1 ORDER BY 1"""
        ).fetchall()
        per_level = con.execute(
            f"SELECT CAST(level AS VARCHAR), count(*) FROM {src} GROUP BY 1 ORDER BY 2 DESC, 1"
        ).fetchall()
    except Exception as e:  # noqa: BLE001
        fail(f"DuckDB could not read {pattern}: {e}")
        return 1

    if arrow_rows != duck_rows:
        problems.append(f"pyarrow reads {arrow_rows} rows but DuckDB reads {duck_rows}")
    if args.expect_rows is not None and duck_rows != args.expect_rows:
        problems.append(f"expected {args.expect_rows} rows, found {duck_rows}")
    for c in checked:
        if arrow_nonnull[c] != duck_nonnull[c]:
            problems.append(
                f"column {c}: pyarrow reads {arrow_nonnull[c]} non-null values, DuckDB {duck_nonnull[c]}"
            )

    dlq_files, dlq_records = count_dlq(root)
    if args.expect_rejected is not None and dlq_records != args.expect_rejected:
        problems.append(
            f"expected {args.expect_rejected} rejected records in dlq/, found {dlq_records}"
        )

    say(f"{root}: {len(files)} Parquet files, {duck_rows} rows "
        f"(pyarrow {arrow_rows}, DuckDB {duck_rows}); dlq: {dlq_records} records in {dlq_files} files")
    say()
    say(table(["tenant", "rows", "errors", "services"], [list(r) for r in per_tenant]))
    say()
    say(table(["level", "rows"], [list(r) for r in per_level]))

    for p in problems:
        fail(p)
    if args.json:
        print(
            json.dumps(
                {
                    "ok": not problems,
                    "rows": duck_rows,
                    "files": len(files),
                    "tenants": {t: n for t, n, _, _ in per_tenant},
                    "errors": {t: e for t, _, e, _ in per_tenant},
                    "levels": {lv: n for lv, n in per_level},
                    "dlq_records": dlq_records,
                    "problems": problems,
                }
            )
        )
    if problems:
        return 1
    say("verify_parquet: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
