//! Smoke run of `lanyard-bench token` (not timed): a few hundred signatures
//! through each configuration must work, verify and be counted in the JSON,
//! so the benchmark does not rot. Needs the release build of lanyardd,
//! lanyard-ca and the module (scripts/test.sh builds them), softhsm2 and p11-kit.

use std::process::Command;

use lanyard_test_support::require_tool;

const OPS: u64 = 200;

#[test]
fn token_bench_runs_all_three_configurations() {
    if !require_tool("softhsm2-util") || !require_tool("p11-kit") {
        return;
    }
    let dir = tempfile::tempdir().expect("temporary directory");
    let json = dir.path().join("token.json");
    let out = Command::new(env!("CARGO_BIN_EXE_lanyard-bench"))
        .args([
            "token",
            "--ops",
            &OPS.to_string(),
            "--cold-runs",
            "1",
            "--json",
        ])
        .arg(&json)
        .output()
        .expect("cannot run lanyard-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "lanyard-bench token failed\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("| lanyard | CKM_ECDSA P-256 |"), "{stdout}");

    let text = std::fs::read_to_string(&json).expect("the JSON file was written");
    let report: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let configs = report["configs"].as_array().expect("configs");
    let names: Vec<&str> = configs.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["lanyard", "softhsm", "p11kit"], "{text}");
    for c in configs {
        let mechs = c["mechanisms"].as_array().expect("mechanisms");
        let algs: Vec<&str> = mechs.iter().filter_map(|m| m["alg"].as_str()).collect();
        // p11-kit's RPC (0.24) cannot carry CKM_SHA256_RSA_PKCS_PSS: then it must be
        // reported as not offered (checked below); every other mechanism is measured.
        let pss_offered = c["name"] != "p11kit" || algs.contains(&"rsa_pss");
        let expected: &[&str] = if pss_offered {
            &["ecdsa", "rsa_pkcs", "rsa_pss"]
        } else {
            &["ecdsa", "rsa_pkcs"]
        };
        assert_eq!(algs, expected, "{}: {text}", c["name"]);
        for m in mechs {
            assert_eq!(m["verified"], true, "{text}");
            for threads in ["one_thread", "two_threads"] {
                assert_eq!(m[threads]["ops"].as_u64(), Some(OPS), "{threads}: {text}");
                assert!(m[threads]["ops_per_sec"].as_f64().is_some_and(|r| r > 0.0));
                let (p50, p99) = (m[threads]["p50_us"].as_f64(), m[threads]["p99_us"].as_f64());
                assert!(p50.is_some_and(|p| p > 0.0) && p99 >= p50, "{text}");
            }
        }
        let cold = &c["cold_start"];
        assert_eq!(cold["runs"], 1, "{text}");
        assert!(
            cold["median_ms"].as_f64().is_some_and(|ms| ms > 0.0),
            "{text}"
        );
    }
    let p11kit_pss = configs[2]["mechanisms"]
        .as_array()
        .is_some_and(|m| m.iter().any(|m| m["alg"] == "rsa_pss"));
    let unsupported = if p11kit_pss {
        serde_json::json!([])
    } else {
        serde_json::json!(["p11kit: CKM_SHA256_RSA_PKCS_PSS 2048"])
    };
    assert_eq!(report["unsupported"], unsupported, "{text}");
    // Lanyard unlocked two cards (an RSA and an EC one) with their first login.
    assert_eq!(
        configs[0]["first_logins"].as_array().map(Vec::len),
        Some(2),
        "{text}"
    );
    assert!(report["raw"]["rsa2048_pkcs1"]
        .as_f64()
        .is_some_and(|r| r > 0.0));
    assert!(report["raw"]["ecdsa_p256"]
        .as_f64()
        .is_some_and(|r| r > 0.0));
    let targets = report["targets"].as_array().expect("targets");
    assert!(targets.len() >= 10, "every target is checked: {text}");
}
