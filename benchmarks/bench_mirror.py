"""The pull-through mirror (``hubcache serve --upstream``) under many clients at once.

(a) fan-out of an uncached model: an upstream throttled to ``--rate`` per response (a
    far-away origin), one fresh mirror in front of it; wall time until N clients have the
    whole archive, against one client alone through a fresh mirror (target <= 1.2x) and
    against N clients going straight to the upstream;
(b) a stored model: N clients at once, aggregate MB/s from the mirror (aiohttp +
    sendfile) against the same file from nginx (when installed; started on loopback with
    a config of our own and stopped by its PID) and from ``python -m http.server``
    (target >= 0.8x the best static server);
(c) load, driven by ``wrk`` (the distribution's package) when installed, hubcache beside
    nginx on the same files, each with ``--workers`` processes (1): ``--connections``
    (1000) concurrent keep-alive connections to a stored 200 KB archive, then to a
    ``--large-mb`` (50) one over ``--large-connections`` (100), for ``--seconds`` each,
    ``--reps`` rounds interleaved (medians of req/s, MB/s and the servers' CPU per
    request, with the load average; throughput target >= 0.9x nginx); ``--connections``
    concurrent one-shot clients each checking the body's sha256 (all must
    be right); ``--slow`` (500) slow readers of a stored 8 MB archive (4 KB receive
    buffer, reading 4 KB every 0.5 s) while a normal client fetches the 200 KB archive
    ``--samples`` times (p50/p99 time to the full body, target p99 < 100 ms); with the
    mirror's threads and peak RSS after each;
plus the mirror's peak RSS (VmHWM) over the whole run (target < 200 MB).

Clients are ``curl -o /dev/null`` when curl is installed (cheap, so the servers are what
is measured), else a small Python reader; ``--client hubcache`` runs ``hubcache resolve``
into one cache per client instead (that also extracts, so it measures the clients too).
Each client's body is checked against the archive's sha256. Every server is a child
process stopped by its PID. Exact command of the published table: see the README.

    python benchmarks/bench_mirror.py                    # 200 MB, 32 clients, 50 MB/s
    python benchmarks/bench_mirror.py --smoke            # CI: 5 MB, 4 clients
    python benchmarks/bench_mirror.py --only c           # the load part alone
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
Row = tuple[str, str]
PY_CLIENT = r"""
import hashlib, sys, urllib3
sha = hashlib.sha256()
with urllib3.PoolManager(retries=urllib3.Retry(5, backoff_factor=0.1)) as http:
    r = http.request("GET", sys.argv[1], preload_content=False)
    for chunk in r.stream(1 << 20):
        sha.update(chunk)
    if r.status != 200: sys.exit(f"HTTP {r.status}")
