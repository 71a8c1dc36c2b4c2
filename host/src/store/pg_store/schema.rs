//! The PostgreSQL schema: its migrations, and the tables that follow the
//! records of each kind.
//!
//! Records stay in `records`, the one place every transaction, claim and
//! `store copy` goes through. Beside it, each kind a tenant owns has a table
//! of its own (see [`RECORD_TABLES`]): a row per record with the columns its
//! listings filter and sort by, the tenant first in the primary key and in
//! every index. Triggers on `records` keep them in the same transaction, so
//! a table never disagrees with the records, and `GET` listings filter,
//! sort and count on their indexes (see [`super::tables`]).

use std::fmt::Write as _;

/// The version of the PostgreSQL schema this build writes.
pub const PG_SCHEMA_VERSION: i32 = 3;

/// The PostgreSQL schema, one migration per version, in order: version N is
/// `migrations()[N - 1]`. Never edit a released migration (nor, for
/// version 3, [`RECORD_TABLES`]); add one.
pub(super) fn migrations() -> Vec<String> {
    vec![
        "CREATE TABLE records (key bytea PRIMARY KEY, value bytea NOT NULL);
         CREATE TABLE index_entries (key bytea PRIMARY KEY, value bytea NOT NULL);
         CREATE TABLE meta (key bytea PRIMARY KEY, value bytea NOT NULL);"
            .to_owned(),
        ACTIONS_TABLE.to_owned(),
        record_tables_sql(RECORD_TABLES),
    ]
}

