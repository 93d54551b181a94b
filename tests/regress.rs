//! Runs the pg_regress suite in `tests/pg_regress` against a throwaway
//! cluster that preloads lightdb_bgw, and fails with the diff if any output
//! differs from `expected/`.

mod common;

use std::fs;
use std::path::PathBuf;

use common::*;

#[test]
fn pg_regress_suite() {
    let mut cluster = Cluster::preloaded(
        "regress",
        &[
            ("lightdb_bgw.static_workers", "sleep:1, counter:1"),
            ("lightdb_bgw.naptime", "1h"),
        ],
    );
    cluster.start();
    cluster
        .connect("postgres")
        .batch_execute("CREATE DATABASE lightdb_bgw_regress")
        .expect("regression database");

    let suite = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/pg_regress");
    let mut tests: Vec<String> = fs::read_dir(suite.join("sql"))
        .expect("tests/pg_regress/sql")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".sql"))
                .map(str::to_string)
        })
        .collect();
    tests.sort();
    assert!(!tests.is_empty(), "no pg_regress tests found");

    let outdir = cluster.dir.join("regress-out");
    fs::create_dir_all(&outdir).unwrap();
    let pg_regress = pgxs_dir().join("src/test/regress/pg_regress");
    let out = std::process::Command::new(&pg_regress)
        .arg(format!("--inputdir={}", suite.display()))
        .arg(format!("--outputdir={}", outdir.display()))
        .arg(format!("--bindir={}", bindir().display()))
        .args(["--host=127.0.0.1", "--user=postgres", "--use-existing"])
        .arg(format!("--port={}", cluster.port))
        .arg("--dbname=lightdb_bgw_regress")
        .args(&tests)
        .env_remove("PGDATABASE")
        .output()
        .expect("pg_regress runs");
    let report = text(&out);
    println!("{report}");
    if !out.status.success() {
        let diffs = fs::read_to_string(outdir.join("regression.diffs")).unwrap_or_default();
        panic!("pg_regress failed:\n{report}\n--- regression.diffs ---\n{diffs}");
    }
}
