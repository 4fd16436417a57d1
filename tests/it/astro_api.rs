//! `POST /api/astrology` through the router (no socket): the chart, the 503 for readings
//! without an index, and a 422 naming the field for every invalid input.

use serde_json::{Value, json};

use crate::common::{app, error_code, post_json};

fn body(birth: Value, extra: Value) -> String {
    let mut req = json!({ "birth": birth, "reading": false });
    if let (Some(obj), Some(more)) = (req.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            obj.insert(k.clone(), v.clone());
        }
    }
    req.to_string()
}

fn seoul() -> Value {
    json!({ "datetime": "1990-05-15T12:30", "timezone": "Asia/Seoul",
            "latitude": 37.5665, "longitude": 126.978 })
}

#[tokio::test]
async fn astro_api_returns_the_chart() {
    let (app, _state, _dir) = app();
    let (status, v) = post_json(&app, "/api/astrology", &body(seoul(), json!({}))).await;
    assert_eq!(status, 200, "{v}");
    let chart = &v["chart"];
    let names: Vec<&str> = chart["planets"]
        .as_array()
        .expect("planets")
        .iter()
        .map(|p| p["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [
            "sun",
            "moon",
            "mercury",
            "venus",
            "mars",
            "jupiter",
            "saturn",
            "uranus",
            "neptune",
            "pluto",
            "mean_node"
        ]
    );
    for p in chart["planets"].as_array().unwrap() {
        for field in ["longitude", "latitude", "speed", "degree_in_sign"] {
            assert!(p[field].is_f64(), "{field} in {p}");
        }
        assert!(p["sign"].is_string() && p["retrograde"].is_boolean() && p["house"].is_u64());
    }
    assert_eq!(chart["houses"].as_array().unwrap().len(), 12);
    assert_eq!(chart["house_system"], "placidus");
    assert_eq!(chart["input"]["utc"], "1990-05-15T03:30:00Z");
    assert_eq!(chart["input"]["utc_offset_seconds"], 32_400);
    assert!(chart["ascendant"].is_f64() && chart["mc"].is_f64());
    for a in chart["aspects"].as_array().unwrap() {
        for field in ["a", "b", "kind", "angle", "orb", "applying"] {
            assert!(!a[field].is_null(), "{field} in {a}");
        }
    }
    assert!(chart["warnings"].as_array().unwrap().is_empty());

    // The CLI's --json prints the same object: compare the exact bytes of the response.
    let req = body(seoul(), json!({}));
    let (birth, opts) =
        starpillar::api::astrology::to_engine(&serde_json::from_str(&req).unwrap()).unwrap();
    let cli = starpillar::domain::astro::compute(&birth, &opts).unwrap();
    let response = crate::common::send(
        &app,
        axum::http::Request::post("/api/astrology")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(req))
            .unwrap(),
    )
    .await;
    let bytes = crate::common::body_bytes(response).await;
    let raw = format!("{{\"chart\":{}}}", serde_json::to_string(&cli).unwrap());
    assert_eq!(String::from_utf8_lossy(&bytes), raw);
}

#[tokio::test]
async fn astro_api_house_system_and_polar_fallback() {
    let (app, _state, _dir) = app();
    let tromso = json!({ "datetime": "2000-01-01T00:00", "timezone": "Europe/Oslo",
                         "latitude": 69.65, "longitude": 18.96 });
    let (status, v) = post_json(
        &app,
        "/api/astrology",
        &body(tromso, json!({"house_system": "koch"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["chart"]["house_system"], "porphyry");
    assert!(!v["chart"]["warnings"].as_array().unwrap().is_empty());
    let (status, v) = post_json(
        &app,
        "/api/astrology",
        &body(
            seoul(),
            json!({"house_system": "whole_sign", "orbs": {"conjunction": 1.0}}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["chart"]["house_system"], "whole_sign");
    for cusp in v["chart"]["houses"].as_array().unwrap() {
        assert_eq!(cusp.as_f64().unwrap() % 30.0, 0.0);
    }
}

#[tokio::test]
async fn astro_api_reading_without_an_index_is_503() {
    let (app, _state, _dir) = app();
    let req = json!({ "birth": seoul(), "question": "career?", "locale": "en" }).to_string();
    let (status, v) = post_json(&app, "/api/astrology", &req).await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(error_code(&v), "retrieval_unavailable");
}

#[tokio::test]
async fn astro_api_invalid_inputs_name_the_field() {
    let (app, _state, _dir) = app();
    let with = |field: &str, value: Value| {
        let mut b = seoul();
        b[field] = value;
        b
    };
    let cases = [
        (
            body(with("latitude", json!(90.5)), json!({})),
            "birth.latitude",
        ),
        (
            body(with("latitude", json!(-91)), json!({})),
            "birth.latitude",
        ),
        (
            body(with("longitude", json!(180.01)), json!({})),
            "birth.longitude",
        ),
        (
            body(with("longitude", json!(-200)), json!({})),
            "birth.longitude",
        ),
        (
            body(with("timezone", json!("Asia/Atlantis")), json!({})),
            "birth.timezone",
        ),
        (
            body(seoul(), json!({"house_system": "campanus"})),
            "house_system",
        ),
        // 1988-05-08 02:30 never happened in Seoul (summer time began at 02:00).
        (
            body(with("datetime", json!("1988-05-08T02:30")), json!({})),
            "birth.datetime",
        ),
        (
            body(with("datetime", json!("yesterday")), json!({})),
            "birth.datetime",
        ),
        (
            body(with("datetime", json!("1650-01-01T00:00")), json!({})),
            "birth.datetime",
        ),
        (
            body(seoul(), json!({"orbs": {"square": -1}})),
            "orbs.square",
        ),
        (body(seoul(), json!({"colour": "red"})), "colour"),
        (
            body(with("elevation", json!(10)), json!({})),
            "birth.elevation",
        ),
    ];
    for (req, field) in cases {
        let (status, v) = post_json(&app, "/api/astrology", &req).await;
        assert_eq!(status, 422, "{req} → {v}");
        error_code(&v);
        assert_eq!(v["error"]["field"], field, "{req} → {v}");
    }
    let (status, v) = post_json(&app, "/api/astrology", "{\"birth\":").await;
    assert_eq!(status, 400, "{v}");
}

#[tokio::test]
async fn astro_api_is_in_openapi() {
    let (app, _state, _dir) = app();
    let (status, v) = crate::common::get_json(&app, "/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        v["paths"]["/api/astrology"]["post"].is_object(),
        "{}",
        v["paths"]
    );
}
