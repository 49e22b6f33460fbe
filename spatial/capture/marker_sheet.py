"""The printable marker sheet: `twin capture marker` writes a page whose black square measures exactly --size
metres when printed at 100 %, with a 100 mm scale bar to check the print and instructions for reconstruct.

One layout (millimetres from the top-left corner of the page), two back ends: a minimal hand-written PDF
(vector rectangles filled as one path, so the marker has no seams and no resampling; Helvetica text) and a
PNG rasterised at --dpi with Pillow. Defaults are what `twin reconstruct --marker-size` detects and what the
synthetic capture prints (DICT_4X4_50, id 0). Module-level imports stay light: this config builds the CLI.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from twin_kit import InputError, emit_json, info, opt

# The dictionaries `spatial.sfm.align.detect_markers` searches by default (a test keeps the two in step).
DICTIONARIES = ("DICT_4X4_50", "DICT_5X5_100", "DICT_6X6_250", "DICT_APRILTAG_36h11")
PAPERS_MM = {"a4": (210.0, 297.0), "letter": (215.9, 279.4)}
MM_PER_INCH = 25.4
PT_PER_MM = 72.0 / MM_PER_INCH
MARGIN_MM = 10.0  # no ink closer to the paper's edge (printers leave 3-6 mm unprinted)
MIN_QUIET_MM = 4.0  # white around the marker: one module, and never less than this
RULER_MM = 100.0
MIN_MODULE_PX = 4  # a PNG marker module narrower than this is refused
FONT_PT, TITLE_PT, LABEL_PT = 9.5, 12.0, 8.0
LINE_MM = 4.8  # instruction line pitch
HELVETICA_DIGIT_EM = 0.556  # every digit in Helvetica is 556/1000 em wide (for centring the ruler labels)


@dataclass
class MarkerConfig:
    """Options of `twin capture marker`."""

    out: Path = opt(help="file to write: .pdf (vector, for printing) or .png (raster at --dpi)", metavar="FILE")
    size: float = opt(0.15, "side of the marker's black square in metres, printed at actual size", low=0.0,
                      low_open=True)
    marker_id: int = opt(0, "marker id in the dictionary", flag="--id", low=0)
    dictionary: Literal["DICT_4X4_50", "DICT_5X5_100", "DICT_6X6_250", "DICT_APRILTAG_36h11"] = opt(
        "DICT_4X4_50", "marker dictionary (one that `twin reconstruct --marker-size` detects)")
    paper: Literal["a4", "letter"] = opt("a4", "paper size")
    dpi: int = opt(300, "pixels per inch of a .png page (ignored for .pdf)", low=50, high=2400)


@dataclass
class Rect:
    """A black rectangle: left, top, width, height in mm from the page's top-left corner."""

    x: float
    y: float
    w: float
    h: float


@dataclass
class Text:
    """A line of text: x (left edge, or centre when `centred`) and baseline y in mm from the top-left corner."""

    x: float
    y: float
    pt: float
    text: str
    bold: bool = False
    centred: bool = False


@dataclass
class Sheet:
    """One page: its size, what is printed on it, and where the marker and the ruler are (mm)."""

    page: tuple[float, float]
    modules: int  # cells across the black square, its black border included
    marker: Rect  # the black square
    cells: list[Rect]  # black modules of the marker, one rectangle per horizontal run
    ruler: list[Rect]  # scale bar line and ticks
    ruler_start: tuple[float, float]  # (x, y) of the 0 mm end of the bar's line
    texts: list[Text] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- the marker

def marker_cells(dictionary: str, marker_id: int) -> list[list[bool]]:
    """The marker as rows of cells, True where black; its outer ring (the black border) included."""
    import cv2

    d = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, dictionary))
    n = d.markerSize + 2
    img = cv2.aruco.generateImageMarker(d, marker_id, n)  # one pixel per cell
    return [[bool(v < 128) for v in row] for row in img]


def dictionary_size(dictionary: str) -> int:
    """How many ids `dictionary` holds."""
    import cv2

    return int(cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, dictionary)).bytesList.shape[0])


# ---------------------------------------------------------------------------------------------- the layout

def _quiet(side_mm: float, n_cells: int) -> float:
    return max(side_mm / n_cells, MIN_QUIET_MM)


FOOTER_MM = 3.0 + 1.0 + 5.0 + 0.3 + 8.0 + 5 * LINE_MM + 2.0  # ruler labels, ticks, line; title, 5 lines, descent


def fits(side_mm: float, n_cells: int, paper: str) -> bool:
    """Whether a marker of this side, its white quiet zone, the ruler and the text fit on the page."""
    W, H = PAPERS_MM[paper]
    q = _quiet(side_mm, n_cells)
    top = max(MARGIN_MM, q)
    return (W - side_mm) / 2 >= max(MARGIN_MM, q) and top + side_mm + max(q, 8.0) + FOOTER_MM <= H - MARGIN_MM


