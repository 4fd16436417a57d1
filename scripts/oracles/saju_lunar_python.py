"""Four Pillars and luck from 6tail's lunar_python (it computes in Beijing time, UTC+8).

stdin:  {"cases": [{"bj": "YYYY-MM-DD HH:MM:SS", "local": "YYYY-MM-DD HH:MM:SS",
                    "sect": 1|2, "male": true}], "tables": true}
  bj    — the birth instant as UTC+8 wall time: year, month and luck come from it;
  local — the clock the day and hour pillars are read from (the engine's pillar clock);
  sect  — 1: late 子 hour takes tomorrow's day pillar (정자시), 2: today's (야자시).
stdout: {"cases": [{"year","month","day","time","forward","start_years"}],
         "tables": {"shi_shen": {"甲乙": "劫财", ...}, "hide_gan": {"子": [...]},
                    "di_shi": {"甲": [12 stages from 子], ...}}}
"""
import json
import os
import sys
from multiprocessing import Pool

from lunar_python import EightChar, Solar
from lunar_python.util import LunarUtil


def solar(text):
    date, time = text.split(" ")
    y, m, d = (int(x) for x in date.split("-"))
    hh, mm, ss = (int(x) for x in time.split(":"))
    return Solar.fromYmdHms(y, m, d, hh, mm, ss)


def case(c):
    ec_bj = solar(c["bj"]).getLunar().getEightChar()
    ec_local = solar(c["local"]).getLunar().getEightChar()
    ec_local.setSect(c["sect"])
    yun = ec_bj.getYun(1 if c["male"] else 0, 2)
    start = (
        yun.getStartYear()
        + yun.getStartMonth() / 12.0
        + yun.getStartDay() / 360.0
        + yun.getStartHour() / 8640.0
    )
    return {
        "year": ec_bj.getYear(),
        "month": ec_bj.getMonth(),
        "day": ec_local.getDay(),
        "time": ec_local.getTime(),
        "forward": bool(yun.isForward()),
        "start_years": start,
    }


def tables():
    offsets = EightChar._EightChar__CHANG_SHENG_OFFSET
    di_shi = {}
    for i, gan in enumerate("甲乙丙丁戊己庚辛壬癸"):
        row = []
        for z in range(12):
            k = offsets[gan] + (z if i % 2 == 0 else -z)
            row.append(EightChar.CHANG_SHENG[k % 12])
        di_shi[gan] = row
    return {
        "shi_shen": dict(LunarUtil.SHI_SHEN),
        "hide_gan": {k: list(v) for k, v in LunarUtil.ZHI_HIDE_GAN.items()},
        "di_shi": di_shi,
    }


def main():
    req = json.load(sys.stdin)
    cases = req.get("cases", [])
    if len(cases) > 200:
        # Each case builds two Lunar objects (~5 ms each): spread them over the cores.
        with Pool(os.cpu_count() or 1) as pool:
            results = pool.map(case, cases, chunksize=100)
    else:
        results = [case(c) for c in cases]
    out = {"cases": results}
    if req.get("tables"):
        out["tables"] = tables()
    json.dump(out, sys.stdout, ensure_ascii=False)


if __name__ == "__main__":
    main()
