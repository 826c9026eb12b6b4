"""`faceswap report`: one self-contained HTML page about two face sets (and a run).

    gather(A, B, target, run)  -> numbers (JSON-able; also written as report.json) + arrays
    render(numbers, arrays)    -> HTML: PNG plots embedded as base64 data URIs, so the page is
                                  one file that opens anywhere, offline
    recommend(numbers)         -> the plain-language advice at the top (recommend.py)

Sections: pose coverage (yaw x pitch heat maps of A and B; the target's poses they do not cover
and its frames outside them), blur and lighting histograms, identity spread with the farthest
faces as thumbnails, near-duplicates, and for a run the loss and LR curves with the overfitting
marker, the latest preview grid and the `faceswap evaluate` numbers.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import html
import io
import json
import logging
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any

import cv2
import numpy as np
import yaml

from faceswap import __version__
from faceswap.config import option
from faceswap.curate import find_duplicates
from faceswap.errors import BadInput
from faceswap.evaluate import coverage, identity
from faceswap.evaluate.metrics import summarize
from faceswap.evaluate.recommend import BLUR_FLOOR, SAME_PERSON, recommend
from faceswap.extract.masks import landmark_mask
from faceswap.faceset import FaceSet, atomic_write_text

log = logging.getLogger(__name__)

# One colour per face set in every plot (the screenshot test looks for them).
COLORS = {"A": "#1f77b4", "B": "#ff7f0e", "target": "#2ca02c"}
CMAPS = {"A": "Blues", "B": "Oranges", "target": "Greens"}
WARN = "#d62728"
OOD_ROWS = 10  # out-of-coverage target faces listed on the page (report.json has all)


@dataclass
class ReportConfig:
    """Settings of `faceswap report`."""

    bin_degrees: float = option(10.0, "yaw/pitch bin size of the coverage heat maps (degrees)")
    radius: float = option(10.0, "a target pose is covered if min_faces faces are this close (deg)")
    min_faces: int = option(3, "faces within radius that make a pose covered")
    identity_sample: int = option(200, "faces embedded per set when the set has no embeddings")
    lighting_sample: int = option(2000, "faces per set whose brightness is measured (at most)")
    outliers: int = option(8, "identity outlier thumbnails shown per set")
    thumbnail: int = option(96, "thumbnail side in pixels")

    def __post_init__(self) -> None:
        if not 1.0 <= self.bin_degrees <= 45.0:
            raise ValueError("bin_degrees must be between 1 and 45")
        if not 0.0 < self.radius <= 90.0:
            raise ValueError("radius must be in (0, 90]")
        if self.min_faces < 1:
            raise ValueError("min_faces must be >= 1")
        for name in ("identity_sample", "lighting_sample", "outliers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if not 16 <= self.thumbnail <= 512:
            raise ValueError("thumbnail must be between 16 and 512")


# ---- numbers -----------------------------------------------------------------------------


def _spread(n: int, k: int) -> list[int]:
    """k indices out of range(n), evenly spread (all of them when k >= n)."""
    if k >= n:
        return list(range(n))
    return np.linspace(0, n - 1, k).round().astype(int).tolist() if k > 0 else []


def lighting(fs: FaceSet, indices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per face: brightness (mean grey level 0-255 inside the landmark hull) and left-right
    balance ((left - right) / (left + right) of the hull's two halves in the image, so > 0
    means light from the image's left)."""
    bright = np.zeros(len(indices))
    balance = np.zeros(len(indices))
    for k, i in enumerate(indices):
        face = fs.faces[i]
        gray = cv2.cvtColor(fs.load_image(face), cv2.COLOR_BGR2GRAY).astype(np.float64)
        mask = landmark_mask(face.aligned_landmarks(), fs.size, "hull") > 0.5  # (S, S)
        if mask.sum() < 16:
            mask = np.ones_like(mask)
        half = np.arange(fs.size)[None, :] < fs.size / 2  # (1, S): the image's left half
        left, right = gray[mask & half], gray[mask & ~half]
        bright[k] = gray[mask].mean()
        lm, rm = (left.mean() if left.size else 0.0), (right.mean() if right.size else 0.0)
        balance[k] = (lm - rm) / max(lm + rm, 1e-6)
    return bright, balance


