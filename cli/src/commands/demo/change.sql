-- The migration a developer wrote: aid and abalance are running out of int, so widen them.
ALTER TABLE bank_accounts ALTER aid TYPE bigint, ALTER abalance TYPE bigint;
