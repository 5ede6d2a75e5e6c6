"""The coverage chart: a real PNG for full and empty reports, the same bytes for the same report,
and no matplotlib cost for code that imports the module without drawing."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

from personaloom.chart import MET, SHORT, STUCK, coverage_chart

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _cell(target: int, accepted: int, attempts: int) -> dict[str, Any]:
    rate = round(accepted / attempts, 3) if attempts else None
    return {"target": target, "accepted": accepted, "attempts": attempts, "acceptance_rate": rate}


def _report() -> dict[str, Any]:
    tones = ["playful", "somber", "whimsical", "tense"]
    audiences = ["children", "teens", "adults"]
    return {
        "name": "bedtime-stories",
        "coverage": {
            "tone": {
                "playful": _cell(5, 5, 7),
                "somber": _cell(5, 2, 6),
                "whimsical": _cell(5, 0, 0),
                "tense": _cell(5, 1, 12),
            },
            "audience": {a: _cell(4, 4, 5) for a in audiences} | {"anyone": _cell(0, 2, 2)},
            "length": {
                "short": {**_cell(6, 3, 30), "status": "given_up"},
                "long": {**_cell(6, 1, 9), "status": "set_aside"},
            },
            "setting": {
                f"setting number {i} with a long name": _cell(2, i % 3, 4) for i in range(12)
            },
        },
        "joint": [
            {
                "traits": ["tone", "audience"],
                "cells": [
                    {"values": [t, a], **_cell(2, (i + j) % 3, 3)}
                    for i, t in enumerate(tones)
                    for j, a in enumerate(audiences)
                    if (t, a) != ("tense", "adults")  # a missing cell is drawn empty
                ],
            }
        ],
        "stagnant": [
            {"trait": "tone", "value": "tense", "reason": "critic rejects", "attempts": 12},
            {"trait": "tone×audience", "value": "somber×teens", "reason": "x", "attempts": 3},
        ],
    }


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    width, height = struct.unpack(">II", data[16:24])
    # the header chunk's CRC holds, so the file is not just a signature
    assert struct.unpack(">I", data[29:33])[0] == zlib.crc32(data[12:29])
    assert data.endswith(b"IEND\xaeB`\x82")
    return width, height


def test_full_report_gives_a_png_sized_to_its_content(tmp_path: Path) -> None:
    path = coverage_chart(_report(), tmp_path / "coverage.png")
    assert path == tmp_path / "coverage.png"
    width, height = _png_size(path)
    assert 1000 < width < 2000  # two columns of trait panels
    assert 900 < height < 3000
    assert path.stat().st_size > 20_000  # drawn, not blank
    assert list(tmp_path.iterdir()) == [path]  # the temporary file was renamed away

    small = _report()
    small["coverage"] = {"tone": small["coverage"]["tone"]}
    small["joint"] = []
    small_width, small_height = _png_size(coverage_chart(small, tmp_path / "small.png"))
    assert small_width < width and small_height < height / 2


def test_report_with_no_traits_still_gives_a_png(tmp_path: Path) -> None:
    width, height = _png_size(coverage_chart({"name": "empty", "coverage": {}}, tmp_path / "e.png"))
    assert width > 300 and 50 < height < 400
    _png_size(coverage_chart({"name": "bare"}, tmp_path / "bare.png"))


def test_same_report_same_bytes_and_no_version_stamp(tmp_path: Path) -> None:
    first = coverage_chart(_report(), tmp_path / "a.png").read_bytes()
    second = coverage_chart(_report(), tmp_path / "b.png").read_bytes()
    assert first == second
    assert b"tEXt" not in first and b"Software" not in first
    changed = _report()
    changed["coverage"]["tone"]["somber"]["accepted"] = 5
    assert coverage_chart(changed, tmp_path / "c.png").read_bytes() != first


def _pixels_of(path: Path, colour: str) -> int:
    from matplotlib.colors import to_rgb
    from matplotlib.image import imread

    rgb = imread(path)[..., :3]
    return int((abs(rgb - to_rgb(colour)).max(axis=-1) < 2 / 255).sum())


def test_colours_follow_status(tmp_path: Path) -> None:
    def counts(report: dict[str, Any], name: str) -> list[int]:
        path = coverage_chart(report, tmp_path / name)
        return [_pixels_of(path, colour) for colour in (MET, SHORT, STUCK)]

    report = {"name": "ok", "coverage": {"tone": {t: _cell(3, 3, 4) for t in "abcd"}}}
    met, short, stuck = counts(report, "met.png")
    assert met > 10_000 and short < 1000 and stuck < 1000  # amber and red: legend swatches only

    report["coverage"]["tone"]["b"] = _cell(3, 1, 4)
    _, more_short, same_stuck = counts(report, "short.png")
    assert more_short > short + 2000 and same_stuck == stuck

    report["stagnant"] = [{"trait": "tone", "value": "b", "reason": "x", "attempts": 4}]
    _, same_short, more_stuck = counts(report, "stuck.png")
    assert same_short == short and more_stuck > stuck + 2000


def test_importing_the_report_modules_does_not_load_matplotlib() -> None:
    code = (
        "import sys, json\n"
        "import personaloom.chart, personaloom.diversity\n"
        "print(json.dumps([m for m in ('matplotlib', 'scipy', 'sklearn') if m in sys.modules]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == []
