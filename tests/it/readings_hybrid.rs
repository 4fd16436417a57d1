//! A reading over the real dense + keyword index: the corpus embedded by the real e5 model in
//! embedded Qdrant (the index `scripts/test.sh` keeps in `STARPILLAR_EVAL_STORE`), queries
//! embedded by the same model. Runs whenever that index is present (always in CI).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use starpillar::engine::EngineArgs;
use starpillar::retrieval::embedding;
use starpillar::retrieval::retriever::Retriever;
use starpillar::retrieval::store::StoreSpec;

use crate::common::{self, send};

#[tokio::test]
async fn a_saju_reading_over_the_hybrid_index_names_the_day_master_and_cites_stored_chunks() {
    let Ok(spec) = std::env::var("STARPILLAR_EVAL_STORE") else {
        println!("STARPILLAR_EVAL_STORE is not set: no hybrid index to read over");
        return;
    };
    let spec = StoreSpec::parse(&spec).expect("STARPILLAR_EVAL_STORE is a store URL");
    let store = spec.open().expect("the eval index opens");
    let meta = store
        .meta()
        .await
        .expect("store meta")
        .expect("the eval index has been built");
    let data_dir = std::env::var_os("STARPILLAR_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(starpillar::config::default_data_dir);
    let loaded = embedding::load(&EngineArgs::default(), &data_dir).expect("the embedder loads");
    let retriever = Retriever {
        store: store.clone(),
        sparse: meta.sparse.unwrap_or_default(),
        embedder: Some(loaded.embedder.clone()),
        corpus_version: meta.corpus_version.clone(),
    };
    let (app, state, _dir) = common::app();
    state.set_retriever(Arc::new(retriever));

    let input = starpillar::domain::saju::BirthInput {
        date: "1990-05-15".into(),
        time: Some("14:30".into()),
        calendar: starpillar::domain::saju::Calendar::Solar,
        leap_month: false,
        timezone: "Asia/Seoul".into(),
        longitude: 126.978,
    };
    let chart = starpillar::domain::saju::compute(
        &input,
        starpillar::domain::saju::Sex::Female,
        Default::default(),
    )
    .expect("chart");
    let req = json!({"birth": {"date": "1990-05-15", "time": "14:30"}, "sex": "female",
        "locale": "ko", "question": "올해 직업운은 어떤가요?"});
    let request = Request::post("/api/saju")
        .header("content-type", "application/json")
        .body(Body::from(req.to_string()))
        .expect("request");
    let response = send(&app, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = common::body_json(response).await;
    assert_eq!(body["meta"]["retrieval"], "hybrid", "{}", body["meta"]);
    assert_eq!(body["meta"]["corpus_version"], meta.corpus_version.as_str());
    let text = body["reading"]["text"].as_str().expect("text");
    assert!(
        text.contains(chart.day_master.hanja),
        "the reading does not name the day master {}: {text}",
        chart.day_master.hanja
    );
    let stored: HashSet<String> = store
        .list_ids(None)
        .await
        .expect("ids")
        .into_iter()
        .map(|(id, _)| id.to_string())
        .collect();
    let cites = body["reading"]["citations"].as_array().expect("citations");
    assert!(!cites.is_empty(), "no citations");
    for c in cites {
        let id = c["id"].as_str().expect("id");
        assert!(stored.contains(id), "cited id {id} is not in the index");
    }
    println!(
        "hybrid reading: {} chars, {} citations",
        text.chars().count(),
        cites.len()
    );
}
