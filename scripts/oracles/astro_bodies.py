"""Reference positions for the astrology differential tests (JSON on stdin -> JSON on stdout).

Input:  {"jd_tt": [...], "step_days": 0.0416..., "orbs": {"conjunction": 8, ...}}
Output: {"bodies": {name: {"lon": [...], "lat": [...], "speed": [...]}},
         "aspects": [[{"a", "b", "kind", "sep", "orb", "applying"}, ...] per instant]}

Sun, Moon, Mercury..Pluto: JPL DE421 through skyfield (bundled by skyfield-data, offline),
apparent geocentric positions (light-time, aberration, deflection) in skyfield's
ecliptic_frame: the true ecliptic and equinox of date. The mean lunar node comes from the Swiss
Ephemeris (pyswisseph, analytic mean elements, nutation applied), used only out of process here.
Speeds are central differences over +-step_days. Aspects are recomputed here from these
reference longitudes, independently of the Rust code.
"""

import json
import sys

import numpy as np
import swisseph as swe
from skyfield.api import Loader
from skyfield.framelib import ecliptic_frame
from skyfield_data import get_skyfield_data_path

DE421_NAMES = {
    "sun": "sun",
    "moon": "moon",
    "mercury": "mercury",
    "venus": "venus",
    "mars": "mars",
    "jupiter": "jupiter barycenter",
    "saturn": "saturn barycenter",
    "uranus": "uranus barycenter",
    "neptune": "neptune barycenter",
    "pluto": "pluto barycenter",
}
ORDER = list(DE421_NAMES) + ["mean_node"]
ASPECTS = [("conjunction", 0.0), ("sextile", 60.0), ("square", 90.0), ("trine", 120.0),
           ("opposition", 180.0)]


def skyfield_lonlat(eph, ts, name, jd):
    t = ts.tt_jd(jd)
    app = eph["earth"].at(t).observe(eph[DE421_NAMES[name]]).apparent()
    lat, lon, _ = app.frame_latlon(ecliptic_frame)
    return lon.degrees % 360.0, lat.degrees


def node_lon(jd):
    flags = swe.FLG_MOSEPH
    return np.array([swe.calc(float(j), swe.MEAN_NODE, flags)[0][0] for j in jd]) % 360.0


def signed(d):
    return (d + 180.0) % 360.0 - 180.0


def main():
    req = json.load(sys.stdin)
    jd = np.array(req["jd_tt"], dtype=float)
    h = float(req.get("step_days", 1.0 / 24.0))
    orbs = req.get("orbs", {})
    load = Loader(get_skyfield_data_path(), verbose=False)
    ts = load.timescale(builtin=True)
    eph = load("de421.bsp")
    out = {}
    for name in ORDER:
        if name == "mean_node":
            lon, lat = node_lon(jd), np.zeros_like(jd)
            before, after = node_lon(jd - h), node_lon(jd + h)
        else:
            lon, lat = skyfield_lonlat(eph, ts, name, jd)
            before, _ = skyfield_lonlat(eph, ts, name, jd - h)
            after, _ = skyfield_lonlat(eph, ts, name, jd + h)
        speed = signed(after - before) / (2 * h)
        out[name] = {"lon": lon.tolist(), "lat": lat.tolist(), "speed": speed.tolist()}
    aspects = []
    for i in range(len(jd)):
        found = []
        for ia, a in enumerate(ORDER):
            for b in ORDER[ia + 1:]:
                d = signed(out[b]["lon"][i] - out[a]["lon"][i])
                sep = abs(d)
                best = None
                for kind, angle in ASPECTS:
                    off = sep - angle
                    if abs(off) <= orbs.get(kind, 0.0) and (best is None or abs(off) < abs(best[1])):
                        best = (kind, off)
                if best:
                    va, vb = out[a]["speed"][i], out[b]["speed"][i]
                    rate = (vb - va) if d >= 0 else (va - vb)
                    found.append({"a": a, "b": b, "kind": best[0], "sep": sep,
                                  "orb": abs(best[1]), "applying": best[1] * rate < 0})
        aspects.append(found)
    json.dump({"bodies": out, "aspects": aspects}, sys.stdout)


if __name__ == "__main__":
    main()