/// Version 2: the `actions` table, one row per action with the columns
/// `GET /v1/actions` filters and sorts by, tenant first in its primary key
/// and every index. A trigger on `records` keeps it in the same
/// transaction as the action's record (every writer, `store copy`
/// included, goes through `records`), and the migration fills it from the
/// actions already stored. Text columns sort byte-wise (`COLLATE "C"`), as
/// sled's keys and Rust's strings do.
const ACTIONS_TABLE: &str = r#"
CREATE TABLE actions (
    tenant_id text COLLATE "C" NOT NULL,
    id text COLLATE "C" NOT NULL,
    status text COLLATE "C" NOT NULL,
    action_type text COLLATE "C" NOT NULL,
    identity_id text COLLATE "C" NOT NULL,
    contact_id text COLLATE "C",
    list_id text COLLATE "C",
    item_id text COLLATE "C",
    agent_id text COLLATE "C",
    updated_at text COLLATE "C" NOT NULL,
    scheduled_time text COLLATE "C",
    due_ms bigint,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX actions_by_status ON actions (tenant_id, status, action_type, id);
CREATE INDEX actions_by_type ON actions (tenant_id, action_type, id);
CREATE INDEX actions_by_identity ON actions (tenant_id, identity_id, id);
CREATE INDEX actions_by_contact ON actions (tenant_id, contact_id, id) WHERE contact_id IS NOT NULL;
CREATE INDEX actions_by_list ON actions (tenant_id, list_id, id) WHERE list_id IS NOT NULL;
CREATE INDEX actions_by_item ON actions (tenant_id, item_id, id) WHERE item_id IS NOT NULL;
CREATE INDEX actions_by_updated ON actions (tenant_id, updated_at, id);

CREATE FUNCTION actionhost_action_row(doc jsonb) RETURNS void LANGUAGE sql AS $$
    INSERT INTO actions VALUES (
        doc->>'tenant_id', doc->>'id', doc->>'status', doc->>'type',
        doc->>'identity_id', doc->>'contact_id', doc->>'list_id', doc->>'item_id',
        doc->>'agent_id', doc->>'updated_at', doc->>'scheduled_time',
        (doc->>'due_ms')::bigint)
    ON CONFLICT (tenant_id, id) DO UPDATE SET
        status = EXCLUDED.status, action_type = EXCLUDED.action_type,
        identity_id = EXCLUDED.identity_id, contact_id = EXCLUDED.contact_id,
        list_id = EXCLUDED.list_id, item_id = EXCLUDED.item_id,
        agent_id = EXCLUDED.agent_id, updated_at = EXCLUDED.updated_at,
        scheduled_time = EXCLUDED.scheduled_time, due_ms = EXCLUDED.due_ms
$$;

CREATE FUNCTION actionhost_actions_follow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        DELETE FROM actions
        WHERE tenant_id = convert_from(OLD.value, 'UTF8')::jsonb->>'tenant_id'
          AND id = convert_from(substring(OLD.key FROM 9), 'UTF8');
        RETURN OLD;
    END IF;
    PERFORM actionhost_action_row(convert_from(NEW.value, 'UTF8')::jsonb);
    RETURN NEW;
END
$$;

CREATE TRIGGER actions_follow_writes AFTER INSERT OR UPDATE ON records
    FOR EACH ROW WHEN (substring(NEW.key FROM 1 FOR 8) = 'actions/'::bytea)
    EXECUTE FUNCTION actionhost_actions_follow();
CREATE TRIGGER actions_follow_removals AFTER DELETE ON records
    FOR EACH ROW WHEN (substring(OLD.key FROM 1 FOR 8) = 'actions/'::bytea)
    EXECUTE FUNCTION actionhost_actions_follow();

SELECT actionhost_action_row(convert_from(value, 'UTF8')::jsonb)
FROM records WHERE key >= 'actions/'::bytea AND key < 'actions0'::bytea;
"#;

/// The columns of the `actions` table a listing may filter or sort by.
pub(super) const ACTION_COLUMNS: &[&str] = &[
    "status",
    "action_type",
    "identity_id",
    "contact_id",
    "list_id",
    "item_id",
    "agent_id",
    "updated_at",
    "scheduled_time",
    "due_ms",
];

/// The indexes of actions whose every read the `actions` table answers on
/// PostgreSQL (the listing's filters): their entries are not kept there.
/// The other indexes of actions are read elsewhere too (by status for the
/// metrics, by contact and agent for erasure and timelines, the due
/// index by the scheduler), so they are kept.
pub(super) const ANSWERED_BY_TABLES: &[&str] = &[
    "actions_by_tenant",
    "actions_by_type",
    "actions_by_identity",
    "actions_by_list",
    "actions_by_item",
];

/// A table that follows the records of one collection.
pub(super) struct RecordTable {
    /// The table's name, which is also the collection's.
    pub name: &'static str,
    /// The owning tenant, as SQL over the record (`doc`); `None` for a
    /// table no tenant owns.
    pub tenant: Option<&'static str>,
    /// The columns besides `tenant_id` and `id`.
    pub columns: &'static [Column],
    /// Its indexes: name, columns, and the rows they hold (a partial
    /// index's `WHERE`), all after the tenant.
    pub indexes: &'static [(&'static str, &'static str, Option<&'static str>)],
}

