//! Facts: what a chart says, as short statements (ko and en) with stable ids, weights and the
//! retrieval queries, tags and section headings that find the passages about them. Built from
//! the API's chart JSON (so `/api/ask` can take a chart a client kept), with the engine's own
//! tables for names and ten gods.

use serde::Serialize;
use serde_json::Value;

use super::{Locale, Topic};
use crate::domain::astro::chart::sign_of;
use crate::domain::saju::ganzhi::{Branch, Element, GanZhi, Stem, YinYang};
use crate::domain::saju::relations::{TenGod, main_hidden_stem};

/// One fact about the chart (or the question).
#[derive(Debug, Clone, Serialize)]
pub struct Fact {
    /// Stable id: `day_master`, `element_excess:fire`, `sun_sign`, …
    pub id: String,
    /// Importance; facts are read in descending weight.
    pub weight: f32,
    pub ko: String,
    pub en: String,
    #[serde(skip)]
    pub search: Search,
}

/// How to find the passages about a fact.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub topic: Option<Topic>,
    pub queries_ko: Vec<String>,
    pub queries_en: Vec<String>,
    /// Corpus tags (machine keys) a relevant document carries.
    pub tags: Vec<String>,
    /// Fragments of the section heading that treats the fact (either language).
    pub sections: Vec<String>,
    /// The id stem of the document most about the fact (`saju-stem-yang-wood`).
    pub doc: Option<String>,
}

impl Fact {
    pub fn statement(&self, locale: Locale) -> &str {
        match locale {
            Locale::Ko => &self.ko,
            Locale::En => &self.en,
        }
    }

    pub fn queries(&self, locale: Locale) -> &[String] {
        match locale {
            Locale::Ko => &self.search.queries_ko,
            Locale::En => &self.search.queries_en,
        }
    }

    /// The kind of fact: the id up to its first `:`.
    pub fn kind(&self) -> &str {
        self.id.split(':').next().unwrap_or(&self.id)
    }
}

const STEM_EN: [&str; 10] = [
    "Gap", "Eul", "Byeong", "Jeong", "Mu", "Gi", "Gyeong", "Sin", "Im", "Gye",
];
const ANIMAL: [&str; 12] = [
    "rat", "ox", "tiger", "rabbit", "dragon", "snake", "horse", "goat", "monkey", "rooster", "dog",
    "pig",
];
const ELEMENT_KO: [&str; 5] = ["나무", "불", "흙", "쇠", "물"];

/// The English name of a stem with its polarity and element: `Gap (甲), yang wood`.
pub fn stem_en(s: Stem) -> String {
    format!(
        "{} ({}), {} {}",
        STEM_EN[usize::from(s.0)],
        s.hanja(),
        s.yin_yang().key(),
        s.element().key()
    )
}

/// The Korean name of a stem: `갑목(甲木)`.
pub fn stem_ko(s: Stem) -> String {
    format!(
        "{}{}({}{})",
        s.hangul(),
        s.element().hangul(),
        s.hanja(),
        s.element().hanja()
    )
}

/// `word` with the Korean particle that fits its last syllable (a parenthesis is skipped:
/// `화(火)` ends in 화): `with` after a final consonant, `without` otherwise (`으로`/`로`
/// also takes `로` after ㄹ).
pub fn josa(word: &str, with: &str, without: &str) -> String {
    let base = word.split('(').next().unwrap_or(word);
    let last = base
        .chars()
        .rev()
        .find(|c| ('\u{AC00}'..='\u{D7A3}').contains(c));
    let coda = last.map_or(0, |c| (u32::from(c) - 0xAC00) % 28);
    let particle = if coda == 0 || (with == "으로" && coda == 8) {
        without
    } else {
        with
    };
    format!("{word}{particle}")
}

fn yy_ko(y: YinYang) -> &'static str {
    match y {
        YinYang::Yang => "양(陽)",
        YinYang::Yin => "음(陰)",
    }
}

fn stem_doc(s: Stem) -> String {
    format!("saju-stem-{}-{}", s.yin_yang().key(), s.element().key())
}

fn ten_god_en(g: TenGod) -> String {
    let key = g.key().replace('_', " ");
    format!("{key} ({})", g.hanja())
}

fn ten_god_ko(g: TenGod) -> String {
    format!("{}({})", g.hangul(), g.hanja())
}

fn u8_at(v: &Value, path: &[&str]) -> Option<u8> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_u64().and_then(|n| u8::try_from(n).ok())
}

