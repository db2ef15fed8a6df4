-- Tables the driver tests use, created directly on the target as its superuser (creating them
-- through proctor would be held by the shipped DDL rule). One table per driver so the programs
-- can run in any order; each program deletes its own rows first.
DO $$
DECLARE d text;
BEGIN
  FOREACH d IN ARRAY ARRAY['psycopg','psycopg2','asyncpg','nodepg','jdbc'] LOOP
    EXECUTE format('DROP TABLE IF EXISTS compat_%s', d);
    EXECUTE format('CREATE TABLE compat_%s (
        id      integer PRIMARY KEY,
        name    text,
        data    bytea,
        amount  numeric(20,6),
        ts      timestamptz,
        js      jsonb,
        arr     integer[]
      )', d);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON compat_%s TO app_write', d);
  END LOOP;
END $$;
