-- The rights smsd's daemons need on the shared PostgreSQL database, and no more.
--
-- Two login roles (README, "Several hosts (PostgreSQL)"):
--   smsd_owner  owns the database and its tables; runs `smsd db migrate` and
--               `smsd db copy` (creating tables needs ownership);
--   smsd        what every node's `database` URL names: reads and writes rows,
--               nothing else (no DDL, not the owner, no superuser).
--
-- Run as a superuser, connected to the smsd database, after the first
-- `smsd db migrate`:
--   sudo -u postgres psql -d smsd -f examples/postgresql-grants.sql
-- Tables added by later migrations get the same rights by the default
-- privileges below.  Nothing else is needed: LISTEN/NOTIFY and advisory locks
-- (the node-name lock) take no grant.

REVOKE ALL ON DATABASE smsd FROM PUBLIC;
GRANT CONNECT ON DATABASE smsd TO smsd;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO smsd;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO smsd;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO smsd;
ALTER DEFAULT PRIVILEGES FOR ROLE smsd_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO smsd;
ALTER DEFAULT PRIVILEGES FOR ROLE smsd_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO smsd;