print(sha.hexdigest())
"""


def make_archive(path: Path, size: int) -> str:
    """An uncompressed tar of incompressible 'weights' of about ``size`` bytes; its sha256."""
    with tarfile.open(path, "w") as tar:
        left, i = size, 0
        while left > 0:
            n = min(left, 64 << 20)
            info = tarfile.TarInfo(f"variables/variables.data-{i:05d}")
            info.size = n
            import io

            tar.addfile(info, io.BytesIO(os.urandom(n)))
            left -= n
            i += 1
    return sha256_file(path)


def sha256_file(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(1 << 20):
            sha.update(data)
    return sha.hexdigest()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Server:
    """A child process serving on 127.0.0.1:port, stopped by its PID."""

    def __init__(self, argv: list[str], port: int, cwd: Optional[Path] = None) -> None:
        env = dict(os.environ, PYTHONPATH=str(SRC))
        self.port = port
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port(port, self.proc)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            match = re.search(r"VmHWM:\s+(\d+) kB", f.read())
        return int(match.group(1)) / 1024 if match else float("nan")

    def threads(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as f:
            match = re.search(r"Threads:\s+(\d+)", f.read())
        return int(match.group(1)) if match else -1

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def hubcache_serve(directory: Path, *args: str) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "hubcache", "serve", str(directory), "--port", str(port)]
    return Server([*argv, "-q", *args], port)


def nginx(directory: Path, work: Path, workers: int = 2) -> Optional[Server]:
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if binary is None:
        return None
    port = free_port()
    prefix = work / f"nginx-{workers}"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"worker_processes {workers};\n"
        f"pid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/logs/error.log;\n"
        "worker_rlimit_nofile 8192;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        "  access_log off; sendfile on; tcp_nopush on;\n"
        f"  client_body_temp_path {prefix}/tmp; proxy_temp_path {prefix}/tmp;\n"
        f"  fastcgi_temp_path {prefix}/tmp; uwsgi_temp_path {prefix}/tmp;\n"
        f"  scgi_temp_path {prefix}/tmp;\n"
        f"  server {{ listen 127.0.0.1:{port}; root {directory}; }}\n"
        "}\n"
    )
    try:
        return Server([binary, "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"], port)
    except (RuntimeError, OSError) as exc:
        print(f"nginx did not start ({exc}); skipping it", file=sys.stderr)
        return None


def http_server(directory: Path) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    return Server(argv, port, cwd=directory)


def clients(urls: list[str], kind: str, work: Path, expected: str) -> float:
    """Run one client per URL at once; seconds until the last one has the whole archive."""
    curl = shutil.which("curl") if kind == "http" else None
    procs = []
    began = time.perf_counter()
    for i, url in enumerate(urls):
        if kind == "hubcache":
            env = dict(os.environ, PYTHONPATH=str(SRC), HUBCACHE_FSYNC="0")
            env["TFHUB_CACHE_DIR"] = str(work / f"client{i}")
            argv = [sys.executable, "-m", "hubcache", "resolve", url.split("?")[0], "-q"]
        elif curl:
            env = dict(os.environ)
            argv = [curl, "-sSf", "--retry", "5", "-o", "/dev/null", "-w", "%{size_download}", url]
        else:
            env = dict(os.environ)
            argv = [sys.executable, "-c", PY_CLIENT, url]
        procs.append(
            subprocess.Popen(
                argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"a client failed: {err.strip()}")
        if kind == "http" and not curl and out.strip() != expected:
            raise RuntimeError("a client got different bytes")
    elapsed = time.perf_counter() - began
    if kind == "hubcache":
        for i in range(len(urls)):
            shutil.rmtree(work / f"client{i}", ignore_errors=True)
    return elapsed


def fan_out(args: argparse.Namespace, work: Path, expected: str, peaks: list[float]) -> list[Row]:
    """Part (a): an uncached model behind a throttled upstream."""
    path, n = "m/1?tf-hub-format=compressed", args.clients
    upstream = hubcache_serve(work / "upstream", "--rate-limit", args.rate)
    try:

        def through_fresh_mirror(count: int) -> float:
            store = work / f"mirror-{count}"
            store.mkdir()
            mirror = hubcache_serve(store, "--upstream", upstream.url(""))
            try:
                seconds = clients([mirror.url(path)] * count, args.client, work, expected)
                if sha256_file(store / "m" / "1.tar") != expected:
                    raise RuntimeError("the mirror stored different bytes")
                peaks.append(mirror.peak_rss_mb())
                return seconds
            finally:
                mirror.stop()
                shutil.rmtree(store, ignore_errors=True)

        one = through_fresh_mirror(1)
        many = through_fresh_mirror(n)
        direct = clients([upstream.url(path)] * n, args.client, work, expected)
    finally:
        upstream.stop()
    return [
        (f"(a) 1 client via a fresh mirror, upstream {args.rate}B/s", f"{one:.2f} s"),
        (
            f"(a) {n} clients via a fresh mirror",
            f"{many:.2f} s = {many / one:.2f}x one client (target <= 1.2x)",
        ),
        (
            f"(a) {n} clients straight to the upstream",
            f"{direct:.2f} s = {direct / one:.2f}x; the upstream sent {n}x the bytes",
        ),
    ]


def stored(
    args: argparse.Namespace, work: Path, expected: str, size_mb: float, peaks: list[float]
) -> list[Row]:
    """Part (b): a stored model, the mirror against plain static servers."""
    n = args.clients
    folder = work / "upstream"
    rates: dict[str, float] = {}
    starts: list[tuple[str, Callable[[], Optional[Server]], str]] = [
        (
            "hubcache serve (mirror, stored)",
            lambda: hubcache_serve(folder, "--upstream", "http://127.0.0.1:9/"),
            "m/1?tf-hub-format=compressed",
        ),
        ("nginx", lambda: nginx(folder, work), "m/1.tar"),
        ("python -m http.server", lambda: http_server(folder), "m/1.tar"),
    ]
    running: list[tuple[str, Server, str]] = []
    try:
        for name, start, path in starts:
            server = start()
            if server is not None:
                running.append((name, server, path))
                clients([server.url(path)], args.client, work, expected)  # warm the page cache
        for _ in range(args.reps):  # interleaved, best of reps: the machine may be shared
            for name, server, path in running:
                seconds = clients([server.url(path)] * n, args.client, work, expected)
                rates[name] = max(rates.get(name, 0.0), n * size_mb / seconds)
        for name, server, _path in running:
            if name.startswith("hubcache"):
                peaks.append(server.peak_rss_mb())
    finally:
        for _name, server, _path in running:
            server.stop()
    best = max(v for k, v in rates.items() if not k.startswith("hubcache"))
    rows = []
    for name, rate in rates.items():
        ratio = f" = {rate / best:.2f}x the best static server" if name.startswith("hub") else ""
        rows.append((f"(b) {n} clients, stored: {name}", f"{rate:,.0f} MB/s aggregate{ratio}"))
    return rows


# -- (c) load ------------------------------------------------------------------------------------
def raise_own_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def wrk(url: str, connections: int, seconds: int) -> tuple[float, float]:
    """(requests/s, MB/s) from ``wrk`` against ``url``."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    tps = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    if errors:
        print(f"wrk against {url}: {errors.group(0)}", file=sys.stderr)
    scale = {"B": 1e-6, "KB": 1024 / 1e6, "MB": 1024**2 / 1e6, "GB": 1024**3 / 1e6}
    mbs = float(tps.group(1)) * scale.get(tps.group(2), 1.0) if tps else 0.0
    return (float(rps.group(1)) if rps else 0.0), mbs


