"""Reference Ascendant, MC and house cusps (JSON on stdin -> JSON on stdout).

Input:  {"cases": [{"jd_ut": float, "lat": deg, "lon": deg}, ...],
         "systems": ["placidus", "koch", "porphyry", "equal", "whole_sign"]}
Output: {"results": [{system: {"asc": deg, "mc": deg, "cusps": [12 deg]}}, ...]}

The Swiss Ephemeris (pyswisseph) is AGPL: it is used ONLY here, out of process, as a test
oracle in the test venv; it is never linked into starpillar. houses_ex needs no ephemeris
files (sidereal time, obliquity and nutation are analytic).
"""

import json
import sys

import swisseph as swe

CODES = {"placidus": b"P", "koch": b"K", "porphyry": b"O", "equal": b"E", "whole_sign": b"W"}


def main():
    req = json.load(sys.stdin)
    results = []
    for case in req["cases"]:
        row = {}
        for system in req["systems"]:
            cusps, ascmc = swe.houses_ex(case["jd_ut"], case["lat"], case["lon"], CODES[system])
            row[system] = {"asc": ascmc[0], "mc": ascmc[1], "cusps": list(cusps[:12])}
        results.append(row)
    json.dump({"results": results}, sys.stdout)


if __name__ == "__main__":
    main()
