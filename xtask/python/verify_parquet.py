#!/usr/bin/env python3
"""Check sluice's Parquet output with two independent readers, pyarrow and DuckDB.

Usage:
    verify_parquet.py DIR [--tier all|logs|recent] [--expect-rows N] [--expect-rejected N]
                          [--json] [--quiet]

DIR is a sluice output root (docs/ARCHITECTURE.md §11): the raw tier, one Parquet object per
ingested batch under DIR/raw/dt=YYYY-MM-DD/hour=HH/*.parquet; the compacted tier, one object per
tenant-hour under DIR/logs/tenant=T/dt=YYYY-MM-DD/hour=HH/*.parquet; the compaction watermark in
DIR/control/compaction/watermark.json; rejected records under DIR/dlq/**/*.ndjson.gz (one JSON
line per rejected record).

--tier picks the rows, as the documented query does: `logs` is the compacted rows with
received_at before the watermark, `recent` the raw rows from it on, `all` (the default) both,
each row once.

Checks:
  * both pyarrow and DuckDB read every file of the tier, and agree on the row count;
  * the row count equals --expect-rows, if given;
  * every file has the canonical columns (CANONICAL_COLUMNS below);
  * both read the same number of non-null values in every canonical column;
  * the tenant column of each compacted file matches its tenant=... partition directory;
  * no input event (origin: shard, sequence number, index in the record) is read twice;
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
    "origin",
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


def watermark_ms(root: str) -> int:
    """The compaction watermark (ms since the epoch), 0 before the first compaction."""
    path = os.path.join(root, "control", "compaction", "watermark.json")
    if not os.path.exists(path):
        return 0
    with open(path, encoding="utf-8") as f:
        return int(json.load(f)["watermark_ms"])


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
    ap.add_argument("--tier", choices=["all", "logs", "recent"], default="all",
                    help="compacted rows (logs), raw rows not yet compacted (recent), or both")
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
    wm = watermark_ms(root)
    logs = os.path.join(root, "logs")
    raw = os.path.join(root, "raw")

    def parquet_under(d: str) -> list[str]:
        return sorted(glob.glob(os.path.join(d, "**", "*.parquet"), recursive=True))

    # (file, keep rows with received_at before the watermark?) per tier.
    selected: list[tuple[str, bool]] = []
    if args.tier in ("all", "logs"):
        selected += [(f, True) for f in parquet_under(logs)]
    if args.tier in ("all", "recent"):
        selected += [(f, False) for f in parquet_under(raw)]
    files = [f for f, _ in selected]
    if not files:
        fail(f"no Parquet files for tier {args.tier} under {root}")
        return 1
    problems: list[str] = []

    def say(*a: object) -> None:
        if not args.quiet:
            print(*a)

    # Reader 1: pyarrow, file by file, rows filtered on received_at against the watermark;
    # each compacted file's tenant column must match its tenant=... directory.
    try:
        import pyarrow.compute as pc

        arrow_rows = 0
        arrow_nonnull: dict[str, int] = {}
        for path, before in selected:
            part = pq.read_table(path, partitioning=None)
            ms = pc.cast(part.column("received_at"), pa.int64())
            keep = pc.less(ms, wm) if before else pc.greater_equal(ms, wm)
            part = part.filter(keep)
            arrow_rows += part.num_rows
            for name in part.column_names:
                col = part.column(name)
                arrow_nonnull[name] = arrow_nonnull.get(name, 0) + len(col) - col.null_count
            want = tenant_from_path(os.path.relpath(path, root))
            if want is not None and part.num_rows:
                found = {str(v) for v in part.column("tenant").unique().to_pylist()}
                if found != {want}:
                    problems.append(
                        f"{os.path.relpath(path, root)} holds tenants {sorted(found)} "
                        f"under tenant={want}"
                    )
    except Exception as e:  # noqa: BLE001 - report any reader failure as a check failure
        fail(f"pyarrow could not read the {args.tier} tier under {root}: {e}")
        return 1

    # Canonical columns, file by file (footers only).
    for path in files:
        names = set(pq.read_schema(path).names)
        missing = [c for c in CANONICAL_COLUMNS if c not in names]
        if missing:
            problems.append(f"{os.path.relpath(path, root)} lacks columns {missing}")

    # Reader 2: DuckDB, with the documented query (docs/ARCHITECTURE.md §11).
    con = duckdb.connect()

    def side(paths: list[str], op: str) -> str:
        listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
        return (
            f"SELECT * FROM read_parquet([{listed}], hive_partitioning=false, union_by_name=true) "
            f"WHERE epoch_ms(received_at) {op} {wm}"
        )

    sides = []
    compacted = [f for f, before in selected if before]
    recent = [f for f, before in selected if not before]
    if compacted:
        sides.append(side(compacted, "<"))
    if recent:
        sides.append(side(recent, ">="))
    src = "(" + " UNION ALL BY NAME ".join(sides) + ")"
    pattern = args.tier
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
        twice = con.execute(f"SELECT count(*) - count(DISTINCT origin) FROM {src}").fetchone()[0]
        if twice:
            problems.append(f"{twice} rows of the {args.tier} tier repeat an origin")
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