async def _get(port: int, path: str, rcvbuf: int = 0) -> bytes:
    """One HTTP/1.1 GET on a fresh connection; the body (Content-Length framed)."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        writer.write(f"GET /{path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
        return await reader.readexactly(length)
    finally:
        writer.close()


async def _all_right(port: int, path: str, n: int, expected: str) -> int:
    """``n`` concurrent one-shot clients; how many got the body with sha256 ``expected``."""
    bodies = await asyncio.gather(*(_get(port, path) for _ in range(n)), return_exceptions=True)
    return sum(
        1 for b in bodies if isinstance(b, bytes) and hashlib.sha256(b).hexdigest() == expected
    )


async def _slow_then_normal(
    port: int, big: str, small: str, slow: int, samples: int
) -> tuple[float, float, int]:
    """``slow`` slow readers of ``big``, then a normal client fetching ``small``
    ``samples`` times: (p50 ms, p99 ms, slow readers still connected)."""

    async def slow_reader(stop: asyncio.Event) -> bool:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
            await loop.sock_sendall(sock, f"GET /{big} HTTP/1.1\r\nHost: b\r\n\r\n".encode())
            while not stop.is_set():
                if not await loop.sock_recv(sock, 4096):
                    return False
                await asyncio.sleep(0.5)
            return True
        except OSError:
            return False
        finally:
            sock.close()

    stop = asyncio.Event()
    readers = [asyncio.create_task(slow_reader(stop)) for _ in range(slow)]
    await asyncio.sleep(2)
    times = []
    for _ in range(samples):
        began = time.perf_counter()
        await _get(port, small)
        times.append((time.perf_counter() - began) * 1000)
    stop.set()
    alive = sum(await asyncio.gather(*readers))
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return times[len(times) // 2], p99, alive


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children now alive (nginx's or hubcache's
    workers), from /proc; 0 where there is none."""
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    ticks = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.0


