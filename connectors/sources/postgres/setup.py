"""Preflight checks, publication and replication slot of the Postgres source, and the SQL of
``replicator setup``.

Every check fails with a message that says what is wrong and how to fix it, before anything
is created.

Least privilege (docs/postgres-privileges.md). At run time the replicator's role needs: to
replicate (REPLICATION, or membership in ``rds_replication`` on RDS/Aurora), SELECT on the three
checkpoint tables (and USAGE on their schema), the publication (created ahead of time when the
role does not own the tables: CREATE PUBLICATION needs their owner or a superuser), and its own
schema ``langgraph_replicator`` with its tables, which it owns. The slot it creates itself, on
its first run, over the replication protocol (REPLICATION is all that takes), so that the
initial copy reads exactly the snapshot the slot exports. ``setup_script`` is the SQL that grants
all of it, ``check_source`` what names whatever is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from connectors.sources.postgres import ddl
from connectors.sources.postgres.rows import TABLES
from replicator.errors import ErrorKind, ReplicatorError
from replicator.redact import redact

if TYPE_CHECKING:
    from connectors.sources.postgres.config import PostgresSourceConfig


def connect(dsn: str, **kwargs: Any) -> psycopg.Connection[Any]:
    try:
        return psycopg.connect(dsn, connect_timeout=10, **kwargs)
    except psycopg.OperationalError as exc:
        raise ReplicatorError(
            ErrorKind.SOURCE_UNREACHABLE, f"cannot connect to the source Postgres: {redact(str(exc)).strip()}"
        ) from None


@dataclass(frozen=True)
class SlotInfo:
    name: str
    database: str
    plugin: str
    confirmed_flush_lsn: int | None
    restart_lsn: int | None
    active: bool
    wal_status: str | None


def parse_lsn(text: str | None) -> int | None:
    if not text:
        return None
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def check_source(conn: psycopg.Connection[Any], schema: str, publication: str | None = None) -> None:
    """wal_level, the three PostgresSaver tables, and every right the replicator uses: to
    replicate, to read the tables, the publication (with ``publication``) and its own schema.
    What is missing is named all at once, with the command that grants it."""
    (wal_level,) = conn.execute("SHOW wal_level").fetchone() or ("",)
    if wal_level != "logical":
        raise ReplicatorError(
            ErrorKind.SOURCE_SETUP,
            f"the source Postgres has wal_level={wal_level}; logical replication needs wal_level=logical. "
            "Fix: run ALTER SYSTEM SET wal_level = logical; then restart Postgres "
            "(on RDS/Aurora set rds.logical_replication=1 in the parameter group; "
            "on Cloud SQL set cloudsql.logical_decoding=on; on Azure set the server parameter "
            "wal_level=logical).",
        )
    # pg_class, not information_schema: that one hides the tables a role may not read, and a
    # missing privilege would read as missing tables.
    rows = conn.execute(
        """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind IN ('r', 'p')""",
        (schema, list(TABLES)),
    ).fetchall()
    missing = sorted(set(TABLES) - {r[0] for r in rows})
    if missing:
        raise ReplicatorError(
            ErrorKind.SOURCE_SETUP,
            f"the source has no PostgresSaver table(s) {', '.join(missing)} in schema {schema!r}. "
            "Is source.dsn the database your app's PostgresSaver writes to (and source.schema its schema)? "
            "PostgresSaver.setup() creates them.",
        )
    lacks = missing_privileges(conn, schema, publication)
    if lacks:
        user, dbname = _whoami(conn)
        raise ReplicatorError(
            ErrorKind.SOURCE_SETUP,
            f"the source user {user!r} lacks what the replicator needs in database {dbname!r}: "
            f"{'; '.join(lacks)}. Fix: run `replicator setup --config FILE --print-sql --role {user}` "
            "and have a DBA apply its output as a superuser (psql -v ON_ERROR_STOP=1 -f setup.sql), "
            f"or run `replicator setup --config FILE --role {user}` with a superuser's DSN in "
            "source.dsn (see docs/postgres-privileges.md)",
        )


def _whoami(conn: psycopg.Connection[Any]) -> tuple[str, str]:
    row = conn.execute("SELECT current_user::text, current_database()::text").fetchone()
    return (row[0], row[1]) if row else ("?", "?")


_CAN_REPLICATE = """SELECT r.rolreplication OR r.rolsuper OR EXISTS (
        SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid
        WHERE g.rolname = 'rds_replication' AND m.member = r.oid)
    FROM pg_roles r WHERE r.rolname = COALESCE(%s, current_user)"""  # param: a role, or None


def missing_privileges(
    conn: psycopg.Connection[Any], schema: str, publication: str | None = None
) -> list[str]:
    """Each right or object the connected user lacks, as words for the operator (empty: none)."""
    lacks: list[str] = []
    (can_replicate,) = conn.execute(_CAN_REPLICATE, (None,)).fetchone() or (False,)
    if not can_replicate:
        lacks.append(
            "the REPLICATION attribute (ALTER ROLE <user> WITH REPLICATION; on RDS/Aurora: "
            "GRANT rds_replication TO <user>)"
        )
    rows = conn.execute(
        """SELECT c.relname, has_schema_privilege(n.oid, 'USAGE'), has_table_privilege(c.oid, 'SELECT'),
                  pg_has_role(c.relowner, 'USAGE')
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind IN ('r', 'p')""",
        (schema, list(TABLES)),
    ).fetchall()
    if rows and not rows[0][1]:
        lacks.append(f"USAGE on schema {schema}")
    unreadable = [f"{schema}.{r[0]}" for r in sorted(rows) if not r[2]]
    if unreadable:
        lacks.append(f"SELECT on {', '.join(unreadable)}")
    owns_tables = len(rows) == len(TABLES) and all(r[3] for r in rows)
    (superuser, create_db) = conn.execute(
        "SELECT rolsuper, has_database_privilege(current_database(), 'CREATE') "
        "FROM pg_roles WHERE rolname = current_user"
    ).fetchone() or (False, False)
    if publication is not None:
        lacks.extend(_publication_lacks(conn, publication, schema, superuser or (owns_tables and create_db)))
    lacks.extend(_own_schema_lacks(conn, create_db))
    return lacks


def _publication_lacks(
    conn: psycopg.Connection[Any], publication: str, schema: str, may_create: bool
) -> list[str]:
    """The publication must exist and cover the tables, unless this user may make it so (the
    stream then does: ``ensure_publication``)."""
    if may_create:
        return []
    exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (publication,)).fetchone()
    if not exists:
        return [
            f"the publication {publication!r} (it does not exist, and CREATE PUBLICATION needs the "
            "owner of the checkpoint tables or a superuser)"
        ]
    rows = conn.execute(
        "SELECT tablename FROM pg_publication_tables WHERE pubname = %s AND schemaname = %s",
        (publication, schema),
    ).fetchall()
    uncovered = sorted(set(TABLES) - {r[0] for r in rows})
    if uncovered:
        return [
            f"the publication {publication!r} to cover {', '.join(uncovered)} (ALTER PUBLICATION "
            "needs the owner of the publication and of the tables)"
        ]
    return []


def _own_schema_lacks(conn: psycopg.Connection[Any], create_db: bool) -> list[str]:
    """The replicator's schema and tables: present with the rights it uses, or creatable."""
    schema = ddl.STATE_SCHEMA
    found = conn.execute(
        "SELECT has_schema_privilege(oid, 'USAGE'), has_schema_privilege(oid, 'CREATE') "
        "FROM pg_namespace WHERE nspname = %s",
        (schema,),
    ).fetchone()
    if found is None:
        if create_db:
            return []
        return [f"the schema {schema} (it does not exist, and creating it needs CREATE on the database)"]
    usage, create = found
    if not usage:
        return [f"USAGE on schema {schema}"]
    tables: dict[str, int] = {
        name: oid
        for name, oid in conn.execute(
            """SELECT c.relname, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = %s AND c.relname = ANY(%s)""",
            (schema, list(ddl.TABLES)),
        ).fetchall()
    }
    lacks: list[str] = []
    absent = [f"{schema}.{t}" for t in ddl.TABLES if t not in tables]
    if absent and not create:
        lacks.append(
            f"the table(s) {', '.join(absent)} (missing, and creating them needs CREATE on schema {schema})"
        )
    for table in ddl.TABLES:
        if table not in tables:
            continue
        granted = conn.execute(
            "SELECT privilege, has_table_privilege(%s, privilege) FROM unnest(%s::text[]) AS p(privilege)",
            (tables[table], list(ddl.ROLE_PRIVILEGES)),
        ).fetchall()
        denied = [privilege for privilege, ok in granted if not ok]
        if denied:
            lacks.append(f"{', '.join(denied)} on {schema}.{table}")
    return lacks


