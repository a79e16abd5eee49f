"""Tests for the deterministic demo-data generator (localstack.demo_data).

The GamGam tests come first; the lepton layouts (2lep, 4lep, 1lep) and the layout registry
follow.  Physics checks use explicit four-vector algebra on the written branches, so they do
not depend on the analysis environment.
"""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from localstack import demo_data
from localstack.demo_data import (
    GAMGAM_BRANCHES,
    GAMGAM_COUNTER,
    LAYOUTS,
    LEPTON_BRANCHES,
    LEPTON_COUNTER,
    MET_BRANCHES,
    generate_dataset,
    generate_file,
    generate_gamgam,
    simulate,
    simulate_1lep,
    simulate_2lep,
    simulate_4lep,
    simulate_gamgam,
)

SMALL = 2_000


def _read(path) -> dict[str, ak.Array]:
    with uproot.open(path) as handle:
        arrays = handle["analysis"].arrays(list(GAMGAM_BRANCHES))
    return {name: arrays[name] for name in GAMGAM_BRANCHES}


def _leading_pair_mass(photons) -> np.ndarray:
    """Invariant mass of the two leading (massless) photons, explicit algebra."""
    pt = ak.to_numpy(photons["photon_pt"][:, :2]).astype(np.float64)
    eta = ak.to_numpy(photons["photon_eta"][:, :2]).astype(np.float64)
    phi = ak.to_numpy(photons["photon_phi"][:, :2]).astype(np.float64)
    energy = ak.to_numpy(photons["photon_e"][:, :2]).astype(np.float64).sum(axis=1)
    px = (pt * np.cos(phi)).sum(axis=1)
    py = (pt * np.sin(phi)).sum(axis=1)
    pz = (pt * np.sinh(eta)).sum(axis=1)
    return np.sqrt(np.clip(energy**2 - px**2 - py**2 - pz**2, 0.0, None))


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """One file large enough for a statistical look at the mass spectrum."""
    path = tmp_path_factory.mktemp("gamgam") / "big.root"
    return generate_gamgam(path, n_events=20_000, seed=11)


def test_same_seed_gives_identical_files(tmp_path):
    first = _read(generate_gamgam(tmp_path / "a.root", n_events=SMALL, seed=3))
    second = _read(generate_gamgam(tmp_path / "b.root", n_events=SMALL, seed=3))
    for name in GAMGAM_BRANCHES:
        assert ak.to_list(first[name]) == ak.to_list(second[name]), name


def test_different_seed_gives_different_events():
    one = simulate_gamgam(SMALL, seed=3)
    other = simulate_gamgam(SMALL, seed=4)
    assert not np.array_equal(one.mass, other.mass)
    lead_one = ak.to_numpy(one.photons["photon_pt"][:, 0])
    lead_other = ak.to_numpy(other.photons["photon_pt"][:, 0])
    assert not np.array_equal(lead_one, lead_other)


def test_photon_multiplicity_order_and_acceptance():
    photons = simulate_gamgam(SMALL, seed=5).photons
    counts = ak.to_numpy(ak.num(photons["photon_pt"]))
    assert counts.min() >= 2
    assert counts.max() == 3
    assert 0.05 < np.mean(counts == 3) < 0.25  # a soft third photon sometimes
    # pT sorted in decreasing order within every event
    pt = photons["photon_pt"]
    assert ak.all(pt[:, :-1] >= pt[:, 1:])
    # every branch has the same jagged structure
    for name in GAMGAM_BRANCHES:
        assert ak.to_list(ak.num(photons[name])) == counts.tolist(), name
    # the two leading photons satisfy the skim acceptance
    assert ak.all(pt[:, 1] > 25.0)
    assert ak.all(abs(photons["photon_eta"]) < 2.37)


def test_photons_carry_the_generated_mass():
    sample = simulate_gamgam(SMALL, seed=6)
    assert 0 < sample.is_signal.sum() < SMALL
    mass = _leading_pair_mass(sample.photons)
    np.testing.assert_allclose(mass, sample.mass, rtol=2e-4)
    # massless photons: E = pT cosh(eta)
    pt = ak.flatten(sample.photons["photon_pt"])
    eta = ak.flatten(sample.photons["photon_eta"])
    energy = ak.flatten(sample.photons["photon_e"])
    np.testing.assert_allclose(energy, pt * np.cosh(eta), rtol=1e-4)
    # the signal sits at 125 GeV with a width of about 2 GeV
    signal_mass = sample.mass[sample.is_signal]
    assert abs(np.mean(signal_mass) - 125.0) < 0.5
    assert 1.5 < np.std(signal_mass) < 2.5


