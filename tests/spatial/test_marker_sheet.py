"""`twin capture marker`: the printed black square is exactly --size, and reconstruct's own detector finds it.

No PDF renderer is a dependency, so the PDF is read back here: its cross-reference table is checked byte by
byte and its page is rasterised from the drawing operators it contains (fill colour, rectangles, fills).
Debian's poppler-utils (installed by `make`) renders the page too with `pdftoppm`, as an independent reader.
"""
from __future__ import annotations

import math
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from spatial.capture.marker_sheet import DICTIONARIES, MM_PER_INCH, MarkerConfig, layout, marker_cells
from spatial.capture.synth.scene import ARUCO_DICT, ARUCO_ID, marker_bitmap
from spatial.sfm.align import DEFAULT_DICTIONARIES, detect_markers
from twin_cli.main import main as twin

REPO_ASSET = "marker/aruco_15cm_a4.pdf"


# ---------------------------------------------------------------------------------------------- reading PDFs

def pdf_page(data: bytes) -> tuple[tuple[float, float], str]:
    """(page width, height) in points and the page's content stream, after checking the xref offsets."""
    startxref = int(re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data).group(1))
    assert data[startxref:startxref + 4] == b"xref"
    n = int(re.match(rb"xref\s+0\s+(\d+)", data[startxref:]).group(1))
    rows = re.findall(rb"(\d{10}) (\d{5}) ([nf]) ?\r?\n", data[startxref:])[:n]
    for k, (off, _, kind) in enumerate(rows):
        if kind == b"n":
            assert data[int(off):].startswith(b"%d 0 obj" % k), f"xref entry {k} points elsewhere"
    box = [float(v) for v in re.search(rb"/MediaBox\s*\[([^\]]+)\]", data).group(1).split()]
    m = re.search(rb"/Length (\d+) >>\nstream\n", data)
    content = data[m.end():m.end() + int(m.group(1))]
    assert data[m.end() + int(m.group(1)):].startswith(b"endstream")
    return (box[2] - box[0], box[3] - box[1]), content.decode("latin-1")


def rasterise(data: bytes, dpi: float) -> np.ndarray:
    """The page's filled rectangles painted at `dpi` (uint8 grey, white paper); text is not drawn."""
    (w_pt, h_pt), content = pdf_page(data)
    s = dpi / 72.0
    img = np.full((round(h_pt * s), round(w_pt * s)), 255, np.uint8)
    grey, path = 0.0, []
    for line in content.splitlines():
        tok = line.split()
        if not tok or tok[0] == "BT":
            continue
        if tok[-1] == "g":
            grey = float(tok[0])
        elif tok[-1] == "re":
            x, y, w, h = (float(v) for v in tok[:4])
            path.append((x * s, (h_pt - y - h) * s, (x + w) * s, (h_pt - y) * s))
        elif tok[-1] == "f":
            for x0, y0, x1, y1 in path:  # pixels whose centre lies inside
                c0, c1 = math.ceil(x0 - 0.5), math.ceil(x1 - 0.5)
                r0, r1 = math.ceil(y0 - 0.5), math.ceil(y1 - 0.5)
                img[max(r0, 0):r1, max(c0, 0):c1] = round(grey * 255)
            path = []
        else:
            raise AssertionError(f"unexpected operator in the page: {line!r}")
    return img


def aruco_side_px(img: np.ndarray, dictionary: str) -> tuple[list[int], float]:
    """Ids found by a plain cv2.aruco detector and the mean side in pixels of the first marker."""
    aruco = cv2.aruco
    params = aruco.DetectorParameters()
    params.cornerRefinementMethod = aruco.CORNER_REFINE_SUBPIX
    det = aruco.ArucoDetector(aruco.getPredefinedDictionary(getattr(aruco, dictionary)), params)
    corners, ids, _ = det.detectMarkers(img)
    assert ids is not None, "no marker found on the page"
    q = corners[0].reshape(4, 2)
    return [int(i) for i in ids.ravel()], float(np.linalg.norm(q - np.roll(q, -1, axis=0), axis=1).mean())


# ---------------------------------------------------------------------------------------------- the sheet

@pytest.fixture(scope="module")
def default_pdf(tmp_path_factory):
    out = tmp_path_factory.mktemp("marker") / "marker.pdf"
    assert twin(["capture", "marker", "--out", str(out)]) == 0
    return out.read_bytes()


def test_dictionaries_are_the_ones_reconstruct_detects():
    assert DICTIONARIES == DEFAULT_DICTIONARIES


def test_default_is_the_marker_the_synthetic_capture_prints(tmp_path):
    cfg = MarkerConfig(out=tmp_path / "m.pdf")
    assert (cfg.dictionary, cfg.marker_id, cfg.size) == (ARUCO_DICT, ARUCO_ID, 0.15)
    assert (np.array(marker_cells(ARUCO_DICT, ARUCO_ID)) == (marker_bitmap(border_modules=0) < 0.5)).all()


def test_pdf_prints_the_marker_at_its_size_and_reconstruct_detects_it(default_pdf):
    (w_pt, h_pt), _ = pdf_page(default_pdf)
    assert (w_pt, h_pt) == pytest.approx((210 / MM_PER_INCH * 72, 297 / MM_PER_INCH * 72), abs=1e-3)  # A4
    assert b"/PrintScaling /None" in default_pdf
    dpi = 150
    page = rasterise(default_pdf, dpi)
    ids, side = aruco_side_px(page, "DICT_4X4_50")
    assert ids == [0]
    assert side == pytest.approx(0.15 * dpi / 0.0254, rel=0.01)
    found, _ = detect_markers([page])  # what `twin reconstruct --marker-size` runs
    assert list(found) == [("DICT_4X4_50", 0)]