def loadavg() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def throughput(
    args: argparse.Namespace, running: list[tuple[str, Server, str]], what: str, connections: int
) -> tuple[list[Row], dict[str, float]]:
    """wrk against each server in turn, ``--reps`` rounds interleaved (the machine is
    shared: each round sees about the same load); medians of req/s, MB/s and CPU per
    request (the server's processes, from /proc: comparable even when the load varies)."""
    import statistics

    runs: dict[str, list[tuple[float, float, float, float]]] = {n: [] for n, _, _ in running}
    for _ in range(args.reps):
        for name, server, path in running:
            load, cpu0 = loadavg(), cpu_seconds(server.proc.pid)
            rps, mbs = wrk(server.url(path), connections, args.seconds)
            cpu = cpu_seconds(server.proc.pid) - cpu0
            per = cpu / (rps * args.seconds) * 1e6 if rps else float("nan")
            runs[name].append((rps, mbs, per, load))
    rows: list[Row] = []
    rates: dict[str, float] = {}
    for name, values in runs.items():
        rps, mbs, per, load = (statistics.median(v[i] for v in values) for i in range(4))
        rates[name] = mbs
        each = ", ".join(f"{v[0]:,.0f}" for v in values)
        rows.append(
            (
                f"(c) {name}: wrk, {connections} connections, stored {what}",
                f"{rps:,.0f} req/s, {mbs:,.0f} MB/s, {per:.0f} us CPU/request "
                f"(median of {len(values)}: {each} req/s; load {load:.1f})",
            )
        )
    return rows, rates


def load(args: argparse.Namespace, work: Path, peaks: list[float]) -> list[Row]:
    """Part (c): wrk and raw clients against hubcache and nginx on the same files, each
    with ``--workers`` processes (hubcache ``--workers N``, nginx ``worker_processes N``)."""
    raise_own_fd_limit()
    folder = work / "load"
    for sub in ("small", "big", "large"):
        (folder / sub).mkdir(parents=True)
    small_sha = make_archive(folder / "small" / "1.tar", 200_000)
    make_archive(folder / "big" / "1.tar", 8_000_000)
    make_archive(folder / "large" / "1.tar", args.large_mb * 10**6)
    n = args.workers
    hub = hubcache_serve(folder, "--upstream", "http://127.0.0.1:9/", "--workers", str(n))
    running: list[tuple[str, Server, str]] = [(f"hubcache ({n} worker)", hub, "")]
    ng = nginx(folder, work, workers=n)
    if ng is not None:
        running.append((f"nginx ({n} worker)", ng, ""))
    rows: list[Row] = []
    try:
        if shutil.which("wrk") is None:
            print("wrk is not installed: (c) runs without the wrk rows", file=sys.stderr)
        else:
            sizes = (
                ("200 KB", "small", args.connections),
                (f"{args.large_mb} MB", "large", args.large_connections),
            )
            for what, sub, connections in sizes:
                paths = [
                    (name, server, f"{sub}/1?tf-hub-format=compressed")
                    if name.startswith("hubcache")
                    else (name, server, f"{sub}/1.tar")
                    for name, server, _ in running
                ]
                found, rates = throughput(args, paths, what, connections)
                rows += found
                if len(rates) == 2:
                    ours, theirs = rates.values()
                    rows.append(
                        (
                            f"(c) wrk throughput on {what}, hubcache / nginx ({n} worker each)",
                            f"{ours / theirs:.2f}x (target >= 0.9x)" if theirs else "-",
                        )
                    )
        for name, server, _ in running:
            small = "small/1?tf-hub-format=compressed" if name.startswith("hub") else "small/1.tar"
            big = "big/1?tf-hub-format=compressed" if name.startswith("hub") else "big/1.tar"
            right = asyncio.run(_all_right(server.port, small, args.connections, small_sha))
            rows.append(
                (
                    f"(c) {name}: {args.connections} one-shot clients at once",
                    f"{right}/{args.connections} with the right sha256",
                )
            )
            p50, p99, alive = asyncio.run(
                _slow_then_normal(server.port, big, small, args.slow, args.samples)
            )
            rows.append(
                (
                    f"(c) {name}: 200 KB with {args.slow} slow readers connected",
                    f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (target < 100 ms); "
                    f"{alive} slow readers still served (load {loadavg():.1f})",
                )
            )
        peaks.append(hub.peak_rss_mb())
        rows.append(
            (
                f"(c) hubcache: threads, peak RSS after the load (each of {n} processes)",
                f"{hub.threads()} threads, {hub.peak_rss_mb():.0f} MB"
                + (f"; workers {', '.join(worker_rss(hub))}" if n > 1 else ""),
            )
        )
    finally:
        for _name, server, _path in running:
            server.stop()
    return rows