def max_side_mm(n_cells: int, paper: str) -> float:
    """The largest marker side that `fits` (bisection to 0.01 mm)."""
    lo, hi = 0.0, max(PAPERS_MM[paper])
    while hi - lo > 0.01:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fits(mid, n_cells, paper) else (lo, mid)
    return lo


def layout(size_m: float, paper: str, dictionary: str, marker_id: int) -> Sheet:
    """Place the marker (top, centred), the 100 mm ruler and the instructions; InputError when it cannot fit."""
    cells = marker_cells(dictionary, marker_id)
    n = len(cells)
    s = size_m * 1000.0
    if not fits(s, n, paper):
        raise InputError(f"--size {size_m:g} m does not fit on {paper.upper()} paper with its white border, "
                         f"the ruler and the instructions: at most {max_side_mm(n, paper) / 1000:.3f} m")
    W, H = PAPERS_MM[paper]
    q = _quiet(s, n)
    x0, y0, u = (W - s) / 2, max(MARGIN_MM, q), s / n
    runs = []
    for r, row in enumerate(cells):
        c = 0
        while c < n:
            if row[c]:
                e = c
                while e < n and row[e]:
                    e += 1
                runs.append(Rect(x0 + c * u, y0 + r * u, (e - c) * u, u))  # edges at exact multiples of u
                c = e
            else:
                c += 1
    sheet = Sheet(page=(W, H), modules=n, marker=Rect(x0, y0, s, s), cells=runs, ruler=[], ruler_start=(0.0, 0.0))
    _ruler(sheet, y0 + s + max(q, 8.0))
    _instructions(sheet, size_m, dictionary, marker_id)
    return sheet


def _ruler(sheet: Sheet, top: float) -> None:
    """A 100 mm bar with mm, 5 mm and cm ticks and cm labels, centred under the marker."""
    W, _ = sheet.page
    xr = (W - RULER_MM) / 2
    line_y = top + 3.0 + 1.0 + 5.0
    sheet.ruler_start = (xr, line_y)
    sheet.ruler.append(Rect(xr - 0.1, line_y, RULER_MM + 0.2, 0.3))
    for k in range(int(RULER_MM) + 1):
        length = 5.0 if k % 10 == 0 else 3.5 if k % 5 == 0 else 2.0
        sheet.ruler.append(Rect(xr + k - 0.1, line_y - length, 0.2, length))
        if k % 10 == 0:
            sheet.texts.append(Text(xr + k, top + 3.0, LABEL_PT, str(k // 10), centred=True))
    sheet.texts.append(Text(xr + RULER_MM + 3.0, line_y, LABEL_PT, f"cm ({RULER_MM:.0f} mm)"))


def _instructions(sheet: Sheet, size_m: float, dictionary: str, marker_id: int) -> None:
    side = f"{size_m * 1000:.1f} mm"
    y = sheet.ruler_start[1] + 0.3 + 8.0
    x = MARGIN_MM + 2.0
    sheet.texts.append(Text(x, y, TITLE_PT, f"Twin scale marker: {dictionary} id {marker_id}, black square {side}",
                            bold=True))
    lines = [
        '1. Print this page at 100 % ("Actual size"; turn off "Fit to page" / "Scale to fit").',
        f"2. Check the print with a ruler: the bar above must measure 100 mm and the black square {side}.",
        f"    If the square measures otherwise, pass your measured side instead of {size_m:g} below.",
        "3. Lay the sheet flat in the scene (tape its corners) where the camera sees it from many views.",
        f"4. twin reconstruct CAPTURE --out twins/NAME --marker-size {size_m:g}   (black square side, metres)",
    ]
    for k, line in enumerate(lines):
        sheet.texts.append(Text(x, y + LINE_MM * (k + 1) + 1.0, FONT_PT, line))


# ---------------------------------------------------------------------------------------------- PDF and PNG

def _pdf_string(s: str) -> str:
    return "(" + s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def pdf_bytes(sheet: Sheet, title: str) -> bytes:
    """A one-page PDF 1.7: rectangles in one black path, Helvetica text, /PrintScaling /None for the dialog."""
    W, H = sheet.page

    def rect(r: Rect) -> str:
        return (f"{r.x * PT_PER_MM:.4f} {(H - r.y - r.h) * PT_PER_MM:.4f} "
                f"{r.w * PT_PER_MM:.4f} {r.h * PT_PER_MM:.4f} re")

    ops = ["0 g"] + [rect(r) for r in sheet.cells] + ["f"] + [rect(r) for r in sheet.ruler] + ["f"]
    for t in sheet.texts:
        x = t.x - (len(t.text) * HELVETICA_DIGIT_EM * t.pt / PT_PER_MM / 2 if t.centred else 0.0)
        font = "/F2" if t.bold else "/F1"
        ops.append(f"BT {font} {t.pt:g} Tf {x * PT_PER_MM:.4f} {(H - t.y) * PT_PER_MM:.4f} Td "
                   f"{_pdf_string(t.text)} Tj ET")
    content = ("\n".join(ops) + "\n").encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R /ViewerPreferences << /PrintScaling /None >> >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {W * PT_PER_MM:.4f} {H * PT_PER_MM:.4f}] "
         f"/Resources << /Font << /F1 4 0 R /F2 5 0 R >> >> /Contents 6 0 R >>").encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"endstream",
        f"<< /Title {_pdf_string(title)} /Producer (Twin) >>".encode("latin-1"),
    ]
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for k, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % k + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1, len(objects), xref)
    return bytes(out)


