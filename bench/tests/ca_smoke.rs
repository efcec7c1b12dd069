//! Smoke run of `lanyard-bench ca` (not timed, so it cannot flake on a busy
//! machine): a few hundred enrolments and renewals against the real CA on
//! SQLite, and PostgreSQL when `LANYARD_TEST_PG_URL` is set (required under
//! CI=true), plus a small storm; checks the JSON, the table and the PNG.

use std::process::Command;

use lanyard_test_support::in_ci;

const OPS: u64 = 150;

#[test]
fn ca_bench_issues_renews_and_simulates_a_storm() {
    let pg = std::env::var_os("LANYARD_TEST_PG_URL").is_some();
    if !pg {
        assert!(
            !in_ci(),
            "CI=true but LANYARD_TEST_PG_URL is not set: the PostgreSQL smoke run cannot be skipped \
             (scripts/test.sh sets it from scripts/postgres.sh)"
        );
        eprintln!(
            "\n*** SKIP (PostgreSQL part): LANYARD_TEST_PG_URL is not set; SQLite only ***\n"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let (json, table, plot) = (
        tmp.path().join("ca.json"),
        tmp.path().join("ca.md"),
        tmp.path().join("storm.png"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_lanyard-bench"))
        .args(["ca", "--db", if pg { "both" } else { "sqlite" }])
        .args([
            "--ops",
            &OPS.to_string(),
            "--clients",
            "8",
            "--raw-secs",
            "0.3",
        ])
        .args([
            "--storm-cards",
            "20000",
            "--storm-days",
            "50",
            "--enrol-days",
            "5",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--table")
        .arg(&table)
        .arg("--plot")
        .arg(&plot)
        .output()
        .expect("run lanyard-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "lanyard-bench ca failed\n{stdout}\n{stderr}"
    );

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("ca.json written")).unwrap();
    assert!(
        report["raw"]["one_thread_per_s"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    let dbs = report["databases"].as_array().unwrap();
    let names: Vec<&str> = dbs.iter().map(|d| d["db"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        if pg {
            vec!["sqlite", "postgres"]
        } else {
            vec!["sqlite"]
        }
    );
    for db in dbs {
        for phase in ["enrol", "renew"] {
            let p = &db[phase];
            assert_eq!(p["ok"], OPS, "{phase} on {}: {p}", db["db"]);
            assert_eq!(p["errors"], 0, "{phase} on {}: {p}", db["db"]);
            assert_eq!(p["busy"], 0, "{phase} on {}: {p}", db["db"]);
            // Authentication and document-signing certificate per request.
            assert_eq!(p["certificates"], 2 * OPS, "{p}");
            assert!(p["requests_per_s"].as_f64().unwrap() > 0.0, "{p}");
            assert!(
                p["p99_ms"].as_f64().unwrap() >= p["p50_ms"].as_f64().unwrap(),
                "{p}"
            );
            // The CA's own CPU per request is measured (from /proc).
            assert!(p["ca_cpu_ms_per_request"].as_f64().unwrap() > 0.0, "{p}");
        }
    }

    let storm = &report["storm"];
    assert_eq!(storm["cards"], 20_000);
    for scenario in ["normal", "outage"] {
        let s = &storm[scenario];
        assert_eq!(s["expired_cards"], 0, "{scenario}: {s}");
        // Every card enrolled (20000) renewed at least once in 50 days.
        assert!(s["renewals"].as_u64().unwrap() >= 20_000, "{scenario}: {s}");
    }
    assert!(
        storm["outage"]["outage_affected"].as_u64().unwrap() > 0,
        "{storm}"
    );
    assert!(storm["outage"]["drain_hours"].as_f64().is_some(), "{storm}");

    let md = std::fs::read_to_string(&table).unwrap();
    assert!(
        md.contains("| SQLite | renewal |") && md.contains("Renewal storm"),
        "{md}"
    );
    let png = std::fs::read(&plot).expect("storm.png written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}
