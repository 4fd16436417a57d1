"""Solar-term (jie) instants and ΔT from skyfield + JPL DE421 (offline, skyfield-data).

stdin:  {"years": [1900, ...], "delta_t_jd_ut": [2415020.5, ...], "eot_jd_tt": [...]}
stdout: {"jie": [[year, index, jd_tt, civil_jd], ...],
         "delta_t": [[jd, tt_minus_ut1, tt_minus_utc], ...],
         "eot": [[jd_tt, seconds], ...]}   (equation of time = apparent − mean solar time)

index 0 = 立春 (315°) ... 22 = 小寒 (285°, January of year + 1). Roots are found here from a
crude calendar guess, never from the engine under test. civil_jd is the instant on the civil
clock: UT1 before 1972 (clocks kept mean solar time), UTC (leap seconds) from 1972 on.
"""
import datetime as dt
import json
import sys
import warnings

import numpy as np
from skyfield.api import Loader
from skyfield.framelib import ecliptic_frame
from skyfield_data import get_skyfield_data_path

warnings.filterwarnings("ignore")
load = Loader(get_skyfield_data_path(), verbose=False)
ts = load.timescale(builtin=True)
eph = load("de421.bsp")
earth, sun = eph["earth"], eph["sun"]
UNIX_JD = 2440587.5
UTC_ERA_JD = 2441317.5  # 1972-01-01


def apparent_lon(jd_tt):
    t = ts.tt_jd(jd_tt)
    _, lon, _ = earth.at(t).observe(sun).apparent().frame_latlon(ecliptic_frame)
    return lon.radians


def utc_jd(t):
    """Julian date on the UTC clock of skyfield Time(s)."""
    stamps = [d.timestamp() for d in np.atleast_1d(t.utc_datetime())]
    return UNIX_JD + np.array(stamps) / 86400.0


def time_from_utc_jd(x):
    d = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(days=x - UNIX_JD)
    return ts.from_datetime(d)


def main():
    req = json.load(sys.stdin)
    out = {"jie": [], "delta_t": []}
    rows = [(y, k) for y in req.get("years", []) for k in range(0, 24, 2)]
    if rows:
        target = np.radians([(315.0 + 15.0 * k) % 360.0 for _, k in rows])
        jd = np.array([ts.utc(y, 2, 4).tt + 15.22 * k for y, k in rows])
        rate = 2 * np.pi / 365.2422
        for _ in range(8):
            diff = (target - apparent_lon(jd) + np.pi) % (2 * np.pi) - np.pi
            jd = jd + diff / rate
        t = ts.tt_jd(jd)
        civil = np.where(jd < UTC_ERA_JD, t.ut1, utc_jd(t))
        out["jie"] = [[y, k, float(a), float(c)] for (y, k), a, c in zip(rows, jd, civil)]
    for x in req.get("delta_t_jd_ut", []):
        t1 = ts.ut1_jd(x)
        tu = time_from_utc_jd(x)
        out["delta_t"].append([x, float(t1.delta_t), float((tu.tt - x) * 86400.0)])
    eot_jd = np.array(req.get("eot_jd_tt", []), dtype=float)
    if len(eot_jd):
        t = ts.tt_jd(eot_jd)
        ra, _, _ = earth.at(t).observe(sun).apparent().radec(epoch="date")
        apparent = t.gast - ra.hours + 12.0
        mean = ((t.ut1 - 0.5) % 1.0) * 24.0
        eot = (apparent - mean + 12.0) % 24.0 - 12.0
        out["eot"] = [[float(a), float(b) * 3600.0] for a, b in zip(eot_jd, eot)]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
