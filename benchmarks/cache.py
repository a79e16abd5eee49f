"""The shared dataset cache.

cache_source_bytes_ratio
    Bytes the cache service read from the source RSE (its ``source_bytes`` statistic,
    after minus before) over the dataset's size, when 20 distinct hub users, each with
    the tokens a session gets (``user_tokens``), call ``lakehub.fetch`` on one fresh
    dataset at the same moment, one thread each.  1.0 means one transfer per file.
cache_wall_ratio_n20_vs_1
    Wall time until all 20 users have the fresh dataset, over the time one user needs
    for another fresh dataset of the same size (4 x 20 MB of random bytes by default),
    on the same stack, rounds alternating.  The site's ``transfer_rate_limit_mbps`` is
    set (40 Mbit/s per transfer by default) so that the transfer, not the local disk or
    the load of the machine, sets the time, as it would against a remote lake.
cache_read_ratio_vs_local_disk
    uproot events/s reading generated GamGam files from the cache over events/s
    reading copies of them in an ordinary folder, the same branches, both dropped from
    the page cache before every read (warm figures in the context).  Both folders are
    on the same disk here.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx

from benchmarks.common import Family, count, emit, hub_log_problems, log, option, running_stack
from benchmarks.data import (
    GAMGAM_SEED,
    READ_GOAL,
    SAME_DISK_NOTE,
    SOURCE_GOAL,
    WALL_GOAL,
    BenchData,
    analysis_driver,
    rate_ratios,
    sha256,
)
from hub_config.local import cache_url
from lakehub.cache import fetch
from localstack.demo_data import GAMGAM_BRANCHES
from localstack.procs import wait_until
from testkit.harness import (
    Stack,
    cache_stats,
    make_dataset,
    unique_user,
    user_tokens,
)

CACHE_SOURCE = "cache_source_bytes_ratio"
CACHE_WALL = "cache_wall_ratio_n20_vs_1"
CACHE_READ = "cache_read_ratio_vs_local_disk"


@dataclass
class FetchRound:
    users: int
    did: str
    dataset_bytes: int
    files: int
    wall_s: float
    latencies_s: list[float]
    source_bytes: int
    max_transfers_per_file: int


def fresh_dataset(
    stack: Stack, label: str, contents: dict[str, bytes]
) -> tuple[str, dict[str, bytes]]:
    """Register ``contents`` under new, unique file names as a new dataset; return its
    DID and the files as registered."""
    tag = unique_user(label)
    renamed = {f"bench-{tag}-{name}": data for name, data in contents.items()}
    return make_dataset(stack, f"bench.{tag}", renamed), renamed


def fetch_at_once(stack: Stack, did: str, tokens: list[tuple[str, str]], limit_s: float):
    """Every holder of ``tokens`` calls ``lakehub.fetch(did)`` at the same moment, each in
    a thread of its own; returns (wall seconds, each caller's seconds, each one's paths)."""
    url = cache_url(stack.site)
    barrier = threading.Barrier(len(tokens))

    def ask(pair: tuple[str, str]) -> tuple[float, float, list[str]]:
        hub_token, rucio_token = pair
        barrier.wait(timeout=60)
        began = time.perf_counter()
        paths = fetch(
            did,
            progress=False,
            timeout=limit_s,
            url=url,
            token=hub_token,
            rucio_token=rucio_token,
        )
        return began, time.perf_counter(), sorted(paths)

    with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
        answers = list(pool.map(ask, tokens))
    wall = max(a[1] for a in answers) - min(a[0] for a in answers)
    return wall, sorted(a[1] - a[0] for a in answers), [a[2] for a in answers]


def fetch_round(
    stack: Stack, tokens: list[tuple[str, str]], files: int, file_bytes: int, limit_s: float
) -> FetchRound:
    """A fresh dataset of random bytes fetched by everybody in ``tokens`` at once; the
    answers are checked (same paths for all, the registered bytes) after the timing."""
    did, contents = fresh_dataset(
        stack, f"n{len(tokens)}x", {f"{i:02d}.root": os.urandom(file_bytes) for i in range(files)}
    )
    scope = did.split(":")[0]
    expected = {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}
    names = list(contents)
    del contents
    before = cache_stats(stack)
    wall, latencies, answers = fetch_at_once(stack, did, tokens, limit_s)
    after = cache_stats(stack)
    if any(a != answers[0] for a in answers):
        raise RuntimeError(f"{did}: the users were given different paths")
    published = {Path(p).name: sha256(p) for p in answers[0]}
    if published != expected:
        raise RuntimeError(f"{did}: the cached files are not the registered bytes")
    transfers = [after["transfers"].get(f"{scope}:{n}", 0) for n in names]
    return FetchRound(
        users=len(tokens),
        did=did,
        dataset_bytes=files * file_bytes,
        files=files,
        wall_s=wall,
        latencies_s=latencies,
        source_bytes=after["source_bytes"] - before["source_bytes"],
        max_transfers_per_file=max(transfers),
    )


def make_tokens(stack: Stack, prefix: str, n: int) -> list[tuple[str, str]]:
    began = time.monotonic()
    tokens = [user_tokens(stack, unique_user(prefix)) for _ in range(n)]
    log(f"{n} hub user(s) with their own tokens in {time.monotonic() - began:.1f} s")
    return tokens


def cache_figures(args: argparse.Namespace, out: IO[str]) -> None:
    data: BenchData = args.bench_data
    wanted = [f for f in (CACHE_SOURCE, CACHE_WALL, CACHE_READ) if args.only in (None, f)]
    rate = args.cache_rate_mbps
    site = {"cache": {"transfer_rate_limit_mbps": rate}}
    with running_stack("cache", args.keep_logs, site=site) as stack:
        wait_until(lambda: _cache_answers(stack), timeout=60, what="the cache service")
        single = make_tokens(stack, "one", 1)
        load_before = os.getloadavg()[0]
        rounds: list[FetchRound] = []
        if CACHE_SOURCE in wanted or CACHE_WALL in wanted:
            crowd = make_tokens(stack, "many", args.cache_users)
            for i in range(args.cache_rounds):
                order = [single, crowd] if i % 2 == 0 else [crowd, single]
                if CACHE_WALL not in wanted:
                    order = [crowd]
                for tokens in order:
                    r = fetch_round(
                        stack, tokens, args.cache_files, args.cache_file_mb * 1_000_000, 600
                    )
                    rounds.append(r)
                    log(
                        f"round {i + 1}/{args.cache_rounds}, {r.users} user(s): "
                        f"{r.wall_s:.2f} s (per user {r.latencies_s[0]:.2f}-"
                        f"{r.latencies_s[-1]:.2f} s), {r.source_bytes} source bytes for "
                        f"{r.dataset_bytes}, at most {r.max_transfers_per_file} transfer(s)/file"
                    )
        read = None
        if CACHE_READ in wanted:
            read = read_cached_vs_local(stack, single[0], data, args)
        load_after = os.getloadavg()[0]
        log_errors = len(hub_log_problems(stack.paths.state))

    crowds = [r for r in rounds if r.users == args.cache_users]
    singles = [r for r in rounds if r.users == 1]
    setup = {
        "file_bytes": args.cache_file_mb * 1_000_000,
        "transfer_rate_limit_mbps": rate,
        "transfer_time_at_limit_s": round(args.cache_file_mb * 8 / rate, 2),
        "rate_note": (
            f"site cache.transfer_rate_limit_mbps = {rate}: each transfer process is held to "
            f"{rate} Mbit/s (a plausible single stream from a remote lake; it also keeps the "
            "transfer time independent of the local disk and of the other work on the machine); "
            "max_parallel_transfers stays at its default (4), so the files of a dataset move "
            "in parallel"
        ),
        "source": "file:// replicas on the stack's demo RSE (local disk)",
        "client": "lakehub.fetch in one thread per user (polls the job every 0.5 s)",
        "hub_log_error_lines": log_errors,
        "loadavg_1m_before_after": [round(load_before, 2), round(load_after, 2)],
        "cpus": os.cpu_count(),
    }
    if CACHE_SOURCE in wanted:
        source = sum(r.source_bytes for r in crowds)
        size = sum(r.dataset_bytes for r in crowds)
        ratio = source / size
        emit(
            out,
            CACHE_SOURCE,
            round(ratio, 4),
            users=args.cache_users,
            dataset_bytes=crowds[0].dataset_bytes,
            files=args.cache_files,
            datasets=len(crowds),
            source_bytes_per_dataset=[r.source_bytes for r in crowds],
            max_transfers_per_file=max(r.max_transfers_per_file for r in crowds),
            note=(
                "cache_stats source_bytes after minus before, over the dataset's size, when "
                f"{args.cache_users} distinct hub users (own JupyterHub + Rucio tokens from "
                "user_tokens) fetch one fresh dataset at once; summed over the rounds"
            ),
            goal=f"== {SOURCE_GOAL:.1f}",
            goal_met=ratio == SOURCE_GOAL,
            **setup,
        )
    if CACHE_WALL in wanted:
        crowd_wall = statistics.median(r.wall_s for r in crowds)
        single_wall = statistics.median(r.wall_s for r in singles)
        ratio = crowd_wall / single_wall
        emit(
            out,
            CACHE_WALL,
            round(ratio, 4),
            users=args.cache_users,
            rounds=args.cache_rounds,
            wall_n_users_s=[round(r.wall_s, 3) for r in crowds],
            wall_1_user_s=[round(r.wall_s, 3) for r in singles],
            p50_wall_n_users_s=round(crowd_wall, 3),
            p50_wall_1_user_s=round(single_wall, 3),
            extra_s_n_users=round(crowd_wall - single_wall, 3),
            extra_note=(
                "p50 n-user wall minus p50 1-user wall: time the crowd costs beyond the "
                "transfer itself; it does not depend on the rate limit, the ratio does"
            ),
            n_users_latency_p50_max_s=[
                [round(statistics.median(r.latencies_s), 3), round(r.latencies_s[-1], 3)]
                for r in crowds
            ],
            dataset_bytes=args.cache_files * args.cache_file_mb * 1_000_000,
            files=args.cache_files,
            note=(
                "median wall time (first fetch call to last answer) of the n-user rounds over "
                "that of the 1-user rounds; every round a fresh dataset of the same size, "
                "rounds alternate which goes first, one stack"
            ),
            goal=f"<= {WALL_GOAL:.2f}",
            goal_met=ratio <= WALL_GOAL,
            **setup,
        )
    if CACHE_READ in wanted and read is not None:
        ratios = {
            mode: rate_ratios(*zip(*read["pairs"][mode], strict=True)) for mode in ("cold", "warm")
        }
        ratio = ratios["cold"]["paired_p50"]
        emit(
            out,
            CACHE_READ,
            round(ratio, 4),
            events=read["events"],
            files=len(read["cached_files"]),
            file_bytes=read["file_bytes"],
            repetitions=args.read_reps,
            pairs=len(read["pairs"]["cold"]),
            branches=read["branches"],
            cached_events_per_s=round(ratios["cold"]["top_events_per_s_p50"]),
            local_events_per_s=round(ratios["cold"]["bottom_events_per_s_p50"]),
            ratio_of_medians=round(ratios["cold"]["of_medians"], 4),
            ratio_of_best=round(ratios["cold"]["of_best"], 4),
            paired_note=(
                "value = median over all files and repetitions of the ratio of the two reads "
                "of a file and its copy, made back to back (which goes first alternates); "
                "of_medians = ratio of the two median rates, of_best = of the two best"
            ),
            rates_note="events/s of single-file reads (medians over files and repetitions)",
            warm_ratio=round(ratios["warm"]["paired_p50"], 4),
            warm_ratio_of_medians=round(ratios["warm"]["of_medians"], 4),
            warm_ratio_of_best=round(ratios["warm"]["of_best"], 4),
            warm_cached_events_per_s=round(ratios["warm"]["top_events_per_s_p50"]),
            warm_local_events_per_s=round(ratios["warm"]["bottom_events_per_s_p50"]),
            resident_bytes_before_cold_read=read["resident_bytes_before_cold_read"],
            page_cache_note=(
                "value: both copies dropped from this machine's page cache (fsync + "
                "posix_fadvise DONTNEED, checked with fincore) before every read, so each "
                "read goes to the disk (a virtual disk here: the host may still cache it); "
                "warm_*: the same reads with both copies in the page cache"
            ),
            same_disk_note=SAME_DISK_NOTE,
            reader=f"uproot {read['uproot']} (analysis Python {read['python']}), "
            "uproot.iterate step_size 25 MB, one file at a time, each file back to back with "
            "its copy, alternating which goes first",
            data=f"GamGam files generated by localstack.demo_data (seed {GAMGAM_SEED}), "
            "registered as a fresh dataset and fetched through the cache",
            goal=f">= {READ_GOAL:.2f}",
            goal_met=ratio >= READ_GOAL,
        )


def _cache_answers(stack: Stack) -> bool:
    try:
        cache_stats(stack)
    except httpx.HTTPError:
        return False
    return True


def read_cached_vs_local(
    stack: Stack, tokens: tuple[str, str], data: BenchData, args: argparse.Namespace
) -> dict:
    generated = data.gamgam()
    did, _ = fresh_dataset(stack, "read", {p.name: p.read_bytes() for p in generated})
    hub_token, rucio_token = tokens
    cached = fetch(
        did, progress=False, url=cache_url(stack.site), token=hub_token, rucio_token=rucio_token
    )
    cached = sorted(cached)
    local_dir = data.folder / f"local-copy-{unique_user('')}"
    local_dir.mkdir()
    local = []
    for path in cached:
        target = local_dir / Path(path).name
        shutil.copyfile(path, target)
        local.append(str(target))
    if [sha256(p) for p in cached] != [sha256(p) for p in local]:
        raise RuntimeError("the local copy differs from the cached files")
    log(f"reading {len(cached)} cached files and their copies in {local_dir}")
    result = analysis_driver(
        ["read", "--reps", str(args.read_reps), "--cached", *cached, "--local", *local]
        + ["--branches", *GAMGAM_BRANCHES],  # the H->yy notebook's photon branches
        limit_s=600,
    )
    result["cached_files"] = cached
    result["file_bytes"] = [os.path.getsize(p) for p in cached]
    return result


# --- figure 6: the H->yy notebook's selection against a raw read ----------------------------


def cache_arguments(parser: argparse.ArgumentParser) -> None:
    count(parser, "--cache-users", 20, "users fetching one fresh dataset at once (at least 2)")
    count(parser, "--cache-rounds", 3, "rounds of (1 user, --cache-users users) on fresh data")
    count(parser, "--cache-files", 4, "files per dataset")
    count(parser, "--cache-file-mb", 20, "MB per file")
    option(parser, "--cache-rate-mbps", 40.0, "cache.transfer_rate_limit_mbps, Mbit/s per transfer")
    count(parser, "--read-reps", 15, "timed reads of each copy per page-cache mode")


FAMILIES = (Family((CACHE_SOURCE, CACHE_WALL, CACHE_READ), cache_figures, cache_arguments),)