def ensure_publication(conn: psycopg.Connection[Any], name: str, schema: str) -> None:
    """Create the publication on the three tables, or check an existing one covers them."""
    exists = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,)).fetchone()
    tables = sql.SQL(", ").join(sql.Identifier(schema, t) for t in TABLES)
    if not exists:
        conn.execute(sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(sql.Identifier(name), tables))
        return
    rows = conn.execute(
        "SELECT tablename FROM pg_publication_tables WHERE pubname = %s AND schemaname = %s", (name, schema)
    ).fetchall()
    missing = sorted(set(TABLES) - {r[0] for r in rows})
    if missing:
        conn.execute(
            sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(
                sql.Identifier(name), sql.SQL(", ").join(sql.Identifier(schema, t) for t in missing)
            )
        )


def slot_info(conn: psycopg.Connection[Any], slot: str) -> SlotInfo | None:
    row = conn.execute(
        """SELECT slot_name, database, plugin, confirmed_flush_lsn::text, restart_lsn::text,
                  active, wal_status
           FROM pg_replication_slots WHERE slot_name = %s""",
        (slot,),
    ).fetchone()
    if row is None:
        return None
    return SlotInfo(row[0], row[1], row[2], parse_lsn(row[3]), parse_lsn(row[4]), row[5], row[6])


