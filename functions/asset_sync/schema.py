"""The tables asset_sync keeps, as numbered migrations for SQLite and PostgreSQL.

Applied in order, each in one transaction, by ``python -m functions.asset_sync migrate`` and
automatically on first use. Never edit a published migration: add the next one. Every table name starts
with ``cloudinary_`` so the mirror can live in a database the CMS already uses.
"""

from __future__ import annotations

VERSION_TABLE = "cloudinary_sync_schema"

_SQLITE_1 = [
    """CREATE TABLE cloudinary_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        dedupe_key TEXT NOT NULL UNIQUE,          -- sha256 of the canonical JSON payload: retries collide
        notification_type TEXT NOT NULL,
        asset_id TEXT,                            -- the (first) asset it names, when it names one
        event_clock TEXT NOT NULL,                -- when it happened (ISO UTC) '#' key: the merge order
        received_at TEXT NOT NULL,
        payload TEXT NOT NULL,                    -- the body exactly as Cloudinary signed it
        signature_timestamp TEXT,                 -- X-Cld-Timestamp and X-Cld-Signature, to re-verify
        signature TEXT
    )""",
    "CREATE INDEX cloudinary_events_asset ON cloudinary_events (asset_id)",
    "CREATE INDEX cloudinary_events_received ON cloudinary_events (received_at)",
    """CREATE TABLE cloudinary_assets (
        asset_id TEXT PRIMARY KEY,
        public_id TEXT, resource_type TEXT, type TEXT, asset_folder TEXT, display_name TEXT,
        version INTEGER, version_id TEXT, format TEXT, bytes INTEGER, width INTEGER, height INTEGER,
        pages INTEGER, original_filename TEXT, created_at TEXT, secure_url TEXT,
        tags TEXT NOT NULL DEFAULT '[]',          -- JSON array of strings
        context TEXT NOT NULL DEFAULT '{}',       -- JSON object: contextual metadata
        metadata TEXT NOT NULL DEFAULT '{}',      -- JSON object: structured metadata, by external id
        access_control TEXT,                      -- JSON array, as Cloudinary states it
        moderation_status TEXT, moderation_kind TEXT,
        derived TEXT NOT NULL DEFAULT '[]',       -- JSON array: eager / exploded derived versions
        info TEXT NOT NULL DEFAULT '{}',          -- JSON object: add-on results by info_kind
        deleted INTEGER NOT NULL DEFAULT 0,
        deleted_at TEXT,
        last_notification_at TEXT,                -- the newest notification time applied to the row
        updated_at TEXT NOT NULL,                 -- when this row last changed here: poll on it
        sync_state TEXT NOT NULL                  -- merge bookkeeping (per-field clocks); not for queries
    )""",
    "CREATE INDEX cloudinary_assets_public_id ON cloudinary_assets (public_id)",
    "CREATE INDEX cloudinary_assets_folder ON cloudinary_assets (asset_folder)",
    "CREATE INDEX cloudinary_assets_updated ON cloudinary_assets (updated_at)",
    """CREATE TABLE cloudinary_folders (
        path TEXT PRIMARY KEY,
        deleted INTEGER NOT NULL DEFAULT 0,
        changed_at TEXT NOT NULL,
        sync_clock TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE cloudinary_folder_renames (
        event_clock TEXT PRIMARY KEY,
        from_path TEXT NOT NULL,
        to_path TEXT NOT NULL
    )""",
]

_POSTGRESQL_1 = [
    """CREATE TABLE cloudinary_events (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        dedupe_key TEXT NOT NULL UNIQUE,
        notification_type TEXT NOT NULL,
        asset_id TEXT,
        event_clock TEXT NOT NULL,
        received_at TIMESTAMPTZ NOT NULL,
        payload TEXT NOT NULL,
        signature_timestamp TEXT,
        signature TEXT
    )""",
    "CREATE INDEX cloudinary_events_asset ON cloudinary_events (asset_id)",
    "CREATE INDEX cloudinary_events_received ON cloudinary_events (received_at)",
    """CREATE TABLE cloudinary_assets (
        asset_id TEXT PRIMARY KEY,
        public_id TEXT, resource_type TEXT, type TEXT, asset_folder TEXT, display_name TEXT,
        version BIGINT, version_id TEXT, format TEXT, bytes BIGINT, width INTEGER, height INTEGER,
        pages INTEGER, original_filename TEXT, created_at TIMESTAMPTZ, secure_url TEXT,
        tags JSONB NOT NULL DEFAULT '[]',
        context JSONB NOT NULL DEFAULT '{}',
        metadata JSONB NOT NULL DEFAULT '{}',
        access_control JSONB,
        moderation_status TEXT, moderation_kind TEXT,
        derived JSONB NOT NULL DEFAULT '[]',
        info JSONB NOT NULL DEFAULT '{}',
        deleted BOOLEAN NOT NULL DEFAULT FALSE,
        deleted_at TIMESTAMPTZ,
        last_notification_at TIMESTAMPTZ,
        updated_at TIMESTAMPTZ NOT NULL,
        sync_state JSONB NOT NULL
    )""",
    "CREATE INDEX cloudinary_assets_public_id ON cloudinary_assets (public_id)",
    "CREATE INDEX cloudinary_assets_folder ON cloudinary_assets (asset_folder)",
    "CREATE INDEX cloudinary_assets_updated ON cloudinary_assets (updated_at)",
    "CREATE INDEX cloudinary_assets_tags ON cloudinary_assets USING GIN (tags)",
    """CREATE TABLE cloudinary_folders (
        path TEXT PRIMARY KEY,
        deleted BOOLEAN NOT NULL DEFAULT FALSE,
        changed_at TIMESTAMPTZ NOT NULL,
        sync_clock TEXT NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE cloudinary_folder_renames (
        event_clock TEXT PRIMARY KEY,
        from_path TEXT NOT NULL,
        to_path TEXT NOT NULL
    )""",
]

