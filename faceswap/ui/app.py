"""The web application: routes over the project, jobs, face sets, runs and frames.

Every request passes `guard` first: a known Host, no foreign Origin, and the session token (from
the `?token=` of the printed URL, then a cookie; or the X-Faceswap-Token header). Errors are
one line of JSON, {"error": "..."}, with a 4xx code; nothing is written before the checks pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shlex
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from faceswap import faceset as fsmod
from faceswap.errors import BadInput
from faceswap.faceset import is_faceset
from faceswap.masks import labels as lb
from faceswap.ui import commands as cmds
from faceswap.ui import labels as ui_labels
from faceswap.ui import project as pj
from faceswap.ui.faces import FaceSets
from faceswap.ui.frames import FramePreview, clip_info, read_frame
from faceswap.ui.jobs import JobConflict, JobManager
from faceswap.ui.runs import run_state
from faceswap.ui.security import COOKIE, HEADER, PathRefused, Roots, origin_ok, token_ok

STATIC = resources.files("faceswap.ui") / "static"
_STATIC_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css",
                 ".svg": "image/svg+xml"}  # fmt: skip
EVENT_EVERY = 0.25  # s between state checks of the event stream (preview refresh well under 2 s)


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


@dataclass
class Settings:
    roots: Roots
    token: str
    allowed_hosts: set[str] | None  # None: any (bound beyond the loopback)


def create_app(settings: Settings) -> FastAPI:
    roots = settings.roots
    project = roots.project
    work = project / pj.WORK
    jobs = JobManager(project, work)
    facesets = FaceSets(work / "thumbs")
    frames = FramePreview(work / "frames")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await asyncio.to_thread(jobs.stop_all)  # Ctrl-C the jobs: trainers save

    app = FastAPI(title="faceswap", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)  # fmt: skip
    app.state.jobs = jobs
    app.state.stopping = lambda: False  # the CLI sets it to its server's should_exit

    def p(rel: str) -> Path:
        return project / rel

    @app.middleware("http")
    async def guard(request: Request, call_next):
        host = request.headers.get("host", "")
        if settings.allowed_hosts is not None and host not in settings.allowed_hosts:
            return JSONResponse({"error": f"unknown Host {host!r}"}, status_code=403)
        if not origin_ok(request.headers.get("origin"), host):
            return JSONResponse({"error": "requests from other sites are refused"}, 403)
        query_token = request.query_params.get("token")
        if query_token is not None and request.url.path == "/":
            if not token_ok(query_token, settings.token):
                return JSONResponse({"error": "wrong token"}, status_code=403)
            # the token leaves the address bar and lives on in a cookie this site alone sends
            resp = RedirectResponse("/", status_code=303)
            resp.set_cookie(COOKIE, settings.token, httponly=True, samesite="strict")
            return resp
        given = request.headers.get(HEADER) or request.cookies.get(COOKIE)
        if given is None:
            return JSONResponse({"error": "no token: open the address `faceswap ui` printed"},
                                status_code=401)  # fmt: skip
        if not token_ok(given, settings.token):
            return JSONResponse({"error": "wrong token"}, status_code=403)
        try:
            return await call_next(request)
        except HTTPError as exc:
            return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(HTTPError)
    async def _http_error(request: Request, exc: HTTPError):
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(PathRefused)
    async def _refused(request: Request, exc: PathRefused):
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(BadInput)
    async def _bad(request: Request, exc: BadInput):
        # a face set another process holds is a conflict, any other bad input a 400
        status = 409 if "another faceswap process" in str(exc) else 400
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.exception_handler(JobConflict)
    async def _conflict(request: Request, exc: JobConflict):
        return JSONResponse({"error": str(exc)}, status_code=409)

    async def body(request: Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise HTTPError(400, "the request body is not JSON") from None
        if not isinstance(data, dict):
            raise HTTPError(400, "the request body must be a JSON object")
        return data

    def side_root(side: str) -> Path:
        if side not in pj.FACESETS:
            raise HTTPError(404, f"unknown face set {side!r}; choose one of a, b, target")
        return p(pj.FACESETS[side])

    # ---- pages and files ---------------------------------------------------------------------
    @app.get("/")
    def index():
        return Response((STATIC / "index.html").read_bytes(), media_type="text/html",
                        headers={"Cache-Control": "no-store"})  # fmt: skip

    @app.get("/static/{name}")
    def static(name: str):
        path = STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise HTTPError(404, f"no static file {name!r}")
        media = _STATIC_TYPES.get(Path(name).suffix, "application/octet-stream")
        return Response(path.read_bytes(), media_type=media)

    @app.get("/files/{rel:path}")
    def files(rel: str):
        """A file inside the roots (previews, the report page and its images, outputs)."""
        real = roots.resolve(rel, must_exist=True)
        if real.is_dir():
            real = real / "index.html"
            if not real.is_file():
                raise HTTPError(404, f"{rel}: a folder")
        return FileResponse(real, headers={"Cache-Control": "no-cache"})

    # ---- project -----------------------------------------------------------------------------
    def commands() -> dict[str, str]:
        argvs = cmds.pipeline(project, pj.load_inputs(project))
        return {k: shlex.join(["faceswap", *v]) for k, v in argvs.items() if v is not None}

    def faceset_summary(side: str) -> dict[str, Any]:
        root = side_root(side)
        try:
            fs = facesets.load(root)
        except BadInput:
            return {"exists": False, "path": pj.FACESETS[side]}
        return {"exists": True, "path": pj.FACESETS[side], "faces": len(fs.faces),
                "rejected": len(fs.rejected), "version": fs.updated}  # fmt: skip

    def state() -> dict[str, Any]:
        out = p(pj.OUTPUT)
        report = p(pj.REPORT) / "report.html"
        return {
            "project": str(project),
            "roots": [str(r) for r in roots.all],
            "inputs": asdict(pj.load_inputs(project)),
            "facesets": {s: faceset_summary(s) for s in pj.SIDES},
            "runs": {
                k: {
                    "path": v,
                    "checkpoint": (p(v) / "checkpoints").is_dir(),
                    "preview": _mtime(p(v) / "preview.png"),
                }
                for k, v in pj.RUNS.items()
            },  # fmt: skip
            "output": {"path": pj.OUTPUT, "mtime": _mtime(out)},
            "report": {"path": pj.REPORT, "mtime": _mtime(report)},
            "jobs": [
                jobs.public(j)
                for j in sorted(jobs.jobs.values(), key=lambda j: j.started, reverse=True)[:30]
            ],  # fmt: skip
            "commands": commands(),
        }

    @app.get("/api/state")
    def get_state():
        return state()

    @app.get("/api/browse")
    def browse(path: str = ""):
        return pj.list_dir(roots, path)

    @app.post("/api/inputs")
    async def set_inputs(request: Request):
        data = await body(request)
        side = data.get("side")
        paths = pj.check_inputs(roots, side, data.get("paths"))
        inp = pj.load_inputs(project)
        setattr(inp, side, paths)
        pj.save_inputs(project, inp)
        return {"inputs": asdict(inp)}

    # ---- jobs --------------------------------------------------------------------------------
    @app.post("/api/jobs", status_code=201)
    async def start_job(request: Request):
        data = await body(request)
        kind = data.get("kind")
        o = {} if data.get("options") is None else data["options"]
        if not isinstance(o, dict):
            raise HTTPError(400, "options must be a JSON object")
        argv, key = cmds.job(roots, kind, data.get("side"), o)
        return jobs.public(jobs.start(kind, argv, key))

    def job_of(job_id: str):
        if job_id not in jobs.jobs:
            raise HTTPError(404, f"no job {job_id!r}")
        return jobs.jobs[job_id]

    @app.get("/api/jobs/{job_id}")
    def get_job(job_id: str):
        job = job_of(job_id)
        return {**jobs.public(job), "log": jobs.log_tail(job_id)}

    @app.post("/api/jobs/{job_id}/stop")
    def stop_job(job_id: str):
        job = job_of(job_id)
        if job.status != "running":
            raise HTTPError(409, f"job {job_id} is not running ({job.status})")
        return jobs.public(jobs.stop(job_id))

    # ---- face browser --------------------------------------------------------------------------
    @app.get("/api/facesets/{side}")
    def list_faces(side: str, sort: str = "frame", reverse: bool = False, view: str = "faces",
                   labelled: bool = False):  # fmt: skip
        root = side_root(side)
        names, error = ui_labels.labelled(facesets.load(root))
        return {**facesets.listing(root, sort, reverse, view, names, labelled),
                "labels_error": error}  # fmt: skip

    @app.get("/api/facesets/{side}/thumb/{name}")
    def thumb(side: str, name: str):
        try:
            path = facesets.thumbnail(side_root(side), name)
        except KeyError:
            raise HTTPError(404, f"no face {name!r} in {pj.FACESETS[side]}") from None
        return FileResponse(path, media_type="image/jpeg",
                            headers={"Cache-Control": "private, max-age=3600"})  # fmt: skip

    def names_of(data: dict[str, Any]) -> list[str]:
        names = data.get("names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise HTTPError(400, "names: a non-empty list of face names")
        return names

    @app.post("/api/facesets/{side}/reject")
    async def reject(side: str, request: Request):
        root = side_root(side)
        data = await body(request)
        if "flagged" in data:
            flagged = data["flagged"]
            if not isinstance(flagged, list) or not flagged or not all(
                isinstance(f, dict) and isinstance(f.get("name"), str)
                and isinstance(f.get("reason"), str) for f in flagged):  # fmt: skip
                raise HTTPError(400, "flagged: a list of {name, reason}")
            return {"moved": facesets.reject_flagged(root, flagged)}
        reason = data.get("reason") or "rejected in the UI"
        if not isinstance(reason, str) or len(reason) > 200:
            raise HTTPError(400, "reason: a short text")
        return {"moved": facesets.reject(root, names_of(data), reason)}

    @app.post("/api/facesets/{side}/restore")
    async def restore(side: str, request: Request):
        root = side_root(side)
        data = await body(request)
        names = None if data.get("all") is True else names_of(data)
        return {"restored": facesets.restore(root, names)}

    @app.get("/api/facesets/{side}/proposals")
    def proposals(side: str, strictness: float = 3.0, dedupe: bool = True):
        if not 0.5 <= strictness <= 20:
            raise HTTPError(400, "strictness: between 0.5 and 20")
        return {"flagged": facesets.proposals(side_root(side), strictness, dedupe)}

    # ---- label editor ----------------------------------------------------------------------------
    def face_in(side: str, name: str) -> tuple[Path, fsmod.FaceSet, fsmod.Face]:
        root = side_root(side)
        lb.check_name(name, pj.FACESETS[side])  # a name, never a path
        face = facesets.by_name(root).get(name)
        if face is None:
            raise HTTPError(404, f"no face {name!r} in {pj.FACESETS[side]}")
        return root, facesets.load(root), face

    @app.get("/api/facesets/{side}/face/{name}")
    def face_image(side: str, name: str):
        """The aligned face at full size (the grid's thumbnails are 96 px)."""
        _, fs, face = face_in(side, name)
        return FileResponse(fs.path_of(face), headers={"Cache-Control": "no-cache"})

    @app.get("/api/facesets/{side}/labels/{name}")
    def get_label(side: str, name: str):
        _, fs, face = face_in(side, name)
        return ui_labels.view(fs, face)

    @app.get("/api/facesets/{side}/labels/{name}/fallback.png")
    def label_fallback(side: str, name: str):
        _, fs, face = face_in(side, name)
        return Response(ui_labels.overlay_png(fs, face), media_type="image/png",
                        headers={"Cache-Control": "no-store"})  # fmt: skip

    @app.put("/api/facesets/{side}/labels/{name}")
    async def put_label(side: str, name: str, request: Request):
        root, fs, _ = face_in(side, name)
        data = await body(request)
        where = f"{pj.FACESETS[side]} face {name}"
        return await asyncio.to_thread(ui_labels.save, root, fs.size, name, data, where)

    @app.delete("/api/facesets/{side}/labels/{name}")
    async def delete_label(side: str, name: str):
        root, fs, _ = face_in(side, name)
        if name not in lb.load_labels(fs):
            raise HTTPError(404, f"face {name} in {pj.FACESETS[side]} has no label")
        return await asyncio.to_thread(ui_labels.remove, root, name)

    # ---- runs ------------------------------------------------------------------------------------
    @app.get("/api/runs/{which}")
    def run(which: str):
        if which not in pj.RUNS:
            raise HTTPError(404, f"unknown run {which!r}; choose train or fit")
        job = jobs.latest_for(pj.RUNS[which])
        history = jobs.history(job.id) if job else []
        return {"path": pj.RUNS[which], **run_state(p(pj.RUNS[which]), history)}

    # ---- convert page ------------------------------------------------------------------------------
    def target_clip() -> Path:
        inp = pj.load_inputs(project)
        if not inp.target:
            raise HTTPError(400, "choose the target clip first (Project page)")
        return roots.resolve(inp.target[0], must_exist=True)

    @app.get("/api/convert/clip")
    def clip():
        return clip_info(target_clip())

    @app.get("/api/convert/frame/{index}")
    def frame(index: int):
        return Response(read_frame(target_clip(), index), media_type="image/jpeg")

    @app.post("/api/convert/preview")
    async def preview(request: Request):
        data = await body(request)
        index = cmds.whole_number(data, "frame", 0, 10_000_000)
        if index is None:
            raise HTTPError(400, "frame: a frame number")
        o = {} if data.get("options") is None else data["options"]
        if not isinstance(o, dict):
            raise HTTPError(400, "options must be a JSON object")
        cfg = frames.options({k: v for k, v in o.items() if v not in (None, "")})
        model = data.get("model", "train")
        if model not in pj.RUNS:
            raise HTTPError(400, f"model: {model!r} is not train or fit")
        run_dir = p(pj.RUNS[model])
        if not (run_dir / "checkpoints").is_dir():
            raise HTTPError(400, f"{pj.RUNS[model]}: no trained model yet")
        clip_path = target_clip()
        align = p(pj.FACESETS["target"])
        align = align if is_faceset(align) else None
        res = await asyncio.to_thread(frames.render, clip_path, run_dir, align, index, cfg)
        argv = ["convert", roots.show(clip_path), "-m", pj.RUNS[model], "-o", "check.png",
                "--preview", "1", "--frames", f"{index}-{index + 1}"]  # fmt: skip
        if align is not None:
            argv += ["--alignments", pj.FACESETS["target"]]
        for k, v in o.items():
            if v not in (None, ""):
                argv += [f"--{k}", str(v)]
        stamp = time.time_ns()
        return {"before": f"/files/{roots.show(res['before'])}?v={stamp}",
                "after": f"/files/{roots.show(res['after'])}?v={stamp}",
                "seconds": round(res["seconds"], 3), "command": shlex.join(["faceswap", *argv])}  # fmt: skip

    # ---- live state ------------------------------------------------------------------------------
    @app.get("/api/events")
    async def events(request: Request):
        async def stream():
            last = None
            ping = time.monotonic()
            # ends when the page goes, or when the server stops (else Ctrl-C would wait on it)
            while not await request.is_disconnected() and not app.state.stopping():
                snap = json.dumps(await asyncio.to_thread(state), default=str)
                if snap != last:
                    last = snap
                    yield f"event: state\ndata: {snap}\n\n"
                elif time.monotonic() - ping > 15:  # keeps proxies and the browser patient
                    ping = time.monotonic()
                    yield ": ping\n\n"
                await asyncio.sleep(EVENT_EVERY)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})  # fmt: skip

    return app


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None
