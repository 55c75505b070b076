"""The REST API (``/api/v1/``) and the web page (``/``) as a FastAPI application.

Every handler that needs the controller's state takes one
:class:`~controller.api.snapshot.Snapshot` through the bridge and works on
it, off the app thread. Handlers are plain functions (FastAPI runs them in
its worker threads, so waiting for the app thread blocks no other request).
Errors are JSON ``{"detail": ..., "errors": [...]}`` with a 4xx status;
an unexpected exception is logged and answered 500 without a traceback.
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from controller.api import views
from controller.api.auth import Denied, check_bearer, expected_token
from controller.api.bridge import Backend, PushRefused, validate
from controller.api.live import live_trace, plan
from controller.api.ofctl import flow_lines, switch_text
from controller.api.snapshot import Snapshot
from controller.tools.trace import Leg

LOG = logging.getLogger("vmn.api")
MAX_BODY = 32 << 20
"""Largest network file accepted (bytes)."""
STATIC = resources.files("controller.api") / "static"

Json = dict[str, Any]


class TraceRequest(BaseModel):
    """``POST /api/v1/trace``: one packet from a VM to an address."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    src: str = Field(alias="from", min_length=1, max_length=256, description="sending VM")
    to: str = Field(min_length=1, max_length=64, description="destination IPv4 or IPv6 address")
    protocol: Literal["tcp", "udp", "icmp"] = "icmp"
    port: int | None = Field(default=None, ge=0, le=65535, description="destination port (tcp, udp)")


class MigrateRequest(BaseModel):
    """``POST /api/v1/migrate``: pre-install a VM at another switch port before it moves there."""

    model_config = ConfigDict(extra="forbid")
    vm: str = Field(min_length=1, max_length=256, description="the VM")
    to: str = Field(min_length=3, max_length=300, description="SWITCH:PORT (a number or an interface name)")


def _leg(leg: Leg | None) -> Json | None:
    if leg is None:
        return None
    return {
        "delivered": leg.delivered,
        "path": list(leg.path),
        "acl": list(leg.acl),
        "outputs": list(leg.outputs),
        "routed": list(leg.routed),
    }


def _error(status: int, detail: str, errors: list[str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "errors": errors or [detail]}, status_code=status)


