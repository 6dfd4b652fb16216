-- Roles of the warehouse (PostgreSQL). Run by the owner of the tables (margin-eod roles):
--   pipeline  writes: creates tables, replaces business dates;
--   analyst   reads every table and view, and writes nothing.
-- Idempotent; roles are created with LOGIN and no password (set one, or use the
-- server's authentication rules, before production use).
do $$
begin
    if not exists (select from pg_roles where rolname = 'analyst') then
        create role analyst login;
    end if;
    if not exists (select from pg_roles where rolname = 'pipeline') then
        create role pipeline login;
    end if;
    execute format('grant connect on database %I to analyst, pipeline', current_database());
end
$$;

grant usage on schema public to analyst;
revoke create on schema public from analyst;
grant select on all tables in schema public to analyst;
alter default privileges in schema public grant select on tables to analyst;

grant usage, create on schema public to pipeline;
grant select, insert, update, delete, truncate on all tables in schema public to pipeline;
alter default privileges in schema public
    grant select, insert, update, delete, truncate on tables to pipeline;