/// A pillar read back from the chart JSON.
#[derive(Debug, Clone, Copy)]
struct P {
    name_en: &'static str,
    name_ko: &'static str,
    gz: GanZhi,
}

fn pillar(v: &Value, key: &'static str, name_ko: &'static str) -> Option<P> {
    let p = v.get("pillars")?.get(key)?;
    let stem = Stem(u8_at(p, &["stem", "index"])?.min(9));
    let branch = Branch(u8_at(p, &["branch", "index"])?.min(11));
    Some(P {
        name_en: key,
        name_ko,
        gz: GanZhi::from_parts(stem, branch),
    })
}

/// True when a saju chart JSON has what the facts need.
pub fn is_saju_chart(v: &Value) -> bool {
    pillar(v, "day", "일").is_some()
}

/// True when an astrology chart JSON has what the facts need.
pub fn is_astrology_chart(v: &Value) -> bool {
    v.get("planets").and_then(Value::as_array).is_some()
}

/// The question's life area, from keywords in either language.
pub fn question_area(q: &str) -> Option<&'static str> {
    let q = q.to_lowercase();
    let table: [(&str, &[&str]); 6] = [
        (
            "work",
            &[
                "work", "job", "career", "business", "직업", "직장", "취업", "사업", "일이",
                "이직", "승진",
            ],
        ),
        (
            "love",
            &[
                "love",
                "relationship",
                "marri",
                "partner",
                "romance",
                "연애",
                "사랑",
                "결혼",
                "배우자",
                "인연",
            ],
        ),
        (
            "money",
            &[
                "money", "wealth", "financ", "income", "재물", "돈", "재정", "투자", "수입",
            ],
        ),
        ("health", &["health", "body", "ill", "건강", "몸", "질병"]),
        (
            "study",
            &[
                "study", "exam", "school", "learn", "공부", "시험", "학업", "진학",
            ],
        ),
        (
            "family",
            &["family", "parent", "child", "가족", "부모", "자녀", "아이"],
        ),
    ];
    table
        .iter()
        .find(|(_, words)| words.iter().any(|w| q.contains(w)))
        .map(|(area, _)| *area)
}

fn area_sections(area: &str) -> Vec<String> {
    let v: &[&str] = match area {
        "work" => &["at work", "work", "career", "직업", "일과", "일"],
        "love" => &["in love", "love", "partnership", "연애", "배우자", "관계"],
        "money" => &["money", "재물"],
        "health" => &["health", "건강"],
        "study" => &["study", "learning", "공부", "학업"],
        _ => &["family", "가족"],
    };
    v.iter().map(|s| (*s).to_owned()).collect()
}

fn area_names(area: &str) -> (&'static str, &'static str) {
    match area {
        "work" => ("work and career", "일과 직업"),
        "love" => ("love and relationships", "연애와 관계"),
        "money" => ("money", "재물"),
        "health" => ("health", "건강"),
        "study" => ("study", "공부와 학업"),
        _ => ("family", "가족"),
    }
}

/// The question's area, read through the person's own document (the day master's stem, the
/// Sun's sign): its section on that area.
fn area_fact(
    area: &'static str,
    topic: Topic,
    who_en: &str,
    who_ko: &str,
    tag: String,
    doc: String,
) -> Fact {
    let (en, ko) = area_names(area);
    let sections = area_sections(area);
    let first = |v: &[String], i: usize| v.get(i).cloned().unwrap_or_default();
    Fact {
        id: format!("area:{area}"),
        weight: 0.95,
        ko: format!("질문은 {ko}에 관한 것입니다."),
        en: format!("Your question is about {en}."),
        search: Search {
            topic: Some(topic),
            queries_ko: vec![format!("{who_ko} {ko}")],
            queries_en: vec![format!("{who_en} {} {en}", first(&sections, 0))],
            tags: vec![tag, format!("area:{area}")],
            sections,
            doc: Some(doc),
        },
    }
}

/// Options that are not in the chart.
#[derive(Debug, Clone, Copy)]
pub struct FactOptions {
    /// The current Gregorian year (for the luck pillar and the year pillar).
    pub year: i32,
}