async def _body(request: Request) -> bytes:
    """The request body, at most :data:`MAX_BODY` bytes (413 beyond)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY:
        raise HTTPException(413, f"body larger than {MAX_BODY} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise HTTPException(413, f"body larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(backend: Backend) -> FastAPI:
    """The application serving the API and the page for ``backend``."""
    app = FastAPI(
        title="VMN",
        version="1",
        description="The VMN controller's live state, trace, plan and config push.",
        docs_url="/api/v1/docs",
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
    )

    def snapshot(flows: bool = True) -> Snapshot:
        try:
            return backend.snapshot(flows)
        except TimeoutError:
            raise HTTPException(503, "the controller did not answer in time") from None

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        LOG.exception("api: %s %s failed", request.method, request.url.path)
        return _error(500, f"internal error: {type(exc).__name__}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [".".join(str(p) for p in e.get("loc", ())) + ": " + str(e.get("msg", "")) for e in exc.errors()]
        return _error(422, "invalid request", errors)

    @app.get("/api/v1/topology", summary="switches, links, VMs, balancers, routers and uplinks")
    def get_topology() -> Json:
        return views.topology(snapshot(flows=False))

    @app.get("/api/v1/hosts", summary="learned hosts")
    def get_hosts() -> Json:
        return views.hosts(snapshot(flows=False))

    @app.get("/api/v1/lb", summary="load balancers: backends and health")
    def get_lb() -> Json:
        return {"load_balancers": views.load_balancers(snapshot(flows=False))}

    @app.get("/api/v1/flows", summary="what VMN wants on each switch, ovs-ofctl syntax", response_model=None)
    def get_flows(
        switch: Annotated[str | None, Query(max_length=64, description="switch name or dpid")] = None,
        format: Annotated[Literal["json", "text"], Query(description="json, or text as `vmn flows`")] = "json",
    ) -> Json | Response:
        snap = snapshot()
        if switch is None:
            dpids = sorted(snap.ports)
        else:
            dpid = snap.dpid_of(switch)
            if dpid is None or dpid not in snap.ports:
                known = ", ".join(snap.switch_name(d) for d in sorted(snap.ports)) or "none"
                raise HTTPException(404, f"no connected switch {switch!r} (connected: {known})")
            dpids = [dpid]
        entries = [views.switch_flows(snap, d) for d in dpids]
        if format == "text":
            text = "".join(
                switch_text(e["name"], d, e["flows"], e["groups"]) for d, e in zip(dpids, entries, strict=True)
            )
            return PlainTextResponse(text)
        return {"switches": entries}

    @app.post("/api/v1/trace", summary="one packet's verdict on the live flows")
    def post_trace(req: TraceRequest) -> Json:
        snap = snapshot()
        try:
            result = live_trace(snap, req.src, req.to, req.protocol, req.port)
        except ValueError as err:
            raise HTTPException(422, str(err)) from None
        return {
            "verdict": result.forward.verdict,
            "connects": result.connects,
            "forward": _leg(result.forward),
            "reply": _leg(result.reply),
            "text": result.render(),
        }

    @app.post("/api/v1/plan", summary="per switch, the flows a network file would remove and add")
    async def post_plan(request: Request) -> Response:
        text = await _body(request)
        return await run_in_threadpool(_plan, text)

    def _plan(text: bytes) -> Response:
        try:
            model = validate(text, "request")
        except PushRefused as err:
            return _error(err.status, "invalid network file", err.errors)
        diffs = plan(snapshot(), model)
        return JSONResponse(
            {
                "switches": [
                    {
                        "name": d.name,
                        "dpid": views.dpid_text(d.dpid),
                        "removed": flow_lines(d.removed),
                        "added": flow_lines(d.added),
                    }
                    for d in diffs
                ]
            }
        )

    @app.put("/api/v1/config", summary="replace the network file (YAML) and reload; needs the token")
    async def put_config(request: Request, authorization: Annotated[str | None, Header()] = None) -> Response:
        try:
            check_bearer(authorization, expected_token(os.environ, backend.model.controller, backend.config_path))
        except Denied as err:
            return _error(err.status, err.message)
        text = await _body(request)
        return await run_in_threadpool(_push, text)

    def _push(text: bytes) -> Response:
        try:
            pushed = backend.push(text)
        except PushRefused as err:
            detail = "invalid network file" if err.status == 422 else err.errors[0]
            return _error(err.status, detail, err.errors)
        except TimeoutError:
            return _error(504, "the controller did not answer in time; the push may still be applied")
        LOG.info("api: network file %s pushed and reloaded in %.3fs", pushed.path, pushed.seconds)
        return JSONResponse({"applied": True, "path": pushed.path, "seconds": round(pushed.seconds, 4)})

    @app.post("/api/v1/migrate", summary="pre-install a VM's destination before a migration; needs the token")
    def post_migrate(req: MigrateRequest, authorization: Annotated[str | None, Header()] = None) -> Response:
        try:
            check_bearer(authorization, expected_token(os.environ, backend.model.controller, backend.config_path))
            backend.migrate(req.vm, req.to)
        except Denied as err:
            return _error(err.status, err.message)
        except PushRefused as err:
            return _error(err.status, err.errors[0], err.errors)
        except TimeoutError:
            return _error(504, "the controller did not answer in time")
        LOG.info("api: vm %s migrating to %s (destination pre-installed)", req.vm, req.to)
        return JSONResponse({"applied": True, "vm": req.vm, "to": req.to})

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(str(STATIC / "index.html"), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app
