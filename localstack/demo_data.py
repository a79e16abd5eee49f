"""Deterministic toy data in the layouts of the ATLAS Open Data 2025 education release.

The files written here stand in for skims of the 2025e-13tev-beta release when
the real data cannot (or should not) be fetched, e.g. in tests or on a classroom
machine without network access.  Every file holds a TTree called ``analysis``
with one entry per event, in one of these layouts (the registry
:data:`LAYOUTS`, keyed by layout name):

========  ===============  ==============================================================
layout    release skim     content
========  ===============  ==============================================================
GamGam    ``GamGam``       diphoton events: H -> yy at 125 GeV on a falling background
2lep      ``2to4lep``      Z -> ee and Z -> mumu at 91.19 GeV, Drell-Yan, ttbar, fakes
4lep      ``4lep``         H -> ZZ* -> 4l at 125 GeV, ZZ(*) continuum, Z/ttbar + fakes
1lep      ``1LMET30``      W -> e nu / mu nu (lepton + missing pT), multijet, ttbar
========  ===============  ==============================================================

Branch names
------------
The branch names and types are those of the release.  They were taken from the
listing of a 2025e ``4lep`` file (``tree.show()`` output stored in the official
notebook ``13-TeV-examples/uproot_python/IntroToEducationAndOutreachOD.ipynb`` of
github.com/atlas-outreach-data-tools/notebooks-collection-opendata) and from the
branches the official 2025 ``HZZAnalysis``/``WZ3l_Analysis`` notebooks read.  The
skims and their selections are from
https://opendata.atlas.cern/docs/data/for_education/13TeV25_details, except
``4lep`` ("at least four leptons"), which that page does not list; it is the skim
the official IntroToEducationAndOutreachOD notebook reads (the official HZZ
notebook reads ``exactly4lep``).
Energies and momenta are in GeV, as in the release.  Only the subset a teaching
analysis needs is written:

* GamGam: ``photon_pt``, ``photon_eta``, ``photon_phi``, ``photon_e`` (float32),
  ``photon_isTightID`` (bool), ``photon_ptcone20`` (float32, track isolation in a
  cone of dR = 0.2), counted by ``photon_n``;
* lepton layouts: ``lep_pt``, ``lep_eta``, ``lep_phi``, ``lep_e`` (float32),
  ``lep_charge`` (int32, +-1), ``lep_type`` (int32, 11 = electron, 13 = muon),
  ``lep_isTightID``, ``lep_isTightIso`` (bool), ``lep_ptvarcone30`` (track
  isolation) and ``lep_topoetcone20`` (calorimeter isolation, may be negative
  after the pile-up correction), float32 in GeV, counted by ``lep_n``;
* 1lep in addition: ``met`` and ``met_phi`` (float32), the missing transverse
  momentum and its azimuth.

Assumptions: in the release the jagged branches are ``std::vector`` branches;
uproot writes them as C-style variable-length arrays with a counter branch
(``photon_n``/``lep_n``, which exist in the release too), which reads back
identically with uproot.  ``lep_isTightIso`` is modelled as "both relative
isolations below 0.06", a stand-in for the ATLAS working point.  Trigger,
weight, jet, tau and truth branches of the release are not written.

A small ``TObjString`` named ``lakehub_demo`` records how a file was produced, so
that a notebook can label plots as generated data and :func:`generate_dataset`
can tell whether a file on disk may be reused.

Physics content
---------------
GamGam, per event:

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

Lepton layouts: resonances are decayed in their rest frame and boosted to the
lab (massive two-body kinematics, chained for H -> Z Z* -> 4l), then every
lepton is *measured*: its pT is smeared with a flavour-dependent resolution
(electrons 10 %/sqrt(E) (+) 0.7 %, muons 1.7 % (+) 0.015 %/GeV x pT) and its
energy recomputed with the lepton mass.  Non-prompt ("fake") leptons from jets
fail the tight identification and the isolation much more often than prompt
ones.  Every event satisfies its skim's acceptance (leptons with pT > 7 GeV
within |eta| < 2.47 for electrons, 2.5 for muons; for 1lep also missing pT >
30 GeV); electrons in the calorimeter crack are kept.  ``signal_fraction`` is
the share of written events from the signal process:

* 2lep: Z -> ll with a Breit-Wigner mass (91.1876 GeV, width 2.4952 GeV,
  66-116 GeV window), ee and mumu equally often; a falling Drell-Yan continuum;
  a broad ttbar-like dilepton spectrum with ee, mumu and emu pairs; W/multijet
  events with one or two fake leptons of random charge (same-charge pairs); now
  and then a third, soft fake lepton;
* 4lep: H -> ZZ* -> 4l at 125 GeV (on-shell Z1 from a Breit-Wigner, off-shell
  Z2 between 12 GeV and the kinematic limit) in 4e, 4mu and 2e2mu; a ZZ(*)
  background with a small Z -> 4l peak at m_Z, a smooth continuum under the
  Higgs peak and the rise past the on-shell threshold near 180 GeV; Z + two
  fakes and ttbar + two fakes (random flavours and charges); sometimes a fifth
  lepton;
* 1lep: W -> l nu with a Breit-Wigner mass (80.377 GeV, width 2.085 GeV) and
  more W+ than W- (as at the LHC); the missing pT is the neutrino pT plus a
  Gaussian mis-measurement of 6 GeV per component, so the transverse mass has
  its Jacobian edge near the W mass; multijet events (a fake lepton, low
  transverse mass) and ttbar-like events (a broad tail above the edge,
  sometimes a second lepton).

The extra soft leptons are fakes inside the skim acceptance; they are sorted in
with the others, so they are not always the softest lepton of the event.

Everything is vectorised with numpy and driven by one ``numpy.random.Generator``
seeded from the ``seed`` argument, so the same arguments give identical files.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

__all__ = [
    "DEFAULT_EVENTS",
    "DEFAULT_SIGNAL_FRACTION",
    "ELECTRON",
    "GAMGAM_BRANCHES",
    "GAMGAM_COUNTER",
    "LAYOUTS",
    "LEPTON_BRANCHES",
    "LEPTON_COUNTER",
    "MET_BRANCHES",
    "METADATA_KEY",
    "MUON",
    "TREE_NAME",
    "GamGamSample",
    "Layout",
    "LeptonSample",
    "dataset_file_name",
    "generate_dataset",
    "generate_file",
    "generate_gamgam",
    "get_layout",
    "main",
    "read_metadata",
    "simulate",
    "simulate_1lep",
    "simulate_2lep",
    "simulate_4lep",
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

    @property
    def branches(self) -> dict[str, ak.Array]:
        """The tree's branches (the same as ``photons``), as for every layout."""
        return self.photons


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