def test_ruler_measures_100_mm(default_pdf):
    dpi = 200
    page = rasterise(default_pdf, dpi)
    x0, line_y = layout(0.15, "a4", "DICT_4X4_50", 0).ruler_start
    row = page[round((line_y - 4.3) / MM_PER_INCH * dpi)] < 128  # only the cm ticks reach this high
    edges = np.flatnonzero(np.diff(row.astype(np.int8)))
    centres = (edges[0::2] + edges[1::2] + 1) / 2 / dpi * MM_PER_INCH  # mm
    assert len(centres) == 11
    assert centres[-1] - centres[0] == pytest.approx(100.0, abs=0.2)
    assert centres[0] == pytest.approx(x0, abs=0.2)


def test_other_dictionary_id_and_paper(tmp_path):
    out = tmp_path / "m.pdf"
    assert twin(["capture", "marker", "--out", str(out), "--size", "0.08", "--id", "7",
                 "--dictionary", "DICT_5X5_100", "--paper", "letter"]) == 0
    (w_pt, h_pt), _ = pdf_page(out.read_bytes())
    assert (w_pt, h_pt) == pytest.approx((612.0, 792.0), abs=1e-3)
    page = rasterise(out.read_bytes(), 200)
    ids, side = aruco_side_px(page, "DICT_5X5_100")
    assert ids == [7] and side == pytest.approx(0.08 * 200 / 0.0254, rel=0.01)
    assert list(detect_markers([page])[0]) == [("DICT_5X5_100", 7)]


def test_png_at_its_dpi(tmp_path):
    out = tmp_path / "m.png"
    assert twin(["capture", "marker", "--out", str(out), "--size", "0.12", "--dpi", "200"]) == 0
    im = Image.open(out)
    assert im.info["dpi"] == pytest.approx((200, 200), abs=0.01)
    assert im.size == (round(210 / MM_PER_INCH * 200), round(297 / MM_PER_INCH * 200))
    page = np.asarray(im.convert("L"))
    ids, side = aruco_side_px(page, "DICT_4X4_50")
    assert ids == [0] and side == pytest.approx(0.12 * 200 / 0.0254, rel=0.01)
    assert list(detect_markers([page])[0]) == [("DICT_4X4_50", 0)]


def test_pdftoppm_renders_the_same_marker(default_pdf, tmp_path):
    (tmp_path / "m.pdf").write_bytes(default_pdf)
    subprocess.run(["pdftoppm", "-r", "150", "-gray", "-png", "-singlefile", str(tmp_path / "m.pdf"),
                    str(tmp_path / "page")], check=True, timeout=60)
    page = np.asarray(Image.open(tmp_path / "page.png").convert("L"))
    ids, side = aruco_side_px(page, "DICT_4X4_50")
    assert ids == [0] and side == pytest.approx(0.15 * 150 / 0.0254, rel=0.01)
    assert list(detect_markers([page])[0]) == [("DICT_4X4_50", 0)]


def test_shipped_sheet_is_what_the_command_writes(default_pdf):
    from twin_kit.assets import asset_path

    assert asset_path(REPO_ASSET).read_bytes() == default_pdf


def test_rewrite_replaces_atomically(tmp_path):
    out = tmp_path / "m.pdf"
    out.write_bytes(b"old")
    assert twin(["capture", "marker", "--out", str(out), "--size", "0.1"]) == 0
    assert out.read_bytes().startswith(b"%PDF-1.7") and sorted(p.name for p in tmp_path.iterdir()) == ["m.pdf"]


# ---------------------------------------------------------------------------------------------- bad options

@pytest.mark.parametrize("args, words", [
    (["--size", "0"], "--size must be a finite number > 0"),
    (["--size", "-0.1"], "--size must be a finite number > 0"),
    (["--size", "nan"], "--size must be a"),
    (["--size", "0.2"], "does not fit on A4 paper"),
    (["--size", "0.17", "--paper", "letter"], "at most 0.162 m"),
    (["--id", "50"], "--id must be in 0..49 for DICT_4X4_50"),
    (["--id", "-1"], "--id must be an integer >= 0"),
    (["--dpi", "20"], "--dpi must be an integer in [50, 2400]"),
    (["--size", "0.01", "--dpi", "50"], "raise --dpi or --size"),
])
def test_bad_options_are_one_line_errors(tmp_path, capsys, args, words):
    out = tmp_path / ("m.png" if "--dpi" in args else "m.pdf")
    assert twin(["capture", "marker", "--out", str(out), *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], lines
    assert not out.exists()


def test_bad_output_paths(tmp_path, capsys):
    (tmp_path / "file.txt").write_text("x")
    for out, words in [(tmp_path / "m.jpg", "must end in .pdf or .png"), (tmp_path, "must end in .pdf or .png"),
                       (tmp_path / "dir.pdf", "is a directory"),
                       (tmp_path / "file.txt" / "sub" / "m.pdf", "is a file, not a directory")]:
        if out.name == "dir.pdf":
            out.mkdir()
        assert twin(["capture", "marker", "--out", str(out)]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], lines


def test_the_command_exits_2_with_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "twin_cli", "capture", "marker", "--out", "x.pdf", "--size", "0"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "error" in r.stderr