def check_slot(info: SlotInfo, dbname: str) -> None:
    if info.plugin != "pgoutput" or info.database != dbname:
        raise ReplicatorError(
            ErrorKind.SOURCE_SETUP,
            f"replication slot {info.name!r} exists but belongs to database {info.database!r} with plugin "
            f"{info.plugin!r}; this replicator needs a pgoutput slot on {dbname!r}. Choose another "
            "source.slot or drop that slot if it is unused.",
        )
    if info.wal_status == "lost":
        raise ReplicatorError(
            ErrorKind.SOURCE_LOST,
            f"replication slot {info.name!r} was invalidated (WAL it needed was removed, see "
            "max_slot_wal_keep_size). Changes since its last confirmed position are gone from the log. "
            "Fix: run `replicator reset --config FILE --yes` (drops the slot and the saved positions) and "
            "start again: the daemon re-snapshots and the idempotent apply converges the target.",
        )


def flush_lsn(conn: psycopg.Connection[Any]) -> int:
    """The WAL position Postgres has flushed: what it has durably committed so far."""
    row = conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
    return parse_lsn(row[0] if row else None) or 0


def probe_lsn(conn: psycopg.Connection[Any], prefix: str) -> int:
    """A head that a caught-up pipeline reaches: a marker message written now, whose position
    every committed change before it precedes, and which the stream turns into a heartbeat on
    every partition at once (``source._stream``). The flush position itself is no such head:
    the replicator's own position writes and heartbeats move it on, so what was applied always
    trails it by a heartbeat's worth of WAL, however idle the app. The empty transaction after
    the marker makes Postgres flush the WAL holding it: decoding reads flushed WAL only."""
    row = conn.execute("SELECT pg_logical_emit_message(false, %s, 'head')::text", (prefix,)).fetchone()
    conn.execute("SELECT txid_current()")
    return parse_lsn(row[0] if row else None) or flush_lsn(conn)


def unapplied_after(conn: psycopg.Connection[Any], slot: str, publication: str, position: int) -> bool | None:
    """Whether the slot still holds a transaction on the published tables that commits after
    ``position``: decoded without consuming (a peek), so only while no daemon streams the slot
    (None then, or when there is no slot). ``status`` asks this when no pipeline runs to carry
    its head marker: an idle, applied source is caught up even with the daemon stopped."""
    info = slot_info(conn, slot)
    if info is None or info.active:
        return None
    row = conn.execute(
        """SELECT count(*) FROM pg_logical_slot_peek_binary_changes(
               %s, NULL, NULL, 'proto_version', '1', 'publication_names', %s)
           WHERE get_byte(data, 0) = 66  -- 'B': a transaction's begin, with its commit LSN
             AND ('x' || encode(substring(data from 2 for 8), 'hex'))::bit(64)::bigint > %s""",
        (slot, publication, position),
    ).fetchone()
    return bool(row and row[0])


def slot_status(conn: psycopg.Connection[Any], slot: str, threshold: int) -> dict[str, Any]:
    """The slot as ``replicator status`` shows it: WAL it retains and how far it lags the head."""
    head = flush_lsn(conn)
    info = slot_info(conn, slot)
    status: dict[str, Any] = {"name": slot, "exists": info is not None}
    if info is not None:
        confirmed = info.confirmed_flush_lsn or 0
        retained = max(0, head - (info.restart_lsn or head))
        status.update(
            active=info.active,
            wal_status=info.wal_status,
            confirmed_flush_lsn=format_lsn(confirmed),
            confirmed_position=confirmed,
            retained_bytes=retained,
            lag_bytes=max(0, head - confirmed),
            retained_over_threshold=retained > threshold,
        )
    return status


def drop_slot(conn: psycopg.Connection[Any], slot: str) -> None:
    conn.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s", (slot,)
    )


def drop_publication(conn: psycopg.Connection[Any], publication: str) -> str:
    """Drop the publication; what happened, for people (its owner's command when this role may not)."""
    statement = sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(publication))
    try:
        conn.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        return (
            f"not publication {publication!r}: this role does not own it; its owner (who ran "
            f"`replicator setup`) can run: {statement.as_string(conn)}"
        )
    return f"publication {publication!r}"


# -- replicator setup -------------------------------------------------------------------------


def _ident(name: str) -> str:
    return sql.Identifier(name).as_string(None)


def _literal(value: str) -> str:
    return sql.Literal(value).as_string(None)