def png_bytes(sheet: Sheet, dpi: int) -> bytes:
    """The page rasterised at `dpi` (8-bit grey, pHYs set so printing programs know the physical size).

    Every edge is rounded to the nearest pixel on its own, so neighbouring modules share edges exactly and the
    black square's side is within half a pixel of size * dpi / 25.4 mm.
    """
    import io

    from PIL import Image, ImageDraw, ImageFont

    def px(mm: float) -> int:
        return round(mm / MM_PER_INCH * dpi)

    W, H = sheet.page
    img = Image.new("L", (px(W), px(H)), 255)
    draw = ImageDraw.Draw(img)
    for r in sheet.cells + sheet.ruler:
        x0, y0 = px(r.x), px(r.y)
        x1, y1 = max(px(r.x + r.w), x0 + 1), max(px(r.y + r.h), y0 + 1)  # hairlines stay one pixel wide
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=0)
    fonts: dict[float, object] = {}
    for t in sheet.texts:
        size = max(1, round(t.pt / 72.0 * dpi))
        font = fonts.setdefault(size, ImageFont.load_default(size=size))
        draw.text((px(t.x), px(t.y)), t.text, fill=0, font=font, anchor="ms" if t.centred else "ls")
    buf = io.BytesIO()
    img.save(buf, format="PNG", dpi=(dpi, dpi), optimize=True)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- the verb

def _check_out(out: Path) -> str:
    """The output format from the suffix, after checking that the file can be written there."""
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("pdf", "png"):
        raise InputError(f"--out must end in .pdf or .png, got {out.name or str(out)!r}")
    if out.is_dir():
        raise InputError(f"--out {out} is a directory; give a file name ending in .{fmt}")
    parent = out.resolve().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"cannot write {out}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {out}: {parent} is not writable")
    return fmt


def write_marker_sheet(cfg: MarkerConfig) -> dict:
    """Validate every option, lay the page out and write it atomically; returns what was written."""
    from spatial.bundle_files import atomic_write_bytes

    fmt = _check_out(Path(cfg.out))
    if not (isinstance(cfg.size, (int, float)) and math.isfinite(cfg.size) and cfg.size > 0):
        raise InputError(f"--size must be a positive number of metres, got {cfg.size}")
    if cfg.dictionary not in DICTIONARIES:
        raise InputError(f"--dictionary must be one of {', '.join(DICTIONARIES)}, got {cfg.dictionary!r}")
    if cfg.paper not in PAPERS_MM:
        raise InputError(f"--paper must be one of {', '.join(PAPERS_MM)}, got {cfg.paper!r}")
    count = dictionary_size(cfg.dictionary)
    if not 0 <= cfg.marker_id < count:
        raise InputError(f"--id must be in 0..{count - 1} for {cfg.dictionary}, got {cfg.marker_id}")
    sheet = layout(cfg.size, cfg.paper, cfg.dictionary, cfg.marker_id)
    side_mm = sheet.marker.w
    module_mm = side_mm / sheet.modules
    result = {"path": str(cfg.out), "format": fmt, "paper": cfg.paper, "page_mm": list(sheet.page),
              "size_m": cfg.size, "dictionary": cfg.dictionary, "id": cfg.marker_id,
              "side_mm": round(side_mm, 4), "module_mm": round(module_mm, 4)}
    if fmt == "png":
        if not 50 <= cfg.dpi <= 2400:
            raise InputError(f"--dpi must be in 50..2400, got {cfg.dpi}")
        module_px = module_mm / MM_PER_INCH * cfg.dpi
        if module_px < MIN_MODULE_PX:
            raise InputError(f"at --dpi {cfg.dpi} a marker module is {module_px:.1f} px (under {MIN_MODULE_PX}): "
                             "raise --dpi or --size")
        data = png_bytes(sheet, cfg.dpi)
        result.update(dpi=cfg.dpi, side_px=round(side_mm / MM_PER_INCH * cfg.dpi, 2))
    else:
        data = pdf_bytes(sheet, f"Twin marker {cfg.dictionary} id {cfg.marker_id}, {side_mm:.1f} mm")
    atomic_write_bytes(cfg.out, data)
    result["bytes"] = len(data)
    return result


def run_marker(cfg: MarkerConfig, json_out: bool = False) -> int:
    """The `twin capture marker` verb."""
    r = write_marker_sheet(cfg)
    info(f"wrote {r['path']}: {r['dictionary']} id {r['id']}, black square {r['side_mm']:.1f} mm on "
         f"{r['paper'].upper()}; print at 100 %, check the 100 mm bar, then pass --marker-size {cfg.size:g}")
    if json_out:
        emit_json(r)
    return 0