def test_each_photon_cut_removes_something():
    photons = simulate_gamgam(5_000, seed=8).photons
    lead2 = {name: photons[name][:, :2] for name in GAMGAM_BRANCHES}
    tight = ak.to_numpy(lead2["photon_isTightID"])
    rel_iso = ak.to_numpy(lead2["photon_ptcone20"] / lead2["photon_pt"])
    abs_eta = np.abs(ak.to_numpy(lead2["photon_eta"]))
    fail_id = np.mean(~tight.all(axis=1))
    fail_iso = np.mean((rel_iso >= 0.055).any(axis=1))
    in_crack = np.mean(((abs_eta > 1.37) & (abs_eta < 1.52)).any(axis=1))
    assert 0.10 < fail_id < 0.60, fail_id
    assert 0.05 < fail_iso < 0.50, fail_iso
    assert 0.03 < in_crack < 0.30, in_crack
    assert (rel_iso == 0.0).any()  # many photons have no track in the cone
    assert (ak.to_numpy(lead2["photon_pt"])[:, 0] < 50.0).any()  # some fail the pT cut


def test_mass_spectrum_has_an_excess_at_125(big_file):
    mass = _leading_pair_mass(_read(big_file))
    counts, _edges = np.histogram(mass, bins=[113.0, 121.0, 129.0, 137.0])
    low, peak, high = counts
    sidebands = 0.5 * (low + high)  # linear interpolation under the peak
    assert peak > sidebands + 5.0 * np.sqrt(sidebands), counts
    # the background falls with mass
    assert low > high