# 2 (issue 12): events a time budget left partly applied, or that the database refused for good
# (quarantined, with the reason); a partial index finds the few rows known only by public ID (their key
# starts with "~"). PostgreSQL: public_id and asset_folder get hash indexes, which hold values of any length
# (a btree entry is at most ~2.7 kB, and an over-long public ID made every write of its row fail).
_EVENT_STATES = [
    "ALTER TABLE cloudinary_events ADD COLUMN state TEXT NOT NULL DEFAULT 'applied'",  # |partial|quarantined
    "ALTER TABLE cloudinary_events ADD COLUMN progress INTEGER",  # partial: how many of its assets are applied
    "ALTER TABLE cloudinary_events ADD COLUMN detail TEXT",  # quarantined: why
    "CREATE INDEX cloudinary_events_unfinished ON cloudinary_events (state) WHERE state <> 'applied'",
]
_SQLITE_2 = [
    *_EVENT_STATES,
    "CREATE INDEX cloudinary_assets_provisional ON cloudinary_assets (public_id) WHERE asset_id LIKE '~%'",
]
_POSTGRESQL_2 = [
    *_EVENT_STATES,
    "DROP INDEX cloudinary_assets_public_id",
    "CREATE INDEX cloudinary_assets_public_id ON cloudinary_assets USING hash (public_id)",
    "DROP INDEX cloudinary_assets_folder",
    "CREATE INDEX cloudinary_assets_folder ON cloudinary_assets USING hash (asset_folder)",
    "CREATE INDEX cloudinary_assets_provisional ON cloudinary_assets USING hash (public_id) "
    "WHERE asset_id LIKE '~%'",
]

# 3 (issue 15): `reconcile` passes over the Search API. One row per pass: the expression it searches, where it
# continues (the search's next_cursor) and what it found; a run holds the pass's lease while it continues it, so two
# runs never continue one pass at once. The assets a pass covering every asset has seen, to tell at its end which
# mirror rows the search no longer returns (deleted while a notification was lost). Bookkeeping: not for queries.
# IF NOT EXISTS: a database reset by dropping the tables of schema 2 (and the version table) still migrates.
_RECONCILE = {
    "sqlite": ("INTEGER PRIMARY KEY AUTOINCREMENT", "TEXT", "INTEGER", "0"),
    "postgresql": ("BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "TIMESTAMPTZ", "BOOLEAN", "FALSE"),
}


def _reconcile_tables(dialect: str) -> list[str]:
    key, time, flag, false = _RECONCILE[dialect]
    return [
        f"""CREATE TABLE IF NOT EXISTS cloudinary_reconcile (
        id {key},
        expression TEXT NOT NULL,                 -- the search expression ('' = every asset)
        every_asset {flag} NOT NULL,              -- covers every asset: what it did not return is gone
        started_at {time} NOT NULL,
        updated_at {time} NOT NULL,
        finished_at {time},                       -- NULL while unfinished
        next_cursor TEXT,                         -- where the search continues (NULL: at its first page)
        searched_all {flag} NOT NULL DEFAULT {false},  -- its last page is done (what vanished may remain)
        pages INTEGER NOT NULL DEFAULT 0,
        assets INTEGER NOT NULL DEFAULT 0,
        missing INTEGER NOT NULL DEFAULT 0,
        stale INTEGER NOT NULL DEFAULT 0,
        vanished INTEGER NOT NULL DEFAULT 0,
        calls INTEGER NOT NULL DEFAULT 0,         -- Search API calls (each counts against the hourly limit)
        rate_remaining INTEGER,                   -- X-FeatureRateLimit-Remaining of the last answer
        rate_reset_at {time},                     -- X-FeatureRateLimit-Reset of the last answer
        stopped TEXT,                             -- why its last run stopped before the end
        lease_until {time}                        -- the run continuing it holds it until then
    )""",
        "CREATE INDEX IF NOT EXISTS cloudinary_reconcile_unfinished ON cloudinary_reconcile (expression) "
        "WHERE finished_at IS NULL",
        """CREATE TABLE IF NOT EXISTS cloudinary_reconcile_seen (
        pass_id BIGINT NOT NULL,
        asset_id TEXT NOT NULL,
        PRIMARY KEY (pass_id, asset_id)
    )""",
    ]


# version -> statements per dialect
MIGRATIONS: dict[int, dict[str, list[str]]] = {
    1: {"sqlite": _SQLITE_1, "postgresql": _POSTGRESQL_1},
    2: {"sqlite": _SQLITE_2, "postgresql": _POSTGRESQL_2},
    3: {"sqlite": _reconcile_tables("sqlite"), "postgresql": _reconcile_tables("postgresql")},
}
LATEST = max(MIGRATIONS)
