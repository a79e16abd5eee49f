"""Copy one file into the cache's incoming folder, checksumming it on the way.

Run as a child process by the cache service, so a transfer can be stopped (or killed)
without touching the service.  Input: one JSON object on stdin::

    {"sources": ["file:///...", "https://..."], "dest": "/cache/.incoming/x", "rate_bps": null}

Output on stdout: ``{"progress": bytes}`` lines, then one
``{"ok": true, "bytes": n, "adler32": "...", "md5": "...", "source": "..."}`` line, or
``{"ok": false, "error": "..."}``.  The destination is created with mode 0600 and is
never renamed here: publication is the service's job, after it checked the checksum.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import zlib
from collections.abc import Iterator
from urllib.parse import unquote, urlsplit

CHUNK = 256 * 1024


class Checksums:
    def __init__(self) -> None:
        self.adler = 1
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.bytes = 0

    def update(self, chunk: bytes) -> None:
        self.adler = zlib.adler32(chunk, self.adler)
        self.md5.update(chunk)
        self.bytes += len(chunk)

    @property
    def adler32(self) -> str:
        return f"{self.adler & 0xFFFFFFFF:08x}"


def _file_chunks(url: str) -> Iterator[bytes]:
    with open(unquote(urlsplit(url).path), "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _http_chunks(url: str) -> Iterator[bytes]:
    import httpx

    with httpx.stream("GET", url, timeout=60, follow_redirects=True) as response:
        response.raise_for_status()
        yield from response.iter_bytes(CHUNK)


READERS = {"file": _file_chunks, "http": _http_chunks, "https": _http_chunks}


def copy(source: str, dest: str, rate_bps: float | None, report) -> Checksums:
    reader = READERS.get(urlsplit(source).scheme)
    if reader is None:
        raise ValueError(f"no reader for {urlsplit(source).scheme}:// sources")
    sums = Checksums()
    started = time.monotonic()
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        last_report = 0
        for chunk in reader(source):
            out.write(chunk)
            sums.update(chunk)
            if rate_bps:  # stay under the configured bandwidth towards the data lake
                ahead = sums.bytes / rate_bps - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if sums.bytes - last_report >= CHUNK * 4:
                report({"progress": sums.bytes})
                last_report = sums.bytes
        out.flush()
        os.fsync(out.fileno())
    return sums


def main() -> int:
    def report(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    request = json.load(sys.stdin)
    errors = []
    for source in request["sources"]:
        try:
            sums = copy(source, request["dest"], request.get("rate_bps"), report)
        except Exception as exc:  # try the next replica; report all failures at the end
            errors.append(f"{source}: {type(exc).__name__}: {exc}")
            try:
                os.unlink(request["dest"])
            except FileNotFoundError:
                pass
            continue
        report(
            {
                "ok": True,
                "bytes": sums.bytes,
                "adler32": sums.adler32,
                "md5": sums.md5.hexdigest(),
                "source": source,
            }
        )
        return 0
    report({"ok": False, "error": "; ".join(errors) or "no source replica"})
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
