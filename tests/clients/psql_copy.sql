-- psql's \copy in and out, COPY FROM STDIN with inline data, and an error in the middle of a
-- COPY; run by tests/tests/proxy_clients.rs as
--   psql -X -w -v ON_ERROR_STOP=1 -f psql_copy.sql
-- in a directory holding people.csv (the test writes it: a header and 1000 rows with quotes,
-- commas, newlines, non-ASCII text and NULLs) and bad.csv (a row whose id is not a number).
-- It writes people_out.csv and names.txt there; the test compares them with what it expects.
-- Every check fails the script (RAISE, so psql exits 3) rather than printing something.
\set ON_ERROR_STOP 1
\pset pager off

create table people (id int primary key, name text not null, note text, born date);

\copy people from 'people.csv' with (format csv, header true)

do $$ begin
    if (select count(*) from people) <> 1000 then
        raise exception 'expected 1000 rows after \copy in, got %', (select count(*) from people);
    end if;
    if (select sum(id) from people) <> 500500 then
        raise exception 'expected id sum 500500, got %', (select sum(id) from people);
    end if;
    if (select count(*) from people where note is null) <> 100 then
        raise exception 'expected 100 NULL notes, got %', (select count(*) from people where note is null);
    end if;
end $$;

-- COPY FROM STDIN with the data inline in this script (text format).
copy people (id, name, note, born) from stdin;
1001	inline one	tab\there	2001-02-03
1002	inline two	\N	1999-12-31
1003	inline "three", ü	back\\slash	2020-02-29
\.

do $$ begin
    if (select note from people where id = 1001) <> E'tab\there' then
        raise exception 'inline row 1001 is %', (select note from people where id = 1001);
    end if;
    if (select note from people where id = 1003) <> E'back\\slash' then
        raise exception 'inline row 1003 is %', (select note from people where id = 1003);
    end if;
end $$;

-- An error in the middle of a \copy: the whole copy is rolled back and the session goes on.
\set ON_ERROR_STOP 0
\copy people from 'bad.csv' with (format csv)
\set ON_ERROR_STOP 1
select count(*) as after_bad from people \gset
\echo after_bad :after_bad
do $$ begin
    if (select count(*) from people) <> 1003 then
        raise exception 'the failed \copy left rows behind: % rows', (select count(*) from people);
    end if;
end $$;

\copy (select id, name, note, born from people order by id) to 'people_out.csv' with (format csv, header true)
\copy people (id, name) to 'names.txt'

-- Read our own output back and compare it with the table, row for row.
create temp table people_back (like people);
\copy people_back from 'people_out.csv' with (format csv, header true)
do $$ begin
    if exists ((table people except table people_back) union all (table people_back except table people)) then
        raise exception 'people_out.csv does not hold the table';
    end if;
end $$;

select count(*) as total, sum(id) as id_sum from people \gset
\echo total :total id_sum :id_sum
