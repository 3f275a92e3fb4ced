#!/usr/bin/env python3
"""Generate a 10,000-statement migration file on ~500 tables.

Usage: python3 bench/gen_migration.py [OUT]   (default /tmp/tandem-bench/big.sql)

Deterministic (fixed seed), no dependencies. The first 50 statements create 50 new tables;
the other 450 tables are taken to exist already (as in a real migration). The other 9,950
statements, on all 500 tables, are a mix of CREATE INDEX (plain and CONCURRENTLY), ALTER TABLE ADD COLUMN
(nullable, constant default, volatile default), ALTER COLUMN TYPE, SET NOT NULL, SET DEFAULT,
ADD CONSTRAINT (CHECK / FK / UNIQUE, some NOT VALID), VALIDATE CONSTRAINT, DROP INDEX,
DROP COLUMN, RENAME COLUMN and COMMENT ON, with some SET lock_timeout lines.
"""
import os
import random
import sys

N_TABLES = 500
N_STATEMENTS = 10_000
N_CREATED = 50  # tables m451..m500 are created in the file; m001..m450 exist already


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "/tmp/tandem-bench/big.sql"
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    rng = random.Random(10_000)
    stmts = []
    cols = {}      # table -> list of (name, type)
    indexes = {}   # table -> list of index names
    ncol = {}
    nidx = [0]
    ncon = [0]
    notvalid = []  # (table, constraint)
    for i in range(1, N_TABLES + 1):
        t = f"m{i:03d}"
        c = [("id", "bigint"), ("name", "text"), ("amount", "integer"), ("created_at", "timestamptz")]
        cols[t] = list(c)
        indexes[t] = []
        ncol[t] = 0
        if i <= N_TABLES - N_CREATED:
            continue
        stmts.append(f"CREATE TABLE {t} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                     f"name text, amount integer NOT NULL DEFAULT 0, created_at timestamptz NOT NULL DEFAULT now());")
    tables = list(cols)

    def newcol(t):
        ncol[t] += 1
        return f"col_{ncol[t]}"

    kinds = ["index", "index_conc", "add_col", "add_col_default", "add_col_volatile", "alter_type",
             "set_not_null", "set_default", "add_check", "add_check_nv", "add_fk_nv", "validate",
             "add_unique", "drop_index", "drop_column", "rename_column", "comment_table",
             "comment_column", "lock_timeout"]
    weights = [10, 8, 10, 8, 3, 5, 5, 5, 4, 4, 4, 4, 2, 5, 2, 2, 5, 5, 2]
    while len(stmts) < N_STATEMENTS:
        k = rng.choices(kinds, weights)[0]
        t = rng.choice(tables)
        c = rng.choice(cols[t])
        if k in ("index", "index_conc"):
            nidx[0] += 1
            name = f"{t}_{c[0]}_i{nidx[0]}"
            indexes[t].append(name)
            conc = " CONCURRENTLY" if k == "index_conc" else ""
            stmts.append(f"CREATE INDEX{conc} {name} ON {t} ({c[0]});")
        elif k == "add_col":
            n = newcol(t); cols[t].append((n, "text"))
            stmts.append(f"ALTER TABLE {t} ADD COLUMN {n} text;")
        elif k == "add_col_default":
            n = newcol(t); cols[t].append((n, "integer"))
            stmts.append(f"ALTER TABLE {t} ADD COLUMN {n} integer NOT NULL DEFAULT 0;")
        elif k == "add_col_volatile":
            n = newcol(t); cols[t].append((n, "uuid"))
            stmts.append(f"ALTER TABLE {t} ADD COLUMN {n} uuid DEFAULT gen_random_uuid();")
        elif k == "alter_type":
            if c[0] == "id":
                continue
            new = rng.choice(["bigint", "text", "varchar(255)", "numeric(14,2)"])
            stmts.append(f"ALTER TABLE {t} ALTER COLUMN {c[0]} TYPE {new};")
        elif k == "set_not_null":
            stmts.append(f"ALTER TABLE {t} ALTER COLUMN {c[0]} SET NOT NULL;")
        elif k == "set_default":
            if c[0] == "id":
                continue
            stmts.append(f"ALTER TABLE {t} ALTER COLUMN {c[0]} SET DEFAULT NULL;")
        elif k in ("add_check", "add_check_nv"):
            ncon[0] += 1
            name = f"{t}_chk{ncon[0]}"
            nv = " NOT VALID" if k == "add_check_nv" else ""
            if nv:
                notvalid.append((t, name))
            stmts.append(f"ALTER TABLE {t} ADD CONSTRAINT {name} CHECK ({c[0]} IS NOT NULL){nv};")
        elif k == "add_fk_nv":
            ncon[0] += 1
            p = rng.choice(tables)
            name = f"{t}_fk{ncon[0]}"
            n = newcol(t); cols[t].append((n, "bigint"))
            stmts.append(f"ALTER TABLE {t} ADD COLUMN {n} bigint;")
            nv = " NOT VALID" if rng.random() < 0.5 else ""
            if nv:
                notvalid.append((t, name))
            stmts.append(f"ALTER TABLE {t} ADD CONSTRAINT {name} FOREIGN KEY ({n}) REFERENCES {p} (id){nv};")
        elif k == "validate":
            if not notvalid:
                continue
            tt, name = notvalid.pop(0)
            stmts.append(f"ALTER TABLE {tt} VALIDATE CONSTRAINT {name};")
        elif k == "add_unique":
            ncon[0] += 1
            stmts.append(f"ALTER TABLE {t} ADD CONSTRAINT {t}_uq{ncon[0]} UNIQUE ({c[0]});")
        elif k == "drop_index":
            if not indexes[t]:
                continue
            name = indexes[t].pop(rng.randrange(len(indexes[t])))
            conc = "CONCURRENTLY " if rng.random() < 0.5 else ""
            stmts.append(f"DROP INDEX {conc}IF EXISTS {name};")
        elif k == "drop_column":
            extra = [x for x in cols[t] if x[0].startswith("col_")]
            if not extra:
                continue
            x = rng.choice(extra); cols[t].remove(x)
            stmts.append(f"ALTER TABLE {t} DROP COLUMN {x[0]};")
        elif k == "rename_column":
            extra = [x for x in cols[t] if x[0].startswith("col_")]
            if not extra:
                continue
            x = rng.choice(extra); i = cols[t].index(x)
            n = newcol(t); cols[t][i] = (n, x[1])
            stmts.append(f"ALTER TABLE {t} RENAME COLUMN {x[0]} TO {n};")
        elif k == "comment_table":
            stmts.append(f"COMMENT ON TABLE {t} IS 'table {t}, revision {len(stmts)}';")
        elif k == "comment_column":
            stmts.append(f"COMMENT ON COLUMN {t}.{c[0]} IS 'column {c[0]} of {t}';")
        elif k == "lock_timeout":
            stmts.append(f"SET lock_timeout = '{rng.choice([1, 2, 5])}s';")
    stmts = stmts[:N_STATEMENTS]
    with open(out, "w") as f:
        f.write("-- generated by bench/gen_migration.py: %d statements on %d tables (%d created here)\n" % (len(stmts), N_TABLES, N_CREATED))
        f.write("\n".join(stmts) + "\n")
    print(f"wrote {out} ({len(stmts)} statements)")


if __name__ == "__main__":
    main()
