"""Time the reference chart for the astrology bench ratio (JSON on stdin -> JSON on stdout).

Input:  {"n": 200}
Output: {"charts_per_second": float, "n": int}

One "chart" = what `astro_full_chart` computes for the bodies: the apparent ecliptic
longitude of date of the Sun, Moon, Mercury..Pluto from DE421 (skyfield), each at t and
t +- 1 h for the speed, one instant at a time (no vectorisation across charts). The mean
node and the houses, which skyfield lacks, are left out, so the ratio flatters skyfield.
"""

import json
import sys
import time

from skyfield.api import Loader
from skyfield.framelib import ecliptic_frame
from skyfield_data import get_skyfield_data_path

NAMES = ["sun", "moon", "mercury", "venus", "mars", "jupiter barycenter",
         "saturn barycenter", "uranus barycenter", "neptune barycenter", "pluto barycenter"]


def chart(eph, ts, jd):
    earth = eph["earth"]
    out = []
    for name in NAMES:
        for dt in (-1.0 / 24.0, 0.0, 1.0 / 24.0):
            app = earth.at(ts.tt_jd(jd + dt)).observe(eph[name]).apparent()
            lat, lon, _ = app.frame_latlon(ecliptic_frame)
            out.append(lon.degrees)
    return out


def main():
    req = json.load(sys.stdin)
    n = int(req.get("n", 200))
    load = Loader(get_skyfield_data_path(), verbose=False)
    ts = load.timescale(builtin=True)
    eph = load("de421.bsp")
    chart(eph, ts, 2448026.6458)  # warm-up
    start = time.perf_counter()
    for i in range(n):
        chart(eph, ts, 2415020.5 + i * 277.3)
    elapsed = time.perf_counter() - start
    json.dump({"charts_per_second": n / elapsed, "n": n}, sys.stdout)


if __name__ == "__main__":
    main()
