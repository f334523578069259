"""N-body simulation as in pyperformance's bm_nbody: 5 bodies, lists of floats,
nested loops over body pairs, ``advance`` and ``energy``.

Prints one JSON line: {"result": ..., "times": [seconds per inner repeat, ...]}.
Options: --quick, --n N (steps), --repeats R (or env BENCH_QUICK=1).
"""

from __future__ import annotations

import os
import sys

if __package__ in (None, ""):  # run as a script: make the benchmarks package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import run_benchmark  # noqa: E402

PI = 3.14159265358979323
SOLAR_MASS = 4 * PI * PI
DAYS_PER_YEAR = 365.24

Body = tuple[list[float], list[float], float]


def make_system() -> list[Body]:
    return [
        ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], SOLAR_MASS),
        (  # jupiter
            [4.84143144246472090e00, -1.16032004402742839e00, -1.03622044471123109e-01],
            [1.66007664274403694e-03 * DAYS_PER_YEAR, 7.69901118419740425e-03 * DAYS_PER_YEAR,
             -6.90460016972063023e-05 * DAYS_PER_YEAR],
            9.54791938424326609e-04 * SOLAR_MASS,
        ),
        (  # saturn
            [8.34336671824457987e00, 4.12479856412430479e00, -4.03523417114321381e-01],
            [-2.76742510726862411e-03 * DAYS_PER_YEAR, 4.99852801234917238e-03 * DAYS_PER_YEAR,
             2.30417297573763929e-05 * DAYS_PER_YEAR],
            2.85885980666130812e-04 * SOLAR_MASS,
        ),
        (  # uranus
            [1.28943695621391310e01, -1.51111514016986312e01, -2.23307578892655734e-01],
            [2.96460137564761618e-03 * DAYS_PER_YEAR, 2.37847173959480950e-03 * DAYS_PER_YEAR,
             -2.96589568540237556e-05 * DAYS_PER_YEAR],
            4.36624404335156298e-05 * SOLAR_MASS,
        ),
        (  # neptune
            [1.53796971148509165e01, -2.59193146099879641e01, 1.79258772950371181e-01],
            [2.68067772490389322e-03 * DAYS_PER_YEAR, 1.62824170038242295e-03 * DAYS_PER_YEAR,
             -9.51592254519715870e-05 * DAYS_PER_YEAR],
            5.15138902046611451e-05 * SOLAR_MASS,
        ),
    ]


def combinations(bodies: list[Body]) -> list[tuple[Body, Body]]:
    result = []
    for x in range(len(bodies) - 1):
        for y in bodies[x + 1 :]:
            result.append((bodies[x], y))
    return result


def advance(dt: float, n: int, bodies: list[Body], pairs: list[tuple[Body, Body]]) -> None:
    for _ in range(n):
        for ([x1, y1, z1], v1, m1), ([x2, y2, z2], v2, m2) in pairs:
            dx = x1 - x2
            dy = y1 - y2
            dz = z1 - z2
            mag = dt * ((dx * dx + dy * dy + dz * dz) ** (-1.5))
            b1m = m1 * mag
            b2m = m2 * mag
            v1[0] -= dx * b2m
            v1[1] -= dy * b2m
            v1[2] -= dz * b2m
            v2[0] += dx * b1m
            v2[1] += dy * b1m
            v2[2] += dz * b1m
        for r, [vx, vy, vz], _m in bodies:
            r[0] += dt * vx
            r[1] += dt * vy
            r[2] += dt * vz


def energy(bodies: list[Body], pairs: list[tuple[Body, Body]]) -> float:
    e = 0.0
    for ((x1, y1, z1), _v1, m1), ((x2, y2, z2), _v2, m2) in pairs:
        dx = x1 - x2
        dy = y1 - y2
        dz = z1 - z2
        e -= (m1 * m2) / ((dx * dx + dy * dy + dz * dz) ** 0.5)
    for _r, [vx, vy, vz], m in bodies:
        e += m * (vx * vx + vy * vy + vz * vz) / 2.0
    return e


def offset_momentum(ref: Body, bodies: list[Body]) -> None:
    px = py = pz = 0.0
    for _r, [vx, vy, vz], m in bodies:
        px -= vx * m
        py -= vy * m
        pz -= vz * m
    _r, v, m = ref
    v[0] = px / m
    v[1] = py / m
    v[2] = pz / m


def nbody_kernel(steps: int) -> str:
    bodies = make_system()
    pairs = combinations(bodies)
    offset_momentum(bodies[0], bodies)
    e0 = energy(bodies, pairs)
    advance(0.01, steps, bodies, pairs)
    e1 = energy(bodies, pairs)
    return f"{e0!r} {e1!r}"


def main(argv: list[str] | None = None) -> None:
    run_benchmark(nbody_kernel, argv, 60_000, 3_000)


if __name__ == "__main__":
    main()
