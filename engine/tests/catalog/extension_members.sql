-- An extension's own functions, types and tables are not user objects: only the extension
-- itself shows up (pg_stat_statements would add a view, hstore a type and many functions).
CREATE EXTENSION hstore;
CREATE EXTENSION "uuid-ossp" SCHEMA public;
CREATE TABLE public.docs (id uuid PRIMARY KEY DEFAULT uuid_generate_v4(), attrs hstore);
