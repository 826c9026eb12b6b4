"""Plain-language recommendations from the report's numbers.

`recommend(numbers)` is a pure function of the JSON the report writes (report.py `gather`), so
every sentence can be traced to a number. Each recommendation is {"level": "warn" | "info",
"topic": ..., "text": ...}; warnings first.
"""

from __future__ import annotations

from typing import Any

# thresholds, in the units of the numbers they judge
MIN_FACES = 300  # fewer faces than this rarely generalize
BLURRY_SHARE = 0.05  # share of faces with blur below BLUR_FLOOR
BLUR_FLOOR = 10.0  # Laplacian variance (docs/faceset.md: below ~10 is smeared)
GAP_SHARE = 0.05  # share of the target beyond a set's pose extent worth a warning
OUTSIDE_SHARE = 0.10  # share of target faces outside the coverage
BRIGHTNESS_GAP = 40.0  # difference of median face brightness (0-255)
DUPLICATE_SHARE = 0.2
EXTENT_GAP = 15.0  # degrees: A turns this much further than B
SAME_PERSON = 0.6
RETRIEVAL_LOW = 0.5
PSNR_GAP = 2.0  # dB train minus validation
POSE_ERROR = 10.0  # degrees, mean
JITTER_RATIO = 1.5
FACES_DETECTED = 0.5  # share of swaps in which dlib's detector finds a face

_DIRECTION = {("yaw", 1): "turned towards the image's right", ("yaw", -1): "turned towards the "
              "image's left", ("pitch", 1): "looking up", ("pitch", -1): "looking down"}  # fmt: skip


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _spans(spans: dict[str, list[list[int]]], limit: int = 6) -> str:
    parts = [f"{a}-{b}" if a != b else f"{a}" for v in spans.values() for a, b in v]
    more = f" and {len(parts) - limit} more" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more


def _sets(numbers: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(k, v) for k, v in numbers.get("sets", {}).items() if k in ("A", "B")]


def _coverage(numbers: dict[str, Any], out: list[dict[str, str]]) -> None:
    cov = numbers.get("coverage")
    sets = numbers.get("sets", {})
    if cov:
        for name in ("B", "A"):
            role = ("decoder B cannot draw these poses" if name == "B" else
                    "the encoder and decoder A have not seen these poses")  # fmt: skip
            for g in cov["sets"].get(name, {}).get("gaps", []):
                if g["share"] < GAP_SHARE:
                    continue
                where = "beyond" if g["side"] > 0 else "below"
                out.append({"level": "warn", "topic": "pose", "text": (
                    f"{_pct(g['share'])} of the target clip ({g['faces']} faces) is {where} "
                    f"{g['limit']:+.0f} degrees {g['axis']}, where {name} has fewer than "
                    f"{cov['min_faces']} faces to cover it. Add {name} footage with the head "
                    f"{_DIRECTION[(g['axis'], g['side'])]}: {role}.")})  # fmt: skip
        if cov.get("outside_share") and cov["outside_share"] >= OUTSIDE_SHARE:
            miss = ", ".join(f"{k} {_pct(v['share'] or 0)}" for k, v in cov["sets"].items())
            out.append({"level": "warn", "topic": "pose", "text": (
                f"{_pct(cov['outside_share'])} of the target faces have poses that A or B does "
                f"not cover (not covered by {miss}; frames {_spans(cov['outside_spans'])}); "
                "expect weak swaps there.")})  # fmt: skip
        return
    a, b = sets.get("A", {}), sets.get("B", {})
    for axis in ("yaw", "pitch"):
        ea, eb = a.get(f"{axis}_extent"), b.get(f"{axis}_extent")
        if not ea or not eb:
            continue
        for side, i in ((-1, 0), (1, 1)):
            if side * (ea[i] - eb[i]) > EXTENT_GAP:
                out.append({"level": "warn", "topic": "pose", "text": (
                    f"A reaches {ea[i]:+.0f} degrees {axis} but B only {eb[i]:+.0f}: swaps of A "
                    f"{_DIRECTION[(axis, side)]} beyond that will be weak. Add B footage that "
                    "turns as far, or give --target to see how much of the clip is affected.")})  # fmt: skip


def _mouth_coverage(numbers: dict[str, Any], out: list[dict[str, str]]) -> None:
    for name, gaps in (numbers.get("mouth_coverage") or {}).items():
        draws = (f"decoder {name} draws its nearest mouth there instead" if name == "B" else
                 "the encoder and decoder A have not learned these mouths")  # fmt: skip
        for g in gaps:
            if g["share"] < GAP_SHARE:
                continue
            gap = f"{100 * g['limit']:.1f}% of the face height"
            if g["side"] < 0:
                what, why, want = (
                    "more closed",
                    f"its most closed faces still part the lips by {gap}",
                    "closed",
                )
            else:
                what, why, want = "wider open", f"its widest opens {gap}", "open as wide"
            out.append({"level": "warn", "topic": "expression", "text": (
                f"{_pct(g['share'])} of the target clip ({g['faces']} faces) has the mouth "
                f"{what} than {name}'s face set ever shows ({why}): {draws}. Add {name} "
                f"footage with the mouth {want}.")})  # fmt: skip