# =============================================================================
# Lepton skims (2lep, 4lep, 1lep)
# =============================================================================

LEPTON_BRANCHES: tuple[str, ...] = (
    "lep_pt",
    "lep_eta",
    "lep_phi",
    "lep_e",
    "lep_charge",
    "lep_type",
    "lep_isTightID",
    "lep_isTightIso",
    "lep_ptvarcone30",
    "lep_topoetcone20",
)
#: Name of the per-event lepton multiplicity branch (the counter uproot writes).
LEPTON_COUNTER = "lep_n"
#: Per-event missing transverse momentum branches of the 1lep layout.
MET_BRANCHES: tuple[str, ...] = ("met", "met_phi")

ELECTRON, MUON = 11, 13  # values of lep_type (|PDG id|)
ELECTRON_MASS, MUON_MASS = 0.000511, 0.105658

Z_MASS, Z_WIDTH = 91.1876, 2.4952
W_MASS, W_WIDTH = 80.377, 2.085
H_MASS = 125.0  # the natural width (4 MeV) is negligible next to the resolution

# Skim acceptance (all lepton skims) and the extra missing-pT requirement of 1LMET30.
SKIM_LEPTON_MIN_PT = 7.0
ELECTRON_MAX_ABS_ETA = 2.47
MUON_MAX_ABS_ETA = 2.5
SKIM_MIN_MET = 30.0

# Momentum resolution: electrons sigma(E)/E = a/sqrt(E) (+) b, muons sigma(pT)/pT = c (+) d pT.
ELECTRON_RES_STOCHASTIC = 0.10
ELECTRON_RES_CONSTANT = 0.007
MUON_RES_CONSTANT = 0.017
MUON_RES_SLOPE = 1.5e-4  # per GeV
MET_RESOLUTION = 6.0  # GeV, per transverse component

# Identification and isolation (relative: cone sum / pT).
LEP_TIGHT_EFF_ELECTRON = 0.90
LEP_TIGHT_EFF_MUON = 0.96
LEP_TIGHT_EFF_FAKE = 0.30
TRACK_ISO_ZERO_PROMPT, TRACK_ISO_SCALE_PROMPT = 0.70, 0.02
TRACK_ISO_ZERO_FAKE, TRACK_ISO_SCALE_FAKE = 0.10, 0.20
CALO_ISO_MEAN_PROMPT, CALO_ISO_WIDTH_PROMPT = 0.005, 0.025
CALO_ISO_OFFSET_FAKE, CALO_ISO_SCALE_FAKE = 0.03, 0.15
TIGHT_ISO_MAX = 0.06  # lep_isTightIso: both relative isolations below this
FAKE_PT_SCALE = 10.0  # fake lepton pT = 7 GeV + Exp(scale)

# 2lep
Z_WINDOW = (66.0, 116.0)
Z_PT_SHAPE, Z_PT_SCALE = 1.3, 9.0
Z_RAPIDITY_WIDTH = 1.6
DECAY_FORWARD_SHARE = 0.25  # (1 + cos^2) = 3/4 flat + 1/4 (3/2) cos^2
DY_MASS_RANGE, DY_MASS_SLOPE = (40.0, 300.0), 0.035
TTBAR_MASS_MIN, TTBAR_MASS_SHAPE, TTBAR_MASS_SCALE = 15.0, 2.2, 40.0
TTBAR_PT_SHAPE, TTBAR_PT_SCALE = 2.0, 35.0
TWO_LEP_BACKGROUND = {"drell-yan": 0.35, "ttbar": 0.25, "fake": 0.40}
TWO_LEP_EXTRA_PROB = 0.06
DEFAULT_SIGNAL_FRACTION_2LEP = 0.6

# 4lep
Z1_WINDOW = (50.0, 106.0)
Z2_MIN = 12.0
H_PT_SHAPE, H_PT_SCALE = 1.5, 15.0
ZZ_ONSHELL_SHARE = 0.45
ZZ_OFFSHELL_RANGE = (95.0, 195.0)
ZZ_SINGLE_Z_SHARE = 0.15  # of the off-shell part: Z -> 4l
ZZ_SINGLE_Z_WINDOW = (80.0, 102.0)
ZZ_ONSHELL_WINDOW = (66.0, 116.0)
ZZ_PT_SHAPE, ZZ_PT_SCALE = 1.5, 20.0
FOUR_LEP_BACKGROUND = {"ZZ": 0.60, "Z+fakes": 0.25, "ttbar+fakes": 0.15}
FOUR_LEP_EXTRA_PROB = 0.05
DEFAULT_SIGNAL_FRACTION_4LEP = 0.06

# 1lep
W_WINDOW = (W_MASS - 30.0, W_MASS + 30.0)
W_PT_SHAPE, W_PT_SCALE = 1.4, 7.0
W_RAPIDITY_WIDTH = 1.8
W_PLUS_SHARE = 0.58
ONE_LEP_BACKGROUND = {"multijet": 0.55, "ttbar": 0.45}
TTBAR_SECOND_LEPTON_PROB = 0.25
ONE_LEP_EXTRA_PROB = 0.03
DEFAULT_SIGNAL_FRACTION_1LEP = 0.6