def _embeddings(fs: FaceSet, cfg: ReportConfig, analyzer) -> tuple[np.ndarray, list[int], bool]:
    """(K, 128) embeddings, their face indices, and whether they were computed here (the set
    stores none: a sample of identity_sample faces is embedded)."""
    emb, idx = fs.embeddings()
    if idx or cfg.identity_sample == 0:
        return emb, idx, False
    idx = _spread(len(fs.faces), cfg.identity_sample)
    if not idx:
        return np.zeros((0, 128), np.float32), [], False
    crops = np.stack([fs.load_image(fs.faces[i])[..., ::-1] for i in idx])  # (K, S, S, 3) RGB
    lms = np.stack([fs.faces[i].aligned_landmarks() for i in idx])  # (K, 68, 2)
    return analyzer().embed_known(crops, lms), idx, True


def profile(fs: FaceSet, cfg: ReportConfig, analyzer) -> tuple[dict[str, Any], dict[str, Any]]:
    """(numbers, arrays) of one face set: pose, blur, lighting, identity spread, duplicates."""
    poses = coverage.poses_of(fs)
    mouths = coverage.mouths_of(fs)
    blur = np.asarray([f.blur for f in fs.faces], np.float64)
    light_idx = _spread(len(fs.faces), cfg.lighting_sample)
    bright, balance = lighting(fs, light_idx)
    numbers: dict[str, Any] = {
        "path": str(fs.root),
        "faces": len(fs.faces),
        "size": fs.size,
        "centering": fs.centering,
        "yaw": summarize(poses[:, 0]),
        "pitch": summarize(poses[:, 1]),
        "yaw_extent": coverage.extent(poses[:, 0], cfg.min_faces),
        "pitch_extent": coverage.extent(poses[:, 1], cfg.min_faces),
        "mouth": summarize(mouths),
        "mouth_extent": coverage.extent(mouths, cfg.min_faces),
        "blur": summarize(blur),
        "blurry": int((blur < BLUR_FLOOR).sum()),
        "brightness": summarize(bright),
        "balance": summarize(balance),
        "near_duplicates": len(find_duplicates(fs)) if len(fs.faces) > 1 else 0,
        "identity": None,
    }
    arrays: dict[str, Any] = {"poses": poses, "mouths": mouths, "blur": blur, "brightness": bright,
                              "balance": balance, "identity": None, "outliers": []}  # fmt: skip
    emb, idx, computed = _embeddings(fs, cfg, analyzer)
    if len(idx) >= 2:
        c = identity.centroid(emb)
        d = np.linalg.norm(emb.astype(np.float64) - c, axis=1)
        order = np.argsort(-d, kind="stable")[: cfg.outliers]
        outliers = [(fs.faces[idx[j]], float(d[j])) for j in order]
        numbers["identity"] = {
            "embedded": len(idx),
            "computed": computed,
            "distance": summarize(d),
            "beyond": int((d > SAME_PERSON).sum()),
            "outliers": [{"name": f.name, "distance": round(v, 4)} for f, v in outliers],
        }
        arrays.update(identity=d, outliers=outliers, centroid=c)
    return numbers, arrays


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """Rows of RUN/metrics.jsonl (JSON or YAML flow mappings, one per line), by step; a step
    logged twice (a resumed or rolled-back run) keeps its last row."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    rows: dict[int, dict[str, Any]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = yaml.safe_load(line)
        except yaml.YAMLError:
            log.warning("%s line %d is not readable; skipped", path, n)
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows[row["step"]] = row
    return [rows[s] for s in sorted(rows)]


def _checkpoint_step(run_dir: Path) -> int:
    from faceswap.train.checkpoint import latest_checkpoint

    latest = latest_checkpoint(run_dir)
    try:
        return int(latest.name.rsplit("-", 1)[-1]) if latest is not None else 0
    except ValueError:
        return 0


def run_numbers(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(numbers, arrays) of a run: loss history, overfitting events, best step, LR curve, the
    latest evaluation and preview. Overfitting events are recomputed from the history with the
    trainer's own monitor, and the LR (unless the rows carry it) from the run's schedule with
    its plateau reductions; NaN rollbacks, which also lower the LR, are not in the history and
    not shown."""
    from faceswap.train.monitor import MonitorState, event_kind, monitor_update
    from faceswap.train.schedules import PlateauState, lr_at, plateau_update, resolve
    from faceswap.train.trainer import read_run_config

    cfg = read_run_config(run_dir)
    schedule = resolve(cfg.schedule, cfg.steps)  # runs whose rows carry no LR ran by steps
    rows = read_metrics(run_dir)
    state, plateau = MonitorState(), PlateauState()
    overfit: list[dict[str, Any]] = []
    scale_from: list[tuple[int, float]] = [(0, 1.0)]  # (step, plateau scale from then on)
    for r in rows:
        val = (float(r.get("val_a", math.nan)) + float(r.get("val_b", math.nan))) / 2
        state, events = monitor_update(state, r["step"], float(r.get("train", math.nan)), val,
                                       cfg.overfit_evals)  # fmt: skip
        overfit += [{"step": r["step"], "message": e} for e in events
                    if event_kind(e) == "overfitting"]  # fmt: skip
        if schedule.name == "plateau":
            plateau = plateau_update(schedule, plateau, val)
            scale_from.append((r["step"], plateau.scale))
    last = rows[-1]["step"] if rows else 0
    steps = np.unique(np.linspace(0, max(last, 1), min(max(last, 1) + 1, 400)).astype(int))
    if rows and all("lr" in r for r in rows):
        lr_steps, lrs = [r["step"] for r in rows], [float(r["lr"]) for r in rows]
    else:
        lr_steps = steps.tolist()
        lrs = [lr_at(schedule, int(s), [sc for st, sc in scale_from if st <= s][-1])
               for s in steps]  # fmt: skip
    evaluation = None
    ev_path = run_dir / "evaluation.json"
    if ev_path.is_file():
        try:
            evaluation = json.loads(ev_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            log.warning("%s is not valid JSON; the evaluation is left out", ev_path)
    preview = run_dir / "preview.png"
    numbers = {
        "path": str(run_dir),
        "model": f"{cfg.model.arch} {cfg.model.resolution}px",
        "evaluations": len(rows),
        "last_val_step": last,
        # where the run is: its latest checkpoint, which may be past its last validation
        "last_step": max(last, _checkpoint_step(run_dir)),
        "best_step": state.best_step if state.best_step >= 0 else None,
        "best_val": state.best_val if math.isfinite(state.best_val) else None,
        "final": {k: rows[-1].get(k) for k in ("train", "val_a", "val_b", "gap")} if rows else None,
        "overfitting": overfit,
        "evaluation": evaluation,
    }
    arrays = {"rows": rows, "lr_steps": lr_steps, "lrs": lrs,
              "preview": preview.read_bytes() if preview.is_file() else None}  # fmt: skip
    return numbers, arrays


def gather(
    fs_a: FaceSet,
    fs_b: FaceSet,
    target: FaceSet | None = None,
    run_dir: Path | None = None,
    cfg: ReportConfig | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """All numbers of the report (JSON-able, with recommendations) and the arrays to plot."""
    cfg = cfg or ReportConfig()
    made: list[Any] = []

    def analyzer():  # dlib's models load only when a set needs embedding
        if not made:
            from faceswap.evaluate.analyze import CropAnalyzer

            made.append(CropAnalyzer(fs_a.centering, embed=True))
        return made[0]

    sets = {"A": fs_a, "B": fs_b, **({"target": target} if target is not None else {})}
    numbers: dict[str, Any] = {"tool": f"faceswap {__version__}",
                               "created": _dt.datetime.now(_dt.timezone.utc).isoformat(
                                   timespec="seconds"),
                               "config": dataclasses.asdict(cfg), "sets": {}}  # fmt: skip
    arrays: dict[str, Any] = {"sets": {}}
    for name, fs in sets.items():
        numbers["sets"][name], arrays["sets"][name] = profile(fs, cfg, analyzer)
    cents = {k: a["centroid"] for k, a in arrays["sets"].items() if "centroid" in a}
    numbers["identity_gap"] = identity.centroid_gap({k: cents[k] for k in ("A", "B") if k in cents})
    numbers["coverage"] = numbers["mouth_coverage"] = None
    if target is not None:
        train = {k: arrays["sets"][k]["poses"] for k in ("A", "B")}
        own = {"A": coverage.members(fs_a, target), "B": coverage.members(fs_b, target)}
        numbers["coverage"] = coverage.ood_target(train, target, cfg.radius, cfg.min_faces, own)
        mouths = arrays["sets"]["target"]["mouths"]
        numbers["mouth_coverage"] = {
            k: coverage.mouth_gaps(arrays["sets"][k]["mouths"], mouths, own[k], cfg.min_faces)
            for k in ("A", "B")
        }
    numbers["run"] = None
    if run_dir is not None:
        numbers["run"], arrays["run"] = run_numbers(run_dir)
    numbers["recommendations"] = recommend(numbers)
    return numbers, arrays


# ---- plots -------------------------------------------------------------------------------


def _figure(w: float, h: float):
    # the object API, not pyplot: no global backend or state, safe in any process
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def plot_coverage(arrays: dict[str, Any], numbers: dict[str, Any], cfg: ReportConfig) -> bytes:
    """Yaw x pitch heat maps of A and B (and the target, with the A/B coverage outlines and its
    uncovered faces as red crosses)."""
    names = [n for n in ("A", "B", "target") if n in arrays["sets"]]
    fig = _figure(4.6 * len(names), 3.8)
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    yy, pp = np.meshgrid(np.arange(-90, 90.1, 2.0), np.arange(-60, 60.1, 2.0))
    grid = np.stack([yy.ravel(), pp.ravel()], 1)
    for ax, name in zip(axes, names):
        poses = arrays["sets"][name]["poses"]
        counts, ye, pe = coverage.heatmap(poses, cfg.bin_degrees)
        img = ax.imshow(np.ma.masked_equal(counts, 0), origin="lower", aspect="auto",
                        extent=(ye[0], ye[-1], pe[0], pe[-1]), cmap=CMAPS[name],
                        vmin=0, interpolation="nearest")  # fmt: skip
        fig.colorbar(img, ax=ax, label="faces", shrink=0.85)
        ax.set_title(f"{name}: {len(poses)} faces")
        ax.set_xlabel("yaw (degrees, + = towards image right)")
        ax.set_ylabel("pitch (degrees, + = up)")
        ax.grid(True, color="#ccc", linewidth=0.5)
        ax.set_facecolor("#fbfbfb")
        if name == "target":
            for train in ("A", "B"):
                cov = coverage.covered(arrays["sets"][train]["poses"], grid, cfg.radius,
                                       cfg.min_faces).reshape(yy.shape)  # fmt: skip
                if cov.any() and not cov.all():
                    ax.contour(yy, pp, cov.astype(float), levels=[0.5], colors=COLORS[train],
                               linewidths=1.5)  # fmt: skip
            out = numbers["coverage"]["outside"]
            if out:
                ax.scatter([o["yaw"] for o in out], [o["pitch"] for o in out], marker="x",
                           color=WARN, s=18, linewidths=1, label="outside A/B coverage")  # fmt: skip
                ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def plot_quality(arrays: dict[str, Any]) -> bytes:
    """Histograms of blur (log scale), brightness and left-right light balance per set."""
    fig = _figure(13.5, 3.4)
    axes = fig.subplots(1, 3)
    sets = arrays["sets"]
    blur_all = np.concatenate([s["blur"] for s in sets.values()])
    hi = max(float(np.max(blur_all)) if blur_all.size else 10.0, 20.0)
    bins = np.geomspace(1.0, hi * 1.05, 40)
    specs = [("blur", bins, "blur (variance of Laplacian, log)"),
             ("brightness", np.linspace(0, 255, 40), "face brightness (0-255)"),
             ("balance", np.linspace(-0.5, 0.5, 40), "light balance (+ = lit from image left)")]  # fmt: skip
    for ax, (key, b, label) in zip(axes, specs):
        for name, s in sets.items():
            v = np.clip(s[key], b[0], b[-1])
            ax.hist(v, bins=b, color=COLORS[name], alpha=0.55, label=name, histtype="stepfilled")
        ax.set_xlabel(label)
        ax.set_ylabel("faces")
        ax.legend(fontsize=8)
    axes[0].set_xscale("log")
    axes[0].axvline(BLUR_FLOOR, color=WARN, linestyle="--", linewidth=1)
    return _png(fig)


def plot_identity(arrays: dict[str, Any]) -> bytes | None:
    sets = {k: s for k, s in arrays["sets"].items() if s["identity"] is not None}
    if not sets:
        return None
    fig = _figure(6.5, 3.2)
    ax = fig.subplots()
    top = max(0.9, max(float(s["identity"].max()) for s in sets.values()) * 1.05)
    bins = np.linspace(0, top, 40)
    for name, s in sets.items():
        ax.hist(s["identity"], bins=bins, color=COLORS[name], alpha=0.55, label=name,
                histtype="stepfilled")  # fmt: skip
    ax.axvline(SAME_PERSON, color=WARN, linestyle="--", linewidth=1, label="0.6: another person")
    ax.set_xlabel("embedding distance to the set's typical face")
    ax.set_ylabel("faces")
    ax.legend(fontsize=8)
    return _png(fig)


def plot_training(numbers: dict[str, Any], arrays: dict[str, Any]) -> bytes | None:
    rows = arrays["rows"]
    if not rows:
        return None
    fig = _figure(13.5, 3.4)
    ax, axl = fig.subplots(1, 2)
    steps = [r["step"] for r in rows]
    for key, color, label in (("train", "#555555", "train"), ("val_a", COLORS["A"], "validation A"),
                              ("val_b", COLORS["B"], "validation B")):  # fmt: skip
        ax.plot(steps, [r.get(key, math.nan) for r in rows], color=color, label=label, marker=".")
    for ev in numbers["overfitting"]:
        ax.axvline(ev["step"], color=WARN, linestyle="--", linewidth=1.2)
        ax.annotate("overfitting", (ev["step"], 1.0), xycoords=("data", "axes fraction"),
                    color=WARN, ha="right", va="top", rotation=90, fontsize=9)  # fmt: skip
    if numbers["best_step"] is not None:
        ax.axvline(numbers["best_step"], color="#2ca02c", linestyle=":", linewidth=1.2,
                   label=f"best (step {numbers['best_step']})")  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    axl.plot(arrays["lr_steps"], arrays["lrs"], color="#9467bd")
    if min(arrays["lrs"], default=0) > 0:
        axl.set_yscale("log")
    axl.set_xlabel("step")
    axl.set_ylabel("learning rate")
    return _png(fig)


# ---- HTML --------------------------------------------------------------------------------


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 24:
        raise ValueError("not a PNG")
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _img(png: bytes, alt: str, cls: str = "plot", width: int | None = None,
         title: str | None = None) -> str:  # fmt: skip
    """An <img> with the PNG inline (base64 data URI) and its size, shown `width` px wide
    (its own width by default; CSS scales it down to the page)."""
    w, h = png_size(png)
    shown = width or w
    data = base64.b64encode(png).decode("ascii")
    tip = f' title="{html.escape(title)}"' if title else ""
    return (f'<img class="{cls}" alt="{html.escape(alt)}" width="{shown}" '
            f'height="{round(h * shown / w)}"{tip} src="data:image/png;base64,{data}">')  # fmt: skip


def preview_width(png: bytes, target: int = 768, most: int = 1000) -> int:
    """Display width that enlarges a small preview (64 px faces) by a whole factor and keeps a
    large one within `most` px."""
    w, _ = png_size(png)
    return min(most, w * max(1, target // w))


def _thumb(fs_img: np.ndarray, size: int) -> bytes:
    small = cv2.resize(fs_img, (size, size), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", small)
    return buf.tobytes() if ok else b""


def _fmt(v: Any, digits: int | None = None) -> str:
    """A table cell: floats with `digits` decimals, or 1 from 10 up, 2 from 1, 4 below."""
    if v is None:
        return "–"
    if isinstance(v, float):
        if digits is not None:
            return f"{v:.{digits}f}"
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}" if abs(v) >= 1 else f"{v:.4f}"
    return html.escape(str(v))


def _table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _stat(d: dict[str, Any] | None, key: str = "median") -> Any:
    return None if not d else d.get(key)


def _percent(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _coverage_html(numbers: dict[str, Any], png: bytes) -> str:
    parts = ["<h2 id='coverage'>Pose and mouth coverage</h2>", _img(png, "yaw x pitch coverage")]
    sets = numbers["sets"]
    rows = [[k, s["faces"], *(s["yaw_extent"] or (None, None)), *(s["pitch_extent"] or (None, None)),
             *(_percent(v) for v in s.get("mouth_extent") or (None, None))]
            for k, s in sets.items()]  # fmt: skip
    parts.append(_table(["set", "faces", "yaw from", "yaw to", "pitch from", "pitch to",
                         "mouth from", "mouth to"], rows))  # fmt: skip
    k = numbers["config"]["min_faces"] - 1
    parts.append("<p class='note'>Mouth: the inner-lip gap in % of the face height (0 = closed). "
                 f"Every range leaves out the {k} most extreme faces at each end.</p>")  # fmt: skip
    for name, gaps in (numbers.get("mouth_coverage") or {}).items():
        for g in gaps:
            what = "more closed" if g["side"] < 0 else "wider open"
            parts.append(f"<p>Mouth {what} than {name} shows: <b>{100 * g['share']:.1f}%</b> "
                         f"of the target ({g['faces']} faces).</p>")  # fmt: skip
    cov = numbers["coverage"]
    if cov:
        miss = ", ".join(f"{k} misses {100 * (v['share'] or 0):.1f}%"
                         for k, v in cov["sets"].items())  # fmt: skip
        parts.append(
            f"<p>{cov['faces']} target faces; a set covers a pose where it has "
            f"{cov['min_faces']} faces within {cov['radius']:g} degrees (or the face is its own). "
            f"Not covered by A or not by B: <b>{100 * (cov['outside_share'] or 0):.1f}%</b> "
            f"({len(cov['outside'])} faces; {miss}).</p>"
        )
        spans = "; ".join(f"{html.escape(k)}: " + ", ".join(f"{a}-{b}" if a != b else str(a)
                          for a, b in v) for k, v in cov["outside_spans"].items())  # fmt: skip
        if spans:
            parts.append(f"<p class='note'>Frames outside the coverage: {spans}</p>")
        rows = [[o["name"], o["frame"], o["yaw"], o["pitch"], ", ".join(o["missing_in"])]
                for o in cov["outside"][:OOD_ROWS]]  # fmt: skip
        if rows:
            parts.append(_table(["face", "frame", "yaw", "pitch", "not covered by"], rows))
            if len(cov["outside"]) > OOD_ROWS:
                parts.append(f"<p class='note'>... and {len(cov['outside']) - OOD_ROWS} more "
                             "(report.json lists all)</p>")  # fmt: skip
    else:
        parts.append("<p class='note'>Give --target FACESET (the clip you will convert) to see "
                     "which of its frames fall outside A's and B's poses.</p>")  # fmt: skip
    return "\n".join(parts)


def _quality_html(numbers: dict[str, Any], png: bytes) -> str:
    rows = []
    for k, s in numbers["sets"].items():
        rows.append([k, s["faces"], _stat(s["blur"]), s["blurry"], _stat(s["brightness"]),
                     _stat(s["balance"]), s["near_duplicates"]])  # fmt: skip
    return "\n".join([
        "<h2 id='quality'>Blur, lighting and duplicates</h2>", _img(png, "blur and lighting"),
        _table(["set", "faces", "median blur", f"blurry (< {BLUR_FLOOR:g})", "median brightness",
                "median balance", "near-duplicates"], rows),
    ])  # fmt: skip


def _identity_html(numbers: dict[str, Any], arrays: dict[str, Any], png: bytes | None,
                   cfg: ReportConfig, sets: dict[str, FaceSet]) -> str:  # fmt: skip
    parts = ["<h2 id='identity'>Identity spread</h2>"]
    if png is None:
        parts.append("<p class='note'>No embeddings (the sets store none and identity_sample "
                     "is 0).</p>")  # fmt: skip
        return "\n".join(parts)
    parts.append(_img(png, "identity spread"))
    gap = numbers.get("identity_gap", {}).get("A-B")
    if gap is not None:
        verdict = ("two different people to dlib" if gap > SAME_PERSON
                   else f"below {SAME_PERSON}: dlib takes them for one person")  # fmt: skip
        parts.append(f"<p>Distance between A's and B's typical faces: <b>{gap:.3f}</b> "
                     f"({verdict}).</p>")  # fmt: skip
    for name, a in arrays["sets"].items():
        if not a["outliers"] or name == "target":  # outliers matter in the training sets
            continue
        fs = sets[name]
        n = numbers["sets"][name]["identity"]
        parts.append(f"<h3>{html.escape(name)}: the {len(a['outliers'])} faces farthest from "
                     f"its typical face ({n['beyond']} of {n['embedded']} beyond "
                     f"{SAME_PERSON})</h3><div class='thumbs'>")  # fmt: skip
        for face, d in a["outliers"]:
            cls = "far" if d > SAME_PERSON else ""
            img = _img(_thumb(fs.load_image(face), cfg.thumbnail), face.name, cls,
                       title=face.name)  # fmt: skip
            parts.append(f"<figure>{img}<figcaption>{d:.2f}, frame {face.frame}"
                         "</figcaption></figure>")  # fmt: skip
        parts.append("</div>")
    return "\n".join(parts)


def _evaluation_rows(ev: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    rec = ev.get("reconstruction", {})
    for side in ("a", "b"):
        r = rec.get(side)
        if not r:
            continue
        for m in ("psnr", "ssim"):
            rows.append([f"{m.upper()} {side.upper()}->{side.upper()}", _stat(r["train"][m], "mean"),
                         _stat(r["val"][m], "mean"), r["gap"][m]])  # fmt: skip
    return rows


def _training_html(run: dict[str, Any], arrays: dict[str, Any], png: bytes | None) -> str:
    if run["evaluations"]:
        where = (f"{run['evaluations']} validations up to step {run['last_val_step']}; best "
                 f"validation loss {_fmt(run['best_val'], 4)} at step {_fmt(run['best_step'])}")  # fmt: skip
    else:
        where = "no validation yet"
    parts = [f"<h2 id='training'>Training: {html.escape(run['path'])}</h2>",
             f"<p>{html.escape(run['model'])}, at step {run['last_step']}; {where}.</p>"]  # fmt: skip
    if png is not None:
        parts.append(_img(png, "loss and learning rate"))
    else:
        parts.append("<p class='note'>No validation rows in metrics.jsonl yet.</p>")
    if arrays.get("preview"):
        parts.append("<h3>Latest preview (A, A->A, A->B | B, B->B, B->A)</h3>")
        parts.append(
            _img(arrays["preview"], "preview grid", "preview", preview_width(arrays["preview"]))
        )
    ev = run.get("evaluation")
    if ev:
        parts.append(f"<h3>faceswap evaluate (step {_fmt(ev.get('step'))})</h3>")
        parts.append(_table(["reconstruction (masked)", "train", "validation", "gap"],
                            _evaluation_rows(ev)))  # fmt: skip
        ident, pose, expr = ev.get("identity", {}), ev.get("pose", {}), ev.get("expression", {})
        dist = ident.get("distance_to", {})
        rows = [["distance of swaps A->B to B's centroid", _stat(dist.get("b"), "mean")],
                ["distance of swaps A->B to A's centroid", _stat(dist.get("a"), "mean")],
                ["identity retrieval (nearest is B)", ident.get("retrieval")],
                ["swaps in which dlib detects a face", (ev.get("faces_detected") or {}).get("swaps")],
                ["yaw error (degrees)", _stat(pose.get("yaw"), "mean")],
                ["pitch error (degrees)", _stat(pose.get("pitch"), "mean")],
                ["roll error (degrees)", _stat(pose.get("roll"), "mean")],
                ["mouth expression error (IOD)", _stat(expr.get("mouth"), "mean")],
                ["eye expression error (IOD)", _stat(expr.get("eyes"), "mean")]]  # fmt: skip
        tmp = ev.get("temporal")
        if tmp:
            rows += [["jitter swap / source", tmp.get("jitter_ratio")],
                     ["added jitter (IOD)", _stat(tmp.get("added_jitter"), "mean")]]  # fmt: skip
        parts.append(_table(["swap", "value"], rows))
    return "\n".join(parts)


def render(numbers: dict[str, Any], arrays: dict[str, Any], sets: dict[str, FaceSet],
           cfg: ReportConfig) -> str:  # fmt: skip
    """The report page as one HTML string."""
    recs = "".join(f"<li class='{r['level']}'>{html.escape(r['text'])}</li>"
                   for r in numbers["recommendations"])  # fmt: skip
    body = [f"<h2 id='recommendations'>Recommendations</h2><ul class='rec'>{recs}</ul>",
            _coverage_html(numbers, plot_coverage(arrays, numbers, cfg)),
            _quality_html(numbers, plot_quality(arrays)),
            _identity_html(numbers, arrays, plot_identity(arrays), cfg, sets)]  # fmt: skip
    if numbers.get("run"):
        body.append(_training_html(numbers["run"], arrays["run"],
                                   plot_training(numbers["run"], arrays["run"])))  # fmt: skip
    names = ", ".join(f"{k} = {html.escape(s['path'])}" for k, s in numbers["sets"].items())
    template = Template(resources.files("faceswap").joinpath("assets/report.html").read_text())
    return template.substitute(
        title="faceswap report",
        subtitle=f"{names}. Made {html.escape(numbers['created'])} by {numbers['tool']}.",
        body="\n".join(body),
    )


def write_report(
    out_dir: str | Path,
    fs_a: FaceSet,
    fs_b: FaceSet,
    target: FaceSet | None = None,
    run_dir: Path | None = None,
    cfg: ReportConfig | None = None,
) -> dict[str, Any]:
    """Write OUT/report.html and OUT/report.json (each atomically); returns the numbers."""
    cfg = cfg or ReportConfig()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: exists and is not a folder")
    for name, fs in (("A", fs_a), ("B", fs_b), ("target", target)):
        if fs is not None and not fs.faces:
            raise BadInput(f"{fs.root}: face set {name} has no faces")
    numbers, arrays = gather(fs_a, fs_b, target, run_dir, cfg)
    sets = {"A": fs_a, "B": fs_b, **({"target": target} if target is not None else {})}
    page = render(numbers, arrays, sets, cfg)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"{out}: cannot create the report folder ({exc.strerror})") from None
    atomic_write_text(out / "report.json", json.dumps(numbers, indent=1) + "\n")
    atomic_write_text(out / "report.html", page)
    return numbers