def _facesets(numbers: dict[str, Any], out: list[dict[str, str]]) -> None:
    sets = dict(_sets(numbers))
    for name, s in sets.items():
        if s["faces"] < MIN_FACES:
            out.append({"level": "warn", "topic": "data", "text": (
                f"{name} has only {s['faces']} faces; a model generalizes from a thousand or "
                "more varied faces (several clips, lighting, expressions).")})  # fmt: skip
        if s["faces"] and s.get("blurry", 0) / s["faces"] >= BLURRY_SHARE:
            out.append({"level": "warn", "topic": "data", "text": (
                f"{_pct(s['blurry'] / s['faces'])} of {name}'s faces are blurry (blur below "
                f"{BLUR_FLOOR:g}); take them out: faceswap faceset filter {s['path']} --auto")})  # fmt: skip
        ident = s.get("identity") or {}
        if ident.get("beyond"):
            out.append({"level": "warn", "topic": "identity", "text": (
                f"{ident['beyond']} of {ident['embedded']} embedded faces of {name} are more "
                f"than {SAME_PERSON} from its typical face: other people or bad crops (see the "
                f"thumbnails); faceswap faceset filter {s['path']} --auto")})  # fmt: skip
        if ident.get("computed"):
            out.append({"level": "info", "topic": "identity", "text": (
                f"{name} has no stored embeddings: identity spread is from "
                f"{ident['embedded']} faces embedded for this report.")})  # fmt: skip
        if s["faces"] and s.get("near_duplicates", 0) / s["faces"] >= DUPLICATE_SHARE:
            out.append({"level": "info", "topic": "data", "text": (
                f"{_pct(s['near_duplicates'] / s['faces'])} of {name}'s faces are near-duplicates "
                f"(they add time, not variety): faceswap faceset dedupe {s['path']}")})  # fmt: skip
    if "A" in sets and "B" in sets:
        ba, bb = sets["A"]["brightness"]["median"], sets["B"]["brightness"]["median"]
        if ba is not None and bb is not None and abs(ba - bb) >= BRIGHTNESS_GAP:
            darker, brighter = ("A", "B") if ba < bb else ("B", "A")
            out.append({"level": "info", "topic": "lighting", "text": (
                f"{darker}'s faces are much darker than {brighter}'s (median brightness "
                f"{min(ba, bb):.0f} vs {max(ba, bb):.0f} of 255): colour matching in convert "
                "has more to correct; footage in similar light helps.")})  # fmt: skip
    gap = numbers.get("identity_gap", {}).get("A-B")
    if gap is not None and gap < SAME_PERSON:
        out.append({"level": "info", "topic": "identity", "text": (
            f"dlib's embeddings put A and B {gap:.2f} apart (below {SAME_PERSON}: one person to "
            "it), so identity numbers cannot tell a swap from the original.")})  # fmt: skip


def _run(numbers: dict[str, Any], out: list[dict[str, str]]) -> None:
    run = numbers.get("run")
    if not run:
        return
    for ev in run.get("overfitting", []):
        best = run.get("best_step")
        out.append({"level": "warn", "topic": "training", "text": (
            f"Overfitting from step {ev['step']}: the validation loss rose while the training "
            f"loss fell. Use checkpoints/best (step {best}), add more varied faces, or raise "
            "augmentation.")})  # fmt: skip
    ev = run.get("evaluation")
    if not ev:
        return
    for side in ("a", "b"):
        g = ev.get("reconstruction", {}).get(side, {}).get("gap", {}).get("psnr")
        if g is not None and g > PSNR_GAP:
            out.append({"level": "warn", "topic": "training", "text": (
                f"{side.upper()} is rebuilt {g:.1f} dB better on training faces than on held-out "
                "ones: the model memorises; more varied faces help more than more steps.")})  # fmt: skip
    det = (ev.get("faces_detected") or {}).get("swaps")
    no_face = det is not None and det < FACES_DETECTED
    if no_face:
        out.append({"level": "warn", "topic": "swap", "text": (
            f"dlib's face detector finds a face in only {_pct(det)} of the swapped faces: the "
            "model's output is not face-like yet, so the identity, pose and expression numbers "
            "mean little. Train longer.")})  # fmt: skip
    ident = ev.get("identity", {})
    r = ident.get("retrieval")
    if r is not None and r < RETRIEVAL_LOW and not no_face:
        out.append({"level": "warn", "topic": "swap", "text": (
            f"Only {_pct(r)} of swaps are nearest to B's identity: the swap still looks like "
            "someone else. Train longer, or check that B's face set is one person.")})  # fmt: skip
    yaw = (ev.get("pose", {}).get("yaw") or {}).get("mean")
    if yaw is not None and yaw > POSE_ERROR and not no_face:
        out.append({"level": "warn", "topic": "swap", "text": (
            f"Swaps turn the head {yaw:.0f} degrees away from the input on average: the model "
            "does not follow A's pose yet.")})  # fmt: skip
    tmp = ev.get("temporal") or {}
    ratio = tmp.get("jitter_ratio")
    if ratio is not None and ratio > JITTER_RATIO:
        out.append({"level": "warn", "topic": "temporal", "text": (
            f"The swapped face shakes {ratio:.1f}x as much as the source face from frame to "
            "frame; temporal smoothing in convert, or a larger model, helps.")})  # fmt: skip


def recommend(numbers: dict[str, Any]) -> list[dict[str, str]]:
    """Recommendations for the report numbers (see module doc); one info line when all is well."""
    out: list[dict[str, str]] = []
    _coverage(numbers, out)
    _mouth_coverage(numbers, out)
    _facesets(numbers, out)
    _run(numbers, out)
    if not any(r["level"] == "warn" for r in out):
        out.append({"level": "info", "topic": "summary",
                    "text": "No problems found in these numbers."})  # fmt: skip
    return sorted(out, key=lambda r: r["level"] != "warn")
