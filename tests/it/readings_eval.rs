//! The reading-quality eval (`starpillar eval readings`) on its fixed births, compose mode, over
//! the real corpus: every figure must stay within 0.02 of `corpus/eval/readings-baseline.json`
//! and meet absolute floors (a reading that stops naming the day master fails here).

use starpillar::rag::Mode;
use starpillar::rag::eval::{self, Baseline};

#[tokio::test]
async fn compose_readings_hold_the_baseline() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let engine = eval::engine(&root.join("corpus"), None)
        .await
        .expect("engine");
    let births = eval::births(32);
    println!("seed {}", eval::SEED);
    let report = eval::evaluate(&engine, &births, &[Mode::Compose], false)
        .await
        .expect("eval");
    print!("{}", eval::table(&report));
    assert_eq!(report.len(), 4, "saju/astrology × ko/en");
    for (k, row) in &report {
        assert_eq!(row.readings, 16, "{k}");
        assert!(row.key_fact >= 0.95, "{k}: {row:?}");
        assert!(row.citations_valid >= 0.99, "{k}: {row:?}");
        assert!(row.language >= 0.95, "{k}: {row:?}");
        assert!(row.repeated <= 0.02, "{k}: {row:?}");
    }
    let text = std::fs::read_to_string(root.join("corpus/eval/readings-baseline.json"))
        .expect("the baseline");
    let baseline: Baseline = serde_json::from_str(&text).expect("baseline JSON");
    let failures = eval::compare(&baseline.rows, &report, eval::TOLERANCE);
    assert!(failures.is_empty(), "{failures:#?}");
}
