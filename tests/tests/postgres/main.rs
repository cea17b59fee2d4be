//! PostgreSQL, the database for several replicas, on a real server started by the test
//! (`e2e::postgres`): the schema its migrations make.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use e2e::postgres::TestPostgres;
use sqlx::Row;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPool;

fn migrations(dialect: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(dialect)
}

/// Every column as (table, column, nullable), and every key as (table, kind, columns).
#[derive(Debug, PartialEq)]
struct Schema {
    columns: BTreeSet<(String, String, bool)>,
    keys: BTreeSet<(String, String, String)>,
}

async fn postgres_schema(pool: &PgPool) -> Schema {
    let columns = sqlx::query_as(
        "SELECT table_name::text, column_name::text, is_nullable = 'YES' AS nullable \
         FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let keys = sqlx::query_as(
        "SELECT tc.table_name::text, \
                CASE tc.constraint_type WHEN 'PRIMARY KEY' THEN 'primary' ELSE 'unique' END, \
                string_agg(kcu.column_name::text, ',' ORDER BY kcu.ordinal_position) \
         FROM information_schema.table_constraints tc \
         JOIN information_schema.key_column_usage kcu \
           ON kcu.constraint_name = tc.constraint_name AND kcu.table_name = tc.table_name \
         WHERE tc.table_schema = 'public' AND tc.table_name <> '_sqlx_migrations' \
           AND tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE') \
         GROUP BY tc.table_name, tc.constraint_name, tc.constraint_type",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    Schema { columns, keys }
}

async fn sqlite_schema(pool: &sqlx::SqlitePool) -> Schema {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut schema = Schema {
        columns: BTreeSet::new(),
        keys: BTreeSet::new(),
    };
    for table in tables {
        let mut primary: Vec<(i64, String)> = Vec::new();
        for row in sqlx::query("SELECT name, \"notnull\", pk FROM pragma_table_info(?)")
            .bind(&table)
            .fetch_all(pool)
            .await
            .unwrap()
        {
            let (column, not_null, pk): (String, bool, i64) = (row.get(0), row.get(1), row.get(2));
            // A STRICT table's primary key is NOT NULL, as PostgreSQL's always is.
            schema
                .columns
                .insert((table.clone(), column.clone(), !not_null && pk == 0));
            if pk > 0 {
                primary.push((pk, column));
            }
        }
        primary.sort();
        let primary: Vec<String> = primary.into_iter().map(|(_, c)| c).collect();
        schema
            .keys
            .insert((table.clone(), "primary".into(), primary.join(",")));
        let unique: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_index_list(?) WHERE origin = 'u'")
                .bind(&table)
                .fetch_all(pool)
                .await
                .unwrap();
        for index in unique {
            let columns: Vec<String> =
                sqlx::query_scalar("SELECT name FROM pragma_index_info(?) ORDER BY seqno")
                    .bind(&index)
                    .fetch_all(pool)
                    .await
                    .unwrap();
            schema
                .keys
                .insert((table.clone(), "unique".into(), columns.join(",")));
        }
    }
    schema
}

#[tokio::test]
async fn the_postgres_migrations_make_the_tables_columns_and_keys_of_the_sqlite_ones() {
    let server = TestPostgres::start();
    let postgres = PgPool::connect(&server.url()).await.unwrap();
    Migrator::new(migrations("postgres").as_path())
        .await
        .unwrap()
        .run(&postgres)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings = dispatch_api::configuration::DatabaseSettings {
        path: dir.path().join("schema.db"),
        ..Default::default()
    };
    let location = dispatch_api::storage::Location::of(&settings).unwrap();
    let sqlite = dispatch_api::storage::connect(&settings, &location)
        .await
        .unwrap();
    let sqlite = sqlite.sqlite().unwrap().clone();
    let (expected, actual) = (
        sqlite_schema(&sqlite).await,
        postgres_schema(&postgres).await,
    );
    assert!(
        expected.columns.len() > 40,
        "the SQLite schema was read: {expected:?}"
    );
    assert_eq!(actual, expected);
}

#[tokio::test]
async fn replicas_starting_at_once_apply_the_migrations_once() {
    let server = TestPostgres::start();
    let migrator = Migrator::new(migrations("postgres").as_path())
        .await
        .unwrap();
    let replicas: Vec<PgPool> = replica_pools(&server).await;
    let (a, b, c) = tokio::join!(
        migrator.run(&replicas[0]),
        migrator.run(&replicas[1]),
        migrator.run(&replicas[2])
    );
    for outcome in [a, b, c] {
        outcome.expect("each replica's migration run succeeds (sqlx holds an advisory lock)");
    }
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&replicas[0])
        .await
        .unwrap();
    let files = std::fs::read_dir(migrations("postgres")).unwrap().count();
    assert_eq!(usize::try_from(applied).unwrap(), files);
}

/// Three pools on the server, as three replicas would hold.
async fn replica_pools(server: &TestPostgres) -> Vec<PgPool> {
    let mut pools = Vec::new();
    for _ in 0..3 {
        pools.push(PgPool::connect(&server.url()).await.unwrap());
    }
    pools
}
mod faults;
mod replicas;
