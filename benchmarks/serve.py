"""Benchmark — `muflow serve` under load, against a local scan of the same photos in the same run.

    python benchmarks/serve.py                            # defaults: 24 photos, 96 requests per level, soak to 1,000 and 3,000
    python benchmarks/serve.py --soak 1000 10000          # the issue's soak (hours on a 2-core machine)
    python benchmarks/serve.py --requests 48 --soak 200 400 --json out.json
    python benchmarks/serve.py --smoke                    # seconds: 4 photos, 8 requests at 1 and 4 clients, no soak, --timeout 2

Everything runs on this machine and talks to 127.0.0.1 only; every loop is bounded in requests and in time.

1. Photos: ``--photos`` variants of insightface's t1.jpg (6 faces) and scikit-image's astronaut (1 face):
   crops, flips, rescales, as tests/conftest.py's real_folder makes them (about 3.5 faces a photo).
2. Local: ``pipelines.scan.scan`` of those files with the model loaded once (what `muflow scan` runs), timed
   before and after the server phases; its images/s is the mean of the two.
3. Server: `python -m muflow_cli serve` on a free loopback port (a separate process), ``--timeout 10``.
   For 1, 4 and 16 concurrent clients (httpx + asyncio, one photo per multipart request, photos in turn),
   ``--requests`` requests: images/s (as a ratio to the local scan), p50/p95/p99 latency (all requests, and
   the one-face photos alone), non-200 answers. The local scan runs while the server is idle (it is
   loaded and warm, its threads asleep).
4. Soak: good requests at 16 clients until the server has answered each count of ``--soak``; the server's
   RSS (VmRSS of its process) after each.
5. Bad inputs while 4 clients keep posting good photos: an empty body, a truncated JPEG, a text file, a PNG
   declaring 50,000 x 50,000 pixels (each must be a 200 with the file's status in its row), a 51 MB body
   (413, declared) and a 52 MB chunked body (413 as it is counted, past the default 50 MB), a slow client
   that sends a byte a second (408 after the timeout); the good requests' answers during the mix.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import cv2
import httpx
import numpy as np

HOST = "127.0.0.1"  # the only address this benchmark sends to
PHASE_LIMIT_S = 900  # no phase runs longer than this, whatever the counts


def make_photos(folder: Path, n: int) -> list[Path]:
    """``n`` real photos: variants of t1.jpg (6 faces) and of the astronaut (1 face), alternately."""
    import insightface
    from skimage import data

    t1 = cv2.imread(os.path.join(os.path.dirname(insightface.__file__), "data/images/t1.jpg"))
    astro = np.ascontiguousarray(data.astronaut()[..., ::-1])
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        src = t1 if i % 2 == 0 else astro
        h, w = src.shape[:2]
        x0, y0 = rng.integers(0, 30, size=2)
        img = src[y0 : h - rng.integers(0, 30), x0 : w - rng.integers(0, 30)]
        img = img[:, ::-1] if (i // 2) % 2 else img
        s = 0.8 + 0.4 * rng.random()
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        path = folder / (f"t1_{i:03d}.jpg" if i % 2 == 0 else f"astronaut_{i:03d}.jpg")
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append(path)
    return out


def local_rate(paths: list[Path], model) -> float:
    from muflow_cli.pipelines.scan import ScanConfig, scan

    t = time.perf_counter()
    df = scan(paths, model, ScanConfig(), progress=False)
    elapsed = time.perf_counter() - t
    assert (df["status"] == "ok").all()
    return len(paths) / elapsed


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of the server process and its children (uvicorn workers), in MB."""
    total = 0
    for p in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def start_server(port: int, *args: str, timeout: int = 10) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "muflow_cli", "serve", "--host", HOST, "--port", str(port), "--timeout", str(timeout), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{HOST}:{port}/readyz", timeout=5).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not become ready")


def pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else None


async def load(url: str, bodies: list[tuple[str, bytes]], clients: int, requests: int, limit_s: float = PHASE_LIMIT_S) -> dict:
    """``requests`` posts by ``clients`` concurrent clients (photos in turn); stops early at ``limit_s``."""
    latencies: list[tuple[str, float]] = []
    errors: dict[str, int] = {}
    counter = iter(range(requests))
    deadline = time.monotonic() + limit_s

    async def client(c: httpx.AsyncClient) -> None:
        for k in counter:
            if time.monotonic() > deadline:
                return
            name, body = bodies[k % len(bodies)]
            t = time.perf_counter()
            try:
                r = await c.post("/v1/scan", files={"file": (name, body)})
                code = str(r.status_code)
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            if code == "200":
                latencies.append((name, time.perf_counter() - t))
            else:
                errors[code] = errors.get(code, 0) + 1

    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=clients)) as c:
        await asyncio.gather(*(client(c) for _ in range(clients)))
    elapsed = time.perf_counter() - t0
    all_l = [lat for _, lat in latencies]
    one = [lat for name, lat in latencies if name.startswith("astronaut")]
    return {"clients": clients, "requests": len(latencies) + sum(errors.values()), "ok": len(latencies), "errors": errors,
            "seconds": round(elapsed, 2), "images_per_s": round(len(latencies) / elapsed, 2),
            "p50_ms": pct(all_l, 50), "p95_ms": pct(all_l, 95), "p99_ms": pct(all_l, 99),
            "one_face_p50_ms": pct(one, 50), "one_face_p99_ms": pct(one, 99)}


