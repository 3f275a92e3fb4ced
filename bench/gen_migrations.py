#!/usr/bin/env python3
"""Split the 1,000-table schema (base.sql, from gen_schema.py) into a 200-file sqlx-style
migrations folder, in order, for `tandem check` (figure 5). schema.sql is base.sql itself, so a
clean check finds no drift.

Usage: python3 bench/gen_migrations.py [OUTDIR]   (default /tmp/tandem-bench; needs OUTDIR/base.sql)
Writes OUTDIR/migrations/NNNN_part.sql (200 files) and OUTDIR/schema.sql.
"""
import os
import shutil
import sys

N_FILES = 200

out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/tandem-bench"
base = open(os.path.join(out, "base.sql")).read()
statements, current = [], []
for line in base.splitlines(keepends=True):
    current.append(line)
    if line.rstrip().endswith(";"):
        statements.append("".join(current))
        current = []
if "".join(current).strip():
    statements.append("".join(current))
folder = os.path.join(out, "migrations")
shutil.rmtree(folder, ignore_errors=True)
os.makedirs(folder)
for n in range(N_FILES):
    chunk = statements[n * len(statements) // N_FILES:(n + 1) * len(statements) // N_FILES]
    with open(os.path.join(folder, f"{n + 1:04d}_part.sql"), "w") as f:
        f.write("".join(chunk))
shutil.copy(os.path.join(out, "base.sql"), os.path.join(out, "schema.sql"))
print(f"wrote {folder} ({len(os.listdir(folder))} files, {len(statements)} statements)")