/// A column of a [`RecordTable`]: its name, its SQL type, and the SQL that
/// reads it from the record (`doc`, the record as `jsonb`).
pub(super) struct Column(pub &'static str, pub &'static str, pub &'static str);

impl RecordTable {
    /// Whether a listing may filter or sort by `column`.
    pub fn has(&self, column: &str) -> bool {
        self.columns.iter().any(|Column(name, ..)| *name == column)
    }
}

const TENANT: Option<&str> = Some("doc->>'tenant_id'");

/// Version 3: a table per kind of record a tenant owns (the records of
/// internal bookkeeping, such as replicas' leases, locks, OAuth2 states and
/// plugin bytes, have none: nothing lists them by tenant).
pub(super) const RECORD_TABLES: &[RecordTable] = &[
    RecordTable {
        name: "executions",
        tenant: TENANT,
        columns: &[
            Column("action_id", "text", "doc->>'action_id'"),
            Column("action_type", "text", "doc->>'action_type'"),
            Column("plugin", "text", "doc->>'plugin'"),
            Column("plugin_version", "text", "doc->>'plugin_version'"),
            Column("status", "text", "doc->>'status'"),
            Column("attempt", "bigint", "(doc->>'attempt')::bigint"),
            Column("account_id", "text", "doc->>'account_id'"),
            Column("performed_by", "text", "doc->>'performed_by'"),
            Column("started_at", "text", "doc->>'started_at'"),
            Column("finished_at", "text", "doc->>'finished_at'"),
            Column("duration_ms", "bigint", "(doc->>'duration_ms')::bigint"),
            Column("replica", "text", "doc->>'replica'"),
        ],
        indexes: &[
            (
                "executions_by_action",
                "action_id, id",
                Some("action_id IS NOT NULL"),
            ),
            ("executions_by_type", "action_type, status, id", None),
            ("executions_by_started", "started_at, id", None),
            (
                "executions_by_account",
                "account_id, id",
                Some("account_id IS NOT NULL"),
            ),
        ],
    },
    RecordTable {
        name: "contacts",
        tenant: TENANT,
        columns: &[
            Column("email", "text", "lower(doc->>'email')"),
            Column(
                "lifecycle_stage",
                "text",
                "lower(doc->'properties'->>'lifecyclestage')",
            ),
            Column("company", "text", "doc->'properties'->>'company'"),
            Column("created_at", "text", "doc->>'created_at'"),
            Column("updated_at", "text", "doc->>'updated_at'"),
        ],
        indexes: &[
            ("contacts_by_email", "email, id", None),
            (
                "contacts_by_stage",
                "lifecycle_stage, id",
                Some("lifecycle_stage IS NOT NULL"),
            ),
            ("contacts_by_updated", "updated_at, id", None),
        ],
    },
    RecordTable {
        name: "events",
        tenant: TENANT,
        columns: &[
            Column("event", "text", "doc->>'event'"),
            Column("contact_id", "text", "doc->>'contact_id'"),
            Column("anonymous_id", "text", "doc->>'anonymous_id'"),
            Column("source", "text", "doc->>'source'"),
            Column("occurred_ms", "bigint", "(doc->>'occurred_ms')::bigint"),
            Column("received_at", "text", "doc->>'received_at'"),
        ],
        indexes: &[
            ("events_by_time", "occurred_ms, id", None),
            ("events_by_name", "event, occurred_ms, id", None),
            (
                "events_by_contact",
                "contact_id, occurred_ms, id",
                Some("contact_id IS NOT NULL"),
            ),
            (
                "events_by_anonymous",
                "anonymous_id, occurred_ms, id",
                Some("anonymous_id IS NOT NULL"),
            ),
        ],
    },
    RecordTable {
        name: "notes",
        tenant: TENANT,
        columns: &[
            Column("contact_id", "text", "doc->>'contact_id'"),
            Column("action_id", "text", "doc->>'action_id'"),
            Column("created_ms", "bigint", "(doc->>'created_ms')::bigint"),
        ],
        indexes: &[("notes_by_contact", "contact_id, created_ms, id", None)],
    },
    RecordTable {
        name: "anonymous_links",
        tenant: TENANT,
        columns: &[
            Column("anonymous_id", "text", "doc->>'anonymous_id'"),
            Column("contact_id", "text", "doc->>'contact_id'"),
            Column("linked_at", "text", "doc->>'linked_at'"),
        ],
        indexes: &[
            ("anonymous_links_by_contact", "contact_id, id", None),
            ("anonymous_links_by_visitor", "anonymous_id, id", None),
        ],
    },
    RecordTable {
        name: "agents",
        tenant: TENANT,
        columns: &[
            Column("name", "text", "doc->>'name'"),
            Column("enabled", "boolean", "(doc->>'enabled')::boolean"),
            Column("identity_id", "text", "doc->>'identity_id'"),
            Column("scheduled_ms", "bigint", "(doc->>'scheduled_ms')::bigint"),
            Column("created_at", "text", "doc->>'created_at'"),
            Column("updated_at", "text", "doc->>'updated_at'"),
        ],
        indexes: &[("agents_by_name", "name, id", None)],
    },
    RecordTable {
        name: "agent_runs",
        tenant: TENANT,
        columns: &[
            Column("agent_id", "text", "doc->>'agent_id'"),
            Column("trigger", "text", "doc->>'trigger'"),
            Column("status", "text", "doc->>'status'"),
            Column("created_at", "text", "doc->>'created_at'"),
            Column("completed_at", "text", "doc->>'completed_at'"),
            Column("running_on", "text", "doc->>'running_on'"),
        ],
        indexes: &[
            ("agent_runs_by_agent", "agent_id, id", None),
            ("agent_runs_by_status", "status, id", None),
        ],
    },
    RecordTable {
        name: "agent_contact_results",
        tenant: TENANT,
        columns: &[
            Column("run_id", "text", "doc->>'run_id'"),
            Column("position", "bigint", "(doc->>'position')::bigint"),
            Column("contact_id", "text", "doc->>'contact_id'"),
            Column("status", "text", "doc->>'status'"),
        ],
        indexes: &[
            ("agent_contact_results_by_run", "run_id, position", None),
            ("agent_contact_results_by_contact", "contact_id, id", None),
        ],
    },
    RecordTable {
        name: "auth_configs",
        tenant: TENANT,
        columns: &[
            Column("app_name", "text", "doc->>'app_name'"),
            Column("name", "text", "doc->>'name'"),
            Column("created_at", "text", "doc->>'created_at'"),
        ],
        indexes: &[("auth_configs_by_app", "app_name, id", None)],
    },
    RecordTable {
        name: "accounts",
        tenant: TENANT,
        columns: &[
            Column("auth_config_id", "text", "doc->>'auth_config_id'"),
            Column("app_name", "text", "doc->>'app_name'"),
            Column("entity_id", "text", "doc->>'entity_id'"),
            Column("status", "text", "doc->>'status'"),
            Column(
                "token_expires_at",
                "bigint",
                "(doc->>'token_expires_at')::bigint",
            ),
            Column("created_at", "text", "doc->>'created_at'"),
            Column("updated_at", "text", "doc->>'updated_at'"),
        ],
        indexes: &[
            ("accounts_by_entity", "entity_id, app_name, id", None),
            ("accounts_by_app", "app_name, id", None),
            ("accounts_by_auth_config", "auth_config_id, id", None),
            ("accounts_by_status", "status, id", None),
        ],
    },
    RecordTable {
        name: "identities",
        tenant: TENANT,
        columns: &[
            Column("name", "text", "doc->>'name'"),
            Column("email", "text", "lower(doc->>'email')"),
            Column("created_at", "text", "doc->>'created_at'"),
            Column("updated_at", "text", "doc->>'updated_at'"),
        ],
        indexes: &[("identities_by_name", "name, id", None)],
    },
    RecordTable {
        name: "tenants",
        tenant: Some("doc->>'id'"),
        columns: &[
            Column("name", "text", "doc->>'name'"),
            Column("created_at", "text", "doc->>'created_at'"),
        ],
        indexes: &[],
    },
    RecordTable {
        name: "users",
        tenant: TENANT,
        columns: &[
            Column("email", "text", "lower(doc->>'email')"),
            Column("created_at", "text", "doc->>'created_at'"),
        ],
        indexes: &[("users_by_email", "email, id", None)],
    },
    RecordTable {
        name: "api_keys",
        tenant: TENANT,
        columns: &[
            Column("user_id", "text", "doc->>'user_id'"),
            Column("name", "text", "doc->>'name'"),
            Column("prefix", "text", "doc->>'prefix'"),
            Column("created_at", "text", "doc->>'created_at'"),
            Column("revoked_at", "text", "doc->>'revoked_at'"),
        ],
        indexes: &[("api_keys_by_user", "user_id, id", None)],
    },
    RecordTable {
        name: "publishable_keys",
        tenant: TENANT,
        columns: &[
            Column("name", "text", "doc->>'name'"),
            Column("created_at", "text", "doc->>'created_at'"),
            Column("revoked_at", "text", "doc->>'revoked_at'"),
        ],
        indexes: &[],
    },
    RecordTable {
        name: "console_sessions",
        tenant: TENANT,
        columns: &[
            Column("key_id", "text", "doc->>'key_id'"),
            Column("expires_ms", "bigint", "(doc->>'expires_ms')::bigint"),
        ],
        indexes: &[("console_sessions_by_key", "key_id, id", None)],
    },
    RecordTable {
        name: "idempotency",
        tenant: TENANT,
        columns: &[
            Column("target", "text", "doc->>'target'"),
            Column("created_ms", "bigint", "(doc->>'created_ms')::bigint"),
        ],
        indexes: &[("idempotency_by_age", "created_ms, id", None)],
    },
    RecordTable {
        name: "plugins",
        tenant: None,
        columns: &[
            Column("name", "text", "doc->>'name'"),
            Column("version", "text", "doc->>'version'"),
            Column("uploaded_at", "text", "doc->>'uploaded_at'"),
        ],
        indexes: &[("plugins_by_name", "name, version", None)],
    },
];

/// The table that follows `collection`, if any.
pub(super) fn record_table(collection: &str) -> Option<&'static RecordTable> {
    RECORD_TABLES.iter().find(|table| table.name == collection)
}