/// The facts of a saju chart (the API's chart JSON), best first.
pub fn saju(chart: &Value, question: Option<&str>, opts: FactOptions) -> Vec<Fact> {
    let Some(day) = pillar(chart, "day", "일") else {
        return Vec::new();
    };
    let dm = day.gz.stem();
    let pillars: Vec<P> = [
        pillar(chart, "year", "연"),
        pillar(chart, "month", "월"),
        Some(day),
        pillar(chart, "hour", "시"),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut facts = Vec::new();
    let topic = Some(Topic::Saju);

    // The day master.
    let (en_name, ko_name) = (stem_en(dm), stem_ko(dm));
    facts.push(Fact {
        id: "day_master".into(),
        weight: 1.0,
        ko: format!(
            "당신의 일간(日干), 곧 사주의 중심은 {} {}의 {}입니다.",
            josa(&ko_name, "으로", "로"),
            yy_ko(dm.yin_yang()),
            ELEMENT_KO[dm.element().index()]
        ),
        en: format!("Your day master, the centre of the chart, is {en_name}."),
        search: Search {
            topic,
            queries_ko: vec![format!("일간이 {} {}일 때", &ko_name, dm.hanja())],
            queries_en: vec![format!(
                "{} as a day master {} day stem",
                STEM_EN[usize::from(dm.0)],
                dm.hanja()
            )],
            tags: vec![format!("stem:{}", dm.hanja()), "day_master".into()],
            sections: vec![
                "as a day master".into(),
                "일간이".into(),
                "strengths".into(),
                "장점".into(),
            ],
            doc: Some(stem_doc(dm)),
        },
    });

    // The day pillar.
    let db = day.gz.branch();
    let dp_doc = format!(
        "saju-daypillar-{}-{}-{}",
        dm.yin_yang().key(),
        dm.element().key(),
        ANIMAL[usize::from(db.0)]
    );
    facts.push(Fact {
        id: "day_pillar".into(),
        weight: 0.9,
        ko: format!("일주는 {}({}) 일주입니다.", day.gz.hangul(), day.gz.hanja()),
        en: format!(
            "Your day pillar is {} ({} over the {}).",
            day.gz.hanja(),
            STEM_EN[usize::from(dm.0)],
            ANIMAL[usize::from(db.0)]
        ),
        search: Search {
            topic,
            queries_ko: vec![format!("{} 일주 {} 성격", day.gz.hangul(), day.gz.hanja())],
            queries_en: vec![format!(
                "{} day pillar {} temperament",
                day.gz.hanja(),
                STEM_EN[usize::from(dm.0)]
            )],
            tags: vec![format!("pillar:{}", day.gz.hanja())],
            sections: vec![
                "temperament".into(),
                "성격".into(),
                "image".into(),
                "물상".into(),
            ],
            doc: Some(dp_doc),
        },
    });

    // Five elements.
    let count = |e: Element| u8_at(chart, &["five_elements", e.key()]).unwrap_or(0);
    let total = u8_at(chart, &["five_elements", "total"])
        .unwrap_or(8)
        .max(1);
    if let Some((e, n)) = Element::ALL
        .into_iter()
        .map(|e| (e, count(e)))
        .max_by_key(|(e, n)| (*n, 5 - e.index()))
        && n >= 3
    {
        facts.push(Fact {
            id: format!("element_excess:{}", e.key()),
            weight: 0.8,
            ko: format!(
                "오행 중 {} {total}자 가운데 {n}자로 강합니다.",
                josa(&format!("{}({})", e.hangul(), e.hanja()), "이", "가")
            ),
            en: format!(
                "{} is strong in your chart: {n} of its {total} characters.",
                capitalize(e.key())
            ),
            search: Search {
                topic,
                queries_ko: vec![format!("{} 과다 {}", e.hangul(), e.hanja())],
                queries_en: vec![format!("excess {} too much {}", e.key(), e.key())],
                tags: vec![format!("element_excess:{}", e.key())],
                sections: vec![
                    "signs of".into(),
                    "신호".into(),
                    "day master".into(),
                    "일간별".into(),
                ],
                doc: Some(format!("saju-element-{}-excess", e.key())),
            },
        });
    }
    let missing: Vec<Element> = Element::ALL
        .into_iter()
        .filter(|e| count(*e) == 0)
        .collect();
    for e in missing.iter().take(2) {
        facts.push(Fact {
            id: format!("element_lack:{}", e.key()),
            weight: 0.75,
            ko: format!(
                "사주에 {} 드러나 있지 않습니다.",
                josa(&format!("{}({})", e.hangul(), e.hanja()), "이", "가")
            ),
            en: format!(
                "{} is missing from the visible characters of your chart.",
                capitalize(e.key())
            ),
            search: Search {
                topic,
                queries_ko: vec![format!("{} 부족 {} 없음", e.hangul(), e.hanja())],
                queries_en: vec![format!("lack of {} missing {}", e.key(), e.key())],
                tags: vec![format!("element_lack:{}", e.key())],
                sections: vec![
                    "signs".into(),
                    "신호".into(),
                    "day master".into(),
                    "일간별".into(),
                ],
                doc: Some(format!("saju-element-{}-lack", e.key())),
            },
        });
    }

    // The dominant ten god (visible stems and the branches' main stems).
    let mut gods: Vec<TenGod> = Vec::new();
    for p in &pillars {
        if p.name_en != "day" {
            gods.push(TenGod::of(dm, p.gz.stem()));
        }
        gods.push(TenGod::of(dm, main_hidden_stem(p.gz.branch())));
    }
    let mut best: Option<(TenGod, usize)> = None;
    for g in &gods {
        let n = gods.iter().filter(|x| *x == g).count();
        if best.is_none_or(|(_, b)| n > b) {
            best = Some((*g, n));
        }
    }
    if let Some((g, n)) = best
        && n >= 2
    {
        facts.push(Fact {
            id: format!("ten_god:{}", g.key()),
            weight: 0.7,
            ko: format!(
                "십신 가운데 {} {n}번 나타나 두드러집니다.",
                josa(&ten_god_ko(g), "이", "가")
            ),
            en: format!(
                "Among the ten gods, {} stands out: it appears {n} times.",
                ten_god_en(g)
            ),
            search: Search {
                topic,
                queries_ko: vec![format!("{} {} 십신 심리", g.hangul(), g.hanja())],
                queries_en: vec![format!("{} ten god psychology", g.key().replace('_', " "))],
                tags: vec![format!("ten_god:{}", g.key())],
                sections: vec!["psychology".into(), "심리".into()],
                doc: Some(format!("saju-tengod-{}", g.key().replace('_', "-"))),
            },
        });
    }

    // Combinations and clashes between branches, combinations between stems.
    for (i, a) in pillars.iter().enumerate() {
        for b in &pillars[i + 1..] {
            let (ba, bb) = (a.gz.branch(), b.gz.branch());
            let pair = format!("{}{}", ba.hanja(), bb.hanja());
            let where_en = format!("{} and {} pillars", a.name_en, b.name_en);
            let where_ko = format!("{}주와 {}주", a.name_ko, b.name_ko);
            if (i16::from(ba.0) - i16::from(bb.0)).abs() == 6 {
                facts.push(relation_fact(
                    "clash",
                    "충(沖)",
                    "clash (沖)",
                    &pair,
                    &where_en,
                    &where_ko,
                    0.62,
                ));
            } else if (u16::from(ba.0) + u16::from(bb.0)) % 12 == 1 {
                facts.push(relation_fact(
                    "six_combination",
                    "육합(六合)",
                    "six combination (六合)",
                    &pair,
                    &where_en,
                    &where_ko,
                    0.5,
                ));
            }
            let (sa, sb) = (a.gz.stem(), b.gz.stem());
            if (i16::from(sa.0) - i16::from(sb.0)).abs() == 5 {
                let pair = format!("{}{}", sa.hanja(), sb.hanja());
                facts.push(relation_fact(
                    "stem_combination",
                    "천간합(天干合)",
                    "stem combination (天干合)",
                    &pair,
                    &where_en,
                    &where_ko,
                    0.5,
                ));
            }
        }
    }

    // The day master's life stage on its own branch.
    if let Some(stage) = chart.pointer("/pillars/day/life_stage")
        && let (Some(key), Some(hanja), Some(hangul)) = (
            stage.get("key").and_then(Value::as_str),
            stage.get("hanja").and_then(Value::as_str),
            stage.get("hangul").and_then(Value::as_str),
        )
    {
        facts.push(Fact {
            id: format!("life_stage:{key}"),
            weight: 0.45,
            ko: format!("일간은 자기 일지에서 십이운성 {hangul}({hanja})에 앉아 있습니다."),
            en: format!(
                "On its own day branch the day master sits in the life stage {} ({hanja}).",
                key.replace('_', " ")
            ),
            search: Search {
                topic,
                queries_ko: vec![format!("십이운성 {hangul} {hanja}")],
                queries_en: vec![format!("life stage {} {hanja}", key.replace('_', " "))],
                tags: vec![format!("life_stage:{key}")],
                sections: Vec::new(),
                doc: Some(format!("saju-lifestage-{}", key.replace('_', "-"))),
            },
        });
    }

    // The current luck pillar and this year's pillar.
    let birth_year: Option<i32> = chart
        .pointer("/input/solar_date")
        .and_then(Value::as_str)
        .and_then(|d| d.get(..4))
        .and_then(|y| y.parse().ok());
    if let Some(by) = birth_year {
        let age = opts.year - by;
        let current = chart
            .pointer("/luck/pillars")
            .and_then(Value::as_array)
            .and_then(|ps| {
                ps.iter().rfind(|p| {
                    p.get("start_age")
                        .and_then(Value::as_i64)
                        .is_some_and(|a| a <= i64::from(age))
                })
            });
        if let Some(lp) = current
            && let (Some(idx), Some(start)) = (
                u8_at(lp, &["index"]),
                lp.get("start_year").and_then(Value::as_i64),
            )
        {
            let gz = GanZhi(idx % 60);
            let g = TenGod::of(dm, gz.stem());
            facts.push(Fact {
                id: "luck_decade".into(),
                weight: 0.65,
                ko: format!(
                    "{start}년부터 {}({}) 대운이 흐르고 있으며, 대운의 천간은 당신에게 {}입니다.",
                    gz.hangul(),
                    gz.hanja(),
                    ten_god_ko(g)
                ),
                en: format!(
                    "Since {start} you have been in the {} luck pillar, whose stem is your {}.",
                    gz.hanja(),
                    ten_god_en(g)
                ),
                search: Search {
                    topic,
                    queries_ko: vec!["대운 십 년 운의 흐름 읽기".into()],
                    queries_en: vec!["decade luck pillar ten-year period reading".into()],
                    tags: vec!["luck:decade".into()],
                    sections: Vec::new(),
                    doc: Some("saju-luck-decade".into()),
                },
            });
        }
    }
    let yp = GanZhi::new(i64::from(opts.year) - 4);
    let g = TenGod::of(dm, yp.stem());
    let year_weight = match question {
        Some(q)
            if ["올해", "this year", "금년", "year"]
                .iter()
                .any(|w| q.contains(w)) =>
        {
            0.92
        }
        _ => 0.6,
    };
    facts.push(Fact {
        id: "year_pillar".into(),
        weight: year_weight,
        ko: format!(
            "올해 {}년은 {}({})년이고, 그 천간은 당신에게 {}입니다.",
            opts.year,
            yp.hangul(),
            yp.hanja(),
            ten_god_ko(g)
        ),
        en: format!(
            "This year, {}, is a {} year, and its stem is your {}.",
            opts.year,
            yp.hanja(),
            ten_god_en(g)
        ),
        search: Search {
            topic,
            queries_ko: vec!["세운 올해의 운 읽기".into()],
            queries_en: vec!["yearly luck this year annual pillar".into()],
            tags: vec!["luck:year".into()],
            sections: vec!["three questions".into(), "세 가지".into()],
            doc: Some("saju-luck-year".into()),
        },
    });

    if let Some(q) = question
        && let Some(area) = question_area(q)
    {
        facts.push(area_fact(
            area,
            Topic::Saju,
            STEM_EN[usize::from(dm.0)],
            &ko_name,
            format!("stem:{}", dm.hanja()),
            stem_doc(dm),
        ));
    }
    sort(facts)
}

fn relation_fact(
    key: &str,
    ko_name: &str,
    en_name: &str,
    pair: &str,
    where_en: &str,
    where_ko: &str,
    weight: f32,
) -> Fact {
    Fact {
        id: format!("relation:{key}:{pair}"),
        weight,
        ko: format!(
            "{where_ko} 사이에 {pair} {} 있습니다.",
            josa(ko_name, "이", "가")
        ),
        en: format!("Your {where_en} form a {en_name}: {pair}."),
        search: Search {
            topic: Some(Topic::Saju),
            queries_ko: vec![format!("{ko_name} {pair}")],
            queries_en: vec![format!("{} {pair}", en_name)],
            tags: vec![format!("relation:{key}")],
            sections: vec!["position".into(), "위치".into()],
            doc: Some(format!("saju-relation-{}", key.replace('_', "-"))),
        },
    }
}

fn sort(mut facts: Vec<Fact>) -> Vec<Fact> {
    facts.sort_by(|a, b| b.weight.total_cmp(&a.weight));
    let mut seen = std::collections::HashSet::new();
    facts.retain(|f| seen.insert(f.id.clone()));
    facts
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

const SIGN_KO: [&str; 12] = [
    "양자리",
    "황소자리",
    "쌍둥이자리",
    "게자리",
    "사자자리",
    "처녀자리",
    "천칭자리",
    "전갈자리",
    "사수자리",
    "염소자리",
    "물병자리",
    "물고기자리",
];

/// The Korean name of a sign key (`aries` → 양자리).
pub fn sign_ko(sign: &str) -> &'static str {
    crate::domain::astro::chart::SIGNS
        .iter()
        .position(|s| *s == sign)
        .map_or("", |i| SIGN_KO[i])
}

/// The English name of a sign key (`aries` → Aries).
pub fn sign_en(sign: &str) -> String {
    capitalize(sign)
}

/// The Korean name of a planet key.
pub fn planet_ko(p: &str) -> &'static str {
    match p {
        "sun" => "태양",
        "moon" => "달",
        "mercury" => "수성",
        "venus" => "금성",
        "mars" => "화성",
        "jupiter" => "목성",
        "saturn" => "토성",
        "uranus" => "천왕성",
        "neptune" => "해왕성",
        "pluto" => "명왕성",
        _ => "달의 노드",
    }
}