def worker_rss(server: Server) -> list[str]:
    """Each worker's peak RSS (VmHWM), for ``--workers`` > 1."""
    out: list[str] = []
    try:
        with open(f"/proc/{server.proc.pid}/task/{server.proc.pid}/children") as f:
            kids = f.read().split()
    except OSError:
        return out
    for kid in kids:
        try:
            with open(f"/proc/{kid}/status") as f:
                match = re.search(r"VmHWM:\s+(\d+) kB", f.read())
        except OSError:
            continue
        if match:
            out.append(f"{int(match.group(1)) / 1024:.0f} MB")
    return out


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rate", default="50M", help="upstream bytes/s per response (50M)")
    parser.add_argument("--client", choices=("http", "hubcache"), default="http")
    parser.add_argument("--only", choices=("a", "b", "c"), help="run only part (a), (b) or (c)")
    parser.add_argument("--connections", type=int, default=1000, help="part (c) (1000)")
    parser.add_argument("--slow", type=int, default=500, help="part (c): slow readers (500)")
    parser.add_argument("--samples", type=int, default=200, help="part (c): normal GETs (200)")
    parser.add_argument("--seconds", type=int, default=10, help="part (c): wrk run (10)")
    parser.add_argument(
        "--reps", type=int, default=3, help="part (b): best of N; part (c): median of N (3)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="part (c): processes of each server (1)"
    )
    parser.add_argument(
        "--large-mb", type=int, default=50, help="part (c): the large archive's size (50)"
    )
    parser.add_argument(
        "--large-connections",
        type=int,
        default=100,
        help="part (c): wrk connections to the large archive (100)",
    )
    parser.add_argument("--smoke", action="store_true", help="CI: 5 MB, 4 clients")
    args = parser.parse_args(argv)
    if args.smoke:
        args.size_mb, args.clients, args.rate, args.reps = 5, 4, "10M", 1
        args.connections, args.slow, args.samples, args.seconds = 50, 20, 20, 2
        args.large_mb, args.large_connections = 5, 10
    work = Path(tempfile.mkdtemp(prefix="hubcache-bench-mirror-"))
    work.chmod(0o755)  # nginx's workers run as another user when started by root
    rows: list[Row] = []
    peaks: list[float] = []
    try:
        (work / "upstream" / "m").mkdir(parents=True)
        archive = work / "upstream" / "m" / "1.tar"
        size_mb, expected = 0.0, ""
        if args.only != "c":  # the load part makes files of its own
            expected = make_archive(archive, args.size_mb * 10**6)
            size_mb = archive.stat().st_size / 1e6
        if args.only in (None, "a"):
            rows += fan_out(args, work, expected, peaks)
        if args.only in (None, "b"):
            rows += stored(args, work, expected, size_mb, peaks)
        if args.only in (None, "c"):
            rows += load(args, work, peaks)
        rows.append(("peak RSS of the mirror (VmHWM, worst run)", f"{max(peaks):.0f} MB"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    who = f"{args.clients} clients ({args.client})"
    print(f"\nmirror: {size_mb:.0f} MB archive, {who}, {os.cpu_count()} cores\n")
    width = max(len(k) for k, _ in rows)
    print(f"| {'measure'.ljust(width)} | result |")
    print(f"| {'-' * width} | --- |")
    for key, value in rows:
        print(f"| {key.ljust(width)} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