@dataclass(frozen=True)
class LeptonSample:
    """Generated events of a lepton layout: the branches plus generator truth.

    ``branches`` maps each branch name of the layout to a jagged awkward array
    (leptons sorted by decreasing pT) or, for per-event quantities such as
    ``met``, a numpy array.  ``process`` indexes ``process_names`` (0 is the
    signal); ``mass`` is the generated mass of the resonance or of the system
    the leptons come from (NaN where there is none, e.g. for events with fakes).
    """

    branches: dict[str, ak.Array | np.ndarray]
    mass: np.ndarray
    process: np.ndarray
    process_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.mass)

    @property
    def is_signal(self) -> np.ndarray:
        return self.process == 0


# --- sampling helpers -----------------------------------------------------------


def _truncated_breit_wigner(rng, n, mass, width, lo, hi) -> np.ndarray:
    """Cauchy (non-relativistic Breit-Wigner) masses restricted to [lo, hi], by inversion."""
    f_lo = np.arctan(2.0 * (lo - mass) / width)
    f_hi = np.arctan(2.0 * (hi - mass) / width)
    return mass + 0.5 * width * np.tan(rng.uniform(f_lo, f_hi, n))


def _truncated_exponential(rng, n, slope, lo, hi) -> np.ndarray:
    span = -np.expm1(-slope * (hi - lo))
    return lo - np.log1p(-rng.random(n) * span) / slope


def _cos_theta(rng, n, forward_share) -> np.ndarray:
    """Mixture of a flat and a cos^2 distribution of cos(theta)."""
    flat = rng.uniform(-1.0, 1.0, n)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    forward = sign * np.cbrt(rng.random(n))
    return np.where(rng.random(n) < forward_share, forward, flat)


def _random_sign(rng, n, plus_share=0.5) -> np.ndarray:
    return np.where(rng.random(n) < plus_share, 1, -1).astype(np.int32)


def _random_flavour(rng, n) -> np.ndarray:
    return np.where(rng.random(n) < 0.5, ELECTRON, MUON).astype(np.int32)


def _lepton_mass(flavour) -> np.ndarray:
    return np.where(flavour == ELECTRON, ELECTRON_MASS, MUON_MASS)


def _system(mass, pt, rapidity, phi):
    """Four-momentum (E, px, py, pz) of a system with the given mass, pT, y and phi."""
    m_t = np.sqrt(mass**2 + pt**2)
    return m_t * np.cosh(rapidity), pt * np.cos(phi), pt * np.sin(phi), m_t * np.sinh(rapidity)


def _decay(parent, parent_mass, mass_a, mass_b, cos_theta, phi_star):
    """Two-body decay of ``parent`` (lab four-momentum) into daughters of the given masses.

    The daughters fly back to back along (theta*, phi*) in the parent rest frame
    with momentum p* from the Kallen function, and are boosted to the lab with
    the parent's velocity.
    """
    energy, px, py, pz = parent
    m2 = parent_mass**2
    kallen = (m2 - (mass_a + mass_b) ** 2) * (m2 - (mass_a - mass_b) ** 2)
    p_star = np.sqrt(np.clip(kallen, 0.0, None)) / (2.0 * parent_mass)
    sin_theta = np.sqrt(np.clip(1.0 - cos_theta**2, 0.0, None))
    qx = p_star * sin_theta * np.cos(phi_star)
    qy = p_star * sin_theta * np.sin(phi_star)
    qz = p_star * cos_theta
    bx, by, bz = px / energy, py / energy, pz / energy
    first = _boost(np.sqrt(p_star**2 + mass_a**2), qx, qy, qz, bx, by, bz)
    second = _boost(np.sqrt(p_star**2 + mass_b**2), -qx, -qy, -qz, bx, by, bz)
    return first, second


def _boosted_system(rng, mass, pt_shape, pt_scale, rapidity_width):
    n = len(mass)
    pt = rng.gamma(pt_shape, pt_scale, n)
    rapidity = rng.normal(0.0, rapidity_width, n)
    return _system(mass, pt, rapidity, rng.uniform(-np.pi, np.pi, n))


def _resolution(pt, eta, flavour) -> np.ndarray:
    """Relative pT resolution of electrons and muons."""
    energy = pt * np.cosh(eta)
    electron = np.hypot(
        ELECTRON_RES_STOCHASTIC / np.sqrt(np.maximum(energy, 1.0)), ELECTRON_RES_CONSTANT
    )
    muon = np.hypot(MUON_RES_CONSTANT, MUON_RES_SLOPE * pt)
    return np.where(flavour == ELECTRON, electron, muon)


def _measured(pt, eta, phi, flavour, charge, fake):
    """A lepton as the detector records it: (pt, eta, phi, e, charge, type, fake)."""
    energy = np.sqrt((pt * np.cosh(eta)) ** 2 + _lepton_mass(flavour) ** 2)
    return (pt, eta, phi, energy, charge, flavour, fake)


def _prompt(rng, four, flavour, charge):
    """Smear a true lepton four-momentum with the detector resolution."""
    _energy, px, py, pz = four
    pt_true = np.hypot(px, py)
    eta = np.arcsinh(pz / pt_true)
    phi = np.arctan2(py, px)
    smear = 1.0 + _resolution(pt_true, eta, flavour) * rng.standard_normal(len(pt_true))
    pt = pt_true * np.clip(smear, 0.05, None)
    return _measured(pt, eta, phi, flavour, charge, np.zeros(len(pt), dtype=bool))


def _fake(rng, n, pt_scale=FAKE_PT_SCALE):
    """A non-prompt lepton from a jet: soft, random flavour and charge."""
    pt = SKIM_LEPTON_MIN_PT + rng.exponential(pt_scale, n)
    flavour = _random_flavour(rng, n)
    max_eta = np.where(flavour == ELECTRON, ELECTRON_MAX_ABS_ETA, MUON_MAX_ABS_ETA)
    eta = max_eta * rng.uniform(-1.0, 1.0, n)  # within the skim acceptance
    phi = rng.uniform(-np.pi, np.pi, n)
    return _measured(pt, eta, phi, flavour, _random_sign(rng, n), np.ones(n, dtype=bool))