fn planet_en(p: &str) -> String {
    if p == "mean_node" {
        "the North Node".into()
    } else {
        capitalize(p)
    }
}

fn ordinal(n: u8) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, x) if x != 11 => "st",
        (2, x) if x != 12 => "nd",
        (3, x) if x != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn aspect_ko(kind: &str) -> &'static str {
    match kind {
        "conjunction" => "합(컨정션)",
        "sextile" => "섹스타일",
        "square" => "스퀘어",
        "trine" => "트라인",
        _ => "대립(오포지션)",
    }
}

fn aspect_ko_query(kind: &str) -> &'static str {
    match kind {
        "conjunction" => "컨정션",
        "sextile" => "섹스타일",
        "square" => "스퀘어",
        "trine" => "트라인",
        _ => "오포지션",
    }
}

/// A planet as read from the chart JSON.
struct Pl<'a> {
    name: &'a str,
    sign: &'a str,
    degree: f64,
    retrograde: bool,
    house: u8,
}

fn placement_fact(id: &str, weight: f32, p: &Pl<'_>) -> Fact {
    let (en_p, ko_p) = (planet_en(p.name), planet_ko(p.name));
    let (en_s, ko_s) = (sign_en(p.sign), sign_ko(p.sign));
    Fact {
        id: id.to_owned(),
        weight,
        ko: format!(
            "{} {ko_s} {:.0}도에 있습니다.",
            josa(ko_p, "은", "는"),
            p.degree.floor()
        ),
        en: format!("Your {en_p} is in {en_s} ({:.0}°).", p.degree.floor()),
        search: Search {
            topic: Some(Topic::Astrology),
            queries_ko: vec![format!("{ko_s} {ko_p}")],
            queries_en: vec![format!("{en_p} in {en_s}")],
            tags: vec![format!("placement:{}-in-{}", p.name, p.sign)],
            sections: vec![format!("{en_p} in {en_s}"), format!("{ko_s} {ko_p}")],
            doc: Some(format!("astrology-{}-in-signs", p.name)),
        },
    }
}

