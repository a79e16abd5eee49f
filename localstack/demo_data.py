"""Deterministic toy data in the ATLAS Open Data 2025 education "GamGam" layout.

The files written here stand in for the diphoton skim of the 2025e-13tev-beta
release when the real data cannot (or should not) be fetched, e.g. in tests or on
a classroom machine without network access.  They contain a TTree called
``analysis`` with one entry per event and jagged per-photon branches:

* ``photon_pt``, ``photon_eta``, ``photon_phi``, ``photon_e`` (float32, GeV)
* ``photon_isTightID`` (bool)
* ``photon_ptcone20`` (float32, GeV): track isolation in a cone of dR = 0.2

uproot stores variable-length branches together with an ``int32`` counter
branch; all six share the counter ``photon_n`` (the real release has a branch
of that name as well).  A small ``TObjString`` named ``lakehub_demo`` records
how the file was produced, so that a notebook can label plots as generated data
and :func:`generate_dataset` can tell whether a file on disk may be reused.

Physics content, per event:

* a diphoton system whose mass is drawn either from a falling exponential
  (non-resonant background, 90-180 GeV) or from a Gaussian at 125 GeV with a
  width of 2 GeV (a Higgs-like signal, a few percent of events);
* a transverse momentum, rapidity and azimuth for the pair, and a decay
  direction in the pair rest frame (isotropic for the spin-0 signal, more
  forward-peaked for the background); the two massless photons are built in the
  rest frame and boosted to the lab, so their invariant mass is the drawn mass;
* both photons inside the acceptance of the skim (|eta| < 2.37, pT > 25 GeV);
  the calorimeter crack is *not* removed, so some photons land there;
* a share of background photons are misidentified jets which fail the tight
  identification and the isolation more often than genuine photons do;
* sometimes a third, softer photon.

Everything is vectorised with numpy and driven by one ``numpy.random.Generator``
seeded from the ``seed`` argument, so the same arguments give identical files.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

__all__ = [
    "DEFAULT_EVENTS",
    "DEFAULT_SIGNAL_FRACTION",
    "GAMGAM_BRANCHES",
    "GAMGAM_COUNTER",
    "METADATA_KEY",
    "TREE_NAME",
    "GamGamSample",
    "dataset_file_name",
    "generate_dataset",
    "generate_gamgam",
    "main",
    "read_metadata",
    "simulate_gamgam",
]

TREE_NAME = "analysis"
GAMGAM_BRANCHES: tuple[str, ...] = (
    "photon_pt",
    "photon_eta",
    "photon_phi",
    "photon_e",
    "photon_isTightID",
    "photon_ptcone20",
)
#: Name of the per-event photon multiplicity branch uproot writes as the counter.
GAMGAM_COUNTER = "photon_n"
#: Name of the TObjString holding the provenance of a generated file.
METADATA_KEY = "lakehub_demo"
#: Bump when the generated content changes, so old files are regenerated.
FORMAT_VERSION = 1

DEFAULT_EVENTS = 30_000
DEFAULT_SIGNAL_FRACTION = 0.025

# --- physics knobs (all energies in GeV) -----------------------------------
HIGGS_MASS = 125.0
HIGGS_WIDTH = 2.0  # detector resolution dominates the natural width
BKG_MASS_RANGE = (90.0, 180.0)
BKG_MASS_SLOPE = 0.045  # per GeV
# Pair transverse momentum ~ Gamma(shape, scale); pair rapidity ~ Normal(0, width)
SIG_PT_SHAPE, SIG_PT_SCALE = 2.0, 16.0
BKG_PT_SHAPE, BKG_PT_SCALE = 1.4, 12.0
SIG_RAPIDITY_WIDTH = 1.0
BKG_RAPIDITY_WIDTH = 1.3
# Share of background events whose cos(theta*) follows cos^2 rather than flat.
BKG_FORWARD_SHARE = 0.5
# Acceptance of the GamGam skim: two photons with pT > 25 GeV inside the ECAL.
ACCEPT_MIN_PT = 25.0
ACCEPT_MAX_ABS_ETA = 2.37
# Background composition: genuine diphoton / photon + fake / two fakes.
BKG_GAMMA_JET_SHARE = 0.30
BKG_DIJET_SHARE = 0.10
# Identification and isolation.  "iso" is ptcone20 / pT.
TIGHT_EFF_PROMPT = 0.93
TIGHT_EFF_FAKE = 0.45
ISO_ZERO_PROMPT = 0.60  # chance that no track at all is in the cone
ISO_SCALE_PROMPT = 0.025
ISO_ZERO_FAKE = 0.15
ISO_SCALE_FAKE = 0.12
# Occasional third photon, softer than the subleading one.
THIRD_PHOTON_PROB = 0.12
THIRD_PHOTON_MIN_PT = 10.0
THIRD_PHOTON_PT_SCALE = 6.0


@dataclass(frozen=True)
class GamGamSample:
    """Generated events: the photon branches plus generator truth.

    ``photons`` maps each name in :data:`GAMGAM_BRANCHES` to a jagged awkward
    array (photons sorted by decreasing pT).  ``mass`` is the generated diphoton
    mass and ``is_signal`` whether the event came from the resonance; the two
    leading photons are always the decay products of that diphoton system.
    """

    photons: dict[str, ak.Array]
    mass: np.ndarray
    is_signal: np.ndarray

    def __len__(self) -> int:
        return len(self.mass)


# --- kinematics -------------------------------------------------------------


def _boost(energy, px, py, pz, bx, by, bz):
    """Boost four-momenta from a frame moving with velocity (bx, by, bz) to the lab."""
    b2 = bx * bx + by * by + bz * bz
    gamma = 1.0 / np.sqrt(1.0 - b2)
    bp = bx * px + by * py + bz * pz
    # (gamma - 1) / b^2, written so that it stays finite as b -> 0.
    coef = np.divide(gamma - 1.0, b2, out=np.zeros_like(b2), where=b2 > 0.0)
    shift = coef * bp + gamma * energy
    return gamma * (energy + bp), px + shift * bx, py + shift * by, pz + shift * bz


def _two_body_photons(mass, pair_pt, pair_y, pair_phi, cos_theta, phi_star):
    """Lab-frame momenta (E, px, py, pz) of the two photons of a decaying pair.

    In the pair rest frame each massless photon carries m/2 and they fly back to
    back along the direction (theta*, phi*), measured from the lab axes.  The pair
    itself has transverse mass mT = sqrt(m^2 + pT^2), energy mT cosh(y) and
    longitudinal momentum mT sinh(y); its velocity p/E defines the boost.
    """
    m_t = np.sqrt(mass**2 + pair_pt**2)
    pair_e = m_t * np.cosh(pair_y)
    bx = pair_pt * np.cos(pair_phi) / pair_e
    by = pair_pt * np.sin(pair_phi) / pair_e
    bz = m_t * np.sinh(pair_y) / pair_e

    half = 0.5 * mass
    sin_theta = np.sqrt(np.clip(1.0 - cos_theta**2, 0.0, None))
    qx = half * sin_theta * np.cos(phi_star)
    qy = half * sin_theta * np.sin(phi_star)
    qz = half * cos_theta
    first = _boost(half, qx, qy, qz, bx, by, bz)
    second = _boost(half, -qx, -qy, -qz, bx, by, bz)
    return first, second


def _to_detector(energy, px, py, pz):
    pt = np.hypot(px, py)
    eta = np.arcsinh(pz / pt)
    phi = np.arctan2(py, px)
    return pt, eta, phi, energy


# --- sampling ---------------------------------------------------------------


def _sample_mass(rng: np.random.Generator, n: int, signal: bool) -> np.ndarray:
    if signal:
        return rng.normal(HIGGS_MASS, HIGGS_WIDTH, n)
    lo, hi = BKG_MASS_RANGE
    # Inverse transform of an exponential truncated to [lo, hi].
    u = rng.random(n)
    span = -np.expm1(-BKG_MASS_SLOPE * (hi - lo))
    return lo - np.log1p(-u * span) / BKG_MASS_SLOPE


def _sample_cos_theta(rng: np.random.Generator, n: int, signal: bool) -> np.ndarray:
    flat = rng.uniform(-1.0, 1.0, n)
    if signal:
        return flat  # a scalar decays isotropically
    # Density ~ cos^2: |c| = u^(1/3) with a random sign.
    u = rng.random(n)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    forward = sign * np.cbrt(u)
    return np.where(rng.random(n) < BKG_FORWARD_SHARE, forward, flat)


def _accepted_pairs(rng: np.random.Generator, n: int, signal: bool):
    """Draw diphoton systems until ``n`` of them pass the skim acceptance.

    Works in vectorised batches; the loop runs over batches, not events.
    Returns the masses and the detector variables (pt, eta, phi, e) of the
    two photons, each as an (n, 2) array.
    """
    shape, scale = (SIG_PT_SHAPE, SIG_PT_SCALE) if signal else (BKG_PT_SHAPE, BKG_PT_SCALE)
    y_width = SIG_RAPIDITY_WIDTH if signal else BKG_RAPIDITY_WIDTH
    masses: list[np.ndarray] = []
    photons: list[np.ndarray] = []
    have = 0
    while have < n:
        batch = max(2 * (n - have), 256)
        mass = _sample_mass(rng, batch, signal)
        pair_pt = rng.gamma(shape, scale, batch)
        pair_y = rng.normal(0.0, y_width, batch)
        pair_phi = rng.uniform(-np.pi, np.pi, batch)
        cos_theta = _sample_cos_theta(rng, batch, signal)
        phi_star = rng.uniform(-np.pi, np.pi, batch)
        first, second = _two_body_photons(mass, pair_pt, pair_y, pair_phi, cos_theta, phi_star)
        # shape (batch, 2 photons, 4 variables)
        kin = np.stack([np.stack(_to_detector(*first), -1), np.stack(_to_detector(*second), -1)], 1)
        ok = np.all(
            (kin[:, :, 0] > ACCEPT_MIN_PT) & (np.abs(kin[:, :, 1]) < ACCEPT_MAX_ABS_ETA), axis=1
        )
        masses.append(mass[ok])
        photons.append(kin[ok])
        have += int(ok.sum())
    return np.concatenate(masses)[:n], np.concatenate(photons)[:n]


def _identification(rng: np.random.Generator, fake: np.ndarray):
    """Tight-ID decision and relative isolation ptcone20/pT for each photon."""
    tight = rng.random(fake.shape) < np.where(fake, TIGHT_EFF_FAKE, TIGHT_EFF_PROMPT)
    zero = rng.random(fake.shape) < np.where(fake, ISO_ZERO_FAKE, ISO_ZERO_PROMPT)
    spread = rng.exponential(1.0, fake.shape) * np.where(fake, ISO_SCALE_FAKE, ISO_SCALE_PROMPT)
    return tight, np.where(zero, 0.0, spread)


def simulate_gamgam(
    n_events: int = DEFAULT_EVENTS,
    seed: int = 1,
    signal_fraction: float = DEFAULT_SIGNAL_FRACTION,
) -> GamGamSample:
    """Generate ``n_events`` diphoton events in memory (see the module docstring).

    ``signal_fraction`` is the share of written events that come from the
    125 GeV resonance (before any analysis selection).
    """
    n_events = _check_events(n_events)
    if not 0.0 <= signal_fraction <= 1.0:
        raise ValueError(f"signal_fraction must be within [0, 1], got {signal_fraction!r}")
    rng = np.random.default_rng(seed)

    n_sig = int(rng.binomial(n_events, signal_fraction))
    sig_mass, sig_kin = _accepted_pairs(rng, n_sig, signal=True)
    bkg_mass, bkg_kin = _accepted_pairs(rng, n_events - n_sig, signal=False)
    mass = np.concatenate([sig_mass, bkg_mass])
    kin = np.concatenate([sig_kin, bkg_kin])
    is_signal = np.arange(n_events) < n_sig
    order = rng.permutation(n_events)
    mass, kin, is_signal = mass[order], kin[order], is_signal[order]

    # Put the harder photon of the pair first.
    swap = kin[:, 1, 0] > kin[:, 0, 0]
    kin[swap] = kin[swap][:, ::-1]

    # Which photons are misidentified jets (never in signal events).
    category = rng.random(n_events)
    gamma_jet = ~is_signal & (category < BKG_GAMMA_JET_SHARE)
    dijet = ~is_signal & (category >= 1.0 - BKG_DIJET_SHARE)
    fake_lead = rng.random(n_events) < 0.5
    fake = np.stack([dijet | (gamma_jet & fake_lead), dijet | (gamma_jet & ~fake_lead)], 1)

    # A soft extra photon in some events, kept below the subleading one.
    has_third = rng.random(n_events) < THIRD_PHOTON_PROB
    pt3 = THIRD_PHOTON_MIN_PT + rng.exponential(THIRD_PHOTON_PT_SCALE, n_events)
    pt3 = np.minimum(pt3, 0.95 * kin[:, 1, 0])
    eta3 = rng.uniform(-ACCEPT_MAX_ABS_ETA, ACCEPT_MAX_ABS_ETA, n_events)
    phi3 = rng.uniform(-np.pi, np.pi, n_events)
    third = np.stack([pt3, eta3, phi3, pt3 * np.cosh(eta3)], -1)
    fake3 = rng.random(n_events) < 0.6

    kin = np.concatenate([kin, third[:, None, :]], 1)  # (n, 3, 4)
    fake = np.concatenate([fake, fake3[:, None]], 1)
    tight, iso = _identification(rng, fake)
    present = np.ones((n_events, 3), dtype=bool)
    present[:, 2] = has_third

    # Sort by decreasing pT (absent photons last), then drop the absent slots.
    key = np.where(present, kin[:, :, 0], -np.inf)
    rank = np.argsort(-key, axis=1, kind="stable")
    kin = np.take_along_axis(kin, rank[:, :, None], 1)
    tight = np.take_along_axis(tight, rank, 1)
    iso = np.take_along_axis(iso, rank, 1)
    present = np.take_along_axis(present, rank, 1)
    counts = present.sum(axis=1)

    def jagged(values: np.ndarray, dtype) -> ak.Array:
        return ak.unflatten(values[present].astype(dtype), counts)

    pt = kin[:, :, 0]
    photons = {
        "photon_pt": jagged(pt, np.float32),
        "photon_eta": jagged(kin[:, :, 1], np.float32),
        "photon_phi": jagged(kin[:, :, 2], np.float32),
        "photon_e": jagged(kin[:, :, 3], np.float32),
        "photon_isTightID": jagged(tight, np.bool_),
        "photon_ptcone20": jagged(iso * pt, np.float32),
    }
    return GamGamSample(photons=photons, mass=mass, is_signal=is_signal)


# --- files ------------------------------------------------------------------


def _check_events(n_events: int) -> int:
    if isinstance(n_events, bool) or not isinstance(n_events, int | np.integer):
        raise TypeError(f"n_events must be an integer, got {n_events!r}")
    if n_events < 1:
        raise ValueError(f"n_events must be at least 1, got {n_events}")
    return int(n_events)


def _metadata(n_events: int, seed: int, signal_fraction: float) -> dict:
    return {
        "generator": "lakehub localstack.demo_data",
        "format": FORMAT_VERSION,
        "layout": "ATLAS Open Data 2025e GamGam (generated demo data)",
        "n_events": int(n_events),
        "seed": int(seed),
        "signal_fraction": float(signal_fraction),
    }


def read_metadata(path: str | os.PathLike[str]) -> dict | None:
    """Return the provenance stored in a generated file, or None if there is none."""
    with uproot.open(path) as handle:
        if METADATA_KEY not in handle.keys(cycle=False):
            return None
        return json.loads(str(handle[METADATA_KEY]))


def generate_gamgam(
    path: str | os.PathLike[str],
    n_events: int = DEFAULT_EVENTS,
    seed: int = 1,
    signal_fraction: float = DEFAULT_SIGNAL_FRACTION,
) -> Path:
    """Write one GamGam-layout ROOT file and return its path.

    The file appears atomically: it is written under a temporary name in the
    target directory and then renamed, so readers never see a partial file.
    """
    path = Path(path)
    sample = simulate_gamgam(n_events, seed, signal_fraction)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with uproot.recreate(tmp) as out:
            out[METADATA_KEY] = json.dumps(_metadata(n_events, seed, signal_fraction))
            out.mktree(
                TREE_NAME,
                {name: sample.photons[name] for name in GAMGAM_BRANCHES},
                title="ATLAS Open Data GamGam layout (generated demo data)",
                counter_name=lambda _branch: GAMGAM_COUNTER,
            )
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def dataset_file_name(index: int) -> str:
    """File name of the ``index``-th (1-based) file of a generated dataset."""
    return f"demo.GamGam.data_{index:02d}.root"


def _file_seed(seed: int, index: int) -> int:
    """Independent per-file seed derived from the dataset seed and the file index."""
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)
    return int(state[0])


def _reusable(path: Path, expected: dict) -> bool:
    if not path.is_file():
        return False
    try:
        with uproot.open(path) as handle:
            tree = handle[TREE_NAME]
            if tree.num_entries != expected["n_events"]:
                return False
            if not set(GAMGAM_BRANCHES) <= set(tree.keys()):
                return False
        return read_metadata(path) == expected
    except Exception:  # unreadable or truncated: regenerate it
        return False


@contextmanager
def _progress(total: int, enabled: bool, description: str) -> Iterator:
    """Yield a callable that advances a progress bar by one step."""
    if not enabled:
        yield lambda: None
        return
    try:
        from rich.progress import Progress
    except ImportError:  # rich is optional; fall back to tqdm, then to no bar
        pass
    else:
        with Progress() as bar:
            task = bar.add_task(description, total=total)
            yield lambda: bar.advance(task)
        return
    try:
        from tqdm import tqdm
    except ImportError:
        yield lambda: None
        return
    with tqdm(total=total, desc=description) as bar:
        yield lambda: bar.update(1)


def _build_dataset(out_dir, n_files, n_events, seed, progress, signal_fraction):
    if isinstance(n_files, bool) or not isinstance(n_files, int) or n_files < 1:
        raise ValueError(f"n_files must be a positive integer, got {n_files!r}")
    n_events = _check_events(n_events)
    if int(seed) < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[tuple[Path, bool]] = []
    with _progress(n_files, progress, "Generating demo GamGam files") as step:
        for index in range(1, n_files + 1):
            path = out_dir / dataset_file_name(index)
            file_seed = _file_seed(seed, index)
            reused = _reusable(path, _metadata(n_events, file_seed, signal_fraction))
            if not reused:
                generate_gamgam(path, n_events, file_seed, signal_fraction)
            results.append((path, reused))
            step()
    return results


def generate_dataset(
    out_dir: str | os.PathLike[str],
    n_files: int = 2,
    n_events: int = DEFAULT_EVENTS,
    seed: int = 1,
    progress: bool = True,
    signal_fraction: float = DEFAULT_SIGNAL_FRACTION,
) -> list[Path]:
    """Write ``n_files`` files ``demo.GamGam.data_NN.root`` into ``out_dir``.

    Each file gets its own seed derived from ``seed`` and its index.  A file that
    already exists and was produced with the same settings (event count, seed,
    signal fraction, generator version) is left untouched, so repeated calls
    are cheap.
    """
    built = _build_dataset(out_dir, n_files, n_events, seed, progress, signal_fraction)
    return [path for path, _reused in built]


# --- command line -----------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


class _OneLineErrors(argparse.ArgumentParser):
    """Report bad arguments as a single line instead of usage plus message."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(
        prog="python -m localstack.demo_data",
        description="Write deterministic demo ROOT files in the ATLAS Open Data GamGam layout.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--files", type=_positive_int, default=2, help="number of files (2)")
    parser.add_argument(
        "--events", type=_positive_int, default=DEFAULT_EVENTS, help="events per file (30000)"
    )
    parser.add_argument("--seed", type=_non_negative_int, default=1, help="dataset seed (1)")
    parser.add_argument(
        "--signal-fraction",
        type=_fraction,
        default=DEFAULT_SIGNAL_FRACTION,
        help=f"share of signal events ({DEFAULT_SIGNAL_FRACTION})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {str(args.out)!r} exists and is not a directory")
    try:
        built = _build_dataset(
            args.out, args.files, args.events, args.seed, not args.quiet, args.signal_fraction
        )
    except OSError as exc:
        parser.exit(1, f"{parser.prog}: error: cannot write to {str(args.out)!r}: {exc}\n")
    for path, reused in built:
        size_kib = path.stat().st_size / 1024
        state = "reused" if reused else "wrote "
        print(f"{state} {path} ({args.events} events, {size_kib:.0f} KiB)")
    fresh = sum(not reused for _path, reused in built)
    print(f"{len(built)} file(s) in {args.out} ({fresh} written, {len(built) - fresh} reused)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