def test_file_layout(big_file):
    with uproot.open(big_file) as handle:
        assert "analysis" in handle.keys(cycle=False)
        tree = handle["analysis"]
        assert tree.num_entries == 20_000
        # the six photon branches plus the counter uproot needs for jagged data
        assert set(tree.keys()) == {*GAMGAM_BRANCHES, GAMGAM_COUNTER}
        types = tree.typenames()
        for name in ("photon_pt", "photon_eta", "photon_phi", "photon_e", "photon_ptcone20"):
            assert types[name] == "float[]", (name, types[name])
        assert types["photon_isTightID"] == "bool[]"
        arrays = tree.arrays(list(GAMGAM_BRANCHES))
    assert set(arrays.fields) == set(GAMGAM_BRANCHES)
    meta = demo_data.read_metadata(big_file)
    assert meta is not None
    assert meta["seed"] == 11 and meta["n_events"] == 20_000


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def refuse(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(demo_data.os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        generate_gamgam(tmp_path / "x.root", n_events=100, seed=1)
    assert list(tmp_path.iterdir()) == []


def test_generate_dataset_names_seeds_and_reuse(tmp_path):
    paths = generate_dataset(tmp_path, n_files=2, n_events=500, seed=2, progress=True)
    assert [p.name for p in paths] == ["demo.GamGam.data_01.root", "demo.GamGam.data_02.root"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [p.name for p in paths]  # no temp files
    first, second = (_read(p) for p in paths)
    assert ak.to_list(first["photon_pt"]) != ak.to_list(second["photon_pt"])  # own seed each

    mtimes = [p.stat().st_mtime_ns for p in paths]
    again = generate_dataset(tmp_path, n_files=2, n_events=500, seed=2, progress=False)
    assert again == paths
    assert [p.stat().st_mtime_ns for p in again] == mtimes

    # a different event count or seed is not mistaken for the same dataset
    resized = generate_dataset(tmp_path, n_files=1, n_events=400, seed=2, progress=False)
    assert resized == paths[:1]
    resized_pt = ak.to_list(_read(resized[0])["photon_pt"])
    assert len(resized_pt) == 400
    reseeded = generate_dataset(tmp_path, n_files=1, n_events=400, seed=9, progress=False)
    assert demo_data.read_metadata(reseeded[0])["seed"] != demo_data._file_seed(2, 1)
    assert ak.to_list(_read(reseeded[0])["photon_pt"]) != resized_pt


def test_invalid_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError):
        simulate_gamgam(0)
    with pytest.raises(ValueError):
        simulate_gamgam(10, signal_fraction=1.5)
    with pytest.raises(ValueError):
        generate_dataset(tmp_path, n_files=0, progress=False)


def test_cli_writes_and_reports(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--out", str(out), "--files", "2", "--events", "300", "--seed", "4", "--quiet"]
    assert demo_data.main(args) == 0
    text = capsys.readouterr().out
    assert "demo.GamGam.data_01.root" in text and "demo.GamGam.data_02.root" in text
    assert "2 written, 0 reused" in text
    assert demo_data.main(args) == 0
    assert "0 written, 2 reused" in capsys.readouterr().out


@pytest.mark.parametrize(
    "bad",
    [
        ["--out", "OUT", "--events", "0"],
        ["--out", "OUT", "--files", "two"],
        ["--out", "OUT", "--seed", "-1"],
        ["--files", "2"],
    ],
)
def test_cli_bad_arguments_give_one_line(tmp_path, capsys, bad):
    argv = [str(tmp_path / "o") if a == "OUT" else a for a in bad]
    with pytest.raises(SystemExit) as excinfo:
        demo_data.main(argv)
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err
    assert "Traceback" not in err


def test_gamgam_output_is_pinned():
    """Refactoring the generator must not change the GamGam files.

    The local Rucio bootstrap refuses files whose checksums differ from the registered ones,
    so a silent change would break existing installations.
    """
    pt = simulate_gamgam(200, seed=3).photons["photon_pt"][:3]
    expected = [[33.619, 30.88, 29.336], [44.783, 42.161], [42.746, 38.524]]
    assert [[round(v, 3) for v in event] for event in ak.to_list(pt)] == expected
    assert demo_data._file_seed(2, 1) == 6609312287773032911
    assert demo_data.dataset_file_name(3) == "demo.GamGam.data_03.root"


# --- the lepton layouts -------------------------------------------------------------

LEPTON_LAYOUTS = ("2lep", "4lep", "1lep")
Z_MASS, W_MASS, H_MASS = 91.1876, 80.377, 125.0


def _four_momenta(branches, count=None):
    """(E, px, py, pz) of the leading ``count`` (default: all) leptons, as 2D float64 arrays.

    Every event must have at least ``count`` leptons (or the same number, without ``count``).
    """

    def leading(name):
        values = branches[name] if count is None else branches[name][:, :count]
        return ak.to_numpy(values).astype(np.float64)

    pt, eta, phi = leading("lep_pt"), leading("lep_eta"), leading("lep_phi")
    return leading("lep_e"), pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)


def _invariant_mass(energy, px, py, pz):
    squared = energy.sum(1) ** 2 - px.sum(1) ** 2 - py.sum(1) ** 2 - pz.sum(1) ** 2
    return np.sqrt(np.clip(squared, 0.0, None))


def _peak_and_sidebands(values, centre, half_width):
    """Counts in a window around ``centre`` and the mean of the two equal windows beside it."""
    edges = centre + half_width * np.array([-3.0, -1.0, 1.0, 3.0])
    low, peak, high = np.histogram(values, bins=edges)[0]
    return peak, 0.5 * (low + high)


def _read_layout(path, layout):
    with uproot.open(path) as handle:
        return handle["analysis"].arrays(list(LAYOUTS[layout].branches))


def test_registry_names_layouts_and_skims():
    assert set(LAYOUTS) == {"GamGam", "2lep", "4lep", "1lep"}
    assert {name: spec.skim for name, spec in LAYOUTS.items()} == {
        "GamGam": "GamGam",
        "2lep": "2to4lep",
        "4lep": "4lep",
        "1lep": "1LMET30",
    }
    for name, spec in LAYOUTS.items():
        assert spec.name == name
        assert 0.0 < spec.default_signal_fraction < 1.0
    assert LAYOUTS["1lep"].branches == LEPTON_BRANCHES + MET_BRANCHES
    with pytest.raises(ValueError, match="unknown layout"):
        simulate("3lep", 10)
    with pytest.raises(ValueError, match="unknown layout"):
        generate_dataset("/nonexistent", layout="nope", progress=False)


@pytest.mark.parametrize("layout", LEPTON_LAYOUTS)
def test_lepton_layout_is_deterministic(tmp_path, layout):
    first = _read_layout(generate_file(tmp_path / "a.root", layout, SMALL, seed=3), layout)
    second = _read_layout(generate_file(tmp_path / "b.root", layout, SMALL, seed=3), layout)
    other = simulate(layout, SMALL, seed=4).branches
    for name in LAYOUTS[layout].branches:
        assert ak.to_list(first[name]) == ak.to_list(second[name]), name
    assert ak.to_list(first["lep_pt"]) != ak.to_list(other["lep_pt"])


@pytest.mark.parametrize("layout", LEPTON_LAYOUTS)
def test_lepton_file_layout(tmp_path, layout):
    path = generate_file(tmp_path / "x.root", layout, 500, seed=2)
    spec = LAYOUTS[layout]
    with uproot.open(path) as handle:
        tree = handle["analysis"]
        assert tree.num_entries == 500
        assert set(tree.keys()) == {*spec.branches, LEPTON_COUNTER}
        types = tree.typenames()
    for name in ("lep_pt", "lep_eta", "lep_phi", "lep_e", "lep_ptvarcone30", "lep_topoetcone20"):
        assert types[name] == "float[]", (name, types[name])
    assert types["lep_charge"] == types["lep_type"] == "int32_t[]"
    assert types["lep_isTightID"] == types["lep_isTightIso"] == "bool[]"
    assert types[LEPTON_COUNTER] == "int32_t"
    if layout == "1lep":
        assert types["met"] == types["met_phi"] == "float"
    meta = demo_data.read_metadata(path)
    assert meta["layout_name"] == layout and spec.skim in meta["layout"]
    assert meta["n_events"] == 500 and meta["seed"] == 2


@pytest.mark.parametrize(
    ("layout", "multiplicity"), [("2lep", (2, 4)), ("4lep", (4, 5)), ("1lep", (1, 3))]
)
def test_leptons_are_well_formed(layout, multiplicity):
    branches = simulate(layout, 5_000, seed=5).branches
    counts = ak.to_numpy(ak.num(branches["lep_pt"]))
    assert counts.min() == multiplicity[0] and counts.max() <= multiplicity[1]
    assert np.mean(counts > multiplicity[0]) > 0.01  # extra leptons now and then
    for name in LEPTON_BRANCHES:
        assert ak.to_list(ak.num(branches[name])) == counts.tolist(), name
    pt = branches["lep_pt"]
    assert ak.all(pt[:, :-1] >= pt[:, 1:])  # ordered by pT
    flavour = ak.flatten(branches["lep_type"])
    assert set(np.unique(ak.to_numpy(flavour))) == {11, 13}
    assert set(np.unique(ak.to_numpy(ak.flatten(branches["lep_charge"])))) == {-1, 1}
    # the skim acceptance
    abs_eta = abs(ak.flatten(branches["lep_eta"]))
    assert ak.all(ak.flatten(pt) > 7.0)
    assert ak.all(abs_eta[flavour == 11] < 2.47) and ak.all(abs_eta[flavour == 13] < 2.5)
    # massive leptons: E^2 = p^2 + m^2 (float32 storage)
    flat = {
        name: ak.to_numpy(ak.flatten(branches[name])).astype(np.float64) for name in LEPTON_BRANCHES
    }
    momentum = flat["lep_pt"] * np.cosh(flat["lep_eta"])
    mass = np.where(flat["lep_type"] == 11, 0.000511, 0.105658)
    np.testing.assert_allclose(flat["lep_e"], np.sqrt(momentum**2 + mass**2), rtol=1e-4)
    # identification and isolation separate prompt leptons from fakes, but not perfectly
    tight = ak.to_numpy(ak.flatten(branches["lep_isTightID"]))
    iso = ak.to_numpy(ak.flatten(branches["lep_isTightIso"]))
    assert 0.5 < tight.mean() < 0.97 and 0.5 < iso.mean() < 0.97
    rel_track = ak.flatten(branches["lep_ptvarcone30"] / pt)
    rel_calo = ak.flatten(branches["lep_topoetcone20"] / pt)
    np.testing.assert_array_equal(iso, ak.to_numpy((rel_track < 0.06) & (rel_calo < 0.06)))
    assert ak.min(rel_track) == 0.0 and ak.min(rel_calo) < 0.0  # pile-up corrected calo iso


def test_2lep_z_peak_in_both_flavours():
    sample = simulate_2lep(20_000, seed=6)
    b = sample.branches
    assert sample.process_names[0] == "Z->ll"
    assert 0.5 < sample.is_signal.mean() < 0.7
    truth = sample.mass[sample.is_signal]
    assert abs(np.median(truth) - Z_MASS) < 0.1  # Breit-Wigner centred at m_Z
    assert 1.0 < np.subtract(*np.percentile(truth, [75, 25])) < 4.0  # FWHM = width 2.5 GeV

    # in signal events without an extra lepton, the two leptons are the Z decay products
    plain = sample.is_signal & (ak.to_numpy(ak.num(b["lep_pt"])) == 2)
    lead = {name: b[name][plain] for name in LEPTON_BRANCHES}
    mll = _invariant_mass(*_four_momenta(lead))
    assert 0.005 < np.std((mll - sample.mass[plain]) / sample.mass[plain]) < 0.03  # smeared
    flavour = ak.to_numpy(lead["lep_type"])
    assert np.all(flavour[:, 0] == flavour[:, 1])
    assert np.all(ak.to_numpy(lead["lep_charge"]).sum(axis=1) == 0)
    assert 0.4 < np.mean(flavour[:, 0] == 11) < 0.6  # ee and mumu equally often

    # the whole sample: a peak at 91 GeV above a falling background, e-mu and same-sign pairs
    all_mll = _invariant_mass(*_four_momenta(b, 2))
    peak, sidebands = _peak_and_sidebands(all_mll, Z_MASS, 5.0)
    assert peak > 5 * sidebands
    flavours = ak.to_numpy(b["lep_type"][:, :2])
    charges = ak.to_numpy(b["lep_charge"][:, :2])
    assert 0.03 < np.mean(flavours[:, 0] != flavours[:, 1]) < 0.3
    assert 0.02 < np.mean(charges[:, 0] == charges[:, 1]) < 0.2


def test_4lep_higgs_peak_and_zz_continuum():
    sample = simulate_4lep(20_000, seed=7)
    b = sample.branches
    assert sample.process_names[0] == "H->ZZ*->4l"
    assert 0.03 < sample.is_signal.mean() < 0.1
    # in signal events without an extra lepton, the four leptons are the Higgs decay products
    signal = sample.is_signal & (ak.to_numpy(ak.num(b["lep_pt"])) == 4)
    m4l = _invariant_mass(*_four_momenta({k: v[signal] for k, v in b.items()}))
    assert abs(np.median(m4l) - H_MASS) < 0.3
    assert 0.5 < np.std(m4l[abs(m4l - H_MASS) < 10]) < 3.0
    types = ak.to_numpy(b["lep_type"][signal])
    assert set(np.unique(np.sort(types, axis=1).sum(axis=1))) == {44, 48, 52}  # 4e, 2e2mu, 4mu
    assert np.all(ak.to_numpy(b["lep_charge"][signal]).sum(axis=1) == 0)

    # the ZZ continuum: on-shell pairs above 2 m_Z, and some events under the Higgs peak
    zz = sample.process == sample.process_names.index("ZZ")
    zz_mass = sample.mass[zz]
    assert np.mean(zz_mass > 2 * Z_MASS) > 0.3
    assert np.mean((zz_mass > 115.0) & (zz_mass < 135.0)) > 0.03
    # every event: a peak at 125 GeV well above its neighbourhood
    all_m4l = _invariant_mass(*_four_momenta(b, 4))
    peak, sidebands = _peak_and_sidebands(all_m4l, H_MASS, 5.0)
    assert peak > sidebands + 10 * np.sqrt(sidebands)


def test_1lep_transverse_mass_edge():
    sample = simulate_1lep(20_000, seed=8)
    b = sample.branches
    assert sample.process_names[0] == "W->lnu"
    assert ak.all(b["met"] > 30.0)  # the 1LMET30 skim
    w = sample.is_signal
    assert abs(np.median(sample.mass[w]) - W_MASS) < 0.1
    pt = ak.to_numpy(b["lep_pt"][:, 0]).astype(np.float64)
    dphi = ak.to_numpy(b["lep_phi"][:, 0]) - b["met_phi"]
    mt = np.sqrt(2.0 * pt * b["met"] * (1.0 - np.cos(dphi)))
    # the Jacobian peak sits just below m_W, the edge falls steeply above it
    counts, edges = np.histogram(mt[w], bins=np.arange(40.0, 121.0, 2.0))
    peak = edges[np.argmax(counts)]
    assert W_MASS - 12.0 < peak < W_MASS
    assert np.mean(mt[w] > W_MASS + 15.0) < 0.03
    assert np.mean(mt[w] > W_MASS - 10.0) > 0.25
    # the background: low mT for multijet, a tail beyond the edge for ttbar
    multijet = sample.process == sample.process_names.index("multijet")
    assert np.median(mt[multijet]) < 50.0
    ttbar = sample.process == sample.process_names.index("ttbar")
    assert np.mean(mt[ttbar] > 100.0) > 0.2
    # more W+ than W-
    charge = ak.to_numpy(b["lep_charge"][:, 0])[w]
    assert 1.2 < np.sum(charge > 0) / np.sum(charge < 0) < 1.6


def test_layouts_in_one_directory_names_seeds_and_reuse(tmp_path):
    made = {
        layout: generate_dataset(
            tmp_path, n_files=2, n_events=300, seed=2, progress=False, layout=layout
        )
        for layout in LAYOUTS
    }
    for layout, paths in made.items():
        assert [p.name for p in paths] == [f"demo.{layout}.data_{i:02d}.root" for i in (1, 2)]
        assert demo_data.read_metadata(paths[0])["seed"] == demo_data._file_seed(2, 1, layout)
    assert len({p.name for p in tmp_path.iterdir()}) == 2 * len(LAYOUTS)  # no temp files
    # the same dataset seed gives different events in different layouts and files
    seeds = {demo_data.read_metadata(p)["seed"] for paths in made.values() for p in paths}
    assert len(seeds) == 2 * len(LAYOUTS)

    mtimes = {p: p.stat().st_mtime_ns for paths in made.values() for p in paths}
    again = generate_dataset(
        tmp_path, n_files=2, n_events=300, seed=2, progress=False, layout="4lep"
    )
    assert again == made["4lep"]
    assert all(p.stat().st_mtime_ns == mtimes[p] for p in again)
    # a different signal fraction is a different dataset
    changed = generate_dataset(
        tmp_path,
        n_files=1,
        n_events=300,
        seed=2,
        progress=False,
        layout="4lep",
        signal_fraction=0.5,
    )
    assert demo_data.read_metadata(changed[0])["signal_fraction"] == 0.5
    assert demo_data.read_metadata(made["4lep"][1])["signal_fraction"] != 0.5


def test_signal_fraction_is_validated_for_every_layout(tmp_path):
    for layout in LEPTON_LAYOUTS:
        with pytest.raises(ValueError):
            simulate(layout, 10, signal_fraction=-0.1)
        with pytest.raises(ValueError):
            generate_dataset(
                tmp_path, n_files=1, n_events=10, layout=layout, signal_fraction=2.0, progress=False
            )
    only_signal = simulate_2lep(500, seed=1, signal_fraction=1.0)
    assert only_signal.is_signal.all()
    no_signal = simulate_4lep(500, seed=1, signal_fraction=0.0)
    assert not no_signal.is_signal.any()


def test_cli_writes_a_lepton_layout(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--out", str(out), "--layout", "1lep", "--files", "1", "--events", "200", "--quiet"]
    assert demo_data.main(args) == 0
    text = capsys.readouterr().out
    assert "demo.1lep.data_01.root" in text and "1 written, 0 reused" in text
    meta = demo_data.read_metadata(out / "demo.1lep.data_01.root")
    assert meta["signal_fraction"] == LAYOUTS["1lep"].default_signal_fraction
    with pytest.raises(SystemExit) as excinfo:
        demo_data.main(["--out", str(out), "--layout", "5lep"])
    assert excinfo.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1