_SLOT_KEYS = ("pt", "eta", "phi", "e", "charge", "type", "fake")


def _block(leptons, **per_event) -> dict[str, np.ndarray]:
    """Stack per-lepton tuples into (n, k) arrays; add per-event arrays."""
    block = {key: np.stack([lep[i] for lep in leptons], 1) for i, key in enumerate(_SLOT_KEYS)}
    block.update(per_event)
    return block


def _in_skim(block) -> np.ndarray:
    """Events whose leptons all pass the skim's pT and |eta| requirements."""
    max_eta = np.where(block["type"] == ELECTRON, ELECTRON_MAX_ABS_ETA, MUON_MAX_ABS_ETA)
    ok = (block["pt"] > SKIM_LEPTON_MIN_PT) & (np.abs(block["eta"]) < max_eta)
    if "present" in block:
        ok |= ~block["present"]
    return ok.all(axis=1)


def _accept_in_batches(rng, n, make_batch) -> dict[str, np.ndarray]:
    """Draw events with ``make_batch(rng, size)`` until ``n`` pass the skim.

    The loop runs over vectorised batches, not over events.
    """
    parts: list[dict[str, np.ndarray]] = []
    have = 0
    while not parts or have < n:
        block = make_batch(rng, max(2 * (n - have), 256))
        ok = _in_skim(block)
        if "met" in block:
            ok &= block["met"] > SKIM_MIN_MET
        parts.append({key: value[ok] for key, value in block.items()})
        have += int(ok.sum())
    return {key: np.concatenate([p[key] for p in parts])[:n] for key in parts[0]}


def _dilepton(rng, mass, flavour_a, flavour_b, pt_shape, pt_scale, rapidity_width, forward):
    """A neutral system of the given mass decaying to two opposite-charge prompt leptons."""
    n = len(mass)
    parent = _boosted_system(rng, mass, pt_shape, pt_scale, rapidity_width)
    cos_theta = _cos_theta(rng, n, forward)
    phi_star = rng.uniform(-np.pi, np.pi, n)
    a, b = _decay(
        parent, mass, _lepton_mass(flavour_a), _lepton_mass(flavour_b), cos_theta, phi_star
    )
    charge = _random_sign(rng, n)
    return [_prompt(rng, a, flavour_a, charge), _prompt(rng, b, flavour_b, -charge)]


def _ttbar_pair(rng, n):
    """Two prompt leptons from a ttbar-like system: broad mass, any flavours, opposite charge."""
    mass = TTBAR_MASS_MIN + rng.gamma(TTBAR_MASS_SHAPE, TTBAR_MASS_SCALE, n)
    flavour_a, flavour_b = _random_flavour(rng, n), _random_flavour(rng, n)
    leptons = _dilepton(rng, mass, flavour_a, flavour_b, TTBAR_PT_SHAPE, TTBAR_PT_SCALE, 1.2, 0.0)
    return leptons, mass


# --- 2lep processes ---------------------------------------------------------------


def _z_to_ll(rng, n):
    mass = _truncated_breit_wigner(rng, n, Z_MASS, Z_WIDTH, *Z_WINDOW)
    flavour = _random_flavour(rng, n)
    leptons = _dilepton(
        rng, mass, flavour, flavour, Z_PT_SHAPE, Z_PT_SCALE, Z_RAPIDITY_WIDTH, DECAY_FORWARD_SHARE
    )
    return _block(leptons, mass=mass)


def _drell_yan(rng, n):
    mass = _truncated_exponential(rng, n, DY_MASS_SLOPE, *DY_MASS_RANGE)
    flavour = _random_flavour(rng, n)
    leptons = _dilepton(
        rng, mass, flavour, flavour, Z_PT_SHAPE, Z_PT_SCALE, Z_RAPIDITY_WIDTH, DECAY_FORWARD_SHARE
    )
    return _block(leptons, mass=mass)


def _ttbar_dilepton(rng, n):
    leptons, mass = _ttbar_pair(rng, n)
    return _block(leptons, mass=mass)


