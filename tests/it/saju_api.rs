//! `POST /api/saju` through the router (oneshot): the chart, the 503 for readings without an
//! index, and every kind of bad input answering the right status with the JSON error shape
//! naming the field.

use axum::http::StatusCode;

use crate::common::{app, error_code, post_json};

async fn post(body: &str) -> (StatusCode, serde_json::Value) {
    let (app, _state, _dir) = app();
    post_json(&app, "/api/saju", body).await
}

#[tokio::test]
async fn chart_route_answers_the_contract_fields() {
    let (status, body) =
        post(r#"{"birth":{"date":"2024-02-04","time":"17:26"},"sex":"male","reading":false}"#)
            .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let chart = &body["chart"];
    for pillar in ["year", "month", "day", "hour"] {
        let p = &chart["pillars"][pillar];
        for key in ["stem", "branch", "hanja", "hangul", "element", "yin_yang"] {
            assert!(!p[key].is_null(), "pillars.{pillar}.{key} missing: {p}");
        }
    }
    // 17:26 KST is one minute before 2024's 立春 (17:27): still the 癸卯 year, 乙丑 month.
    assert_eq!(chart["pillars"]["year"]["hanja"], "癸卯");
    assert_eq!(chart["pillars"]["year"]["hangul"], "계묘");
    assert_eq!(chart["pillars"]["month"]["hanja"], "乙丑");
    assert_eq!(chart["pillars"]["year"]["yin_yang"], "yin");
    assert_eq!(chart["pillars"]["year"]["element"], "water");
    assert_eq!(chart["input"]["utc"], "2024-02-04T08:26:00Z");
    assert_eq!(chart["input"]["utc_offset_seconds"], 32_400);
    assert_eq!(chart["input"]["solar_time"], "lmt");
    assert_eq!(chart["luck"]["direction"], "backward"); // yin year, male
    assert!(chart["luck"]["start_age"].as_f64().is_some());
    assert!(chart["luck"]["start_age_rounded"].as_u64().is_some());
    let lp = chart["luck"]["pillars"].as_array().expect("luck pillars");
    assert_eq!(lp.len(), 10);
    assert!(lp[0]["hanja"].is_string() && lp[0]["hangul"].is_string());
    assert!(lp[0]["start_age"].is_number());
    assert_eq!(chart["solar_terms"]["next"]["name"], "입춘");
    assert!(chart["solar_terms"]["previous"]["utc"].is_string());

    // A lunar date reports its solar date; no time → no hour pillar.
    let (status, body) = post(
        r#"{"birth":{"date":"2023-02-01","calendar":"lunar","leap_month":true},
            "sex":"female","reading":false}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["chart"]["input"]["solar_date"], "2023-03-22");
    assert!(body["chart"]["pillars"]["hour"].is_null());
}

#[tokio::test]
async fn reading_without_an_index_is_503() {
    let (status, body) =
        post(r#"{"birth":{"date":"1990-05-15","time":"14:30"},"sex":"female"}"#).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&body), "retrieval_unavailable");
}

#[tokio::test]
async fn bad_inputs_answer_with_the_field() {
    let cases: [(&str, StatusCode, &str, Option<&str>); 11] = [
        (
            r#"{"birth":{"date":"1990-02-30"},"sex":"male","reading":false}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_date",
            Some("birth.date"),
        ),
        (
            r#"{"birth":{"date":"1990-05-15","time":"25:00"},"sex":"male","reading":false}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_time",
            Some("birth.time"),
        ),
        (
            r#"{"birth":{"date":"1988-05-08","time":"02:30"},"sex":"male","reading":false}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "nonexistent_local_time",
            Some("birth.time"),
        ),
        (
            r#"{"birth":{"date":"1987-10-11","time":"02:30"},"sex":"male","reading":false}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "ambiguous_local_time",
            Some("birth.time"),
        ),
        (
            r#"{"birth":{"date":"2012-04-01","calendar":"lunar","leap_month":true},
                "sex":"male","reading":false}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_leap_month",
            Some("birth.leap_month"),
        ),
        (
            r#"{"birth":{"date":"1850-01-01"},"sex":"male","reading":false}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "date_out_of_range",
            Some("birth.date"),
        ),
        (
            r#"{"birth":{"date":"1990-05-15","timezone":"Mars/Olympus"},"sex":"male",
                "reading":false}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_timezone",
            Some("birth.timezone"),
        ),
        (
            r#"{"birth":{"date":"1990-05-15","longitude":500},"sex":"male","reading":false}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_longitude",
            Some("birth.longitude"),
        ),
        (
            r#"{"birth":{"date":"1990-05-15","dat":1},"sex":"male","reading":false}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("birth.dat"),
        ),
        (
            r#"{"birth":{"date":"1990-05-15"},"sex":"male","options":{"zi_hour":"late"}}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            Some("options.zi_hour"),
        ),
        (
            r#"{"birth":{"date":"1990-05-15"},"sex":"#,
            StatusCode::BAD_REQUEST,
            "malformed_json",
            None,
        ),
    ];
    for (body, status, code, field) in cases {
        let (got, answer) = post(body).await;
        assert_eq!(got, status, "{body} → {answer}");
        assert_eq!(error_code(&answer), code, "{body} → {answer}");
        if let Some(field) = field {
            assert_eq!(answer["error"]["field"], field, "{body} → {answer}");
        }
    }
}

#[tokio::test]
async fn openapi_lists_the_route() {
    let (app, _state, _dir) = app();
    let (status, doc) = crate::common::get_json(&app, "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["paths"]["/api/saju"]["post"].is_object());
}

/// `starpillar saju --json` prints exactly the `chart` object the API answers; the table
/// names the pillars; a bad flag value exits 2 naming the flag.
#[tokio::test]
async fn cli_json_is_the_api_chart() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_starpillar"))
            .arg("saju")
            .args(args)
            .env_remove("STARPILLAR_SAJU_DATE")
            .output()
            .expect("run starpillar")
    };
    let out = run(&[
        "--date",
        "1990-05-15",
        "--time",
        "14:30",
        "--sex",
        "female",
        "--zi-hour",
        "ya",
        "--solar-time",
        "true",
        "--longitude",
        "129.075",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON chart");
    let (status, body) = post(
        r#"{"birth":{"date":"1990-05-15","time":"14:30","longitude":129.075},"sex":"female",
            "options":{"zi_hour":"ya","solar_time":"true"},"reading":false}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cli, body["chart"]);

    let out = run(&["--date", "2024-02-04", "--time", "17:26", "--sex", "male"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in [
        "癸卯",
        "계묘",
        "乙丑",
        "hidden",
        "life stage",
        "Luck pillars",
    ] {
        assert!(table.contains(needle), "{needle} missing from:\n{table}");
    }

    let out = run(&["--date", "2024-02-04", "--time", "25:00", "--sex", "male"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--time"));
}