/// The SQL of a migration that creates `tables`, fills them from the stored
/// records, and keeps them with one trigger on `records` (the `actions`
/// table keeps its own).
fn record_tables_sql(tables: &[RecordTable]) -> String {
    // The listing's order is `ASC NULLS FIRST` (or its reverse), which an
    // index walks only when it is built so; version 2 built this one with
    // the default.
    let mut sql = String::from(
        "DROP INDEX actions_by_updated;\n\
         CREATE INDEX actions_by_updated ON actions (tenant_id, updated_at NULLS FIRST, id);\n",
    );
    // Listings by agent (the console's inbox) get an index too.
    sql.push_str(
        "CREATE INDEX actions_by_agent ON actions (tenant_id, agent_id, id) WHERE agent_id IS NOT NULL;\n",
    );
    // The entries the `actions` table answers for are no longer kept.
    for index in ANSWERED_BY_TABLES {
        let _ = writeln!(
            sql,
            "DELETE FROM index_entries WHERE key >= '\\x{}00'::bytea AND key < '\\x{}01'::bytea;",
            hex::encode(index),
            hex::encode(index),
        );
    }
    for table in tables {
        let key = if table.tenant.is_some() {
            "tenant_id, id"
        } else {
            "id"
        };
        let _ = writeln!(sql, "CREATE TABLE {} (", table.name);
        if table.tenant.is_some() {
            sql.push_str("    tenant_id text COLLATE \"C\" NOT NULL,\n");
        }
        sql.push_str("    id text COLLATE \"C\" NOT NULL,\n");
        for Column(name, ty, _) in table.columns {
            let collate = if *ty == "text" { " COLLATE \"C\"" } else { "" };
            let _ = writeln!(sql, "    {name} {ty}{collate},");
        }
        let _ = writeln!(sql, "    PRIMARY KEY ({key})\n);");
        for (name, columns, rows) in table.indexes {
            let lead = if table.tenant.is_some() {
                "tenant_id, "
            } else {
                ""
            };
            // Every column but the id in listing order (see above).
            let columns: Vec<String> = columns
                .split(", ")
                .map(|column| match column {
                    "id" => column.to_owned(),
                    _ => format!("{column} NULLS FIRST"),
                })
                .collect();
            let _ = write!(
                sql,
                "CREATE INDEX {name} ON {} ({lead}{})",
                table.name,
                columns.join(", ")
            );
            if let Some(rows) = rows {
                let _ = write!(sql, " WHERE {rows}");
            }
            sql.push_str(";\n");
        }
        // Fill it from the records already stored.
        let _ = writeln!(
            sql,
            "INSERT INTO {} SELECT {} FROM (SELECT convert_from(substring(key FROM {}), 'UTF8') AS record_id, \
             convert_from(value, 'UTF8')::jsonb AS doc FROM records WHERE {}) stored;",
            table.name,
            row_values(table),
            table.name.len() + 2,
            key_range(table.name),
        );
    }

    // One trigger for every table: the collection is the key up to its '/'.
    sql.push_str(
        "CREATE FUNCTION actionhost_records_follow() RETURNS trigger LANGUAGE plpgsql AS $$\n\
         DECLARE\n\
         \x20   row_key bytea := CASE WHEN TG_OP = 'DELETE' THEN OLD.key ELSE NEW.key END;\n\
         \x20   slash integer := position('/'::bytea IN row_key);\n\
         \x20   collection text;\n\
         \x20   record_id text;\n\
         \x20   doc jsonb;\n\
         BEGIN\n\
         \x20   IF slash = 0 THEN RETURN NULL; END IF;\n\
         \x20   collection := convert_from(substring(row_key FROM 1 FOR slash - 1), 'UTF8');\n",
    );
    let names: Vec<String> = tables.iter().map(|t| format!("'{}'", t.name)).collect();
    let _ = writeln!(
        sql,
        "    IF collection NOT IN ({}) THEN RETURN NULL; END IF;",
        names.join(", ")
    );
    sql.push_str(
        "    record_id := convert_from(substring(row_key FROM slash + 1), 'UTF8');\n\
         \x20   doc := convert_from(CASE WHEN TG_OP = 'DELETE' THEN OLD.value ELSE NEW.value END, 'UTF8')::jsonb;\n",
    );
    for (n, table) in tables.iter().enumerate() {
        let branch = if n == 0 { "IF" } else { "ELSIF" };
        let _ = writeln!(sql, "    {branch} collection = '{}' THEN", table.name);
        let matches = match table.tenant {
            Some(tenant) => format!("tenant_id = {tenant} AND id = record_id"),
            None => "id = record_id".to_owned(),
        };
        let _ = writeln!(
            sql,
            "        IF TG_OP = 'DELETE' THEN\n\
             \x20           DELETE FROM {name} WHERE {matches};\n\
             \x20       ELSE\n\
             \x20           INSERT INTO {name} VALUES ({values})\n\
             \x20           ON CONFLICT ({key}) DO UPDATE SET {set};\n\
             \x20       END IF;",
            name = table.name,
            values = row_values(table),
            key = if table.tenant.is_some() {
                "tenant_id, id"
            } else {
                "id"
            },
            set = table
                .columns
                .iter()
                .map(|Column(name, ..)| format!("{name} = EXCLUDED.{name}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    sql.push_str(
        "    END IF;\n\
         \x20   RETURN NULL;\n\
         END\n\
         $$;\n\
         CREATE TRIGGER records_follow_writes AFTER INSERT OR UPDATE ON records\n\
         \x20   FOR EACH ROW WHEN (substring(NEW.key FROM 1 FOR 8) <> 'actions/'::bytea)\n\
         \x20   EXECUTE FUNCTION actionhost_records_follow();\n\
         CREATE TRIGGER records_follow_removals AFTER DELETE ON records\n\
         \x20   FOR EACH ROW WHEN (substring(OLD.key FROM 1 FOR 8) <> 'actions/'::bytea)\n\
         \x20   EXECUTE FUNCTION actionhost_records_follow();\n",
    );
    sql
}

/// A row's values, in the table's column order, from `doc` and `record_id`.
fn row_values(table: &RecordTable) -> String {
    let mut values = Vec::with_capacity(table.columns.len() + 2);
    if let Some(tenant) = table.tenant {
        values.push(tenant.to_owned());
    }
    values.push("record_id".to_owned());
    values.extend(
        table
            .columns
            .iter()
            .map(|Column(_, _, source)| (*source).to_owned()),
    );
    values.join(", ")
}

/// The `records` keys of a collection: `name/` up to `name0` ('0' follows '/').
fn key_range(collection: &str) -> String {
    format!("key >= '{collection}/'::bytea AND key < '{collection}0'::bytea")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_number_of_migrations_and_every_index_leads_with_the_tenant() {
        assert_eq!(migrations().len(), PG_SCHEMA_VERSION as usize);
        let sql = record_tables_sql(RECORD_TABLES);
        for table in RECORD_TABLES.iter().filter(|t| t.tenant.is_some()) {
            assert!(sql.contains(&format!("CREATE TABLE {} (\n    tenant_id", table.name)));
            for (name, ..) in table.indexes {
                assert!(
                    sql.contains(&format!(
                        "CREATE INDEX {name} ON {} (tenant_id, ",
                        table.name
                    )),
                    "{name}"
                );
            }
        }
        assert!(record_table("contacts").is_some_and(|t| t.has("lifecycle_stage")));
        assert!(record_table("locks").is_none());
    }
}