def png_declaring(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


async def refused(c: httpx.AsyncClient, what: str, body) -> dict:
    """Post a body the server must refuse; what it answered (or how the connection ended) and when."""
    t = time.perf_counter()
    try:
        r = await c.post("/v1/scan", content=body, headers={"content-type": "image/jpeg"})
        got = {"http": r.status_code, "error": r.json().get("error")}
    except httpx.HTTPError as exc:
        got = {"http": None, "error": f"connection: {type(exc).__name__}"}
    return {"input": what, **got, "answered_after_s": round(time.perf_counter() - t, 1)}


async def bad_mix(url: str, bodies: list[tuple[str, bytes]], slow_s: int = 15) -> dict:
    """The bad inputs, one after another, while 4 clients keep posting good photos (bounded: 400 requests or 300 s).
    ``slow_s``: how many seconds (one byte each) the slow client sends for: more than the server's timeout."""
    stop = asyncio.Event()
    good: dict[str, int] = {}

    async def keep_posting(c: httpx.AsyncClient) -> None:
        k = 0
        while not stop.is_set() and k < 100:
            name, body = bodies[k % len(bodies)]
            try:
                code = str((await c.post("/v1/scan", files={"file": (name, body)})).status_code)
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            good[code] = good.get(code, 0) + 1
            k += 1

    t1 = next(b for n, b in bodies if n.startswith("t1"))
    cases = [("empty", b"", None), ("truncated jpeg", t1[: len(t1) // 3], None), ("not an image", b"just text\n" * 50, None),
             ("png declaring 50,000 x 50,000", png_declaring(50_000, 50_000), None)]
    results = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as c, httpx.AsyncClient(base_url=url, timeout=120) as bad:
        workers = [asyncio.create_task(keep_posting(c)) for _ in range(4)]
        await asyncio.sleep(1)
        for what, body, _ in cases:
            r = await bad.post("/v1/scan", files={"file": (what, body)})
            row = r.json()["files"][0] if r.status_code == 200 else {}
            results.append({"input": what, "http": r.status_code, "status": row.get("status"), "message": row.get("message")})

        results.append(await refused(bad, "51 MB body (declared)", b"\0" * 51_000_000))

        async def chunked():
            for _ in range(52):
                yield b"\0" * 1_000_000

        results.append(await refused(bad, "52 MB chunked body (no length)", chunked()))

        async def slow():
            for _ in range(slow_s):
                await asyncio.sleep(1)
                yield b"\0"

        results.append(await refused(bad, "slow client (1 byte/s)", slow()))
        stop.set()
        await asyncio.wait_for(asyncio.gather(*workers), 300)
    return {"bad": results, "good_during_mix": good}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=24)
    ap.add_argument("--requests", type=int, default=96, help="requests per concurrency level")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--soak", type=int, nargs="*", default=[1000, 3000], help="server RSS after this many requests (cumulative)")
    ap.add_argument("--workers", type=int, default=1, help="uvicorn worker processes of the server")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--timeout", type=int, default=10, help="the server's --timeout (s): when the slow client gets its 408")
    ap.add_argument("--smoke", action="store_true", help="a check that it runs, in seconds: 4 photos, 8 requests at 1 and 4 clients, "
                    "no soak, the bad inputs with a 2 s server timeout (numbers meaningless)")
    args = ap.parse_args()
    if args.smoke:
        args.photos, args.requests, args.clients, args.soak, args.timeout, args.json = 4, 8, [1, 4], [], 2, None

    from muflow_cli.model.deepfake_model import DeepfakeModel

    out: dict = {"cpu_cores": len(os.sched_getaffinity(0)), "workers": args.workers}
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_photos(Path(tmp), args.photos)
        bodies = [(p.name, p.read_bytes()) for p in paths]
        model = DeepfakeModel.load().use_engine("auto", check=True)
        local_rate(paths[:2], model)  # warm
        port = free_port()
        url = f"http://{HOST}:{port}"
        server = start_server(port, "--workers", str(args.workers), timeout=args.timeout)
        try:
            before = local_rate(paths, model)
            asyncio.run(load(url, bodies, 4, 8))  # warm the connections and the server's threads
            levels = [asyncio.run(load(url, bodies, c, args.requests)) for c in args.clients]
            after = local_rate(paths, model)
            local = (before + after) / 2
            for lv in levels:
                lv["ratio_to_local"] = round(lv["images_per_s"] / local, 3)
            out.update(local_images_per_s={"before": round(before, 2), "after": round(after, 2), "mean": round(local, 2)}, levels=levels)
            print(json.dumps(out, indent=1), flush=True)
            served = 8 + sum(lv["requests"] for lv in levels)
            out["rss_mb"] = {"after_warm_and_levels": {"requests": served, "rss_mb": round(rss_mb(server.pid), 1)}}
            soak = []
            for target in sorted(args.soak):
                if target > served:
                    res = asyncio.run(load(url, bodies, 16, target - served))
                    served += res["requests"]
                    soak.append({"requests": served, "rss_mb": round(rss_mb(server.pid), 1), "errors": res["errors"],
                                 "images_per_s": res["images_per_s"]})
                    print(json.dumps(soak[-1]), flush=True)
            out["soak"] = soak
            slow_s = args.timeout + 2 if args.smoke else max(15, args.timeout + 5)  # past the server's timeout (15 s at the default 10)
            out["bad_mix"] = asyncio.run(bad_mix(url, bodies, slow_s))
            out["bad_mix"]["server_alive"] = httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        finally:
            server.terminate()
            server.wait(30)
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
