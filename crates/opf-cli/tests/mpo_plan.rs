//! Runs the `opf` binary and checks `opf mpo plan --json` against the spec §1.8 numbers.

use std::process::Command;

use serde_json::Value;

fn plan(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_opf"))
        .args(["mpo", "plan", "--json"])
        .args(args)
        .output()
        .expect("opf runs");
    assert!(
        out.status.success(),
        "opf failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

#[test]
fn single_matrix_presets_and_explicit_factors() {
    let v = plan(&["--shape", "3072x768", "--preset", "bert15"]);
    let m = &v["matrices"][0];
    assert_eq!(m["params"], 20_938_752);
    assert_eq!(m["n_add"], 18_579_456);
    assert_eq!(m["ranks"][7], 1152);
    assert_eq!(m["adam_f32_bytes"], 3 * 4 * 20_938_752u64);
    let v = plan(&["--rows", "768", "--cols", "768", "--preset", "t5"]);
    assert_eq!(v["matrices"][0]["params"], 663_840);
    let v = plan(&["--i", "2,3,4,5", "--j", "4,5,6,7", "--max-rank", "30"]);
    assert_eq!(v["matrices"][0]["params"], 26_314);
    assert_eq!(v["preset"], "explicit");
}

#[test]
fn bert_base_config_totals() {
    let dir = env!("CARGO_TARGET_TMPDIR");
    let path = format!("{dir}/bert-base-config.json");
    std::fs::write(
        &path,
        r#"{"model_type": "bert", "hidden_size": 768, "intermediate_size": 3072,
            "num_hidden_layers": 12, "num_attention_heads": 12}"#,
    )
    .unwrap();
    let v = plan(&["--config", &path, "--preset", "bert15"]);
    // 48 attention matrices at N_add 4,644,864 plus 24 FFN at 18,579,456 (spec §1.8).
    assert_eq!(v["total"]["matrices"], 72);
    assert_eq!(v["total"]["n_add"], 48 * 4_644_864 + 24 * 18_579_456i64);
    assert_eq!(v["total"]["dense_params"], 48 * 589_824 + 24 * 2_359_296);
}

#[test]
fn t5_base_config_counts_decoder_cross_attention() {
    let dir = env!("CARGO_TARGET_TMPDIR");
    let path = format!("{dir}/t5-base-config.json");
    std::fs::write(
        &path,
        r#"{"model_type": "t5", "d_model": 768, "d_ff": 3072, "d_kv": 64, "num_heads": 12,
            "num_layers": 12, "feed_forward_proj": "relu"}"#,
    )
    .unwrap();
    let v = plan(&["--config", &path, "--preset", "t5"]);
    // 12 encoder + 12 decoder blocks: (12 + 2·12)·4 attention, 24 wi, 24 wo (spec §2.1).
    assert_eq!(v["matrices"][0]["count"], 144);
    assert_eq!(v["matrices"][0]["params"], 663_840);
    assert_eq!(v["total"]["n_add"], 144 * 74_016 + 48 * 184_720i64);
}

#[test]
fn unsupported_dims_fail_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_opf"))
        .args(["mpo", "plan", "--shape", "1024x1024", "--preset", "t5"])
        .output()
        .expect("opf runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("preset t5 has no shape"), "{err}");
}