def default_role(dsn: str) -> str | None:
    """The user ``dsn`` connects as, when it names one (``replicator setup`` grants to it)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        user = conninfo_to_dict(dsn).get("user")
    except psycopg.ProgrammingError:
        return None
    return str(user) if user else None


def setup_script(config: PostgresSourceConfig, role: str, app_roles: tuple[str, ...] = ()) -> str:
    """The SQL that gives ``role`` everything the replicator needs in the source database, and
    ``app_roles`` what an app writing through ``RoutingSaver`` needs: idempotent, in one
    transaction, depending on nothing but the config (``--print-sql`` connects nowhere)."""
    from replicator.migration import MigrationRecord

    r, r_lit = _ident(role), _literal(role)
    schema = config.schema_name
    pub, pub_lit = _ident(config.publication), _literal(config.publication)
    tables = [f"{_ident(schema)}.{_ident(t)}" for t in TABLES]
    own = ddl.STATE_SCHEMA
    lines = [
        f"-- langgraph-replicator: what role {role} needs in the source database (replicator setup).",
        "-- Run in the source database as a superuser (on RDS/Aurora, Cloud SQL, Azure: the admin user),",
        "-- or as the owner of the checkpoint tables who is a member of that role (GRANT <role> TO",
        "-- CURRENT_USER first). Idempotent: run it again after an upgrade. All or nothing: one",
        "-- transaction. The role itself is yours to create, e.g.",
        f"--   CREATE ROLE {r} LOGIN PASSWORD '...';",
        f"-- The replication slot {_ident(config.slot)} is not created here: the first `replicator run`",
        "-- creates it (REPLICATION is all that takes) and copies the tables in the snapshot the slot",
        "-- exports, so the copy joins the stream exactly (until then no slot retains WAL).",
        "BEGIN;",
        "",
        "-- 1. The right to replicate: REPLICATION (on RDS/Aurora: membership in rds_replication).",
        "DO $lgr$ BEGIN",
        f"  IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = {r_lit} AND (r.rolreplication",
        "      OR r.rolsuper OR EXISTS (SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid",
        "        WHERE g.rolname = 'rds_replication' AND m.member = r.oid))) THEN",
        "    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_replication') THEN",
        f"      GRANT rds_replication TO {r};",
        "    ELSE",
        f"      ALTER ROLE {r} WITH REPLICATION;",
        "    END IF;",
        "  END IF;",
        "END $lgr$;",
        "",
        "-- 2. Reading the checkpoint tables (the initial copy, TOASTed values, verify).",
        "DO $lgr$ BEGIN",
        f"  EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), {r_lit});",
        "END $lgr$;",
        f"GRANT USAGE ON SCHEMA {_ident(schema)} TO {r};",
        f"GRANT SELECT ON TABLE {', '.join(tables)} TO {r};",
        "",
        "-- 3. The publication of the three tables (CREATE PUBLICATION needs their owner or a superuser).",
        "DO $lgr$ BEGIN",
        f"  IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = {pub_lit}) THEN",
        f"    CREATE PUBLICATION {pub} FOR TABLE {', '.join(tables)};",
        "  END IF;",
    ]
    for table, qualified in zip(TABLES, tables, strict=True):
        lines += [
            "  IF NOT EXISTS (SELECT 1 FROM pg_publication_tables",
            f"      WHERE pubname = {pub_lit} AND schemaname = {_literal(schema)}",
            f"        AND tablename = {_literal(table)}) THEN",
            f"    ALTER PUBLICATION {pub} ADD TABLE {qualified};",
            "  END IF;",
        ]
    lines += [
        "END $lgr$;",
        "",
        f"-- 4. The replicator's own schema, owned by {role}: positions ({', '.join(ddl.STATE_TABLES)}) and",
        f"--    the migration record the app's RoutingSaver reads ({', '.join(ddl.CONTROL_TABLES)}).",
        f"{ddl.create_schema(r)};",
        f"ALTER SCHEMA {own} OWNER TO {r};",
    ]
    for table in ddl.TABLES:
        lines += [f"{ddl.create_table(table)};", f"ALTER TABLE {ddl.qualified(table)} OWNER TO {r};"]
    initial = _literal(json.dumps(MigrationRecord().as_dict()))
    lines += [ddl.MIGRATION_ROW.replace("%s", initial, 1) + ";", ""]
    grants = [
        f"GRANT USAGE ON SCHEMA {own} TO {{app}};",
        *(
            f"GRANT {', '.join(privileges)} ON TABLE {ddl.qualified(table)} TO {{app}};"
            for table, privileges in ddl.APP_PRIVILEGES.items()
        ),
    ]
    lines += [
        "-- 5. The app's role (writing through RoutingSaver): the migration record and its fence",
        "--    (SELECT ... FOR SHARE needs UPDATE), held threads, the applied positions; besides its",
        "--    own checkpoint tables, which it owns already.",
    ]
    if app_roles:
        for app in app_roles:
            lines += [g.format(app=_ident(app)) for g in grants]
    else:
        lines.append("--    Name it with `replicator setup --app-role NAME`, or adapt and uncomment:")
        lines += ["-- " + g.format(app="<app_role>") for g in grants]
    lines += ["", "COMMIT;"]
    return "\n".join(lines) + "\n"


# The admin roles of RDS/Aurora, Cloud SQL and Azure Flexible Server, none a superuser.
_MANAGED_ADMIN_ROLES = ("rds_superuser", "cloudsqlsuperuser", "azure_pg_admin")


def setup_blockers(conn: psycopg.Connection[Any], config: PostgresSourceConfig, role: str) -> list[str]:
    """What the connected user lacks to run ``setup_script`` (empty: it can)."""
    target = conn.execute(_CAN_REPLICATE, (role,)).fetchone() or (False,)
    row = conn.execute(
        "SELECT rolsuper, has_database_privilege(current_database(), 'CREATE') FROM pg_roles "
        "WHERE rolname = current_user"
    ).fetchone()
    superuser, create_db = row if row else (False, False)
    if superuser:
        return []
    blockers: list[str] = []
    if not target[0]:
        # Vanilla Postgres lets only a superuser change REPLICATION; managed services let their
        # admin role do it (or grant rds_replication): left to the script, all or nothing.
        admin = conn.execute(
            "SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s) AND pg_has_role(oid, 'MEMBER')",
            (list(_MANAGED_ADMIN_ROLES),),
        ).fetchone()
        if not admin or not admin[0]:
            blockers.append(f"superuser, to give {role!r} the REPLICATION attribute")
    owned = conn.execute(
        """SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = %s AND c.relname = ANY(%s) AND pg_has_role(c.relowner, 'USAGE')""",
        (config.schema_name, list(TABLES)),
    ).fetchone()
    if not owned or owned[0] < len(TABLES):
        blockers.append("ownership of the checkpoint tables (to publish them and grant SELECT on them)")
    if not create_db:
        blockers.append("CREATE on the database (for the publication and the schema)")
    member = conn.execute("SELECT pg_has_role(%s, 'MEMBER')", (role,)).fetchone()
    if not member or not member[0]:
        blockers.append(f"membership in role {role!r} (to make it the owner of schema {ddl.STATE_SCHEMA})")
    return blockers


def run_setup(config: PostgresSourceConfig, role: str, app_roles: tuple[str, ...] = ()) -> str:
    """Run ``setup_script`` with ``config``'s DSN, all or nothing; what was set up, for people."""
    script = setup_script(config, role, app_roles)
    with connect(config.dsn.get_secret_value(), autocommit=True) as conn:
        rows = conn.execute(
            """SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind IN ('r', 'p')""",
            (config.schema_name, list(TABLES)),
        ).fetchall()
        missing = sorted(set(TABLES) - {r[0] for r in rows})
        if missing:
            raise ReplicatorError(
                ErrorKind.SOURCE_SETUP,
                f"the source has no PostgresSaver table(s) {', '.join(missing)} in schema "
                f"{config.schema_name!r}: create them first (PostgresSaver.setup()), then run setup again",
            )
        for name in (role, *app_roles):
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone() is None:
                raise ReplicatorError(
                    ErrorKind.SOURCE_SETUP,
                    f"the role {name!r} does not exist: create it first (CREATE ROLE {_ident(name)} "
                    "LOGIN PASSWORD '...'), then run setup again. Nothing was changed",
                )
        blockers = setup_blockers(conn, config, role)
        if blockers:
            user, dbname = _whoami(conn)
            raise ReplicatorError(
                ErrorKind.SOURCE_SETUP,
                f"cannot set up database {dbname!r} as {user!r}, which lacks: {'; '.join(blockers)}. "
                "Nothing was changed. Fix: put a superuser's DSN in source.dsn for this command, or run "
                f"`replicator setup --config FILE --print-sql --role {role}` and have a DBA apply its "
                "output (psql -v ON_ERROR_STOP=1 -f setup.sql)",
            )
        try:
            conn.execute(script)  # no parameters: one simple query, its own BEGIN ... COMMIT
        except psycopg.Error as exc:
            raise ReplicatorError(
                ErrorKind.SOURCE_SETUP,
                f"setup failed and changed nothing (it runs in one transaction): {redact(str(exc)).strip()}",
            ) from None
        (wal_level,) = conn.execute("SHOW wal_level").fetchone() or ("",)
    done = (
        f"ok: publication {config.publication!r} on {', '.join(TABLES)}, schema {ddl.STATE_SCHEMA} "
        f"owned by {role!r}, SELECT and REPLICATION for {role!r}"
        + (f", RoutingSaver's rights for {', '.join(repr(a) for a in app_roles)}" if app_roles else "")
        + f"; the first `replicator run` creates the replication slot {config.slot!r}"
    )
    if wal_level != "logical":
        done += f". Warning: wal_level is {wal_level}; set it to logical and restart Postgres before `run`"
    return done