/// The facts of a natal chart (the API's chart JSON), best first.
pub fn astrology(chart: &Value, question: Option<&str>) -> Vec<Fact> {
    let planets: Vec<Pl<'_>> = chart
        .get("planets")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| {
                    Some(Pl {
                        name: p.get("name")?.as_str()?,
                        sign: p.get("sign")?.as_str()?,
                        degree: p.get("degree_in_sign")?.as_f64()?,
                        retrograde: p
                            .get("retrograde")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                        house: p
                            .get("house")
                            .and_then(Value::as_u64)
                            .and_then(|h| u8::try_from(h).ok())
                            .unwrap_or(0),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let find = |name: &str| planets.iter().find(|p| p.name == name);
    let mut facts = Vec::new();
    let topic = Some(Topic::Astrology);
    if let Some(sun) = find("sun") {
        facts.push(placement_fact("sun_sign", 1.0, sun));
    }
    if let Some(moon) = find("moon") {
        facts.push(placement_fact("moon_sign", 0.9, moon));
    }
    if let Some(asc) = chart.get("ascendant").and_then(Value::as_f64) {
        let (sign, deg) = sign_of(asc);
        let (en_s, ko_s) = (sign_en(sign), sign_ko(sign));
        facts.push(Fact {
            id: "ascendant_sign".into(),
            weight: 0.85,
            ko: format!("상승궁(어센던트)은 {ko_s} {:.0}도입니다.", deg.floor()),
            en: format!(
                "Your ascendant is {en_s} ({:.0}°): {en_s} rising.",
                deg.floor()
            ),
            search: Search {
                topic,
                queries_ko: vec![format!("{ko_s} 상승")],
                queries_en: vec![format!("{en_s} rising ascendant")],
                tags: vec!["angle:ascendant".into()],
                sections: vec![format!("{en_s} rising"), format!("{ko_s} 상승")],
                doc: Some("astrology-ascendant".into()),
            },
        });
    }
    if let Some(mc) = chart.get("mc").and_then(Value::as_f64) {
        let (sign, _) = sign_of(mc);
        let (en_s, ko_s) = (sign_en(sign), sign_ko(sign));
        facts.push(Fact {
            id: "mc_sign".into(),
            weight: 0.5,
            ko: format!("MC(천정)는 {ko_s}에 있습니다."),
            en: format!("Your midheaven (MC) is in {en_s}."),
            search: Search {
                topic,
                queries_ko: vec![format!("MC 천정 별자리 {ko_s}")],
                queries_en: vec![format!("MC midheaven sign {en_s} career")],
                tags: vec!["angle:mc".into()],
                sections: vec!["sign".into(), "별자리".into()],
                doc: Some("astrology-mc".into()),
            },
        });
    }
    // Tight aspects between the planets (the node left out).
    let mut aspects: Vec<(&str, &str, &str, f64)> = chart
        .get("aspects")
        .and_then(Value::as_array)
        .map(|xs| {
            xs.iter()
                .filter_map(|a| {
                    Some((
                        a.get("a")?.as_str()?,
                        a.get("b")?.as_str()?,
                        a.get("kind")?.as_str()?,
                        a.get("orb")?.as_f64()?,
                    ))
                })
                .filter(|(a, b, _, orb)| *a != "mean_node" && *b != "mean_node" && *orb <= 2.0)
                .collect()
        })
        .unwrap_or_default();
    aspects.sort_by(|x, y| x.3.total_cmp(&y.3));
    for (a, b, kind, orb) in aspects.into_iter().take(2) {
        facts.push(Fact {
            id: format!("aspect:{a}-{kind}-{b}"),
            weight: 0.6 - (orb as f32) * 0.02,
            ko: format!(
                "{} {} 오브 {orb:.1}도의 {} 이룹니다.",
                josa(planet_ko(a), "과", "와"),
                josa(planet_ko(b), "이", "가"),
                josa(aspect_ko(kind), "을", "를")
            ),
            en: format!(
                "{} and {} form a tight {kind} (orb {orb:.1}°).",
                planet_en(a),
                planet_en(b)
            ),
            search: Search {
                topic,
                queries_ko: vec![format!(
                    "{} 의미 {} {}",
                    aspect_ko_query(kind),
                    planet_ko(a),
                    planet_ko(b)
                )],
                queries_en: vec![format!("what a {kind} means {a} {b}")],
                tags: vec![format!("aspect:{kind}")],
                sections: vec!["means".into(), "뜻하는".into(), "의미".into()],
                doc: Some(format!("astrology-aspect-{kind}")),
            },
        });
    }
    // Angular planets (houses 1, 4, 7, 10), other than the lights.
    for p in planets
        .iter()
        .filter(|p| {
            matches!(p.house, 1 | 4 | 7 | 10) && !matches!(p.name, "sun" | "moon" | "mean_node")
        })
        .take(2)
    {
        let (en_p, ko_p) = (planet_en(p.name), planet_ko(p.name));
        facts.push(Fact {
            id: format!("angular:{}-house-{}", p.name, p.house),
            weight: 0.55,
            ko: format!(
                "{} {}하우스에 있어 각(앵글) 위에서 두드러집니다.",
                josa(ko_p, "이", "가"),
                p.house
            ),
            en: format!("{en_p} is angular, in your {} house.", ordinal(p.house)),
            search: Search {
                topic,
                queries_ko: vec![format!("{}하우스 {ko_p}", p.house)],
                queries_en: vec![format!("{en_p} in the {} house", ordinal(p.house))],
                tags: vec![format!("placement:{}-house-{}", p.name, p.house)],
                sections: vec![
                    format!("{en_p} in the {} house", ordinal(p.house)),
                    format!("{}하우스 {ko_p}", p.house),
                ],
                doc: Some(format!("astrology-{}-in-houses", p.name)),
            },
        });
    }
    // Retrograde personal planets.
    for p in planets
        .iter()
        .filter(|p| {
            p.retrograde && matches!(p.name, "mercury" | "venus" | "mars" | "jupiter" | "saturn")
        })
        .take(2)
    {
        facts.push(Fact {
            id: format!("retrograde:{}", p.name),
            weight: 0.4,
            ko: format!(
                "{} 태어날 때 역행 중이었습니다.",
                josa(planet_ko(p.name), "은", "는")
            ),
            en: format!("{} was retrograde when you were born.", planet_en(p.name)),
            search: Search {
                topic,
                queries_ko: vec![format!("출생 차트의 역행 행성 {}", planet_ko(p.name))],
                queries_en: vec![format!("retrograde planets in a natal chart {}", p.name)],
                tags: vec!["retrograde".into()],
                sections: vec!["natal chart".into(), "출생".into(), "your own".into()],
                doc: Some("astrology-retrograde".into()),
            },
        });
    }
    if let Some(q) = question
        && let Some(area) = question_area(q)
        && let Some(sun) = find("sun")
    {
        facts.push(area_fact(
            area,
            Topic::Astrology,
            &sign_en(sun.sign),
            sign_ko(sun.sign),
            format!("sign:{}", sun.sign),
            format!("astrology-sign-{}", sun.sign),
        ));
    }
    sort(facts)
}

/// The facts for a chart of either kind (or none for a bare question).
pub fn for_chart(
    topic: Topic,
    chart: &Value,
    question: Option<&str>,
    opts: FactOptions,
) -> Vec<Fact> {
    match topic {
        Topic::Saju => saju(chart, question, opts),
        Topic::Astrology => astrology(chart, question),
    }
}

/// Whether `text` names the day master of a saju chart the way a reading should.
pub fn states_day_master(text: &str, chart: &Value, locale: Locale) -> bool {
    let Some(day) = pillar(chart, "day", "일") else {
        return false;
    };
    let dm = day.gz.stem();
    match locale {
        Locale::Ko => text.contains(&format!("{}{}", dm.hangul(), dm.element().hangul())),
        Locale::En => {
            text.contains(STEM_EN[usize::from(dm.0)])
                && text.contains(&format!("{} {}", dm.yin_yang().key(), dm.element().key()))
        }
    }
}

/// Whether one sentence of `text` names the Sun and its sign.
pub fn states_sun_sign(text: &str, chart: &Value, locale: Locale) -> bool {
    let Some(sign) = chart
        .get("planets")
        .and_then(Value::as_array)
        .and_then(|ps| {
            ps.iter()
                .find(|p| p.get("name").and_then(Value::as_str) == Some("sun"))
        })
        .and_then(|p| p.get("sign"))
        .and_then(Value::as_str)
    else {
        return false;
    };
    let (sun, name) = match locale {
        Locale::Ko => ("태양".to_owned(), sign_ko(sign).to_owned()),
        Locale::En => ("Sun".to_owned(), sign_en(sign)),
    };
    super::text::sentences(text)
        .iter()
        .any(|s| s.contains(&sun) && s.contains(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(stem_en(Stem(0)), "Gap (甲), yang wood");
        assert_eq!(stem_ko(Stem(9)), "계수(癸水)");
        assert_eq!(sign_ko("pisces"), "물고기자리");
        assert_eq!(ordinal(1), "1st");
        assert_eq!(josa("병화(丙火)", "으로", "로"), "병화(丙火)로");
        assert_eq!(josa("경금(庚金)", "으로", "로"), "경금(庚金)으로");
        assert_eq!(josa("달", "으로", "로"), "달로");
        assert_eq!(josa("겁재(劫財)", "이", "가"), "겁재(劫財)가");
        assert_eq!(josa("태양", "과", "와"), "태양과");
        assert_eq!(ordinal(12), "12th");
        assert_eq!(question_area("올해 직업운은 어떤가요?"), Some("work"));
        assert_eq!(question_area("Will I find love?"), Some("love"));
    }
}