def _lepton_plus_fake(rng, n):
    """W + jet or multijet: one prompt-like lepton (or a second fake) and a fake."""
    pt = 20.0 + rng.gamma(2.0, 12.0, n)
    eta = rng.normal(0.0, 1.2, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    flavour = _random_flavour(rng, n)
    first = _measured(pt, eta, phi, flavour, _random_sign(rng, n), rng.random(n) < 0.3)
    return _block([first, _fake(rng, n, 15.0)], mass=np.full(n, np.nan))


# --- 4lep processes ---------------------------------------------------------------


def _four_leptons(rng, mass, z1_mass, z2_mass, pt_shape, pt_scale):
    """System -> Z1 Z2, each Z -> a same-flavour opposite-charge lepton pair."""
    n = len(mass)
    parent = _boosted_system(rng, mass, pt_shape, pt_scale, 1.4)
    z1, z2 = _decay(
        parent, mass, z1_mass, z2_mass, rng.uniform(-1.0, 1.0, n), rng.uniform(-np.pi, np.pi, n)
    )
    leptons = []
    for z, z_mass in ((z1, z1_mass), (z2, z2_mass)):
        flavour = _random_flavour(rng, n)
        m_l = _lepton_mass(flavour)
        cos_theta = _cos_theta(rng, n, DECAY_FORWARD_SHARE)
        a, b = _decay(z, z_mass, m_l, m_l, cos_theta, rng.uniform(-np.pi, np.pi, n))
        charge = _random_sign(rng, n)
        leptons += [_prompt(rng, a, flavour, charge), _prompt(rng, b, flavour, -charge)]
    return leptons


def _higgs_to_4l(rng, n):
    mass = np.full(n, H_MASS)
    z1 = _truncated_breit_wigner(rng, n, Z_MASS, Z_WIDTH, *Z1_WINDOW)
    # Off-shell Z2: between 12 GeV and the kinematic limit, most often near the limit.
    upper = H_MASS - z1 - 0.5
    z2 = Z2_MIN + (upper - Z2_MIN) * rng.beta(3.0, 1.6, n)
    return _block(_four_leptons(rng, mass, z1, z2, H_PT_SHAPE, H_PT_SCALE), mass=mass)


def _zz_continuum(rng, n):
    """qq -> ZZ(*): a smooth off-shell continuum and the on-shell ZZ rise near 180 GeV."""
    onshell = rng.random(n) < ZZ_ONSHELL_SHARE
    # On-shell: two Breit-Wigner Z masses, the system somewhat above their sum.
    z1_on = _truncated_breit_wigner(rng, n, Z_MASS, Z_WIDTH, *ZZ_ONSHELL_WINDOW)
    z2_on = _truncated_breit_wigner(rng, n, Z_MASS, Z_WIDTH, *ZZ_ONSHELL_WINDOW)
    mass_on = z1_on + z2_on + rng.gamma(1.5, 45.0, n)
    # Off-shell (Z Z* and Z gamma*): a four-lepton mass first - either a single Z radiating
    # a virtual photon (Z -> 4l, a peak at m_Z) or a smooth continuum above it - then Z1
    # below the kinematic limit and Z2 in what is left.
    single_z = rng.random(n) < ZZ_SINGLE_Z_SHARE
    lo, hi = ZZ_OFFSHELL_RANGE
    mass_off = np.where(
        single_z,
        _truncated_breit_wigner(rng, n, Z_MASS, Z_WIDTH, *ZZ_SINGLE_Z_WINDOW),
        lo + (hi - lo) * rng.beta(1.2, 1.8, n),
    )
    z1_hi = np.minimum(Z1_WINDOW[1], mass_off - Z2_MIN - 1.0)
    z1_off = _truncated_breit_wigner(rng, n, Z_MASS, Z_WIDTH, Z1_WINDOW[0] - 10.0, z1_hi)
    z2_hi = np.minimum(mass_off - z1_off - 0.5, 60.0)
    z2_off = Z2_MIN + (z2_hi - Z2_MIN) * rng.beta(1.5, 1.5, n)
    mass = np.where(onshell, mass_on, mass_off)
    z1 = np.where(onshell, z1_on, z1_off)
    z2 = np.where(onshell, z2_on, z2_off)
    return _block(_four_leptons(rng, mass, z1, z2, ZZ_PT_SHAPE, ZZ_PT_SCALE), mass=mass)


def _z_plus_fakes(rng, n):
    mass = _truncated_breit_wigner(rng, n, Z_MASS, Z_WIDTH, *Z_WINDOW)
    flavour = _random_flavour(rng, n)
    leptons = _dilepton(
        rng, mass, flavour, flavour, Z_PT_SHAPE, 15.0, Z_RAPIDITY_WIDTH, DECAY_FORWARD_SHARE
    )
    leptons += [_fake(rng, n), _fake(rng, n)]
    return _block(leptons, mass=np.full(n, np.nan))


def _ttbar_plus_fakes(rng, n):
    leptons, _mass = _ttbar_pair(rng, n)
    leptons += [_fake(rng, n), _fake(rng, n)]
    return _block(leptons, mass=np.full(n, np.nan))


# --- 1lep processes ---------------------------------------------------------------


def _missing_pt(rng, px, py):
    """Missing transverse momentum: the invisible (px, py) plus the mis-measurement."""
    mpx = px + rng.normal(0.0, MET_RESOLUTION, len(px))
    mpy = py + rng.normal(0.0, MET_RESOLUTION, len(py))
    return np.hypot(mpx, mpy), np.arctan2(mpy, mpx)


def _w_to_lnu(rng, n):
    mass = _truncated_breit_wigner(rng, n, W_MASS, W_WIDTH, *W_WINDOW)
    flavour = _random_flavour(rng, n)
    charge = _random_sign(rng, n, W_PLUS_SHARE)
    parent = _boosted_system(rng, mass, W_PT_SHAPE, W_PT_SCALE, W_RAPIDITY_WIDTH)
    cos_theta = _cos_theta(rng, n, DECAY_FORWARD_SHARE)
    lepton, neutrino = _decay(
        parent, mass, _lepton_mass(flavour), 0.0, cos_theta, rng.uniform(-np.pi, np.pi, n)
    )
    met, met_phi = _missing_pt(rng, neutrino[1], neutrino[2])
    return _block([_prompt(rng, lepton, flavour, charge)], mass=mass, met=met, met_phi=met_phi)


def _multijet(rng, n):
    met = SKIM_MIN_MET + rng.exponential(12.0, n)
    met_phi = rng.uniform(-np.pi, np.pi, n)
    return _block([_fake(rng, n, 12.0)], mass=np.full(n, np.nan), met=met, met_phi=met_phi)


def _ttbar_semileptonic(rng, n):
    pt = SKIM_LEPTON_MIN_PT + rng.gamma(2.5, 16.0, n)
    eta = rng.normal(0.0, 1.2, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    flavour = _random_flavour(rng, n)
    first = _measured(pt, eta, phi, flavour, _random_sign(rng, n), np.zeros(n, dtype=bool))
    # The dileptonic decays: a second, usually softer, prompt lepton (else a dummy slot).
    second_pt = SKIM_LEPTON_MIN_PT + rng.gamma(2.0, 15.0, n)
    second_eta = rng.uniform(-2.4, 2.4, n)
    second = _measured(
        second_pt,
        second_eta,
        rng.uniform(-np.pi, np.pi, n),
        _random_flavour(rng, n),
        _random_sign(rng, n),
        np.zeros(n, dtype=bool),
    )
    has_second = rng.random(n) < TTBAR_SECOND_LEPTON_PROB
    met = SKIM_MIN_MET + rng.gamma(2.0, 25.0, n)
    met_phi = rng.uniform(-np.pi, np.pi, n)
    block = _block([first, second], mass=np.full(n, np.nan), met=met, met_phi=met_phi)
    block["present"] = np.stack([np.ones(n, dtype=bool), has_second], 1)
    return block


# --- assembling events ------------------------------------------------------------


def _lepton_quality(rng, flavour, fake):
    """Tight-ID flag, relative track and calorimeter isolation, tight-isolation flag."""
    shape = flavour.shape
    prompt_eff = np.where(flavour == ELECTRON, LEP_TIGHT_EFF_ELECTRON, LEP_TIGHT_EFF_MUON)
    tight = rng.random(shape) < np.where(fake, LEP_TIGHT_EFF_FAKE, prompt_eff)
    zero = rng.random(shape) < np.where(fake, TRACK_ISO_ZERO_FAKE, TRACK_ISO_ZERO_PROMPT)
    spread = rng.exponential(1.0, shape) * np.where(
        fake, TRACK_ISO_SCALE_FAKE, TRACK_ISO_SCALE_PROMPT
    )
    track = np.where(zero, 0.0, spread)
    calo = np.where(
        fake,
        CALO_ISO_OFFSET_FAKE + rng.exponential(CALO_ISO_SCALE_FAKE, shape),
        rng.normal(CALO_ISO_MEAN_PROMPT, CALO_ISO_WIDTH_PROMPT, shape),
    )
    tight_iso = (track < TIGHT_ISO_MAX) & (calo < TIGHT_ISO_MAX)
    return tight, tight_iso, track, calo


def _pad(block, slots) -> dict[str, np.ndarray]:
    """Give a block ``slots`` lepton slots; the new ones are absent."""
    n, k = block["pt"].shape
    present = block.get("present", np.ones((n, k), dtype=bool))
    out = {key: value for key, value in block.items() if key != "present"}
    if k < slots:
        for key in _SLOT_KEYS:
            filler = np.zeros((n, slots - k), dtype=block[key].dtype)
            out[key] = np.concatenate([block[key], filler], 1)
        present = np.concatenate([present, np.zeros((n, slots - k), dtype=bool)], 1)
    out["present"] = present
    return out


def _simulate_leptons(
    n_events,
    seed,
    signal_fraction,
    processes: dict[str, Callable],
    background_shares: dict[str, float],
    extra_prob: float,
    with_met: bool,
) -> LeptonSample:
    n_events = _check_events(n_events)
    if not 0.0 <= signal_fraction <= 1.0:
        raise ValueError(f"signal_fraction must be within [0, 1], got {signal_fraction!r}")
    rng = np.random.default_rng(seed)
    names = tuple(processes)
    shares = np.array(
        [signal_fraction] + [(1.0 - signal_fraction) * background_shares[k] for k in names[1:]]
    )
    counts = rng.multinomial(n_events, shares / shares.sum())
    blocks = [
        _accept_in_batches(rng, int(count), make)
        for count, make in zip(counts, processes.values(), strict=True)
    ]
    slots = max(block["pt"].shape[1] for block in blocks)
    blocks = [_pad(block, slots) for block in blocks]
    events = {key: np.concatenate([b[key] for b in blocks]) for key in blocks[0]}
    process = np.repeat(np.arange(len(names)), counts)
    order = rng.permutation(n_events)
    events = {key: value[order] for key, value in events.items()}
    process = process[order]

    # Now and then one more, soft, non-prompt lepton.
    extra = _fake(rng, n_events)
    has_extra = rng.random(n_events) < extra_prob
    for i, key in enumerate(_SLOT_KEYS):
        events[key] = np.concatenate([events[key], extra[i][:, None]], 1)
    events["present"] = np.concatenate([events["present"], has_extra[:, None]], 1)

    tight, tight_iso, track, calo = _lepton_quality(rng, events["type"], events["fake"])

    # Sort by decreasing pT (absent leptons last), then drop the absent slots.
    present = events["present"]
    rank = np.argsort(-np.where(present, events["pt"], -np.inf), axis=1, kind="stable")

    def ordered(values):
        return np.take_along_axis(values, rank, 1)

    present = ordered(present)
    counts_per_event = present.sum(axis=1)

    def jagged(values, dtype) -> ak.Array:
        return ak.unflatten(ordered(values)[present].astype(dtype), counts_per_event)

    pt = events["pt"]
    branches: dict[str, ak.Array | np.ndarray] = {
        "lep_pt": jagged(pt, np.float32),
        "lep_eta": jagged(events["eta"], np.float32),
        "lep_phi": jagged(events["phi"], np.float32),
        "lep_e": jagged(events["e"], np.float32),
        "lep_charge": jagged(events["charge"], np.int32),
        "lep_type": jagged(events["type"], np.int32),
        "lep_isTightID": jagged(tight, np.bool_),
        "lep_isTightIso": jagged(tight_iso, np.bool_),
        "lep_ptvarcone30": jagged(track * pt, np.float32),
        "lep_topoetcone20": jagged(calo * pt, np.float32),
    }
    if with_met:
        branches["met"] = events["met"].astype(np.float32)
        branches["met_phi"] = events["met_phi"].astype(np.float32)
    return LeptonSample(
        branches=branches, mass=events["mass"], process=process, process_names=names
    )


@dataclass(frozen=True)
class LeptonChannel:
    """A lepton layout's mixture: the signal process first, then the backgrounds with
    their shares of the non-signal events, the chance of one more soft lepton, and
    whether the events carry missing transverse momentum."""

    processes: dict[str, Callable]
    background_shares: dict[str, float]
    extra_prob: float
    with_met: bool

    def simulate(self, n_events: int, seed: int, signal_fraction: float) -> LeptonSample:
        return _simulate_leptons(
            n_events,
            seed,
            signal_fraction,
            self.processes,
            self.background_shares,
            self.extra_prob,
            self.with_met,
        )


TWO_LEP = LeptonChannel(
    {
        "Z->ll": _z_to_ll,
        "drell-yan": _drell_yan,
        "ttbar": _ttbar_dilepton,
        "fake": _lepton_plus_fake,
    },
    TWO_LEP_BACKGROUND,
    TWO_LEP_EXTRA_PROB,
    with_met=False,
)
FOUR_LEP = LeptonChannel(
    {
        "H->ZZ*->4l": _higgs_to_4l,
        "ZZ": _zz_continuum,
        "Z+fakes": _z_plus_fakes,
        "ttbar+fakes": _ttbar_plus_fakes,
    },
    FOUR_LEP_BACKGROUND,
    FOUR_LEP_EXTRA_PROB,
    with_met=False,
)
ONE_LEP = LeptonChannel(
    {"W->lnu": _w_to_lnu, "multijet": _multijet, "ttbar": _ttbar_semileptonic},
    ONE_LEP_BACKGROUND,
    ONE_LEP_EXTRA_PROB,
    with_met=True,
)


def simulate_2lep(n_events=DEFAULT_EVENTS, seed=1, signal_fraction=DEFAULT_SIGNAL_FRACTION_2LEP):
    """Generate dilepton events in memory; ``signal_fraction`` is the share of Z -> ll."""
    return TWO_LEP.simulate(n_events, seed, signal_fraction)


def simulate_4lep(n_events=DEFAULT_EVENTS, seed=1, signal_fraction=DEFAULT_SIGNAL_FRACTION_4LEP):
    """Generate four-lepton events in memory; ``signal_fraction`` is the share of H -> 4l."""
    return FOUR_LEP.simulate(n_events, seed, signal_fraction)


def simulate_1lep(n_events=DEFAULT_EVENTS, seed=1, signal_fraction=DEFAULT_SIGNAL_FRACTION_1LEP):
    """Generate one-lepton + missing-pT events in memory; ``signal_fraction`` is W -> l nu."""
    return ONE_LEP.simulate(n_events, seed, signal_fraction)


# =============================================================================
# Layout registry and files
# =============================================================================


@dataclass(frozen=True)
class Layout:
    """How to generate and write one layout.

    ``skim`` is the name of the release skim the layout stands in for (what a
    notebook asks atlasopenmagic for when it reads the real data); ``branches``
    lists the branches written, ``counter`` the name of their jagged counter.
    ``version`` is recorded in each file and bumped when the generated content
    changes, so old files are regenerated rather than reused.
    """

    name: str
    skim: str
    description: str
    branches: tuple[str, ...]
    counter: str
    default_signal_fraction: float
    simulate: Callable
    version: int = 1

    @property
    def title(self) -> str:
        return f"ATLAS Open Data {self.skim} layout (generated demo data)"


LAYOUTS: dict[str, Layout] = {
    "GamGam": Layout(
        name="GamGam",
        skim="GamGam",
        description="diphoton events, H -> yy at 125 GeV",
        branches=GAMGAM_BRANCHES,
        counter=GAMGAM_COUNTER,
        default_signal_fraction=DEFAULT_SIGNAL_FRACTION,
        simulate=simulate_gamgam,
        version=FORMAT_VERSION,
    ),
    "2lep": Layout(
        name="2lep",
        skim="2to4lep",
        description="dilepton events, Z -> ee and Z -> mumu at 91.19 GeV",
        branches=LEPTON_BRANCHES,
        counter=LEPTON_COUNTER,
        default_signal_fraction=DEFAULT_SIGNAL_FRACTION_2LEP,
        simulate=simulate_2lep,
    ),
    "4lep": Layout(
        name="4lep",
        skim="4lep",
        description="four-lepton events, H -> ZZ* -> 4l at 125 GeV",
        branches=LEPTON_BRANCHES,
        counter=LEPTON_COUNTER,
        default_signal_fraction=DEFAULT_SIGNAL_FRACTION_4LEP,
        simulate=simulate_4lep,
    ),
    "1lep": Layout(
        name="1lep",
        skim="1LMET30",
        description="one lepton + missing pT, W -> l nu (transverse-mass edge near 80 GeV)",
        branches=LEPTON_BRANCHES + MET_BRANCHES,
        counter=LEPTON_COUNTER,
        default_signal_fraction=DEFAULT_SIGNAL_FRACTION_1LEP,
        simulate=simulate_1lep,
    ),
}


def get_layout(layout: str | Layout) -> Layout:
    """The :class:`Layout` registered under ``layout`` (a name or a Layout)."""
    if isinstance(layout, Layout):
        return layout
    try:
        return LAYOUTS[layout]
    except (KeyError, TypeError):
        known = ", ".join(LAYOUTS)
        raise ValueError(f"unknown layout {layout!r}; known layouts: {known}") from None


def simulate(
    layout: str | Layout = "GamGam",
    n_events: int = DEFAULT_EVENTS,
    seed: int = 1,
    signal_fraction: float | None = None,
):
    """Generate events of ``layout`` in memory; the result has ``.branches``."""
    spec = get_layout(layout)
    if signal_fraction is None:
        signal_fraction = spec.default_signal_fraction
    return spec.simulate(n_events, seed, signal_fraction)


def _check_events(n_events: int) -> int:
    if isinstance(n_events, bool) or not isinstance(n_events, int | np.integer):
        raise TypeError(f"n_events must be an integer, got {n_events!r}")
    if n_events < 1:
        raise ValueError(f"n_events must be at least 1, got {n_events}")
    return int(n_events)


def _metadata(n_events: int, seed: int, signal_fraction: float, layout: str = "GamGam") -> dict:
    spec = get_layout(layout)
    meta = {
        "generator": "lakehub localstack.demo_data",
        "format": spec.version,
        "layout": f"ATLAS Open Data 2025e {spec.skim} (generated demo data)",
        "n_events": int(n_events),
        "seed": int(seed),
        "signal_fraction": float(signal_fraction),
    }
    if spec.name != "GamGam":  # GamGam files keep the provenance record they always had
        meta["layout_name"] = spec.name
    return meta


def read_metadata(path: str | os.PathLike[str]) -> dict | None:
    """Return the provenance stored in a generated file, or None if there is none."""
    with uproot.open(path) as handle:
        if METADATA_KEY not in handle.keys(cycle=False):
            return None
        return json.loads(str(handle[METADATA_KEY]))


def generate_file(
    path: str | os.PathLike[str],
    layout: str | Layout = "GamGam",
    n_events: int = DEFAULT_EVENTS,
    seed: int = 1,
    signal_fraction: float | None = None,
) -> Path:
    """Write one ROOT file in ``layout`` and return its path.

    The file appears atomically: it is written under a temporary name in the
    target directory and then renamed, so readers never see a partial file.
    """
    spec = get_layout(layout)
    if signal_fraction is None:
        signal_fraction = spec.default_signal_fraction
    path = Path(path)
    sample = spec.simulate(n_events, seed, signal_fraction)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with uproot.recreate(tmp) as out:
            out[METADATA_KEY] = json.dumps(_metadata(n_events, seed, signal_fraction, spec.name))
            out.mktree(
                TREE_NAME,
                {name: sample.branches[name] for name in spec.branches},
                title=spec.title,
                counter_name=lambda _branch: spec.counter,
            )
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def generate_gamgam(
    path: str | os.PathLike[str],
    n_events: int = DEFAULT_EVENTS,
    seed: int = 1,
    signal_fraction: float = DEFAULT_SIGNAL_FRACTION,
) -> Path:
    """Write one GamGam-layout ROOT file and return its path (see :func:`generate_file`)."""
    return generate_file(path, "GamGam", n_events, seed, signal_fraction)


def dataset_file_name(index: int, layout: str = "GamGam") -> str:
    """File name of the ``index``-th (1-based) file of a generated dataset."""
    return f"demo.{get_layout(layout).name}.data_{index:02d}.root"


def _file_seed(seed: int, index: int, layout: str = "GamGam") -> int:
    """Independent per-file seed derived from the dataset seed, file index and layout."""
    words = [int(seed), int(index)]
    if layout != "GamGam":  # GamGam keeps the seeds it always had
        words.append(zlib.crc32(layout.encode()))
    state = np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)
    return int(state[0])


def _reusable(path: Path, expected: dict, spec: Layout) -> bool:
    if not path.is_file():
        return False
    try:
        with uproot.open(path) as handle:
            tree = handle[TREE_NAME]
            if tree.num_entries != expected["n_events"]:
                return False
            if not set(spec.branches) <= set(tree.keys()):
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


def _build_dataset(out_dir, n_files, n_events, seed, progress, signal_fraction, layout="GamGam"):
    spec = get_layout(layout)
    if isinstance(n_files, bool) or not isinstance(n_files, int) or n_files < 1:
        raise ValueError(f"n_files must be a positive integer, got {n_files!r}")
    n_events = _check_events(n_events)
    if int(seed) < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if signal_fraction is None:
        signal_fraction = spec.default_signal_fraction
    if not 0.0 <= signal_fraction <= 1.0:
        raise ValueError(f"signal_fraction must be within [0, 1], got {signal_fraction!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[tuple[Path, bool]] = []
    with _progress(n_files, progress, f"Generating demo {spec.name} files") as step:
        for index in range(1, n_files + 1):
            path = out_dir / dataset_file_name(index, spec.name)
            file_seed = _file_seed(seed, index, spec.name)
            expected = _metadata(n_events, file_seed, signal_fraction, spec.name)
            reused = _reusable(path, expected, spec)
            if not reused:
                generate_file(path, spec, n_events, file_seed, signal_fraction)
            results.append((path, reused))
            step()
    return results


def generate_dataset(
    out_dir: str | os.PathLike[str],
    n_files: int = 2,
    n_events: int = DEFAULT_EVENTS,
    seed: int = 1,
    progress: bool = True,
    layout: str = "GamGam",
    signal_fraction: float | None = None,
) -> list[Path]:
    """Write ``n_files`` files ``demo.<layout>.data_NN.root`` into ``out_dir``.

    ``layout`` is a key of :data:`LAYOUTS`; ``signal_fraction`` defaults to the
    layout's own.  Each file gets its own seed derived from ``seed``, its index
    and the layout.  A file that already exists and was produced with the same
    settings (layout, event count, seed, signal fraction, generator version) is
    left untouched, so repeated calls are cheap.
    """
    built = _build_dataset(out_dir, n_files, n_events, seed, progress, signal_fraction, layout)
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
        description="Write deterministic demo ROOT files in the layouts of the ATLAS Open Data "
        "2025 education release.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--layout",
        choices=sorted(LAYOUTS, key=str.lower),
        default="GamGam",
        help="layout to generate (GamGam); "
        + "; ".join(f"{s.name}: {s.description}" for s in LAYOUTS.values()),
    )
    parser.add_argument("--files", type=_positive_int, default=2, help="number of files (2)")
    parser.add_argument(
        "--events", type=_positive_int, default=DEFAULT_EVENTS, help="events per file (30000)"
    )
    parser.add_argument("--seed", type=_non_negative_int, default=1, help="dataset seed (1)")
    parser.add_argument(
        "--signal-fraction",
        type=_fraction,
        default=None,
        help="share of signal events (default: the layout's own, e.g. "
        f"{DEFAULT_SIGNAL_FRACTION} for GamGam)",
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
            args.out,
            args.files,
            args.events,
            args.seed,
            not args.quiet,
            args.signal_fraction,
            args.layout,
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
