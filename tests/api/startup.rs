//! Fail-fast startup and the operator commands, run as the real binary.

use std::path::Path;
use std::process::Output;

use auth_actors::keys::KeyAlg;
use tokio::process::Command;

use crate::helpers::{REDIS_URL, connect, database_url, empty_database, fresh_database, key_dir, pem_of, temp_dir};

const BIN: &str = env!("CARGO_BIN_EXE_auth-service");

/// The binary with a clean environment: an empty config directory and only `env`.
fn command(args: &[&str], env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("CONFIG_DIR", temp_dir("config"))
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.kill_on_drop(true);
    cmd
}

fn valid_env(database: &str, keys: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", database_url(database)),
        ("REDIS_URL", REDIS_URL.to_string()),
        ("JWT_KEYS_DIR", keys.display().to_string()),
        ("JWT_ISSUER", "http://auth.test".to_string()),
        ("JWT_AUDIENCE", "test-audience".to_string()),
        ("BIND_ADDR", "127.0.0.1:0".to_string()),
        ("ARGON2_MEMORY_KIB", "256".to_string()),
        ("ARGON2_ITERATIONS", "1".to_string()),
    ]
}

fn with(mut env: Vec<(&'static str, String)>, key: &'static str, value: &str) -> Vec<(&'static str, String)> {
    env.retain(|(k, _)| *k != key);
    env.push((key, value.to_string()));
    env
}

async fn serve_fails(env: Vec<(&'static str, String)>) -> String {
    let out: Output = tokio::time::timeout(std::time::Duration::from_secs(30), command(&["serve"], &env).output())
        .await
        .expect("exits in time")
        .expect("runs");
    assert!(!out.status.success(), "serve must exit non-zero");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one line on stderr, got: {stderr:?}");
    lines[0].to_string()
}

/// The line `serve` exits with when `key` is `value` in an otherwise valid environment over
/// `database` (one that names no database needs none).
async fn serve_fails_with(database: &str, key: &'static str, value: &str) -> String {
    serve_fails(with(valid_env(database, &key_dir(KeyAlg::ES256)), key, value)).await
}

#[tokio::test]
async fn serve_exits_naming_a_missing_key_directory() {
    let db = fresh_database().await;
    let env = valid_env(&db, Path::new("/nonexistent/keys"));
    let line = serve_fails(env).await;
    assert!(line.contains("key directory /nonexistent/keys is missing or unreadable"), "{line}");
}

#[tokio::test]
async fn serve_exits_naming_a_malformed_key_file() {
    let db = fresh_database().await;
    let keys = key_dir(KeyAlg::RS256);
    std::fs::write(pem_of(&keys), "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
        .expect("overwrite");
    let line = serve_fails(valid_env(&db, &keys)).await;
    assert!(line.contains("is malformed"), "{line}");
    assert!(line.contains(".pem"), "{line}");
}

#[tokio::test]
async fn serve_exits_naming_an_active_kid_that_is_not_in_the_directory() {
    let line = serve_fails_with(&fresh_database().await, "JWT_ACTIVE_KID", "no-such-kid").await;
    assert!(line.contains("active kid \"no-such-kid\""), "{line}");
}

#[tokio::test]
async fn serve_exits_naming_an_unparsable_database_url() {
    let line = serve_fails_with("x", "DATABASE_URL", "postgres://host:notaport/db").await;
    assert!(line.contains("invalid DATABASE_URL"), "{line}");
}

#[tokio::test]
async fn serve_exits_naming_an_unparsable_redis_url() {
    let line = serve_fails_with(&fresh_database().await, "REDIS_URL", "not a url").await;
    assert!(line.contains("invalid REDIS_URL"), "{line}");
}

#[tokio::test]
async fn serve_exits_when_postgres_is_unreachable() {
    let line = serve_fails_with("x", "DATABASE_URL", "postgres://postgres@127.0.0.1:1/x").await;
    assert!(line.contains("PostgreSQL is unreachable"), "{line}");
}

#[tokio::test]
async fn serve_exits_when_redis_is_unreachable() {
    let line = serve_fails_with(&fresh_database().await, "REDIS_URL", "redis://127.0.0.1:1/0").await;
    assert!(line.contains("Redis is unreachable"), "{line}");
}

#[tokio::test]
async fn serve_exits_when_the_schema_is_not_migrated() {
    let db = empty_database().await;
    let keys = key_dir(KeyAlg::ES256);
    let line = serve_fails(valid_env(&db, &keys)).await;
    assert!(line.contains("schema is not migrated"), "{line}");
    assert!(line.contains("auth-service migrate"), "{line}");
}

async fn run_ok(args: &[&str], env: &[(&str, String)]) -> String {
    let out = command(args, env).output().await.expect("runs");
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test]
async fn migrate_applies_every_migration_once_and_a_second_run_is_a_no_op() {
    let db = empty_database().await;
    let env = [("DATABASE_URL", database_url(&db))];
    let first = run_ok(&["migrate"], &env).await;
    assert!(first.contains("applied V1__users_and_roles"), "{first}");
    let second = run_ok(&["migrate"], &env).await;
    assert!(second.contains("schema is up to date"), "{second}");
    assert!(!second.contains("applied"), "{second}");

    let row = connect(&db).await.query_one("SELECT count(*) FROM refinery_schema_history", &[]).await.expect("query");
    assert_eq!(row.get::<_, i64>(0), i64::from(auth_actors::db::expected_version()));
}

#[tokio::test]
async fn seed_roles_creates_the_six_default_roles_once() {
    let db = empty_database().await;
    let env = [("DATABASE_URL", database_url(&db))];
    run_ok(&["migrate"], &env).await;
    let first = run_ok(&["seed-roles"], &env).await;
    assert!(first.contains("admin, user, service, guest, moderator, subscriber"), "{first}");
    let second = run_ok(&["seed-roles"], &env).await;
    assert!(second.contains("already exist"), "{second}");
}

#[tokio::test]
async fn create_superuser_reads_the_password_from_the_environment_and_reruns_only_with_that_password() {
    let db = fresh_database().await;
    let keys = key_dir(KeyAlg::ES256);
    let mut env = valid_env(&db, &keys);
    env.push(("SUPERUSER_USERNAME", "root".into()));
    env.push(("SUPERUSER_EMAIL", "root@example.com".into()));
    env.push(("SUPERUSER_PASSWORD", "a long admin password".into()));
    let first = run_ok(&["create-superuser"], &env).await;
    assert!(first.contains("created admin user root"), "{first}");
    let again = command(&["create-superuser"], &env).output().await.expect("runs");
    assert!(!again.status.success(), "an existing account is not touched without --promote-existing");
    let other = with(env.clone(), "SUPERUSER_PASSWORD", "a different password");
    let out = command(&["create-superuser", "--promote-existing"], &other).output().await.expect("runs");
    assert!(!out.status.success(), "nor with another password");
    let second = run_ok(&["create-superuser", "--promote-existing"], &env).await;
    assert!(second.contains("now holds the admin role"), "{second}");

    let row = connect(&db)
        .await
        .query_one(
            "SELECT count(*) FROM user_roles ur JOIN users u ON u.id = ur.user_id JOIN roles r ON r.id = ur.role_id
             WHERE u.username = 'root' AND r.name = 'admin'",
            &[],
        )
        .await
        .expect("query");
    assert_eq!(row.get::<_, i64>(0), 1);
}

#[tokio::test]
async fn keys_generate_writes_a_private_key_readable_only_by_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("gen").join("keys");
    let out = run_ok(&["keys", "generate", "--alg", "ES256", "--dir", &dir.display().to_string()], &[]).await;
    assert!(out.contains("(active)"), "{out}");
    assert_eq!(std::fs::metadata(pem_of(&dir)).expect("meta").permissions().mode() & 0o777, 0o600);
    let list = run_ok(&["keys", "list", "--dir", &dir.display().to_string()], &[]).await;
    assert!(list.contains("ES256") && list.contains("active"), "{list}");
}

#[tokio::test]
async fn key_commands_accept_a_kid_that_starts_with_a_hyphen() {
    let dir = temp_dir("hyphen");
    let out = command(&["keys", "revoke", "-8not-a-kid", "--dir", &dir.display().to_string()], &[])
        .output()
        .await
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("unknown kid \"-8not-a-kid\""), "parsed as a kid, not an option: {stderr}");
}
