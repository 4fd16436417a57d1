"""Korean lunar dates (KASI tables, korean-lunar-calendar) of every solar day in a range.

stdin:  {"start": "1900-01-01", "end": "2050-12-31"}
stdout: {"start": "1900-01-01", "days": [[lunar_year, month, day, leap(0|1)], ...]}
"""
import datetime as dt
import json
import sys

from korean_lunar_calendar import KoreanLunarCalendar


def main():
    req = json.load(sys.stdin)
    start = dt.date.fromisoformat(req["start"])
    end = dt.date.fromisoformat(req["end"])
    cal = KoreanLunarCalendar()
    days = []
    d = start
    one = dt.timedelta(days=1)
    while d <= end:
        if not cal.setSolarDate(d.year, d.month, d.day):
            raise SystemExit(f"KASI table rejects {d}")
        days.append([cal.lunarYear, cal.lunarMonth, cal.lunarDay, int(cal.isIntercalation)])
        d += one
    json.dump({"start": req["start"], "days": days}, sys.stdout)


if __name__ == "__main__":
    main()
